"""How City's accounts service bounds sign-in attempts, in this process's memory: failures per
(email, client IP) with growing delays (never a hard lock anyone could trigger), failures per
client IP in a sliding window, and OAuth starts per client IP (see ``accounts``)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from tollway.core.errors import RateLimited

# failed logins ----------------------------------------------------------------------------


OAUTH_STARTS_PER_MINUTE = 30  # per client IP, per process


class FailureWindow:
    """At most ``limit`` failures per key in a sliding ``window`` (seconds), in memory.
    Past ``max_keys`` keys the stale ones go, then the oldest."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 50_000) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._hits: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may fail again, or None if it may now."""
        hits = self._hits.get(key)
        if hits is None:
            return None
        now = self.clock()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits[0] + self.window - now if len(hits) >= self.limit else None

    def add(self, key: str) -> float:
        at = self.clock()
        self._hits.setdefault(key, deque(maxlen=self.limit)).append(at)
        if len(self._hits) > self.max_keys:
            self._sweep()
        return at

    def forget(self, key: str, at: float | None = None) -> None:
        """Drop the failure recorded at ``at`` (or all of ``key``'s)."""
        hits = self._hits.get(key)
        if hits is None:
            return
        if at is None:
            del self._hits[key]
        elif at in hits:
            hits.remove(at)

    def _sweep(self) -> None:
        old = self.clock() - self.window
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= old]:
            del self._hits[key]
        while len(self._hits) > self.max_keys:
            del self._hits[next(iter(self._hits))]


class Backoff:
    """Growing delays per key: after ``free`` failures in a row, the next attempt must wait
    ``base`` seconds after the last failure, doubled with each further failure up to ``cap``.
    A key quiet for ``reset`` seconds is forgotten; past ``max_keys`` keys the quiet ones go,
    then the oldest."""

    def __init__(self, *, free: int = 5, base: float = 1.0, cap: float = 300.0, reset: float = 900.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 50_000) -> None:
        self.free, self.base, self.cap, self.reset = free, base, cap, reset
        self.clock, self.max_keys = clock, max_keys
        self._fails: dict[str, tuple[int, float]] = {}  # failures in a row, time of the last

    def delay(self, failures: int) -> float:
        """How long after the last of ``failures`` failures the next attempt must wait."""
        if failures < self.free:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(failures - self.free, 62))

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        state = self._fails.get(key)
        if state is None:
            return None
        failures, last = state
        now = self.clock()
        if now - last >= self.reset:
            del self._fails[key]
            return None
        wait = last + self.delay(failures) - now
        return wait if wait > 0 else None

    def add(self, key: str) -> None:
        failures, _ = self._fails.pop(key, (0, 0.0))
        self._fails[key] = (failures + 1, self.clock())  # re-inserted: the dict stays oldest first
        if len(self._fails) > self.max_keys:
            self._sweep()

    def forget(self, key: str) -> None:
        self._fails.pop(key, None)

    def _sweep(self) -> None:
        old = self.clock() - self.reset
        for key in [k for k, (_, last) in self._fails.items() if last <= old]:
            del self._fails[key]
        while len(self._fails) > self.max_keys:
            del self._fails[next(iter(self._fails))]


class LoginGuard:
    """Counts an attempt as a failure up front (so parallel guesses count at once) and takes it
    back when the password was right. Growing delays per (email, client IP), so a guesser slows
    down only itself, and a sliding window per client IP across emails."""

    def __init__(self, *, per_ip: int = 20, window: float = 300.0, free: int = 5, base_delay: float = 1.0,
                 max_delay: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.pairs = Backoff(free=free, base=base_delay, cap=max_delay, reset=max(3 * max_delay, window),
                             clock=clock)
        self.ips = FailureWindow(per_ip, window, clock=clock)

    @staticmethod
    def _pair(email: str, ip: str) -> str:
        return f"{email}\x00{ip}"  # an email holds no NUL (checked)

    def begin(self, email: str, ip: str) -> float:
        wait = max(self.pairs.retry_after(self._pair(email, ip)) or 0.0, self.ips.retry_after(ip) or 0.0)
        if wait > 0:
            raise RateLimited(f"Too many failed logins; try again in {math.ceil(wait)} seconds.",
                              retry_after=wait)
        self.pairs.add(self._pair(email, ip))
        return self.ips.add(ip)

    def succeeded(self, email: str, ip: str, at: float) -> None:
        self.pairs.forget(self._pair(email, ip))
        self.ips.forget(ip, at)
