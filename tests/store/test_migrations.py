"""The migrations build exactly the schema ``store.tables`` describes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from tollway.store.db import MIGRATIONS, SCHEMA_HEAD, create_engine, migrate
from tollway.store.tables import metadata


def _diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
    # a column's Python-side default is not in the database: only names, types, nullability and indexes;
    # PostgreSQL's full-text expression indexes (``*_search``) are the migrations' own, not the tables'
    return [d for d in compare_metadata(ctx, metadata)
            if not (isinstance(d, list) and d and d[0][0] == "modify_default")
            and not (isinstance(d, tuple) and d[0] == "remove_index" and str(d[1].name).endswith("_search"))]


async def test_migrations_match_the_tables(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def test_schema_head_names_the_newest_migration() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [SCHEMA_HEAD], "a new migration: raise SCHEMA_HEAD"


async def test_a_database_at_the_head_starts_without_alembic(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url)
    code = ("import sys; from tollway.store.db import migrate; migrate(sys.argv[1]); "
            "sys.exit(3 if 'alembic' in sys.modules else 0)")
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code, database_url], capture_output=True,
                                   text=True, timeout=60)
    assert done.returncode == 0, done.stderr or "alembic was imported for a database already at the head"
