"""RedisWallet's steps are safe to repeat, to lose and to overtake (see redis_wallet's docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tollway.billing.redis_wallet import RedisWallet
from tollway.billing.wallet import Hold
from tollway.core.errors import InsufficientCredits
from tollway.store.redis import ScriptBatch, connect

MONTH = "2026-11"
KEY = 3


@pytest.fixture
async def wallet(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisWallet]:
    async def load(key_id: int, month: str) -> tuple[int, int]:
        return 1_000, 0  # what the database says: 1,000 micro-credits, nothing spent

    client = await connect(redis_url)
    w = RedisWallet(client, load, prefix=redis_prefix, batch=ScriptBatch(client), hold_ttl=0.3)
    yield w
    await w.close()


async def test_a_settlement_repeated_answers_the_same_and_changes_nothing(wallet: RedisWallet) -> None:
    hold = await wallet.reserve(KEY, 400, quota=None, month=MONTH)
    assert await wallet.settle(hold, 300, quota=None, month=MONTH) == 300
    assert await wallet.state(KEY) == (700, 0, 300)
    assert await wallet.settle(hold, 300, quota=None, month=MONTH) == 300  # a retry after a lost reply
    assert await wallet.state(KEY) == (700, 0, 300)


async def test_settling_is_always_a_round_trip(wallet: RedisWallet) -> None:
    hold = await wallet.reserve(KEY, 400, quota=None, month=MONTH)
    assert not wallet.local
    assert wallet.settle_now(hold, 300, quota=None, month=MONTH) is None  # not now: await settle
    assert await wallet.state(KEY) == (1_000, 400, 0)
    assert await wallet.settle(hold, 300, quota=None, month=MONTH) == 300


async def test_a_release_gives_a_hold_back_once(wallet: RedisWallet) -> None:
    hold = await wallet.reserve(KEY, 400, quota=None, month=MONTH)
    await wallet.release(hold)
    await wallet.release(hold)
    assert await wallet.state(KEY) == (1_000, 0, 0)


async def test_a_release_that_overtakes_its_reservation_wins(wallet: RedisWallet) -> None:
    assert await wallet.load(KEY, MONTH)
    early = Hold(KEY, 400, "overtaken.1")
    await wallet.release(early)  # reached Redis first (another pipeline, another connection)
    args = [early.id, 400, -1, MONTH, 60_000]
    code, _ = await wallet._reserve(keys=wallet._keys(KEY, early.id), args=args)
    assert code == 3  # refused: its caller is gone
    assert await wallet.state(KEY) == (1_000, 0, 0)


async def test_a_cancelled_reservation_leaves_no_hold(wallet: RedisWallet) -> None:
    assert await wallet.load(KEY, MONTH)
    task = asyncio.ensure_future(wallet.reserve(KEY, 400, quota=None, month=MONTH))
    await asyncio.sleep(0)  # queued in the batch, maybe sent: the script may run or not
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):
        await asyncio.sleep(0.02)
        if await wallet.state(KEY) == (1_000, 0, 0):
            break
    assert await wallet.state(KEY) == (1_000, 0, 0)


async def test_the_hold_of_a_process_that_died_expires(wallet: RedisWallet) -> None:
    await wallet.reserve(KEY, 900, quota=None, month=MONTH)  # its process dies: never settled
    with pytest.raises(InsufficientCredits):
        await wallet.reserve(KEY, 900, quota=None, month=MONTH)
    await asyncio.sleep(0.35)  # past hold_ttl
    hold = await wallet.reserve(KEY, 900, quota=None, month=MONTH)  # the dead hold was swept
    assert await wallet.state(KEY) == (1_000, 900, 0)
    assert await wallet.settle(hold, 900, quota=None, month=MONTH) == 900


async def test_a_wallet_redis_lost_settles_without_going_below_zero(wallet: RedisWallet) -> None:
    hold = await wallet.reserve(KEY, 800, quota=None, month=MONTH)
    other = await wallet.reserve(KEY, 200, quota=None, month=MONTH)
    await wallet.client.delete(wallet._key(KEY), f"{wallet._key(KEY)}:amt", f"{wallet._key(KEY)}:holds")
    # rebuilt from the database (1,000): the lost holds charge only what is available
    assert await wallet.settle(hold, 800, quota=None, month=MONTH) == 800
    assert await wallet.settle(other, 700, quota=None, month=MONTH) == 200
    assert await wallet.state(KEY) == (0, 0, 1_000)


async def test_a_recharge_is_credited_once_per_ledger_row(wallet: RedisWallet) -> None:
    assert await wallet.load(KEY, MONTH)
    await wallet.credit(KEY, 500, "77")
    await wallet.credit(KEY, 500, "77")  # retried
    await wallet.credit(KEY, 250, "78")
    assert await wallet.state(KEY) == (1_750, 0, 0)


# --- holds are leases: renewed while their call runs, back within a minute when it died (issue 17.12)

async def test_holds_are_leases_of_a_minute_at_most(redis_url: str, redis_prefix: str) -> None:
    from tollway.billing.redis_wallet import HOLD_TTL

    async def load(key_id: int, month: str) -> tuple[int, int]:
        return 1_000, 0

    client = await connect(redis_url)
    w = RedisWallet(client, load, prefix=redis_prefix)
    try:
        assert HOLD_TTL <= 60.0 and w.lease == HOLD_TTL  # a dead process's holds come back within a minute
    finally:
        await w.close()


async def test_a_running_call_keeps_its_hold_past_the_lease(wallet: RedisWallet) -> None:
    hold = await wallet.reserve(KEY, 900, quota=None, month=MONTH)
    for _ in range(5):  # 0.75 s, more than twice the lease of 0.3 s, renewed every 0.15 s
        await asyncio.sleep(0.15)
        await wallet.renew()
        with pytest.raises(InsufficientCredits):
            await wallet.reserve(KEY, 900, quota=None, month=MONTH)
    assert await wallet.state(KEY) == (1_000, 900, 0)
    assert await wallet.settle(hold, 900, quota=None, month=MONTH) == 900
    await wallet.renew()  # nothing left to renew
    assert await wallet.state(KEY) == (100, 0, 900)


async def test_a_hold_that_outlived_its_lease_unswept_is_renewed_not_lost(wallet: RedisWallet) -> None:
    """Past its deadline but still counted (nobody reserved since, e.g. Redis was away): renewing
    keeps it, since its credits were never handed to anyone else."""
    hold = await wallet.reserve(KEY, 900, quota=None, month=MONTH)
    await asyncio.sleep(0.4)  # the renewal could not reach Redis for longer than the lease
    await wallet.renew()
    with pytest.raises(InsufficientCredits):  # this reservation sweeps what is past its deadline: not the hold
        await wallet.reserve(KEY, 900, quota=None, month=MONTH)
    assert await wallet.settle(hold, 900, quota=None, month=MONTH) == 900


async def test_a_dead_processs_hold_comes_back_while_a_live_ones_stays(redis_url: str, redis_prefix: str,
                                                                        wallet: RedisWallet) -> None:
    async def load(key_id: int, month: str) -> tuple[int, int]:
        return 1_000, 0

    client = await connect(redis_url)
    dead = RedisWallet(client, load, prefix=redis_prefix, batch=ScriptBatch(client), hold_ttl=0.3)
    try:
        await dead.reserve(KEY, 500, quota=None, month=MONTH)  # its process dies: never renewed again
        live = await wallet.reserve(KEY, 400, quota=None, month=MONTH)
        for _ in range(4):
            await asyncio.sleep(0.15)
            await wallet.renew()
        again = await wallet.reserve(KEY, 500, quota=None, month=MONTH)  # the dead 500 were swept
        assert await wallet.state(KEY) == (1_000, 900, 0)
        assert await wallet.settle(live, 400, quota=None, month=MONTH) == 400
        assert await wallet.settle(again, 0, quota=None, month=MONTH) == 0
    finally:
        await dead.close()


async def test_a_hold_settled_by_another_process_is_no_longer_renewed(redis_url: str, redis_prefix: str,
                                                                      wallet: RedisWallet) -> None:
    async def load(key_id: int, month: str) -> tuple[int, int]:
        return 1_000, 0

    hold = await wallet.reserve(KEY, 400, quota=None, month=MONTH)
    client = await connect(redis_url)
    other = RedisWallet(client, load, prefix=redis_prefix)
    try:
        assert await other.settle(hold, 300, quota=None, month=MONTH) == 300  # a deferred settlement replayed there
    finally:
        await other.close()
    assert wallet.holding == 1
    await wallet.renew()
    assert wallet.holding == 0
    assert await wallet.state(KEY) == (700, 0, 300)


async def test_a_replayed_settlement_keeps_its_answer_as_long_as_asked(wallet: RedisWallet) -> None:
    hold = await wallet.reserve(KEY, 400, quota=None, month=MONTH)
    assert await wallet.settle(hold, 300, quota=None, month=MONTH, keep=7 * 86_400.0) == 300
    ttl = await wallet.client.pttl(wallet._keys(KEY, hold.id)[3])
    assert ttl > 86_400_000  # a day and more: the database may take that long to book it
