"""The gateway process on PostgreSQL: migrations, keys from the CLI and admin API, log rows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import openai

from tests.e2e.harness import GatewayProcess


def _count(url: str, sql: str, *args: object) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_gateway_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    gw = GatewayProcess(tmp_path, env={"TOLLWAY_DATABASE_URL": postgres_url,
                                       "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1"}).start()
    try:
        assert not gw.db_path.exists()  # nothing went to SQLite
        created = subprocess.run([sys.executable, "-m", "tollway.cli", "keys", "create", "--name", "pg"],
                                 env=gw.env, cwd=gw.workdir, capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        secret = next(line.split()[1] for line in created.stdout.splitlines() if line.startswith("key:"))
        client = openai.OpenAI(api_key=secret, base_url=gw.url + "/v1", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="echo", messages=[{"role": "user", "content": "on postgres"}])
        assert raw.parse().choices[0].message.content == "on postgres"
        rid = raw.headers["x-request-id"]
        deadline = time.time() + 5
        while time.time() < deadline and not _count(postgres_url, "SELECT count(*) FROM request_logs WHERE id=$1", rid):
            time.sleep(0.05)
        assert _count(postgres_url, "SELECT count(*) FROM request_logs WHERE id=$1 AND status=200", rid) == 1
        assert _count(postgres_url, "SELECT count(*) FROM api_keys WHERE name='pg'") == 1
        assert httpx.get(gw.url + "/readyz").json() == {"status": "ready"}
        base, _, name = postgres_url.rpartition("/")
        asyncio.run(_drop(f"{base}/test", name))
        ready = httpx.get(gw.url + "/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert httpx.get(gw.url + "/healthz").status_code == 200  # alive, just not ready
    finally:
        gw.stop()


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()
