"""The limiter interface: requests per minute (RPM) and tokens per minute (TPM) for one key.

A key is whatever the caller limits: an API key, or an API key and a model. Each key has one
sliding window (60 s by default) holding a log of the requests admitted into it; each entry is a
reservation carrying its time and a token count (first the estimate, later the actual count).

Algorithm: a sliding log. It is the only one of the three usual choices that is exact:

- a sliding log counts exactly the requests of the last 60 s, so an RPM limit holds to the
  request, also across replicas, because the check and the record happen in one atomic step
  (one Lua script in Redis, one synchronous block with no ``await`` in memory);
- sub-buckets approximate (the oldest bucket is counted whole or prorated), and cannot take back
  a token reservation at its original time;
- GCRA is exact for RPM alone but keeps no per-request record, so a TPM estimate cannot be
  settled later against the time it was reserved.

A log costs memory per admitted request, but only up to the RPM limit (or the requests of one
window when only TPM is set), and a refund or overage (``settle``) is a lookup by reservation id.
The token total of a window is kept as a running sum, so a hit is O(log n) and only a refusal
walks the log (to say how long until enough room frees up).

Limits of ``None`` are unlimited. When both are ``None`` nothing is counted and the decision has
no reservation. A request that can never fit (an RPM of 0, or an estimate above the TPM limit)
is refused with a ``retry_after`` of the whole window.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

WINDOW = 60.0  # seconds

Reason = Literal["rpm", "tpm"]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """``allowed`` with a ``reservation`` to settle; or refused, with the limit that refused it
    (``reason``) and the seconds until enough of the window has passed for this hit to fit."""

    allowed: bool
    reservation: str | None = None
    retry_after: float = 0.0
    reason: Reason | None = None


UNCOUNTED = Decision(allowed=True)  # both limits None: nothing recorded, nothing to settle


class Limiter(Protocol):
    """Sliding-window RPM and TPM counters, per key."""

    async def hit(self, key: str, *, rpm: int | None, tpm: int | None, tokens: int) -> Decision:
        """Atomically count one request and reserve ``tokens`` (an estimate) in ``key``'s window.

        If either limit would be exceeded, record nothing and return a refusal; else record both
        and return the reservation id."""
        ...

    async def settle(self, key: str, reservation: str, *, actual_tokens: int) -> None:
        """Replace a reservation's estimate with the actual token count, at its original time.
        A reservation that has left the window (or never existed) is ignored."""
        ...

    async def close(self) -> None:
        ...
