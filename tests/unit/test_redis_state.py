"""RedisState: pool state that two replicas share (two clients here stand for two processes).

Needs Redis: TOLLWAY_TEST_REDIS_URL (see tests/conftest.py); each test has its own key prefix.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from tollway.core.catalog import Credential
from tollway.core.errors import ConfigError, InternalError, PoolExhausted, UpstreamError
from tollway.routing.pools import HEALTH_TTL, CredentialPool, MemoryState, PoolOptions
from tollway.routing.redis_state import RedisState, connect

POOL = "openai"


@pytest.fixture
async def replicas(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[RedisState, RedisState]]:
    a = await connect(redis_url, prefix=redis_prefix)
    b = await connect(redis_url, prefix=redis_prefix)
    yield a, b
    await a.close()
    await b.close()


# slots -----------------------------------------------------------------------------------------


async def test_the_cap_holds_under_concurrent_takes_from_two_replicas(
        replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    ids = ["k0", "k1", "k2"]
    taken = await asyncio.gather(*(s.take(POOL, ids, 3, 30) for _ in range(100) for s in (a, b)))
    won = [t for t in taken if t is not None]
    assert Counter(cid for cid, _ in won) == {"k0": 3, "k1": 3, "k2": 3}
    assert len({token for _, token in won}) == 9
    assert await a.counts(POOL, ids) == await b.counts(POOL, ids) == [3, 3, 3]


async def test_the_cap_holds_while_two_replicas_take_and_give_back(replicas: tuple[RedisState, RedisState]) -> None:
    ids, cap = ["k0", "k1"], 2
    held: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    served = 0

    async def worker(state: RedisState) -> None:
        nonlocal served
        for _ in range(15):
            got = await state.take(POOL, ids, cap, 30)
            if got is None:
                await asyncio.sleep(0.001)
                continue
            cid, token = got
            held[cid] += 1  # counted after Redis granted it, uncounted before it is given back
            peak[cid] = max(peak[cid], held[cid])
            served += 1
            await asyncio.sleep(random.uniform(0, 0.003))
            held[cid] -= 1
            await state.give_back(POOL, cid, token)

    await asyncio.gather(*(worker(s) for _ in range(20) for s in replicas))
    assert served > 0
    assert peak == {"k0": cap, "k1": cap}
    assert await replicas[0].counts(POOL, ids) == [0, 0]


async def test_the_fewest_slots_win_and_ties_go_to_the_earliest_candidate(
        replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    first = await a.take(POOL, ["k0", "k1", "k2"], 2, 30)
    assert first is not None and first[0] == "k0"
    assert (await b.take(POOL, ["k0", "k1", "k2"], 2, 30) or ("",))[0] == "k1"  # k0 holds one
    assert (await a.take(POOL, ["k2", "k1", "k0"], 2, 30) or ("",))[0] == "k2"
    assert (await b.take(POOL, ["k1", "k0", "k2"], 2, 30) or ("",))[0] == "k1"  # a tie: the order decides
    await b.give_back(POOL, "k0", first[1])
    assert (await a.take(POOL, ["k2", "k1", "k0"], 2, 30) or ("",))[0] == "k0"  # the only one with 0
    assert await a.counts(POOL, ["k0", "k1", "k2"]) == [1, 2, 1]
    assert (await a.take(POOL, ["k1", "k2"], 2, 30) or ("",))[0] == "k2"
    assert await b.take(POOL, ["k1", "k2"], 2, 30) is None  # both at the cap
    assert await b.take(POOL, [], 2, 30) is None


async def test_pools_and_prefixes_are_separate(redis_url: str, redis_prefix: str,
                                               replicas: tuple[RedisState, RedisState]) -> None:
    a, _ = replicas
    assert await a.take("openai", ["k0"], 1, 30) is not None
    assert await a.take("anthropic", ["k0"], 1, 30) is not None
    other = await connect(redis_url, prefix=redis_prefix + "other:")
    try:
        assert await other.take("openai", ["k0"], 1, 30) is not None
    finally:
        await other.close()
    assert await a.take("openai", ["k0"], 1, 30) is None


async def test_give_back_frees_the_slot_from_any_replica(replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    got = await a.take(POOL, ["k0"], 1, 30)
    assert got is not None
    assert await b.take(POOL, ["k0"], 1, 30) is None
    await b.give_back(POOL, "k0", "not-a-token")
    await b.give_back(POOL, "k9", got[1])
    assert await a.counts(POOL, ["k0"]) == [1]
    await b.give_back(POOL, "k0", got[1])
    await b.give_back(POOL, "k0", got[1])  # twice is harmless
    assert await a.counts(POOL, ["k0"]) == [0]
    assert await b.take(POOL, ["k0"], 1, 30) is not None


async def test_leases_expire_unless_renewed(replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    kept = await a.take(POOL, ["k0"], 2, 0.4)
    lost = await a.take(POOL, ["k0"], 2, 0.4)
    assert kept is not None and lost is not None
    for _ in range(8):  # 0.8 s: twice the ttl
        await asyncio.sleep(0.1)
        await a.renew(POOL, [kept], 0.4)
    assert await b.counts(POOL, ["k0"]) == [1]  # the lease not renewed expired (a crashed replica's)
    await a.renew(POOL, [lost], 30)  # an expired lease stays expired: its slot may be someone else's
    assert await b.counts(POOL, ["k0"]) == [1]
    assert await b.take(POOL, ["k0"], 2, 30) is not None
    assert await b.take(POOL, ["k0"], 2, 30) is None
    await a.renew(POOL, [], 30)
    late = await a.take(POOL, ["k1"], 1, 0.05)
    assert late is not None
    await asyncio.sleep(0.1)
    await a.renew(POOL, [late], 30)  # expired, though nothing has swept it yet
    assert await b.counts(POOL, ["k1"]) == [0]


async def test_a_tiny_ttl_frees_the_slot_and_the_key_expires_too(replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    assert await a.take(POOL, ["k0"], 1, 0.05) is not None
    assert await b.take(POOL, ["k0"], 1, 0.05) is None
    key = a._key(POOL, "slots", "k0")
    assert 0 < await a.client.pttl(key) <= 50 + 5_000
    await asyncio.sleep(0.1)
    assert await b.counts(POOL, ["k0"]) == [0]
    assert await b.take(POOL, ["k0"], 1, 60) is not None
    assert 55_000 < await a.client.pttl(key) <= 65_000  # renewed past the longest lease
    await a.take(POOL, ["k1"], 1, 0.05)
    assert await a.client.pttl(key) > 55_000  # a shorter lease on a key never shortens it


# health ----------------------------------------------------------------------------------------


async def test_cooldowns_and_disabled_marks_are_seen_by_every_replica(
        replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    ids = ["k0", "k1", "k2"]
    assert await b.health(POOL, ids) == {cid: (0.0, None) for cid in ids}
    before = time.time()
    await a.cool(POOL, "k0", 0.5)
    await a.disable(POOL, "k1", "upstream answered 401")
    health = await b.health(POOL, ids)
    assert before + 0.5 <= health["k0"][0] <= time.time() + 0.5 and health["k0"][1] is None
    assert health["k1"] == (0.0, "upstream answered 401")
    assert health["k2"] == (0.0, None)
    await asyncio.sleep(0.55)
    assert (await b.health(POOL, ids))["k0"] == (0.0, None)  # the cooldown ran out
    await a.cool(POOL, "k1", 60)
    await b.enable(POOL, "k1")  # clears the mark and the cooldown
    assert await a.health(POOL, ids) == {cid: (0.0, None) for cid in ids}
    await a.cool(POOL, "k2", 60)
    await a.cool(POOL, "k2", 0)
    assert (await a.health(POOL, ["k2"]))["k2"] == (0.0, None)
    assert await a.health(POOL, []) == {}
    assert await a.counts(POOL, []) == []


# queue -----------------------------------------------------------------------------------------


async def test_the_queue_capacity_is_shared(replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    assert await a.enter_queue(POOL, "w1", 3, 30)
    assert await a.enter_queue(POOL, "w2", 3, 30)
    assert await b.enter_queue(POOL, "w3", 3, 30)
    assert not await b.enter_queue(POOL, "w4", 3, 30)
    await a.leave_queue(POOL, "w1")
    assert await b.enter_queue(POOL, "w4", 3, 30)
    assert not await a.enter_queue(POOL, "w5", 3, 30)
    assert not await a.enter_queue(POOL, "w5", 0, 30)


async def test_concurrent_waiters_from_two_replicas_never_overfill_the_queue(
        replicas: tuple[RedisState, RedisState]) -> None:
    entered = await asyncio.gather(*(s.enter_queue(POOL, f"w{i}-{n}", 10, 30)
                                     for i in range(40) for n, s in enumerate(replicas)))
    assert sum(entered) == 10


async def test_a_crashed_waiter_leaves_the_queue_when_it_expires(replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    assert await a.enter_queue(POOL, "gone", 1, 0.05)
    assert not await b.enter_queue(POOL, "w", 1, 30)
    await asyncio.sleep(0.1)
    assert await b.enter_queue(POOL, "w", 1, 30)


# connecting ------------------------------------------------------------------------------------


async def test_an_unreachable_redis_is_a_one_line_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        await connect("redis://:hunter2@127.0.0.1:1/0")
    message = caught.value.message
    assert "Redis not reachable at redis://:***@127.0.0.1:1/0" in message and "TOLLWAY_REDIS_URL" in message
    assert "hunter2" not in message and "\n" not in message
    with pytest.raises(ConfigError, match="not a Redis URL"):
        await connect("http://127.0.0.1:6379")


async def test_redis_failing_while_serving_is_an_internal_error() -> None:
    state = RedisState(redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True))
    try:
        with pytest.raises(InternalError, match="pool state: Redis failed to take a slot"):
            await state.take(POOL, ["k0"], 1, 30)
        with pytest.raises(InternalError, match="read credential health"):
            await state.health(POOL, ["k0"])
    finally:
        await state.close()


# the whole pool, on two replicas ---------------------------------------------------------------

CREDS = (Credential(id="k0", secret="s0"), Credential(id="k1", secret="s1"))


def two_pools(replicas: tuple[RedisState, RedisState], opts: PoolOptions) -> tuple[CredentialPool, CredentialPool]:
    return CredentialPool(POOL, CREDS, options=opts, state=replicas[0]), \
        CredentialPool(POOL, CREDS, options=opts, state=replicas[1])


async def test_the_per_credential_cap_holds_across_two_replicas_pools(
        replicas: tuple[RedisState, RedisState]) -> None:
    pools = two_pools(replicas, PoolOptions(max_inflight=2, queue_size=200, queue_timeout=20))
    held: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    served: Counter[str] = Counter()

    async def call(pool: CredentialPool) -> None:
        lease = await pool.acquire()
        cid = lease.credential.id
        held[cid] += 1
        peak[cid] = max(peak[cid], held[cid])
        served[cid] += 1
        await asyncio.sleep(random.uniform(0.001, 0.01))
        held[cid] -= 1
        await pool.release(lease)

    await asyncio.gather(*(call(pools[i % 2]) for i in range(120)))
    assert sum(served.values()) == 120 and set(served) == {"k0", "k1"}
    assert peak == {"k0": 2, "k1": 2}  # reached, never passed, though 4 slots were asked of by 2 pools
    assert await replicas[0].counts(POOL, ["k0", "k1"]) == [0, 0]
    assert (await pools[1].status())["in_flight"] == {"k0": 0, "k1": 0}


async def test_in_flight_plus_queue_is_bounded_across_replicas(replicas: tuple[RedisState, RedisState]) -> None:
    one, two = two_pools(replicas, PoolOptions(max_inflight=1, queue_size=1, queue_timeout=5))
    first, second = await one.acquire(), await one.acquire()
    assert {first.credential.id, second.credential.id} == {"k0", "k1"}
    waiting = asyncio.create_task(two.acquire())  # the other replica queues: the one place
    for _ in range(100):
        if await replicas[0].client.zcard(replicas[0]._key(POOL, "queue")) == 1:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(PoolExhausted):
        await one.acquire()
    await one.release(first)  # frees a slot here; the waiter there finds it by polling
    lease = await asyncio.wait_for(waiting, 2)
    assert lease.credential.id == first.credential.id
    await two.release(lease)
    await one.release(second)


async def test_a_credential_disabled_on_one_replica_is_skipped_by_the_other(
        replicas: tuple[RedisState, RedisState]) -> None:
    one, two = two_pools(replicas, PoolOptions(max_inflight=5))
    lease = await one.acquire()
    await one.failed(lease, UpstreamError("bad key", provider=POOL, upstream_status=401))
    await one.release(lease)
    bad = lease.credential.id
    await asyncio.sleep(HEALTH_TTL + 0.05)  # the other replica reads health at most this stale
    leases = [await two.acquire() for _ in range(4)]
    assert all(le.credential.id != bad for le in leases)
    assert (await two.status())["disabled"] == {bad: "upstream answered 401"}
    await one.enable(bad)
    await asyncio.sleep(HEALTH_TTL + 0.05)
    assert (await two.acquire()).credential.id == bad  # the least busy again


async def test_memory_and_redis_state_pick_the_same_credentials(replicas: tuple[RedisState, RedisState]) -> None:
    """One scripted sequence of takes and give-backs, the same answers from both backends."""
    memory, shared = MemoryState(), replicas[0]
    script = [(["k0", "k1", "k2"], None), (["k1", "k2", "k0"], None), (["k2", "k0", "k1"], 0),
              (["k0", "k1", "k2"], None), (["k2", "k1", "k0"], None), (["k1", "k0"], 1), (["k0", "k2"], None)]
    answers: list[list[str | None]] = []
    for state in (memory, shared):
        tokens: list[tuple[str, str]] = []
        seen: list[str | None] = []
        for order, give_back in script:
            got = await state.take(POOL, order, 2, 30)
            seen.append(got[0] if got else None)
            if got:
                tokens.append(got)
            if give_back is not None:
                cid, token = tokens[give_back]
                await state.give_back(POOL, cid, token)
        answers.append(seen)
    assert answers[0] == answers[1]


# caps per credential (issue 17, item 11) ---------------------------------------------------------


async def test_each_candidate_is_held_to_its_own_cap_across_two_replicas(
        replicas: tuple[RedisState, RedisState]) -> None:
    a, b = replicas
    ids, caps = ["acct", "key", "own"], [2, 50, 3]
    taken = await asyncio.gather(*(s.take(POOL, ids, caps, 30) for _ in range(60) for s in (a, b)))
    won = Counter(t[0] for t in taken if t is not None)
    assert won == {"acct": 2, "key": 50, "own": 3}
    assert await b.counts(POOL, ids) == [2, 50, 3]
    assert await a.take(POOL, ids, caps, 30) is None
    assert await a.take(POOL, ["key"], [51], 30) is not None  # the cap goes with each take
    with pytest.raises(ValueError):
        await a.take(POOL, ids, [1, 2], 30)


async def test_the_least_busy_candidate_under_its_cap_wins_as_in_memory(
        replicas: tuple[RedisState, RedisState]) -> None:
    """The same takes with mixed caps give the same answers from both backends."""
    script: list[tuple[list[str], list[int]]] = [
        (["a"], [1]), (["b"], [5]), (["b"], [5]), (["a", "b", "c"], [1, 5, 5]), (["a", "b", "c"], [1, 5, 5]),
        (["a", "b"], [1, 5]), (["c", "b", "a"], [2, 5, 1]), (["a"], [1]), (["c", "a"], [2, 1])]
    answers: list[list[str | None]] = []
    for state in (MemoryState(), replicas[0]):
        seen: list[str | None] = []
        for order, caps in script:
            got = await state.take(POOL, order, caps, 30)
            seen.append(got[0] if got else None)
        answers.append(seen)
    assert answers[0] == answers[1] == ["a", "b", "b", "c", "c", "b", "b", None, None]


async def test_an_account_keeps_its_cap_and_an_api_key_serves_many_across_replicas(
        replicas: tuple[RedisState, RedisState]) -> None:
    """Two replicas' pools of one provider: a DS2API login (email) at most 2 at once in all, an
    API key far more (before: both were held to the one cap of 2)."""
    creds = (Credential(id="acct@example.com", secret="t", extra={"email": "acct@example.com"}),
             Credential(id="key", secret="sk"))
    opts = PoolOptions(max_inflight=2, api_key_max_inflight=1000, queue_size=0)
    one, two = (CredentialPool(POOL, creds, options=opts, state=s) for s in replicas)
    async with asyncio.timeout(5):
        keys = [await (one if i % 2 else two).acquire(pin="key") for i in range(40)]
        accounts = [await one.acquire(pin="acct@example.com"), await two.acquire(pin="acct@example.com")]
    with pytest.raises(PoolExhausted):
        await two.acquire(pin="acct@example.com")
    status = await one.status()
    assert status["in_flight"] == {"acct@example.com": 2, "key": 40}
    assert status["max_inflight"] == {"acct@example.com": 2, "key": 1000}
    assert status["max_inflight_per_account"] == 2 and status["recommended_concurrency"] == 1002
    for lease in keys[::2]:
        await two.release(lease)
    for lease in [*keys[1::2], *accounts]:
        await one.release(lease)
    assert await replicas[1].counts(POOL, ["acct@example.com", "key"]) == [0, 0]
