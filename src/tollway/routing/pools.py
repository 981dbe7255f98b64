"""Credential pools: which of a provider's credentials serves the next call, and when none can.

Selection: among the healthy credentials (not disabled, not cooling down), the least in-flight
one, round-robin among ties, while it is under its own cap (``cap_of``): an account-style
credential (a DS2API login: ``extra`` has an email or a mobile) takes ``max_inflight`` calls at
once (2, seed 002's rule for logged-in web accounts), an API key ``api_key_max_inflight``
(1000 from the settings), and a credential that names its own ``max_inflight`` takes that. When
every healthy credential is at its cap, the call waits in a bounded FIFO queue (``queue_size``,
``queue_timeout``); past either bound it gets 429 ``pool_exhausted`` saying that in-flight plus
queue capacity was exceeded. A pin (``X-Tollway-Credential``) asks for one credential only.

Health: ``failed(lease, error, model)`` disables a credential only on evidence about the
credential itself: a 401 (the key is invalid), or 403 refusals of ``REFUSED_MODELS`` different
models with no success in between (an account refused everything). A single 403 is about the
request (a model this key may not use, refused content): the request fails, the credential stays.
A disabled credential comes back when an admin re-tests it, or by itself when the background
probe (``routing.recovery``) passes. 429, 5xx, timeouts and broken connections cool a credential
down: exponential backoff with jitter, never shorter than the upstream's Retry-After. A cooling
credential is passed over while another is healthy; when all are cooling, the soonest back
serves (a pool is not refused for cooling alone). ``succeeded`` resets the backoff.

The counts, cooldowns, disabled marks and the queue's capacity live in a ``PoolState``: in
memory by default, in Redis (``routing.redis_state``) when TOLLWAY_REDIS_URL is set, so caps
hold across replicas. A slot is a lease with an expiry, renewed while its call runs: a crashed
replica's slots come back when their leases expire.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgspec

from tollway.core.catalog import Credential
from tollway.core.errors import CredentialsDisabled, PermissionDenied, PoolExhausted, TollwayError, UpstreamError

log = logging.getLogger("tollway")
POLL = 0.05  # how often a waiter that cannot be woken looks for a free slot
SLOW_POLL = 1.0  # how often one that can be woken looks anyway
HEALTH_TTL = 0.25  # how stale another replica's cooldowns and disabled marks may be seen here
REFUSED_MODELS = 3  # 403s on this many different models, with no success between, disable a credential
AUTO_DISABLED = "upstream "  # the start of the reason of a credential the upstream's answers disabled


class PoolOptions(msgspec.Struct, frozen=True, kw_only=True):
    max_inflight: int = 2  # calls at once per account-style credential; per API key too, unless:
    api_key_max_inflight: int | None = None  # calls at once per API-key credential (None: max_inflight)
    queue_size: int = 100
    queue_timeout: float = 30.0
    cooldown_base: float = 1.0
    cooldown_max: float = 300.0
    lease_ttl: float = 60.0  # a slot's lease; renewed every third of it while the call runs


class Lease(msgspec.Struct, kw_only=True):
    credential: Credential
    token: str
    pool: str


class PoolState(Protocol):
    """Where in-flight slots, cooldowns, disabled marks and the queue's capacity are kept."""

    shared: bool  # other processes see and change it (then waiters poll as well as being woken)

    async def take(self, pool: str, candidates: Sequence[str], caps: int | Sequence[int],
                   ttl: float) -> tuple[str, str] | None:
        """Take a slot on the first of ``candidates`` with the fewest slots among those under
        their cap (``caps``: one per candidate, or one for all): (credential id, lease token), or
        None when all are at their caps."""
        ...

    async def give_back(self, pool: str, credential_id: str, token: str) -> None: ...

    async def renew(self, pool: str, leases: Iterable[tuple[str, str]], ttl: float) -> None: ...

    async def counts(self, pool: str, credential_ids: Sequence[str]) -> list[int]: ...

    async def cool(self, pool: str, credential_id: str, seconds: float) -> None: ...

    async def disable(self, pool: str, credential_id: str, reason: str) -> None: ...

    async def enable(self, pool: str, credential_id: str) -> None: ...

    async def health(self, pool: str, credential_ids: Sequence[str]) -> dict[str, tuple[float, str | None]]:
        """credential id -> (cooling until, epoch seconds or 0; disabled reason or None)."""
        ...

    async def enter_queue(self, pool: str, waiter: str, size: int, ttl: float) -> bool: ...

    async def leave_queue(self, pool: str, waiter: str) -> None: ...

    async def close(self) -> None: ...


