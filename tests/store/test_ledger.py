"""The ledger on SQLite and PostgreSQL: rows and balances move together, and never twice."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.key_service import KeyService
from tollway.core.billing import LedgerEntry
from tollway.store.keys import KeyRepository
from tollway.store.ledger import CHARGE, LedgerRepository, month_of
from tollway.store.log_buffer import WriteBehind


def charge(key_id: int, request_id: str, amount: int) -> LedgerEntry:
    return LedgerEntry(key_id=key_id, kind=CHARGE, amount=-amount, reserved=amount, month="2026-11",
                       request_id=request_id, created_at=1.0)


async def test_a_batch_written_twice_is_refused_and_moves_no_balance(engine: AsyncEngine) -> None:
    key, _ = await KeyService(KeyRepository(engine)).create(name="l")
    ledger = LedgerRepository(engine)
    await ledger.recharge(key.id, 1_000)
    batch = [charge(key.id, "r1", 100), charge(key.id, "r2", 50)]
    await ledger.apply(batch)
    with pytest.raises(IntegrityError):
        await ledger.apply(batch)  # a retry of a batch whose commit went through
    assert await ledger.state(key.id, "2026-11") == (850, 150)
    assert await ledger.total(key.id) == 850

    # through the writer: the duplicate rows are refused one by one, the new one goes in
    writer: WriteBehind[LedgerEntry] = WriteBehind(ledger.apply, name="ledger", max_pending=None)
    for e in [*batch, charge(key.id, "r3", 25)]:
        writer.add(e)
    await writer.flush()
    assert writer.dropped == 2
    assert await ledger.total(key.id) == 825
    assert (await KeyRepository(engine).get(key.id)).balance == 825  # type: ignore[union-attr]


async def test_recharges_are_payments(engine: AsyncEngine) -> None:
    key, _ = await KeyService(KeyRepository(engine)).create(name="p")
    ledger = LedgerRepository(engine)
    first, balance = await ledger.recharge(key.id, 500, note="welcome")
    assert balance == 500 and first.id is not None and first.month == month_of(first.created_at)
    await ledger.recharge(key.id, 250)
    rows, total = await ledger.entries(key_id=key.id, kind="recharge")
    assert total == 2 and [r.amount for r in rows] == [250, 500]  # newest first


async def test_a_deferred_settlement_is_kept_then_booked_once(engine: AsyncEngine) -> None:
    """Issue 17.13: a settlement the wallet store could not take waits in the database beside the
    ledger; booking it writes its row and moves the balance in one transaction, and only once
    however many processes try."""
    from tollway.core.billing import PendingSettlement

    key, _ = await KeyService(KeyRepository(engine)).create(name="d")
    ledger = LedgerRepository(engine)
    await ledger.recharge(key.id, 1_000)
    kept = [PendingSettlement(hold_id=f"run.{i}", key_id=key.id, reserved=300, charge=200 + i,
                              quota=None if i else 5_000, request_id=f"req-{i}", model="m", created_at=float(i))
            for i in range(3)]
    for p in kept:
        await ledger.defer(p)
    await ledger.defer(kept[0])  # kept twice (a retried write): still one
    assert await ledger.deferred() == kept  # oldest first, as they were
    assert await ledger.deferred(limit=1) == kept[:1]
    entry = charge(key.id, "req-0", 200)
    assert await ledger.book(kept[0], entry)
    assert not await ledger.book(kept[0], entry)  # another process got there first: nothing moves
    assert await ledger.deferred() == kept[1:]
    assert await ledger.total(key.id) == 800 == (await KeyRepository(engine).get(key.id)).balance  # type: ignore[union-attr]
    # booked already (its row is in the ledger): the kept copy just goes
    await ledger.apply([charge(key.id, "req-1", 201)])
    assert await ledger.book(kept[1], charge(key.id, "req-1", 201)) is False
    assert await ledger.deferred() == kept[2:]
    assert await ledger.total(key.id) == 599
