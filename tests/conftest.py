"""Database URLs for tests: SQLite always; PostgreSQL when reachable.

PostgreSQL: TOLLWAY_TEST_POSTGRES_URL (default postgresql+asyncpg://127.0.0.1:5432/test). Each
test creates and drops its own database. If PostgreSQL cannot be reached the tests skip with a
message, unless TOLLWAY_REQUIRE_SERVICES=1 (CI sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

PG_URL = os.environ.get("TOLLWAY_TEST_POSTGRES_URL", "postgresql+asyncpg://127.0.0.1:5432/test")
REQUIRED = os.environ.get("TOLLWAY_REQUIRE_SERVICES") == "1"


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def postgres_url() -> Iterator[str]:
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