_RUN = secrets.token_hex(6)  # this process's mark: its ids are unique across replicas too
_COUNT = itertools.count()


def _unique() -> str:
    """A slot token or waiter id: unique, not secret (a counter: no getrandom system call per call)."""
    return f"{_RUN}{next(_COUNT):x}"


class MemoryState:
    """One process's state (the default). Every method completes without suspending."""

    shared = False

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], dict[str, float]] = collections.defaultdict(dict)
        self._cool: dict[tuple[str, str], float] = {}
        self._disabled: dict[tuple[str, str], str] = {}
        self._queues: dict[str, dict[str, float]] = collections.defaultdict(dict)

    def _live(self, key: tuple[str, str], now: float) -> dict[str, float]:
        slots = self._slots[key]
        for token in [t for t, exp in slots.items() if exp <= now]:
            del slots[token]
        return slots

    async def take(self, pool: str, candidates: Sequence[str], caps: int | Sequence[int],
                   ttl: float) -> tuple[str, str] | None:
        now = time.monotonic()
        limits = _per_candidate(caps, len(candidates))
        best, low = None, 0
        for cid, cap in zip(candidates, limits, strict=True):
            n = len(self._live((pool, cid), now))
            if n < cap and (best is None or n < low):
                best, low = cid, n
        if best is None:
            return None
        token = _unique()
        self._slots[(pool, best)][token] = now + ttl
        return best, token

    async def give_back(self, pool: str, credential_id: str, token: str) -> None:
        self.give_back_now(pool, credential_id, token)

    def give_back_now(self, pool: str, credential_id: str, token: str) -> None:
        self._slots[(pool, credential_id)].pop(token, None)

    async def renew(self, pool: str, leases: Iterable[tuple[str, str]], ttl: float) -> None:
        now = time.monotonic()
        for cid, token in leases:
            slots = self._slots[(pool, cid)]
            if slots.get(token, 0.0) > now:  # an expired lease stays expired
                slots[token] = now + ttl

    async def counts(self, pool: str, credential_ids: Sequence[str]) -> list[int]:
        now = time.monotonic()
        return [len(self._live((pool, cid), now)) for cid in credential_ids]

    async def cool(self, pool: str, credential_id: str, seconds: float) -> None:
        self._cool[(pool, credential_id)] = time.time() + seconds

    async def disable(self, pool: str, credential_id: str, reason: str) -> None:
        self._disabled[(pool, credential_id)] = reason

    async def enable(self, pool: str, credential_id: str) -> None:
        self._disabled.pop((pool, credential_id), None)
        self._cool.pop((pool, credential_id), None)

    async def health(self, pool: str, credential_ids: Sequence[str]) -> dict[str, tuple[float, str | None]]:
        now = time.time()
        out = {}
        for cid in credential_ids:
            until = self._cool.get((pool, cid), 0.0)
            out[cid] = (until if until > now else 0.0, self._disabled.get((pool, cid)))
        return out

    async def enter_queue(self, pool: str, waiter: str, size: int, ttl: float) -> bool:
        queue = self._queues[pool]
        now = time.monotonic()
        for w in [w for w, exp in queue.items() if exp <= now]:
            del queue[w]
        if len(queue) >= size:
            return False
        queue[waiter] = now + ttl
        return True

    async def leave_queue(self, pool: str, waiter: str) -> None:
        self._queues[pool].pop(waiter, None)

    async def close(self) -> None:
        return None


def _pin_matches(c: Credential, pin: str) -> bool:
    return pin == c.id or pin in (c.extra.get("email"), c.extra.get("mobile"))


def _per_candidate(caps: int | Sequence[int], n: int) -> Sequence[int]:
    if isinstance(caps, int):
        return [caps] * n
    if len(caps) != n:
        raise ValueError(f"{len(caps)} caps for {n} candidates")
    return caps


def is_account(c: Credential) -> bool:
    """An account-style credential: a login added through the DS2API admin API (email or mobile)."""
    return bool(c.extra.get("email") or c.extra.get("mobile"))


def cap_of(c: Credential, options: PoolOptions) -> int:
    """Calls ``c`` may serve at once: its own ``max_inflight`` (``extra``, from YAML), else the
    pool's for its kind: ``max_inflight`` for an account, ``api_key_max_inflight`` for an API key."""
    own = c.extra.get("max_inflight")
    if own and own.isdigit() and int(own) > 0:
        return int(own)
    if is_account(c) or options.api_key_max_inflight is None:
        return options.max_inflight
    return options.api_key_max_inflight


