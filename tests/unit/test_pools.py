"""CredentialPool: least in-flight first, round-robin among ties, a cap per credential, a
bounded FIFO queue with a timeout, health (401/403 disable; 429/5xx/timeouts cool down with
backoff), pins, exclusions, leases that expire unless renewed, and seed 002's status."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from tollway.core.catalog import Credential
from tollway.core.errors import (
    CredentialsDisabled,
    InvalidRequest,
    PermissionDenied,
    PoolExhausted,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.routing.pools import CredentialPool, Lease, MemoryState, PoolOptions

CREDS = tuple(Credential(id=f"k{i}", secret=f"s{i}") for i in range(3))


def make(n: int = 3, **options: float) -> CredentialPool:
    return CredentialPool("p", CREDS[:n], options=PoolOptions(**options))  # type: ignore[arg-type]


def ids(leases: list[Lease]) -> list[str]:
    return [le.credential.id for le in leases]


async def in_flight(pool: CredentialPool) -> dict[str, int]:
    return (await pool.status())["in_flight"]  # type: ignore[return-value]


async def cooling_for(pool: CredentialPool, cid: str) -> float:
    """Seconds until ``cid`` is back (0 when it is not cooling)."""
    until, _ = (await pool.state.health(pool.provider, [cid]))[cid]
    return until - time.time() if until else 0.0


async def queued(pool: CredentialPool, n: int) -> None:
    """Wait until ``n`` calls wait in the pool's queue."""
    async with asyncio.timeout(2):
        while (await pool.status())["queued"] != n:
            await asyncio.sleep(0.005)


def upstream(status: int | None, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError("boom", provider="p", upstream_status=status, retry_after=retry_after)


# selection -------------------------------------------------------------------------------


async def test_concurrent_calls_spread_over_idle_credentials_first() -> None:
    pool = make()
    assert ids([await pool.acquire() for _ in range(3)]) == ["k0", "k1", "k2"]
    assert await in_flight(pool) == {"k0": 1, "k1": 1, "k2": 1}


async def test_ties_are_served_round_robin() -> None:
    pool = make()
    served = []
    for _ in range(7):
        lease = await pool.acquire()
        served.append(lease)
        await pool.release(lease)
    assert ids(served) == ["k0", "k1", "k2", "k0", "k1", "k2", "k0"]


async def test_round_robin_continues_when_all_are_equally_busy() -> None:
    pool = make()
    [await pool.acquire() for _ in range(3)]
    assert ids([await pool.acquire() for _ in range(3)]) == ["k0", "k1", "k2"]
    assert await in_flight(pool) == {"k0": 2, "k1": 2, "k2": 2}


async def test_the_least_busy_credential_wins_over_round_robin_order() -> None:
    pool = make()
    a, b, c = await pool.acquire(), await pool.acquire(), await pool.acquire()
    await pool.release(b)
    assert (await pool.acquire()).credential.id == "k1"  # the only idle one, though k0 is next in turn
    await pool.release(c)
    await pool.release(a)
    assert ids([await pool.acquire(), await pool.acquire()]) == ["k2", "k0"]


async def test_release_is_idempotent_and_frees_only_its_own_slot() -> None:
    pool = make(1)
    a, _b = await pool.acquire(), await pool.acquire()
    assert await in_flight(pool) == {"k0": 2}
    await pool.release(a)
    await pool.release(a)
    pool.release_nowait(a)
    assert await in_flight(pool) == {"k0": 1}


async def test_the_cap_per_credential_is_never_exceeded() -> None:
    pool = make(3, max_inflight=2, queue_size=100, queue_timeout=10)
    holding: Counter[str] = Counter()
    most: Counter[str] = Counter()
    served: list[str] = []
    rng = random.Random(7)

    async def one(i: int) -> None:
        lease = await pool.acquire()
        cid = lease.credential.id
        holding[cid] += 1
        most[cid] = max(most[cid], holding[cid])
        served.append(cid)
        await asyncio.sleep(rng.uniform(0, 0.004))
        holding[cid] -= 1
        if i % 2:
            await pool.release(lease)
        else:
            pool.release_nowait(lease)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(60))), 10)
    assert len(served) == 60
    assert max(most.values()) == 2 and set(most) == {"k0", "k1", "k2"}
    assert await in_flight(pool) == {"k0": 0, "k1": 0, "k2": 0}
    assert (await pool.status())["queued"] == 0


# the queue -------------------------------------------------------------------------------


