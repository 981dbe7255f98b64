"""What every dialect's pass-through shares: the upstream event it reads, and the one edit it
makes to the upstream's answer (the model the client asked for, in place of the upstream's id).

``providers.sse.SSEEvent`` satisfies ``UpstreamEvent``; the pure dialect modules name it through
this protocol so that they need not import the provider layer.
"""

from __future__ import annotations

import re
from typing import Protocol

import msgspec

# a "model" key and its string value; inside a JSON string a quote is escaped, so this is a key
_MODEL = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
_encoder = msgspec.json.Encoder()


class UpstreamEvent(Protocol):
    @property
    def event(self) -> str | None:
        """The ``event:`` name, if the upstream sent one."""
        ...

    @property
    def data(self) -> bytes:
        """The event's ``data:`` lines, joined, as sent."""
        ...


def model_field(model: str) -> bytes:
    """``"model":"<model>"``, to put in place of the upstream's."""
    return b'"model":' + _encoder.encode(model)


def renamed(data: bytes, field: bytes) -> bytes:
    """``data`` (a JSON object the upstream sent) with its first ``"model"`` set to ``field``:
    answers name the model the client asked for, on every path (the upstream's id is in the
    ``x-tollway-upstream-model`` header and the request log)."""
    if field in data:  # the upstream already names it so (most often): no rewrite, no regex
        return data
    return _MODEL.sub(lambda _: field, data, count=1)
