"""The limiter backend suite: every behaviour runs against MemoryLimiter (a fake clock, a 60 s
window) and RedisLimiter (real time, a 1 s window, two clients standing for two replicas).

Redis: TOLLWAY_TEST_REDIS_URL (see tests/conftest.py); each test has its own key prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import cast

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tollway.core.errors import ConfigError, InternalError
from tollway.limits import Decision, Limiter, MemoryLimiter
from tollway.limits.redis import GRACE_MS, RedisLimiter, connect


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """A limiter, the replicas sharing its counters, and a way to let time pass."""

    replicas: Sequence[Limiter]
    window: float
    tolerance: float  # how far a retry_after may be from the expected value
    clock: FakeClock | None = None

    @property
    def limiter(self) -> Limiter:
        return self.replicas[0]

    async def advance(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.now += seconds
        else:
            await asyncio.sleep(seconds)

    async def wait(self, decision: Decision) -> None:
        """Let a refused hit's retry_after pass (and a little more)."""
        await self.advance(decision.retry_after + (1e-6 if self.clock is not None else 0.03))

    def near(self, fraction: float) -> object:
        return pytest.approx(fraction * self.window, abs=self.tolerance)


@pytest.fixture(params=["memory", "redis"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()
        yield Harness([MemoryLimiter(window=60.0, clock=clock)], 60.0, 1e-5, clock)
        return
    url = cast(str, request.getfixturevalue("redis_url"))
    prefix = cast(str, request.getfixturevalue("redis_prefix"))
    a = await connect(url, prefix=prefix, window=1.0)
    b = await connect(url, prefix=prefix, window=1.0)
    yield Harness([a, b], 1.0, 0.1)
    await a.close()
    await b.close()


async def test_hits_under_the_limits_are_allowed(h: Harness) -> None:
    got = [await h.limiter.hit("k", rpm=3, tpm=300, tokens=100) for _ in range(3)]
    assert all(d.allowed and d.reason is None for d in got)
    ids = {d.reservation for d in got}
    assert None not in ids and len(ids) == 3


async def test_the_rpm_plus_first_hit_waits_until_the_oldest_leaves(h: Harness) -> None:
    assert (await h.limiter.hit("k", rpm=3, tpm=None, tokens=1)).allowed
    await h.advance(0.25 * h.window)
    assert (await h.limiter.hit("k", rpm=3, tpm=None, tokens=1)).allowed
    assert (await h.limiter.hit("k", rpm=3, tpm=None, tokens=1)).allowed

    refused = await h.limiter.hit("k", rpm=3, tpm=None, tokens=1)
    assert (refused.allowed, refused.reason, refused.reservation) == (False, "rpm", None)
    assert refused.retry_after == h.near(0.75)
    await h.advance(0.5 * h.window)
    refused = await h.limiter.hit("k", rpm=3, tpm=None, tokens=1)
    assert not refused.allowed and refused.retry_after == h.near(0.25)

    await h.wait(refused)
    assert (await h.limiter.hit("k", rpm=3, tpm=None, tokens=1)).allowed
    again = await h.limiter.hit("k", rpm=3, tpm=None, tokens=1)
    assert not again.allowed and again.retry_after == h.near(0.25)  # the two taken at 0.25 W


async def test_a_lowered_rpm_waits_until_enough_of_the_oldest_leave(h: Harness) -> None:
    for _ in range(3):
        assert (await h.limiter.hit("k", rpm=3, tpm=None, tokens=1)).allowed
        await h.advance(0.25 * h.window)
    # three hits at 0, 0.25 W and 0.5 W; now 0.75 W
    assert (await h.limiter.hit("k", rpm=2, tpm=None, tokens=1)).retry_after == h.near(0.5)
    assert (await h.limiter.hit("k", rpm=1, tpm=None, tokens=1)).retry_after == h.near(0.75)


async def test_a_refused_hit_records_nothing(h: Harness) -> None:
    assert (await h.limiter.hit("k", rpm=2, tpm=100, tokens=60)).allowed
    over = await h.limiter.hit("k", rpm=2, tpm=100, tokens=50)
    assert (over.allowed, over.reason) == (False, "tpm")
    # neither its request nor its tokens were counted: 60 + 40 fits, and in the second RPM slot
    assert (await h.limiter.hit("k", rpm=2, tpm=100, tokens=40)).allowed

    await h.advance(0.5 * h.window)
    for _ in range(5):
        refused = await h.limiter.hit("k", rpm=2, tpm=100, tokens=0)
        assert (refused.allowed, refused.reason) == (False, "rpm")
    await h.wait(refused)
    # the window emptied; had the refusals at 0.5 W been recorded, it would still be full
    assert (await h.limiter.hit("k", rpm=2, tpm=100, tokens=100)).allowed
    assert (await h.limiter.hit("k", rpm=2, tpm=100, tokens=0)).allowed
    assert not (await h.limiter.hit("k", rpm=2, tpm=100, tokens=0)).allowed


async def test_settle_refunds_an_overestimate(h: Harness) -> None:
    first = await h.limiter.hit("k", rpm=None, tpm=100, tokens=80)
    assert first.reservation is not None
    assert not (await h.limiter.hit("k", rpm=None, tpm=100, tokens=50)).allowed
    await h.limiter.settle("k", first.reservation, actual_tokens=30)
    assert (await h.limiter.hit("k", rpm=None, tpm=100, tokens=50)).allowed  # 30 + 50
    assert not (await h.limiter.hit("k", rpm=None, tpm=100, tokens=30)).allowed  # 110
    assert (await h.limiter.hit("k", rpm=None, tpm=100, tokens=20)).allowed  # 100


async def test_settle_now_settles_a_local_window_and_leaves_a_shared_one_alone(h: Harness) -> None:
    first = await h.limiter.hit("k", rpm=None, tpm=100, tokens=80)
    assert first.reservation is not None
    assert h.limiter.settle_now("k", first.reservation, actual_tokens=30) is h.limiter.local
    if not h.limiter.local:  # nothing changed: settling here takes the round trip
        assert not (await h.limiter.hit("k", rpm=None, tpm=100, tokens=50)).allowed
        await h.limiter.settle("k", first.reservation, actual_tokens=30)
    assert (await h.limiter.hit("k", rpm=None, tpm=100, tokens=50)).allowed  # 30 + 50


async def test_settle_counts_an_overage_at_the_original_time(h: Harness) -> None:
    first = await h.limiter.hit("k", rpm=None, tpm=100, tokens=10)
    assert first.reservation is not None
    await h.advance(0.5 * h.window)
    await h.limiter.settle("k", first.reservation, actual_tokens=100)
    refused = await h.limiter.hit("k", rpm=None, tpm=100, tokens=1)
    assert (refused.allowed, refused.reason) == (False, "tpm")
    assert refused.retry_after == h.near(0.5)  # it leaves when the reservation made at 0 does
    await h.wait(refused)
    assert (await h.limiter.hit("k", rpm=None, tpm=100, tokens=100)).allowed


async def test_tpm_retry_after_waits_until_enough_tokens_leave(h: Harness) -> None:
    assert (await h.limiter.hit("k", rpm=None, tpm=100, tokens=40)).allowed
    await h.advance(0.25 * h.window)
    assert (await h.limiter.hit("k", rpm=None, tpm=100, tokens=40)).allowed
    await h.advance(0.25 * h.window)
    one = await h.limiter.hit("k", rpm=None, tpm=100, tokens=50)  # needs the first 40 gone
    two = await h.limiter.hit("k", rpm=None, tpm=100, tokens=70)  # needs both gone
    assert (one.reason, two.reason) == ("tpm", "tpm")
    assert one.retry_after == h.near(0.5)
    assert two.retry_after == h.near(0.75)
    assert (await h.limiter.hit("k", rpm=None, tpm=100, tokens=20)).allowed


async def test_a_hit_that_can_never_fit_waits_a_whole_window(h: Harness) -> None:
    too_big = await h.limiter.hit("k", rpm=None, tpm=100, tokens=101)
    assert (too_big.allowed, too_big.reason, too_big.retry_after) == (False, "tpm", h.window)
    closed = await h.limiter.hit("k", rpm=0, tpm=None, tokens=1)
    assert (closed.allowed, closed.reason, closed.retry_after) == (False, "rpm", h.window)
    assert (await h.limiter.hit("k", rpm=1, tpm=100, tokens=100)).allowed


async def test_none_limits_are_unlimited(h: Harness) -> None:
    for _ in range(300):
        d = await h.limiter.hit("free", rpm=None, tpm=None, tokens=10**9)
        assert d.allowed and d.reservation is None
    assert (await h.limiter.hit("free", rpm=1, tpm=10, tokens=10)).allowed  # nothing was counted

    for _ in range(5):
        assert (await h.limiter.hit("rpm-only", rpm=5, tpm=None, tokens=10**9)).allowed
    assert (await h.limiter.hit("rpm-only", rpm=5, tpm=None, tokens=0)).reason == "rpm"

    for _ in range(100):
        assert (await h.limiter.hit("tpm-only", rpm=None, tpm=100, tokens=1)).allowed
    assert (await h.limiter.hit("tpm-only", rpm=None, tpm=100, tokens=1)).reason == "tpm"


async def test_keys_are_independent(h: Harness) -> None:
    a = await h.limiter.hit("a", rpm=1, tpm=10, tokens=10)
    assert a.allowed and a.reservation is not None
    assert not (await h.limiter.hit("a", rpm=1, tpm=10, tokens=0)).allowed
    assert (await h.limiter.hit("b", rpm=1, tpm=10, tokens=10)).allowed
    await h.limiter.settle("b", a.reservation, actual_tokens=0)  # a's reservation, the wrong key
    assert (await h.limiter.hit("a", rpm=None, tpm=10, tokens=1)).reason == "tpm"
    await h.limiter.settle("a", a.reservation, actual_tokens=0)
    assert (await h.limiter.hit("a", rpm=None, tpm=10, tokens=10)).allowed


async def test_settling_an_unknown_reservation_changes_nothing(h: Harness) -> None:
    await h.limiter.settle("k", "no-such-reservation", actual_tokens=1000)
    assert (await h.limiter.hit("k", rpm=None, tpm=100, tokens=100)).allowed


@pytest.mark.parametrize(("rpm", "tpm"), [(50, None), (None, 500), (50, 10_000)])
async def test_concurrent_hits_from_every_replica_admit_exactly_the_limit(
        h: Harness, rpm: int | None, tpm: int | None) -> None:
    hits = [h.replicas[i % len(h.replicas)].hit("k", rpm=rpm, tpm=tpm, tokens=10) for i in range(200)]
    got = await asyncio.gather(*hits)
    assert sum(d.allowed for d in got) == 50
    assert len({d.reservation for d in got if d.allowed}) == 50


# Redis only ------------------------------------------------------------------------------------


async def test_redis_keys_carry_the_prefix_and_expire(redis_url: str, redis_prefix: str) -> None:
    limiter = await connect(redis_url, prefix=redis_prefix, window=1.0)
    try:
        assert (await limiter.hit("key-1", rpm=5, tpm=None, tokens=1)).allowed
        keys = sorted([k async for k in limiter.client.scan_iter(match=redis_prefix + "*")])
        assert keys == [f"{redis_prefix}rl:{{key-1}}:log", f"{redis_prefix}rl:{{key-1}}:tok"]
        for key in keys:
            assert 0 < await limiter.client.pttl(key) <= 1000 + GRACE_MS
        await limiter.hit("unlimited", rpm=None, tpm=None, tokens=1)
        assert len([k async for k in limiter.client.scan_iter(match=redis_prefix + "*")]) == 2
    finally:
        await limiter.close()


async def test_a_redis_failure_is_an_internal_error() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, decode_responses=True,
                            retry=Retry(NoBackoff(), 0))
    limiter = RedisLimiter(client, "x:")
    try:
        with pytest.raises(InternalError, match="rate limits"):
            await limiter.hit("k", rpm=1, tpm=None, tokens=1)
        with pytest.raises(InternalError, match="rate limits"):
            await limiter.settle("k", "r", actual_tokens=1)
    finally:
        await limiter.close()


async def test_connect_names_the_setting_not_the_password() -> None:
    with pytest.raises(ConfigError, match="TOLLWAY_REDIS_URL") as caught:
        await connect("redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in str(caught.value)


async def test_a_busy_window_is_compacted_and_its_live_entries_still_settle() -> None:
    clock = FakeClock()
    lim = MemoryLimiter(window=60.0, clock=clock)
    early = [await lim.hit("k", rpm=None, tpm=10**9, tokens=10) for _ in range(3000)]
    clock.now += 30
    late = [await lim.hit("k", rpm=None, tpm=10**9, tokens=10) for _ in range(1000)]
    clock.now += 31  # the first 3,000 leave; the next hit compacts the arrays
    probe = await lim.hit("k", rpm=None, tpm=10**9, tokens=0)
    window = lim._windows["k"]
    assert len(window) == 1001 and window.head == 0  # compacted: the dead front is gone
    lim.settle_now("k", late[5].reservation or "", actual_tokens=0)  # a live entry, found after the shift
    lim.settle_now("k", early[5].reservation or "", actual_tokens=10**6)  # gone: changes nothing
    assert window.tokens == 999 * 10
    assert probe.allowed


async def test_a_reservation_of_a_swept_window_does_not_touch_its_successor() -> None:
    clock = FakeClock()
    lim = MemoryLimiter(window=60.0, clock=clock)
    old = await lim.hit("k", rpm=5, tpm=100, tokens=50)
    clock.now += 200
    await lim.hit("other", rpm=5, tpm=100, tokens=1)  # the sweep drops the idle window of "k"
    new = await lim.hit("k", rpm=5, tpm=100, tokens=50)
    lim.settle_now("k", old.reservation or "", actual_tokens=0)  # a stale id: another window's range
    assert lim._windows["k"].tokens == 50
    lim.settle_now("k", new.reservation or "", actual_tokens=20)
    assert lim._windows["k"].tokens == 20
