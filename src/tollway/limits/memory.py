"""``MemoryLimiter``: the sliding-log limiter of one process (see ``base`` for the algorithm).

A hit never suspends (no ``await``), so under asyncio the check and the record are atomic. The
clock is injectable for tests; idle keys are swept about once per window.
"""

from __future__ import annotations

import itertools
import time
from array import array
from collections.abc import Callable

from tollway.core.limiter import Decision, Reason
from tollway.limits.base import UNCOUNTED, WINDOW

ID_SPAN = 1 << 40  # reservation ids of one window: [base, base + ID_SPAN)


class _Window:
    """One key's log, oldest first, with the sum of its tokens.

    The log is two flat arrays (admission times and token counts) from ``head`` on, not an object
    per request: a window of a busy key holds a minute of requests, and objects would give the
    garbage collector that many more to walk on every full collection (p99 pauses). Entry ``i``
    has the reservation id ``base + i``; a settle finds its entry by subtraction."""

    __slots__ = ("at", "tok", "head", "base", "tokens")

    def __init__(self, base: int) -> None:
        self.at = array("d")
        self.tok = array("q")
        self.head = 0
        self.base = base
        self.tokens = 0

    def __len__(self) -> int:
        return len(self.at) - self.head

    def append(self, at: float, tokens: int) -> int:
        self.at.append(at)
        self.tok.append(tokens)
        self.tokens += tokens
        return self.base + len(self.at) - 1

    def prune(self, edge: float) -> None:
        at, tok, head = self.at, self.tok, self.head
        n = len(at)
        while head < n and at[head] <= edge:
            self.tokens -= tok[head]
            head += 1
        if head > 1024 and head * 2 > n:  # drop the dead front now and then: amortized O(1)
            del at[:head]
            del tok[:head]
            self.base += head
            head = 0
        self.head = head

    def settle(self, rid: int, actual: int) -> None:
        i = rid - self.base
        if self.head <= i < len(self.tok):
            self.tokens += actual - self.tok[i]
            self.tok[i] = actual

    def nth(self, i: int) -> float:
        """The admission time of the ``i``-th live entry (0: the oldest)."""
        return self.at[self.head + i]

    def freed_at(self, need: int) -> float | None:
        """The time of the entry whose leaving frees ``need`` tokens."""
        freed = 0
        for i in range(self.head, len(self.tok)):
            freed += self.tok[i]
            if freed >= need:
                return self.at[i]
        return None


class MemoryLimiter:
    """``Limiter`` in this process's memory: local, so a settlement never waits."""

    local = True

    def __init__(self, *, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._bases = itertools.count(1)  # each window's own id range: a stale id never hits a newer window
        self._next_sweep = clock() + window

    def _refuse(self, reason: Reason, at: float | None, now: float) -> Decision:
        wait = self.window if at is None else at + self.window - now
        return Decision(allowed=False, retry_after=wait, reason=reason)

    async def hit(self, key: str, *, rpm: int | None, tpm: int | None, tokens: int) -> Decision:
        if rpm is None and tpm is None:
            return UNCOUNTED
        tokens = max(0, tokens)
        now = self.clock()
        if now >= self._next_sweep:
            self._sweep(now)
        win = self._windows.get(key)
        if win is None:
            win = self._windows[key] = _Window(next(self._bases) * ID_SPAN)
        else:
            win.prune(now - self.window)
        if rpm is not None and len(win) >= rpm:
            at = win.nth(len(win) - rpm) if rpm > 0 else None
            return self._refuse("rpm", at, now)
        if tpm is not None and win.tokens + tokens > tpm:
            at = win.freed_at(win.tokens + tokens - tpm) if tokens <= tpm else None
            return self._refuse("tpm", at, now)
        return Decision(allowed=True, reservation=str(win.append(now, tokens)))

    async def settle(self, key: str, reservation: str, *, actual_tokens: int) -> None:
        self.settle_now(key, reservation, actual_tokens=actual_tokens)

    def settle_now(self, key: str, reservation: str, *, actual_tokens: int) -> bool:
        """``settle`` without awaiting: nothing here does I/O, so it always settles (True)."""
        win = self._windows.get(key)
        if win is not None and reservation.isdigit():
            win.settle(int(reservation), max(0, actual_tokens))
        return True

    def _sweep(self, now: float) -> None:
        edge = now - self.window
        for key in [k for k, w in self._windows.items() if not len(w) or w.at[-1] <= edge]:
            del self._windows[key]
        self._next_sweep = now + self.window

    async def close(self) -> None:
        self._windows.clear()