async def test_waiters_get_slots_in_arrival_order_and_newcomers_do_not_overtake() -> None:
    pool = make(1, max_inflight=1, queue_timeout=5)
    holder = await pool.acquire()
    order: list[str] = []

    async def worker(name: str) -> Lease:
        lease = await pool.acquire()
        order.append(name)
        return lease

    tasks = {}
    for n, name in enumerate("abc", start=1):
        tasks[name] = asyncio.create_task(worker(name))
        await queued(pool, n)
    pool.release_nowait(holder)
    tasks["d"] = asyncio.create_task(worker("d"))  # arrives as the slot frees, before "a" has run
    lease = await asyncio.wait_for(tasks["a"], 1)
    await queued(pool, 3)
    assert order == ["a"] and not tasks["d"].done()
    for name in "bcd":
        await pool.release(lease)
        lease = await asyncio.wait_for(tasks[name], 1)
        assert order[-1] == name
    assert order == ["a", "b", "c", "d"]
    assert await in_flight(pool) == {"k0": 1}


async def test_a_full_queue_refuses_at_once() -> None:
    pool = make(1, max_inflight=1, queue_size=2, queue_timeout=5)
    holder = await pool.acquire()
    waiting = [asyncio.create_task(pool.acquire()) for _ in range(2)]
    await queued(pool, 2)
    t0 = time.monotonic()
    with pytest.raises(PoolExhausted, match="in-flight plus queue capacity") as info:
        await pool.acquire()
    assert time.monotonic() - t0 < 0.1
    assert info.value.http_status == 429 and info.value.code == "pool_exhausted"
    assert info.value.retry_after is not None
    await pool.release(holder)
    lease = await asyncio.wait_for(waiting[0], 1)
    await pool.release(lease)
    await pool.release(await asyncio.wait_for(waiting[1], 1))


async def test_without_a_queue_a_busy_pool_refuses_at_once() -> None:
    pool = make(2, max_inflight=1, queue_size=0)
    await pool.acquire()
    await pool.acquire()
    with pytest.raises(PoolExhausted, match="in-flight plus queue capacity"):
        await asyncio.wait_for(pool.acquire(), 0.1)


async def test_a_waiter_gives_up_after_the_queue_timeout() -> None:
    pool = make(1, max_inflight=1, queue_timeout=0.2)
    await pool.acquire()
    t0 = time.monotonic()
    with pytest.raises(PoolExhausted, match="in-flight plus queue capacity"):
        await pool.acquire()
    assert 0.18 <= time.monotonic() - t0 < 0.7
    status = await pool.status()
    assert status["queued"] == 0 and status["in_flight"] == {"k0": 1}


async def test_a_timed_out_waiter_frees_its_place_in_the_queue() -> None:
    pool = make(1, max_inflight=1, queue_size=1, queue_timeout=0.1)
    holder = await pool.acquire()
    with pytest.raises(PoolExhausted):
        await pool.acquire()
    waiting = asyncio.create_task(pool.acquire())  # the queue has room again
    await queued(pool, 1)
    await pool.release(holder)
    assert (await asyncio.wait_for(waiting, 1)).credential.id == "k0"


async def test_a_pinned_waiter_does_not_hold_back_a_call_a_free_credential_can_serve() -> None:
    pool = make(2, max_inflight=1, queue_timeout=1.0)
    held = await pool.acquire(pin="k0")
    pinned = asyncio.create_task(pool.acquire(pin="k0"))
    await queued(pool, 1)
    try:
        assert (await asyncio.wait_for(pool.acquire(), 0.3)).credential.id == "k1"
    finally:
        await pool.release(held)
        await pool.release(await pinned)


async def test_a_waiter_cancelled_as_it_is_woken_passes_the_slot_on() -> None:
    pool = make(1, max_inflight=1, queue_timeout=1.0)
    holder = await pool.acquire()
    first = asyncio.create_task(pool.acquire())
    await queued(pool, 1)
    second = asyncio.create_task(pool.acquire())
    await queued(pool, 2)
    pool.release_nowait(holder)  # wakes ``first`` ...
    first.cancel()  # ... whose caller goes away before it runs
    try:
        assert (await asyncio.wait_for(second, 0.3)).credential.id == "k0"
        assert first.cancelled()
    finally:
        for task in (first, second):
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_queued_call_is_served_at_once_by_a_re_enabled_credential() -> None:
    pool = make(2, max_inflight=1, queue_timeout=1.0)
    rejected = await pool.acquire(pin="k1")
    await pool.failed(rejected, upstream(401))
    await pool.release(rejected)  # as a call does after a failed attempt
    await pool.acquire()  # k0, the only usable one, is now full
    waiting = asyncio.create_task(pool.acquire())
    await queued(pool, 1)
    await pool.enable("k1")
    try:
        assert (await asyncio.wait_for(waiting, 0.3)).credential.id == "k1"
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


