"""The rate-limiter contract: what billing counts requests and tokens through.

``tollway.limits`` implements it (in this process's memory, or in Redis for every replica) and
``tollway.billing`` uses it; the two are side by side in the layers, so the contract lives here,
below both, and the app wires a concrete limiter into billing.

A limiter keeps one sliding window of requests per key (an API key, or an API key on a model):
``hit`` counts a request and reserves its estimated tokens, ``settle`` later replaces the
estimate with the actual count at the reservation's original time.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

Reason = Literal["rpm", "tpm"]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """``allowed`` with a ``reservation`` to settle; or refused, with the limit that refused it
    (``reason``) and the seconds until enough of the window has passed for this hit to fit."""

    allowed: bool
    reservation: str | None = None
    retry_after: float = 0.0
    reason: Reason | None = None


class Limiter(Protocol):
    """Sliding-window RPM and TPM counters, per key. Limits of ``None`` are unlimited."""

    @property
    def local(self) -> bool:
        """True when the counters are in this process: no call waits on I/O, so hits may go one
        after another and ``settle_now`` always settles. False for counters shared over the
        network, where each call is a round trip (calls of one event-loop turn may share it)."""
        ...

    async def hit(self, key: str, *, rpm: int | None, tpm: int | None, tokens: int) -> Decision:
        """Atomically count one request and reserve ``tokens`` (an estimate) in ``key``'s window.

        If either limit would be exceeded, record nothing and return a refusal; else record both
        and return the reservation id. With both limits ``None`` nothing is counted and the
        decision has no reservation."""
        ...

    def settle_now(self, key: str, reservation: str, *, actual_tokens: int) -> bool:
        """``settle`` without awaiting, when this limiter can (a local one): True when settled;
        False, changing nothing, when settling takes a round trip (await ``settle``)."""
        ...

    async def settle(self, key: str, reservation: str, *, actual_tokens: int) -> None:
        """Replace a reservation's estimate with the actual token count, at its original time.
        A reservation that has left the window (or never existed) is ignored."""
        ...

    async def close(self) -> None:
        ...