class CredentialPool:
    def __init__(self, provider: str, credentials: tuple[Credential, ...], *, options: PoolOptions | None = None,
                 state: PoolState | None = None) -> None:
        self.provider = provider
        self.options = options or PoolOptions()
        self.state: PoolState = state or MemoryState()
        self.credentials = credentials or (Credential(id=f"{provider}:none"),)
        self._next = 0
        self._failures: dict[str, int] = {}
        self._refused: dict[str, set[str]] = {}  # credential id -> models the upstream refused it (403)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._queued = 0
        self._plain_queued = 0
        self._health_copy: dict[str, tuple[float, str | None]] | None = None
        self._health_at = 0.0
        self._releasing: set[asyncio.Task[None]] = set()
        self._leases: dict[str, Lease] = {}  # held by calls of this process, renewed while they run
        self._caps = {c.id: cap_of(c, self.options) for c in self.credentials}  # calls at once, per credential

    def set_credentials(self, credentials: tuple[Credential, ...]) -> None:
        """Replace the credentials (an admin added or removed one). Calls holding a lease on a
        removed credential keep it until they finish; its slots are then simply not counted."""
        self.credentials = credentials or (Credential(id=f"{self.provider}:none"),)
        self._caps = {c.id: cap_of(c, self.options) for c in self.credentials}
        live = {c.id for c in self.credentials}
        for cid in [cid for cid in self._failures if cid not in live]:
            del self._failures[cid]
        self._health_copy = None
        self._wake(self.recommended_concurrency)  # new credentials may have room

    @property
    def recommended_concurrency(self) -> int:
        """Calls the pool serves at once: every credential's cap, summed."""
        return sum(self._caps.values())

    def cap(self, credential_id: str) -> int:
        """The in-flight cap of one of the pool's credentials (``cap_of``)."""
        return self._caps.get(credential_id, self.options.max_inflight)

    def find(self, pin: str) -> Credential | None:
        return next((c for c in self.credentials if _pin_matches(c, pin)), None)

    async def _candidates(self, pin: str | None, exclude: frozenset[str]) -> list[str]:
        """Credential ids to take a slot on, in order: the healthy ones in round-robin order;
        when every one is cooling down, those (soonest back first: a pool is never refused for
        cooling alone, as a lone credential's one 503 must not turn away everyone); never a
        disabled one. Empty when nothing is left."""
        creds = self.credentials
        if pin is not None:
            chosen = self.find(pin)
            if chosen is None:
                raise PermissionDenied(f"no credential {pin!r} in provider {self.provider!r}",
                                       code="unknown_credential")
            creds = (chosen,)
        ids = [c.id for c in creds if c.id not in exclude]
        health = await self._health(ids)
        now = time.time()
        usable = [cid for cid in ids if health[cid][1] is None]
        healthy = [cid for cid in usable if health[cid][0] <= now]
        if not healthy:
            return sorted(usable, key=lambda cid: health[cid][0])
        n = len(healthy)
        start = self._next % n
        self._next += 1
        return healthy[start:] + healthy[:start]

    async def _take(self, order: list[str]) -> tuple[str, str] | None:
        """The state's take; cancelled while a shared state works on it, the slot it took (if
        any) is given back rather than held until its lease expires."""
        opts = self.options
        caps = [self.cap(cid) for cid in order]
        if not self.state.shared:
            return await self.state.take(self.provider, order, caps, opts.lease_ttl)
        task = asyncio.ensure_future(self.state.take(self.provider, order, caps, opts.lease_ttl))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            def give_back(t: asyncio.Task[tuple[str, str] | None]) -> None:
                if not t.cancelled() and t.exception() is None and (taken := t.result()) is not None:
                    back = asyncio.ensure_future(self.state.give_back(self.provider, *taken))
                    self._releasing.add(back)
                    back.add_done_callback(self._releasing.discard)
            task.add_done_callback(give_back)
            raise

    async def _health(self, ids: list[str]) -> dict[str, tuple[float, str | None]]:
        """Cooldowns and disabled marks. A shared state is asked at most every HEALTH_TTL (they
        change rarely, and this process's own changes clear the copy at once): one round trip
        fewer per call."""
        if not self.state.shared:
            return await self.state.health(self.provider, ids)
        now = time.monotonic()
        if self._health_copy is None or now - self._health_at > HEALTH_TTL:
            self._health_copy = await self.state.health(self.provider, [c.id for c in self.credentials])
            self._health_at = now
        copy = self._health_copy
        return {cid: copy.get(cid, (0.0, None)) for cid in ids}

    async def _try(self, pin: str | None, exclude: frozenset[str]) -> Lease | None:
        """A lease, or None when every usable credential is at its cap; CredentialsDisabled
        when no credential is usable at all."""
        order = await self._candidates(pin, exclude)
        if not order:
            what = f"credential {pin!r}" if pin else f"every credential of provider '{self.provider}'"
            raise CredentialsDisabled(f"{what} is disabled (the upstream rejected it) or already tried; an admin "
                                      "can re-test it (POST /admin/accounts/test).")
        taken = await self._take(order)
        if taken is None:
            return None
        cid, token = taken
        credential = next((c for c in self.credentials if c.id == cid), None)
        if credential is None:  # removed by an admin while the state was taking its slot
            await self.state.give_back(self.provider, cid, token)
            return None
        lease = Lease(credential=credential, token=token, pool=self.provider)
        self._leases[token] = lease
        return lease

    async def acquire(self, *, pin: str | None = None, exclude: Iterable[str] = ()) -> Lease:
        """A slot on a healthy credential, waiting in the queue when all are busy.

        Plain waiters queue FIFO: a release wakes the first one, and a newcomer does not take a
        slot while others wait. A pinned waiter, or a retry that excludes the credentials it
        tried, polls instead (it may not take just any freed slot). With shared state every
        waiter also polls, since another replica's release wakes nobody here."""
        excluded = frozenset(exclude)
        plain = pin is None and not excluded
        if not (plain and self._plain_queued):
            first = await self._try(pin, excluded)
            if first is not None:
                return first
        opts = self.options
        waiter = _unique()
        if not await self.state.enter_queue(self.provider, waiter, opts.queue_size, opts.queue_timeout + 5):
            raise PoolExhausted(
                f"Provider '{self.provider}' is at capacity: {self.recommended_concurrency} in flight "
                f"({len(self.credentials)} credentials, each at its cap) plus {opts.queue_size} queued; "
                f"in-flight plus queue capacity exceeded.", retry_after=1.0)
        deadline = time.monotonic() + opts.queue_timeout
        # a plain waiter here is woken by a release, an enable or new credentials; the first in
        # line also looks now and then (another replica's release, a lease that expired, wakes nobody)
        poll = POLL if (self.state.shared or not plain) else SLOW_POLL
        head = False  # a waiter woken in vain goes back to the front, not the end
        fut: asyncio.Future[None] | None = None
        got: Lease | None = None
        self._queued += 1
        self._plain_queued += plain
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PoolExhausted(
                        f"Provider '{self.provider}' stayed at capacity for {opts.queue_timeout:g}s "
                        f"({self.recommended_concurrency} in flight, queue of {opts.queue_size}): in-flight plus "
                        f"queue capacity exceeded.", retry_after=1.0)
                if plain:
                    if fut is None or fut.done():
                        fut = asyncio.get_running_loop().create_future()
                        (self._waiters.appendleft if head else self._waiters.append)(fut)
                    try:  # asyncio.wait, not wait_for: a cancellation must never be swallowed
                        await asyncio.wait({fut}, timeout=min(left, poll))
                    except asyncio.CancelledError:
                        if fut.done():
                            self._wake()  # woken, but leaving: hand the wake-up to the next waiter
                        else:
                            fut.cancel()
                        raise
                    if fut.done():
                        head = True
                    elif self._first_waiter() is not fut:
                        continue  # a look on its own: only the first in line may take, so nobody overtakes
                else:
                    await asyncio.sleep(min(left, POLL))
                got = await self._try(pin, excluded)
                if got is not None:
                    break
        finally:
            self._queued -= 1
            self._plain_queued -= plain
            if fut is not None and not fut.done():
                fut.cancel()
            try:
                await self.state.leave_queue(self.provider, waiter)
            except asyncio.CancelledError:  # cancelled with a lease in hand: give it back first
                if got is not None:
                    self.release_nowait(got)
                raise
            except Exception:  # its place expires by itself; a lease in hand must not be lost over it
                log.warning("pool %s: leaving the queue failed", self.provider, exc_info=True)
        return got

    def _first_waiter(self) -> asyncio.Future[None] | None:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        return self._waiters[0] if self._waiters else None

    async def release(self, lease: Lease) -> None:
        self._leases.pop(lease.token, None)
        await self.state.give_back(self.provider, lease.credential.id, lease.token)
        self._wake()

    def release_nowait(self, lease: Lease) -> None:
        """``release`` from synchronous code (a call's finish): at once in memory, else soon."""
        if isinstance(self.state, MemoryState):
            self._leases.pop(lease.token, None)
            self.state.give_back_now(self.provider, lease.credential.id, lease.token)
            self._wake()
            return
        task = asyncio.ensure_future(self.release(lease))
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        """A give-back that failed (the shared state unreachable): its lease expires by itself."""
        self._releasing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("pool %s: giving a slot back failed (its lease expires by itself): %s", self.provider, exc)

    async def drain(self) -> None:
        """Wait for the releases ``release_nowait`` started (at shutdown, before the state closes)."""
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    def _wake(self, n: int = 1) -> None:
        """Wake the first ``n`` waiters still waiting."""
        while n > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                n -= 1

    async def renew(self) -> None:
        if self._leases:
            await self.state.renew(self.provider, [(le.credential.id, t) for t, le in self._leases.items()],
                                   self.options.lease_ttl)

    # health --------------------------------------------------------------------------------

    async def succeeded(self, lease: Lease) -> None:
        self._failures.pop(lease.credential.id, None)
        self._refused.pop(lease.credential.id, None)

    async def failed(self, lease: Lease, err: TollwayError, model: str | None = None) -> None:
        """An upstream failure on this credential (calling ``model``): disable it on evidence
        about the credential, cool it down on a failure that may pass, else leave it."""
        cid = lease.credential.id
        if not isinstance(err, UpstreamError):
            return
        status = err.upstream_status
        if status == 401:
            await self._disable(cid, f"{AUTO_DISABLED}answered 401")
            return
        if status == 403:  # about this request, unless the credential is refused whatever it asks
            refused = self._refused.setdefault(cid, set())
            refused.add(model or "")
            if len(refused) >= REFUSED_MODELS:
                await self._disable(cid, f"{AUTO_DISABLED}refused {len(refused)} models with 403")
            return
        if status is not None and status != 429 and status < 500:
            return  # the request's fault (400, 404 ...), not the credential's
        n = self._failures.get(cid, 0) + 1
        self._failures[cid] = n
        opts = self.options
        backoff = min(opts.cooldown_max, opts.cooldown_base * 2 ** (n - 1))
        backoff *= random.uniform(0.8, 1.2)
        await self.state.cool(self.provider, cid, max(backoff, err.retry_after or 0.0))
        self._health_copy = None

    async def _disable(self, credential_id: str, reason: str) -> None:
        self._refused.pop(credential_id, None)
        await self.state.disable(self.provider, credential_id, reason)
        self._health_copy = None
        log.warning("pool %s: credential %s disabled: %s", self.provider, credential_id, reason)

    async def auto_disabled(self) -> list[Credential]:
        """The credentials the upstream's answers disabled (the background probe's to try)."""
        health = await self.state.health(self.provider, [c.id for c in self.credentials])
        return [c for c in self.credentials if (health[c.id][1] or "").startswith(AUTO_DISABLED)]

    async def enable(self, credential_id: str) -> None:
        self._failures.pop(credential_id, None)
        self._refused.pop(credential_id, None)
        await self.state.enable(self.provider, credential_id)
        self._health_copy = None
        self._wake(self.options.max_inflight)  # its slots are free for waiters now

    async def status(self) -> dict[str, object]:
        """Seed 002's queue status for this pool."""
        ids = [c.id for c in self.credentials]
        counts = await self.state.counts(self.provider, ids)
        health = await self.state.health(self.provider, ids)
        now = time.time()
        in_use = [cid for cid, n in zip(ids, counts, strict=True) if n > 0]
        available = [cid for cid, n in zip(ids, counts, strict=True)
                     if n < self.cap(cid) and health[cid][1] is None and health[cid][0] <= now]
        # seed 002's "per account" figure: the accounts' cap (logins), else the API keys' (the
        # caps of each credential are in max_inflight; recommended_concurrency is their sum)
        accounts = [c.id for c in self.credentials if is_account(c)]
        per_account = max(self.cap(cid) for cid in (accounts or ids))
        return {
            "available": len(available), "in_use": len(in_use), "total": len(ids),
            "available_accounts": available, "in_use_accounts": in_use,
            "max_inflight_per_account": per_account, "recommended_concurrency": self.recommended_concurrency,
            "max_inflight": {cid: self.cap(cid) for cid in ids},
            "in_flight": dict(zip(ids, counts, strict=True)),
            "cooling": {cid: round(h[0] - now, 1) for cid, h in health.items() if h[0] > now},
            "disabled": {cid: h[1] for cid, h in health.items() if h[1] is not None},
            "queued": self._queued,
        }