# health: disabling -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [401])  # a 403 is the request's failure: tests/unit/test_recovery.py
async def test_a_rejected_credential_is_disabled_until_enabled(status: int) -> None:
    pool = make(2)
    lease = await pool.acquire()
    await pool.release(lease)
    await pool.failed(lease, upstream(status))
    served = []
    for _ in range(6):
        le = await pool.acquire()
        served.append(le)
        await pool.release(le)
    assert set(ids(served)) == {"k1"}
    s = await pool.status()
    assert s["disabled"]["k0"].startswith(f"upstream answered {status}") and s["available_accounts"] == ["k1"]
    with pytest.raises(CredentialsDisabled):
        await pool.acquire(pin="k0")

    await pool.failed(await pool.acquire(), upstream(status))
    with pytest.raises(CredentialsDisabled) as info:
        await pool.acquire()
    assert info.value.http_status == 503

    await pool.enable("k0")
    assert (await pool.acquire()).credential.id == "k0"
    assert (await pool.status())["disabled"] == {"k1": f"upstream answered {status}"}


async def test_a_disabled_credential_is_not_used_even_when_the_others_are_full() -> None:
    pool = make(2, max_inflight=1, queue_size=0)
    await pool.failed(await pool.acquire(pin="k1"), upstream(401))
    await pool.acquire()
    with pytest.raises(PoolExhausted):
        await pool.acquire()


# health: cooling down ----------------------------------------------------------------------


@pytest.mark.parametrize("err", [upstream(429), upstream(500), upstream(503), upstream(None),
                                 UpstreamTimeout("slow", provider="p")], ids=["429", "500", "503", "conn", "timeout"])
async def test_a_transient_failure_cools_the_credential_down(err: UpstreamError) -> None:
    pool = make(2, cooldown_base=30)
    lease = await pool.acquire()
    await pool.release(lease)
    await pool.failed(lease, err)
    assert 0.8 * 30 - 0.5 <= await cooling_for(pool, "k0") <= 1.2 * 30
    served = []
    for _ in range(5):
        le = await pool.acquire()
        served.append(le)
        await pool.release(le)
    assert set(ids(served)) == {"k1"}  # passed over while k1 is healthy
    s = await pool.status()
    assert s["available_accounts"] == ["k1"] and set(s["cooling"]) == {"k0"} and s["disabled"] == {}  # type: ignore[call-overload]


@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_a_request_error_neither_cools_nor_disables(status: int) -> None:
    pool = make(2, cooldown_base=30)
    lease = await pool.acquire()
    await pool.release(lease)
    await pool.failed(lease, upstream(status))
    await pool.failed(lease, InvalidRequest("bad"))  # not an upstream error at all
    assert await pool.state.health("p", ["k0"]) == {"k0": (0.0, None)}
    assert ids([await pool.acquire() for _ in range(2)]) == ["k1", "k0"]


async def test_the_backoff_doubles_up_to_the_maximum() -> None:
    pool = make(2, cooldown_base=10, cooldown_max=50)
    lease = await pool.acquire(pin="k0")
    for expected in (10, 20, 40, 50, 50):
        await pool.failed(lease, upstream(503))
        assert 0.8 * expected - 0.5 <= await cooling_for(pool, "k0") <= 1.2 * expected


async def test_the_backoff_is_jittered() -> None:
    pool = make(1, cooldown_base=100)
    lease = await pool.acquire()
    seen = set()
    for _ in range(8):
        await pool.succeeded(lease)
        await pool.failed(lease, upstream(503))
        seen.add(round(await cooling_for(pool, "k0")))
    assert len(seen) > 1 and all(79 <= s <= 120 for s in seen)


async def test_retry_after_is_a_minimum() -> None:
    pool = make(2, cooldown_base=1)
    lease = await pool.acquire(pin="k0")
    await pool.failed(lease, upstream(429, retry_after=90))
    assert 89 <= await cooling_for(pool, "k0") <= 90
    await pool.succeeded(lease)
    pool2 = make(2, cooldown_base=100)
    lease2 = await pool2.acquire(pin="k0")
    await pool2.failed(lease2, upstream(429, retry_after=5))  # shorter than the backoff: the backoff wins
    assert 79 <= await cooling_for(pool2, "k0") <= 120


