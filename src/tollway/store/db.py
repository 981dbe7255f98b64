"""Engine creation and migrations (Alembic, run by the gateway itself at start)."""

from __future__ import annotations

import asyncio
import contextlib
import operator
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, insert, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# the newest revision in migrations/versions (tests/store/test_migrations.py holds them equal): a
# database already there starts without importing Alembic, 10 MB the server would keep for nothing
SCHEMA_HEAD = "0011"


_INSERTS: dict[tuple[str, str, tuple[str, ...]], tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]] = {}


async def insert_rows(conn: AsyncConnection, table: Table, columns: Sequence[str],
                      rows: Sequence[Mapping[str, Any]]) -> None:
    """Many rows of ``columns`` in one ``executemany`` with the driver's own parameters: the
    statement is compiled once per table, columns and dialect, and each row goes as a tuple.
    A Core ``insert`` of a list of dicts processed every value of every row in Python first, as
    much CPU as the database's own work (a write-behind fell behind the requests; issue 19).
    Values must already be what the driver takes (str, int, float, bool, None)."""
    key = (table.name, conn.dialect.name, tuple(columns))
    known = _INSERTS.get(key)
    if known is None:
        compiled = insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
        order = tuple(compiled.positiontup or ())
        if sorted(order) != sorted(columns) or len(order) < 2:
            raise ValueError(f"{table.name}: the compiled insert binds {order}, not {tuple(columns)}")
        known = _INSERTS[key] = (str(compiled), operator.itemgetter(*order))  # a row's values in bind order
    sql, values = known
    await conn.exec_driver_sql(sql, [values(row) for row in rows])


async def new_ids(conn: AsyncConnection, table: Table, count: int) -> list[int]:
    """``count`` ids for rows of ``table`` (an integer ``id`` key) that the caller inserts with
    them in this transaction: from the sequence on PostgreSQL; on SQLite after the largest id,
    which another writer may take first (the insert then fails with IntegrityError: retry).
    ``INSERT ... RETURNING`` of many rows in their order made SQLAlchemy send one statement per
    row on SQLite (800 statements, 131 ms for 800 chat sessions; issue 19)."""
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = await conn.execute(text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) "
                                       "FROM generate_series(1, :n)"), {"n": count})
        return [int(r[0]) for r in rows]
    top = (await conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}"))).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + count))


_TURNS: weakref.WeakKeyDictionary[AsyncEngine, dict[asyncio.AbstractEventLoop, asyncio.Lock]] = \
    weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction of the batch writers (request log, ledger, chat records, stored
    responses). On SQLite, one process's writers take turns on an asyncio lock: the file has one
    writer at a time, and a writer that finds it locked sleeps in SQLite's busy handler (1, 2, 5 ...
    100 ms, however soon the lock is free): under load a native profile found the writers' threads
    asleep there in 388 of 1,646 samples (issue 19). On PostgreSQL they write side by side.
    Not re-entrant: nothing inside may call ``writing`` again."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    loop = asyncio.get_running_loop()
    turns = _TURNS.setdefault(engine, {})
    lock = turns.get(loop)
    if lock is None:
        for stale in [other for other in turns if other.is_closed()]:
            del turns[stale]
        lock = turns[loop] = asyncio.Lock()
    async with lock, engine.begin() as conn:
        yield conn


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrate(url: str) -> None:
    """Bring the schema to the newest revision. Blocking: call it before the event loop runs."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if asyncio.run(_revisions(url)) == [SCHEMA_HEAD]:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


async def _revisions(url: str) -> list[str] | None:
    """The revisions the database records; None when it cannot say (a new database, or one that
    is not reachable: Alembic then does the work, or says what is wrong)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    except (SQLAlchemyError, OSError):
        return None
    finally:
        await engine.dispose()
