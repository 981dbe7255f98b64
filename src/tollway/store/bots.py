"""Bots (``bots``) and the events they have taken on (``bot_events``).

The repository stores what it is given: a bot's ``config`` arrives with its secrets already
sealed (``bots.service`` encrypts them with the gateway's ``SecretBox``), so nothing here sees a
clear secret. ``claim`` records an event id once across every process (the primary key decides),
and ``purge`` drops claims older than a cut-off.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.tables import bot_events, bots

_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


class BotRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored bot; ``config`` holds its secrets as Fernet tokens."""

    id: int
    kind: str
    name: str
    provider: str
    app_id: str
    model: str
    key_id: int | None
    config: dict[str, Any]
    created_at: float
    updated_at: float


def _row(r: Any) -> BotRow:
    return BotRow(id=r.id, kind=r.kind, name=r.name, provider=r.provider, app_id=r.app_id, model=r.model,
                  key_id=r.key_id, config=_decoder.decode(r.config), created_at=r.created_at,
                  updated_at=r.updated_at)


class BotRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, *, kind: str, name: str, provider: str, app_id: str, model: str, key_id: int | None,
                     config: dict[str, Any]) -> BotRow:
        now = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(bots.insert().values(
                kind=kind, name=name, provider=provider, app_id=app_id, model=model, key_id=key_id,
                config=_encoder.encode(config).decode(), created_at=now, updated_at=now))
            bot_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            row = (await conn.execute(select(bots).where(bots.c.id == bot_id))).one()
        return _row(row)

    async def update(self, bot_id: int, kind: str, *, name: str, provider: str, app_id: str, model: str,
                     key_id: int | None, config: dict[str, Any]) -> BotRow | None:
        async with self.engine.begin() as conn:
            done = await conn.execute(bots.update().where(bots.c.id == bot_id, bots.c.kind == kind).values(
                name=name, provider=provider, app_id=app_id, model=model, key_id=key_id,
                config=_encoder.encode(config).decode(), updated_at=time.time()))
            if done.rowcount != 1:
                return None
            row = (await conn.execute(select(bots).where(bots.c.id == bot_id))).one()
        return _row(row)

    async def get(self, bot_id: int, kind: str) -> BotRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(bots).where(bots.c.id == bot_id, bots.c.kind == kind))).first()
        return _row(row) if row is not None else None

    async def list(self, kind: str, *, q: str | None = None, limit: int = 10,
                   offset: int = 0) -> tuple[list[BotRow], int]:
        cond = [bots.c.kind == kind]
        if q:
            like = f"%{q.lower()}%"
            cond.append(or_(func.lower(bots.c.name).like(like), func.lower(bots.c.app_id).like(like),
                            func.lower(bots.c.model).like(like), func.lower(bots.c.provider).like(like)))
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(bots).where(*cond))).scalar_one()
            rows = (await conn.execute(select(bots).where(*cond).order_by(bots.c.id)
                                       .limit(limit).offset(offset))).all()
        return [_row(r) for r in rows], int(total)

    async def delete(self, bot_id: int, kind: str) -> bool:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(delete(bots).where(bots.c.id == bot_id, bots.c.kind == kind))).rowcount
            if gone == 1:
                await conn.execute(delete(bot_events).where(bot_events.c.bot_id == bot_id))
        return gone == 1

    # events --------------------------------------------------------------------------------

    async def claim(self, bot_id: int, event_id: str) -> bool:
        """True for the first process to take this event on, False for every later one."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(bot_events.insert().values(bot_id=bot_id, event_id=event_id,
                                                              created_at=time.time()))
        except IntegrityError:
            return False
        return True

    async def purge(self, before: float) -> int:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(delete(bot_events).where(bot_events.c.created_at < before))).rowcount
        return int(gone or 0)