async def test_success_resets_the_backoff() -> None:
    pool = make(2, cooldown_base=10, cooldown_max=1000)
    lease = await pool.acquire(pin="k0")
    for _ in range(3):
        await pool.failed(lease, upstream(500))
    assert await cooling_for(pool, "k0") >= 0.8 * 40 - 0.5
    await pool.succeeded(lease)
    await pool.failed(lease, upstream(500))
    assert 0.8 * 10 - 0.5 <= await cooling_for(pool, "k0") <= 1.2 * 10


async def test_enable_clears_a_cooldown_and_its_backoff() -> None:
    pool = make(2, cooldown_base=10, cooldown_max=1000)
    lease = await pool.acquire(pin="k0")
    for _ in range(3):
        await pool.failed(lease, upstream(500))
    await pool.enable("k0")
    assert await cooling_for(pool, "k0") == 0.0
    await pool.failed(lease, upstream(500))
    assert await cooling_for(pool, "k0") <= 1.2 * 10


async def test_when_all_are_cooling_the_soonest_back_serves() -> None:
    pool = make(3, cooldown_base=1)
    for cid, wait in (("k0", 300), ("k1", 30), ("k2", 120)):
        lease = await pool.acquire(pin=cid)
        await pool.release(lease)
        await pool.failed(lease, upstream(429, retry_after=wait))
    assert (await pool.status())["available"] == 0
    served = []
    for _ in range(3):  # never refused for cooling alone
        lease = await pool.acquire()
        served.append(lease)
        await pool.release(lease)
    assert ids(served) == ["k1", "k1", "k1"]
    # the least busy still wins; among equally busy ones, the soonest back
    await pool.acquire()
    assert ids([await pool.acquire(), await pool.acquire()]) == ["k2", "k0"]


async def test_a_lone_cooling_credential_still_serves() -> None:
    pool = make(1, cooldown_base=60)
    lease = await pool.acquire()
    await pool.failed(lease, upstream(503))
    await pool.release(lease)
    assert (await pool.acquire()).credential.id == "k0"


async def test_a_cooling_credential_comes_back_when_its_cooldown_ends() -> None:
    pool = make(2, cooldown_base=0.1)
    lease = await pool.acquire(pin="k0")
    await pool.release(lease)
    await pool.failed(lease, upstream(503))
    assert (await pool.acquire()).credential.id == "k1"
    await asyncio.sleep(0.15)
    assert (await pool.acquire()).credential.id == "k0"  # the least busy again


# pins and exclusions ---------------------------------------------------------------------


async def test_a_pin_by_id_or_email_picks_only_that_credential() -> None:
    creds = (Credential(id="a", extra={"email": "a@x.io"}), Credential(id="b", extra={"email": "b@x.io"}))
    pool = CredentialPool("p", creds)
    assert ids([await pool.acquire(pin="b") for _ in range(2)]) == ["b", "b"]
    assert ids([await pool.acquire(pin="a@x.io") for _ in range(2)]) == ["a", "a"]
    with pytest.raises(PermissionDenied) as info:
        await pool.acquire(pin="nobody@x.io")
    assert info.value.code == "unknown_credential"


async def test_a_pinned_call_waits_for_its_credential_though_others_are_free() -> None:
    pool = make(2, max_inflight=1, queue_timeout=2)
    held = await pool.acquire(pin="k0")
    waiting = asyncio.create_task(pool.acquire(pin="k0"))
    await queued(pool, 1)
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await pool.release(held)
    assert (await asyncio.wait_for(waiting, 1)).credential.id == "k0"


async def test_a_pinned_call_times_out_like_any_other() -> None:
    pool = make(2, max_inflight=1, queue_timeout=0.2)
    await pool.acquire(pin="k1")
    t0 = time.monotonic()
    with pytest.raises(PoolExhausted):
        await pool.acquire(pin="k1")
    assert 0.18 <= time.monotonic() - t0 < 0.7


async def test_exclude_skips_the_credentials_already_tried() -> None:
    pool = make()
    assert (await pool.acquire(exclude={"k0"})).credential.id == "k1"
    assert (await pool.acquire(exclude=["k1", "k2"])).credential.id == "k0"
    with pytest.raises(CredentialsDisabled):
        await pool.acquire(exclude={"k0", "k1", "k2"})


