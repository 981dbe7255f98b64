"""What a pass-through reader of any dialect is fed: one upstream Server-Sent Event.

``providers.sse.SSEEvent`` satisfies it; the pure dialect modules name it through this protocol
so that they need not import the provider layer.
"""

from __future__ import annotations

from typing import Protocol


class UpstreamEvent(Protocol):
    @property
    def event(self) -> str | None:
        """The ``event:`` name, if the upstream sent one."""
        ...

    @property
    def data(self) -> bytes:
        """The event's ``data:`` lines, joined, as sent."""
        ...
