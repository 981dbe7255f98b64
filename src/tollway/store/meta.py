"""Small named facts kept in the ``meta`` table (the admin secret's hash, ...)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.tables import meta


class MetaRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, key: str) -> str | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(meta.c.value).where(meta.c.key == key))).scalar()

    async def set_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless the key exists; return what is stored (first writer wins, also
        when another process inserts at the same moment)."""
        try:
            async with self.engine.begin() as conn:
                existing = (await conn.execute(select(meta.c.value).where(meta.c.key == key))).scalar()
                if existing is not None:
                    return str(existing)
                await conn.execute(meta.insert().values(key=key, value=value))
                return value
        except IntegrityError:
            stored = await self.get(key)
            if stored is None:
                raise
            return stored

    async def set(self, key: str, value: str) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(meta.update().where(meta.c.key == key).values(value=value))
            if result.rowcount == 0:
                await conn.execute(meta.insert().values(key=key, value=value))
