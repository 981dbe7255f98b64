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
