"""The migrations build exactly the schema ``store.tables`` describes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from tollway.store.db import create_engine, migrate
from tollway.store.tables import metadata


def _diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
    # a column's Python-side default is not in the database: only names, types, nullability and indexes
    return [d for d in compare_metadata(ctx, metadata)
            if not (isinstance(d, list) and d and d[0][0] == "modify_default")]


async def test_migrations_match_the_tables(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()
