"""A change counter in ``meta``: every write that a cache depends on bumps it atomically in
the same transaction; every process polls it (one primary-key read per interval) and
reloads on change. This works the same for several processes on one SQLite file and for
replicas on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import BigInteger, Text, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.store.tables import meta

REVISION = "revision"


async def bump(conn: AsyncConnection) -> None:
    result = await conn.execute(
        meta.update().where(meta.c.key == REVISION).values(value=cast(cast(meta.c.value, BigInteger) + 1, Text))
    )
    if result.rowcount == 0:
        await conn.execute(meta.insert().values(key=REVISION, value="1"))


async def current(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        value = (await conn.execute(select(meta.c.value).where(meta.c.key == REVISION))).scalar()
    return int(value or 0)
