"""``store.db.writing``: the batch writers' transactions take turns on SQLite (no busy-handler
sleeps between writers of one process) and run side by side on PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.key_service import KeyService
from tollway.core.billing import LedgerEntry
from tollway.store.db import writing
from tollway.store.keys import KeyRepository
from tollway.store.ledger import CHARGE, LedgerRepository
from tollway.store.tables import ledger


async def test_writers_take_turns_on_sqlite_and_not_on_postgres(engine: AsyncEngine) -> None:
    first_in, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with writing(engine):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with writing(engine):
            order.append("second in")

    one = asyncio.create_task(first())
    two = asyncio.create_task(second())
    await first_in.wait()
    await asyncio.sleep(0.05)  # the second has had every chance to enter
    release.set()
    await asyncio.wait_for(asyncio.gather(one, two), 5)
    if engine.dialect.name == "sqlite":
        assert order == ["first in", "first out", "second in"]
    else:
        assert order == ["first in", "second in", "first out"]


async def test_a_failed_write_gives_its_turn_back(engine: AsyncEngine) -> None:
    for _ in range(2):
        try:
            async with writing(engine):
                raise RuntimeError("refused")
        except RuntimeError:
            pass
    async with asyncio.timeout(5), writing(engine):
        pass


async def test_ledger_rows_are_written_as_given(engine: AsyncEngine) -> None:
    key, _ = await KeyService(KeyRepository(engine)).create(name="w")
    entry = LedgerEntry(key_id=key.id, kind=CHARGE, amount=-1_234_567, reserved=2_000_000, month="2026-12",
                        request_id="req_w1", model="gpt-4o-mini", note="ünïcode", created_at=1796468820.125)
    await LedgerRepository(engine).apply([entry])
    async with engine.connect() as conn:
        row = (await conn.execute(select(ledger).where(ledger.c.request_id == "req_w1"))).one()
    assert (row.key_id, row.kind, row.amount, row.reserved, row.month, row.model, row.note, row.created_at) == (
        key.id, CHARGE, -1_234_567, 2_000_000, "2026-12", "gpt-4o-mini", "ünïcode", 1796468820.125)
