"""The ledger: every credit movement, and the balance it adds up to, written together.

A key's ``api_keys.balance`` equals the sum of its ledger ``amount``s at every commit: each write
here inserts the rows and moves the balances by their sum in one transaction. The hot path does
not write here per request: the billing wallet batches settled requests (``apply``).

A settlement the wallet store (Redis) could not take is kept here (``defer``) instead of in memory,
so that neither a long outage nor a crash loses it; once the wallet has applied it, ``book`` removes
it and writes its ledger row in one transaction, once however many processes try.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.core.billing import LedgerEntry, PendingSettlement
from tollway.store.db import insert_rows, writing
from tollway.store.tables import api_keys, ledger, pending_settlements

RECHARGE, CHARGE, REFUND = "recharge", "charge", "refund"


_month: tuple[float, float, str] = (0.0, 0.0, "")  # [start, end) of the last month asked for, and its name


def month_of(t: float) -> str:
    """The calendar month (UTC) a time falls in: ``2026-11``. The hot path asks for the same
    month again and again: its bounds are remembered."""
    global _month
    start, end, name = _month
    if start <= t < end:
        return name
    d = datetime.fromtimestamp(t, UTC)
    first = datetime(d.year, d.month, 1, tzinfo=UTC)
    following = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
    _month = (first.timestamp(), following.timestamp(), first.strftime("%Y-%m"))
    return _month[2]


def _entry(r: Any) -> LedgerEntry:
    return LedgerEntry(id=r.id, key_id=r.key_id, kind=r.kind, amount=r.amount, reserved=r.reserved, month=r.month,
                       request_id=r.request_id, model=r.model, note=r.note, created_at=r.created_at)


_move = (api_keys.update().where(api_keys.c.id == bindparam("k"))
         .values(balance=api_keys.c.balance + bindparam("delta")))


class LedgerRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def apply(self, entries: Sequence[LedgerEntry]) -> None:
        """Insert ``entries`` and move each key's balance by their sum, in one transaction."""
        if not entries:
            return
        deltas: dict[int, int] = defaultdict(int)
        for e in entries:
            deltas[e.key_id] += e.amount
        rows = [_ledger_row(e) for e in entries]
        async with writing(self.engine) as conn:
            await insert_rows(conn, ledger, _LEDGER_COLUMNS, rows)
            moves = [{"k": k, "delta": d} for k, d in sorted(deltas.items()) if d]  # sorted: one lock order
            if moves:
                await conn.execute(_move, moves)

    # settlements the wallet store could not take -------------------------------------------

    async def defer(self, pending: PendingSettlement) -> None:
        """Keep a settlement until ``book``; keeping the same hold's again changes nothing."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(pending_settlements.insert(), [_pending_row(pending)])
        except IntegrityError:  # kept already (a retried write whose commit went through)
            async with self.engine.connect() as conn:
                found = (await conn.execute(select(pending_settlements.c.hold_id).where(
                    pending_settlements.c.hold_id == pending.hold_id))).scalar()
            if found is None:
                raise

    async def deferred(self, limit: int = 500) -> list[PendingSettlement]:
        """The settlements kept, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(pending_settlements).order_by(pending_settlements.c.created_at,
                                                                          pending_settlements.c.hold_id).limit(limit))
            return [PendingSettlement(hold_id=r.hold_id, key_id=r.key_id, reserved=r.reserved, charge=r.charge,
                                      quota=r.quota, request_id=r.request_id, model=r.model, created_at=r.created_at)
                    for r in rows]

    async def book(self, pending: PendingSettlement, entry: LedgerEntry) -> bool:
        """A kept settlement the wallet has applied: its ledger row written (and the balance moved)
        and the kept copy removed, in one transaction. False, changing nothing else, when another
        process booked it first (or its request already has a ledger row: then the copy just goes)."""
        async with self.engine.begin() as conn:
            taken = await conn.execute(pending_settlements.delete().where(
                pending_settlements.c.hold_id == pending.hold_id))
            if taken.rowcount != 1:
                return False
            if await _booked(conn, entry.request_id):
                return False
            await conn.execute(ledger.insert(), [_ledger_row(entry)])
            if entry.amount:
                await conn.execute(_move, [{"k": entry.key_id, "delta": entry.amount}])
        return True

    async def recharge(self, key_id: int, amount: int, *, note: str | None = None) -> tuple[LedgerEntry, int]:
        """Add ``amount`` to a key's balance: the row and the balance in one transaction.
        Returns the row and the balance it left (as stored)."""
        now = time.time()
        entry = LedgerEntry(key_id=key_id, kind=RECHARGE, amount=amount, month=month_of(now), note=note,
                            created_at=now)
        async with self.engine.begin() as conn:
            result = await conn.execute(ledger.insert().values(
                key_id=key_id, kind=RECHARGE, amount=amount, reserved=0, month=entry.month, note=note,
                created_at=now))
            await conn.execute(_move, [{"k": key_id, "delta": amount}])
            balance = (await conn.execute(select(api_keys.c.balance).where(api_keys.c.id == key_id))).scalar_one()
        pk = result.inserted_primary_key[0] if result.inserted_primary_key else None
        return LedgerEntry(**{**_asdict(entry), "id": pk}), int(balance)

    async def state(self, key_id: int, month: str) -> tuple[int, int] | None:
        """A key's stored balance and what it was charged in ``month``; None for no such key."""
        async with self.engine.connect() as conn:
            balance = (await conn.execute(select(api_keys.c.balance).where(api_keys.c.id == key_id))).scalar()
            if balance is None:
                return None
            spent = (await conn.execute(
                select(func.coalesce(func.sum(ledger.c.amount), 0))
                .where(ledger.c.key_id == key_id, ledger.c.month == month, ledger.c.kind == CHARGE)
            )).scalar()
        return int(balance), -int(spent or 0)

    async def total(self, key_id: int) -> int:
        """The sum of a key's ledger: what its balance must equal."""
        async with self.engine.connect() as conn:
            return int((await conn.execute(
                select(func.coalesce(func.sum(ledger.c.amount), 0)).where(ledger.c.key_id == key_id))).scalar() or 0)

    async def entries(self, *, key_id: int | None = None, kind: str | None = None, limit: int = 10,
                      offset: int = 0) -> tuple[list[LedgerEntry], int]:
        """Rows newest first (``kind=recharge`` is seed 004's payment history)."""
        cond = []
        if key_id is not None:
            cond.append(ledger.c.key_id == key_id)
        if kind is not None:
            cond.append(ledger.c.kind == kind)
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(ledger).where(*cond))).scalar() or 0
            rows = await conn.execute(select(ledger).where(*cond).order_by(ledger.c.id.desc())
                                      .limit(limit).offset(offset))
            return [_entry(r) for r in rows], int(total)


def _asdict(e: LedgerEntry) -> dict[str, Any]:
    return {f: getattr(e, f) for f in e.__struct_fields__}


_LEDGER_COLUMNS = tuple(f for f in LedgerEntry.__struct_fields__ if f != "id")  # the database gives the id


def _ledger_row(e: LedgerEntry) -> dict[str, Any]:
    return {f: getattr(e, f) for f in _LEDGER_COLUMNS}


def _pending_row(p: PendingSettlement) -> dict[str, Any]:
    return {"hold_id": p.hold_id, "key_id": p.key_id, "reserved": p.reserved, "charge": p.charge, "quota": p.quota,
            "request_id": p.request_id, "model": p.model, "created_at": p.created_at}


async def _booked(conn: AsyncConnection, request_id: str | None) -> bool:
    if request_id is None:
        return False
    return (await conn.execute(select(ledger.c.id).where(ledger.c.request_id == request_id))).first() is not None
