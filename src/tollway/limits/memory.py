"""``MemoryLimiter``: the sliding-log limiter of one process (see ``base`` for the algorithm).

A hit never suspends (no ``await``), so under asyncio the check and the record are atomic. The
clock is injectable for tests; idle keys are swept about once per window.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable

from tollway.limits.base import UNCOUNTED, WINDOW, Decision, Reason


class _Entry:
    __slots__ = ("at", "id", "tokens")

    def __init__(self, at: float, id: str, tokens: int) -> None:
        self.at = at
        self.id = id
        self.tokens = tokens


class _Window:
    """One key's log, oldest first, with the sum of its tokens."""

    __slots__ = ("by_id", "log", "tokens")

    def __init__(self) -> None:
        self.log: deque[_Entry] = deque()
        self.by_id: dict[str, _Entry] = {}
        self.tokens = 0

    def prune(self, edge: float) -> None:
        log = self.log
        while log and log[0].at <= edge:
            entry = log.popleft()
            del self.by_id[entry.id]
            self.tokens -= entry.tokens

    def freed_at(self, need: int) -> float | None:
        """The time of the entry whose leaving frees ``need`` tokens."""
        freed = 0
        for entry in self.log:
            freed += entry.tokens
            if freed >= need:
                return entry.at
        return None


class MemoryLimiter:
    """``Limiter`` in this process's memory."""

    def __init__(self, *, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._ids = itertools.count(1)
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
            win = self._windows[key] = _Window()
        else:
            win.prune(now - self.window)
        if rpm is not None and len(win.log) >= rpm:
            at = win.log[len(win.log) - rpm].at if rpm > 0 else None
            return self._refuse("rpm", at, now)
        if tpm is not None and win.tokens + tokens > tpm:
            at = win.freed_at(win.tokens + tokens - tpm) if tokens <= tpm else None
            return self._refuse("tpm", at, now)
        entry = _Entry(now, str(next(self._ids)), tokens)
        win.log.append(entry)
        win.by_id[entry.id] = entry
        win.tokens += tokens
        return Decision(allowed=True, reservation=entry.id)

    async def settle(self, key: str, reservation: str, *, actual_tokens: int) -> None:
        self.settle_now(key, reservation, actual_tokens=actual_tokens)

    def settle_now(self, key: str, reservation: str, *, actual_tokens: int) -> None:
        """``settle`` without awaiting: nothing here does I/O."""
        win = self._windows.get(key)
        entry = win.by_id.get(reservation) if win is not None else None
        if win is None or entry is None:
            return
        actual = max(0, actual_tokens)
        win.tokens += actual - entry.tokens
        entry.tokens = actual

    def _sweep(self, now: float) -> None:
        edge = now - self.window
        for key in [k for k, w in self._windows.items() if not w.log or w.log[-1].at <= edge]:
            del self._windows[key]
        self._next_sweep = now + self.window

    async def close(self) -> None:
        self._windows.clear()
