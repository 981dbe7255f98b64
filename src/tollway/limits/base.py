"""What the limiters share: requests per minute (RPM) and tokens per minute (TPM) for one key.

The interface, ``Limiter`` with its ``Decision``, is ``tollway.core.limiter`` (billing counts
through it without importing this package); this module holds the window and the algorithm.

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

from tollway.core.limiter import Decision

WINDOW = 60.0  # seconds

UNCOUNTED = Decision(allowed=True)  # both limits None: nothing recorded, nothing to settle
