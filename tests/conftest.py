"""Service URLs for tests: SQLite always; PostgreSQL and Redis when reachable.

PostgreSQL: TOLLWAY_TEST_POSTGRES_URL (default postgresql+asyncpg://127.0.0.1:5432/test). Each
test creates and drops its own database. If PostgreSQL cannot be reached the tests skip with a
message, unless TOLLWAY_REQUIRE_SERVICES=1 (CI sets it), which turns the skip into a failure.

Redis: TOLLWAY_TEST_REDIS_URL (default redis://127.0.0.1:6379/15), the same skip-or-fail rule.
Each test gets its own key prefix (``redis_prefix``); its keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.db import create_engine, migrate

PG_URL = os.environ.get("TOLLWAY_TEST_POSTGRES_URL", "postgresql+asyncpg://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRED = os.environ.get("TOLLWAY_REQUIRE_SERVICES") == "1"


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of this test's own on PostgreSQL, dropped afterwards."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def postgres_url_module() -> Iterator[str]:
    """The same, shared by one test module (for a module's gateway processes)."""
    with postgres_database() as url:
        yield url


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    name = "tollway_test_" + secrets.token_hex(4)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_plain(PG_URL), timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = (f"PostgreSQL not reachable at {PG_URL} ({type(exc).__name__}: {exc}); set "
                   "TOLLWAY_TEST_POSTGRES_URL to run these tests")
        if REQUIRED:
            pytest.fail(message + " [TOLLWAY_REQUIRE_SERVICES=1]")
        pytest.skip(message)
    base, _, _ = PG_URL.rpartition("/")
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'tollway.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database, on SQLite and on PostgreSQL."""
    await asyncio.to_thread(migrate, database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3) as client:
            client.ping()
    except (OSError, redis.RedisError) as exc:
        message = (f"Redis not reachable at {REDIS_URL} ({type(exc).__name__}: {exc}); set "
                   "TOLLWAY_TEST_REDIS_URL to run these tests")
        if REQUIRED:
            pytest.fail(message + " [TOLLWAY_REQUIRE_SERVICES=1]")
        pytest.skip(message)
    return REDIS_URL


@contextlib.contextmanager
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A key prefix of its own; every key under it is deleted afterwards."""
    prefix = "tollway_test_" + secrets.token_hex(4) + ":"
    yield prefix
    with redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3) as client:
        for key in client.scan_iter(match=prefix + "*", count=500):
            client.delete(key)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted after the test."""
    with redis_namespace(redis_url) as prefix:
        yield prefix