async def test_an_excluding_retry_waits_for_a_credential_it_has_not_tried() -> None:
    pool = make(2, max_inflight=1, queue_timeout=2)
    await pool.acquire(pin="k0")
    held = await pool.acquire(pin="k1")
    waiting = asyncio.create_task(pool.acquire(exclude={"k0"}))
    await queued(pool, 1)
    await pool.release(held)
    assert (await asyncio.wait_for(waiting, 1)).credential.id == "k1"


# leases ----------------------------------------------------------------------------------


async def test_a_lease_expires_after_its_ttl() -> None:
    pool = make(1, max_inflight=1, queue_size=0, lease_ttl=0.1)
    await pool.acquire()
    with pytest.raises(PoolExhausted):
        await pool.acquire()
    await asyncio.sleep(0.15)
    assert await in_flight(pool) == {"k0": 0}
    assert (await pool.acquire()).credential.id == "k0"


async def test_renew_keeps_running_calls_alive() -> None:
    pool = make(1, max_inflight=1, queue_size=0, lease_ttl=0.2)
    lease = await pool.acquire()
    for _ in range(8):  # 0.4 s, twice the ttl
        await asyncio.sleep(0.05)
        await pool.renew()
    with pytest.raises(PoolExhausted):
        await pool.acquire()
    assert await in_flight(pool) == {"k0": 1}
    await pool.release(lease)
    await pool.renew()  # a released lease is not renewed back to life
    assert await in_flight(pool) == {"k0": 0}


# status and credentials --------------------------------------------------------------------


async def test_status_reports_seed_002s_fields() -> None:
    pool = make(3, max_inflight=2, cooldown_base=30)
    assert await pool.status() == {
        "available": 3, "in_use": 0, "total": 3,
        "available_accounts": ["k0", "k1", "k2"], "in_use_accounts": [],
        "max_inflight_per_account": 2, "recommended_concurrency": 6, "max_inflight": {"k0": 2, "k1": 2, "k2": 2},
        "in_flight": {"k0": 0, "k1": 0, "k2": 0}, "cooling": {}, "disabled": {}, "queued": 0,
    }
    leases = [await pool.acquire() for _ in range(4)]  # k0 twice (full), k1 and k2 once
    await pool.failed(leases[2], upstream(503))  # k2 cools down
    s = await pool.status()
    assert {k: s[k] for k in ("available", "in_use", "total", "available_accounts", "in_use_accounts",
                              "max_inflight_per_account", "recommended_concurrency", "in_flight", "disabled")} == {
        "available": 1, "in_use": 3, "total": 3,
        "available_accounts": ["k1"], "in_use_accounts": ["k0", "k1", "k2"],
        "max_inflight_per_account": 2, "recommended_concurrency": 6,
        "in_flight": {"k0": 2, "k1": 1, "k2": 1}, "disabled": {},
    }
    assert list(s["cooling"]) == ["k2"] and 23 <= s["cooling"]["k2"] <= 36  # type: ignore[call-overload,index]
    assert pool.recommended_concurrency == 6


async def test_set_credentials_replaces_them() -> None:
    pool = make(2)
    old = await pool.acquire()
    pool.set_credentials((Credential(id="n0"), Credential(id="n1")))
    assert sorted(ids([await pool.acquire() for _ in range(3)])) == ["n0", "n1", "n1"]
    s = await pool.status()
    assert s["total"] == 2 and s["in_flight"] == {"n0": 1, "n1": 2} and s["recommended_concurrency"] == 4
    await pool.release(old)  # a lease on a removed credential is still given back
    with pytest.raises(PermissionDenied):
        await pool.acquire(pin="k0")
    pool.set_credentials(())
    assert ids([await pool.acquire()]) == ["p:none"]


async def test_a_provider_without_credentials_gets_one_placeholder() -> None:
    pool = CredentialPool("ollama", ())
    lease = await pool.acquire()
    assert lease.credential == Credential(id="ollama:none") and lease.credential.secret is None
    assert lease.pool == "ollama"
    await pool.release(lease)
    assert await in_flight(pool) == {"ollama:none": 0}


async def test_pools_sharing_a_state_keep_their_counts_apart() -> None:
    state = MemoryState()
    a = CredentialPool("a", CREDS[:1], options=PoolOptions(max_inflight=1, queue_size=0), state=state)
    b = CredentialPool("b", CREDS[:1], options=PoolOptions(max_inflight=1, queue_size=0), state=state)
    await a.acquire()
    assert (await b.acquire()).credential.id == "k0"
    await a.failed(Lease(credential=CREDS[0], token="t", pool="a"), upstream(401))
    assert (await b.status())["disabled"] == {}
