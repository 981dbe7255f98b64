"""Tasks survive the process that accepted them, and run once (issue 14).

- On PostgreSQL and Redis: a video task accepted by replica A, whose upstream job A started, is
  finished by replica B after A is SIGKILLed (B polls the same upstream job: it is never started
  twice), charged once; the hold A made lapses with its lease and never leaks.
- Two replicas racing over tasks whose lease ran out (a crashed process's) take each exactly once:
  every upstream generation happens once, every task succeeds once.
- On the SQLite default: a task whose only process is SIGKILLed mid-generation is resumed by the
  process started again on the same data directory.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import redis_namespace
from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tollway.store.tasks import PENDING, Task, TaskRepository

MICRO = 1_000_000
CONFIG = {"models": [{"id": "paid-sora", "provider": "openai", "upstream_id": "sora-2", "category": "video",
                      "capabilities": ["video"], "unit_price": 100_000, "price_unit": "second"},
                     {"id": "race-images", "provider": "openai", "upstream_id": "dall-e-2", "category": "image",
                      "capabilities": ["images"]}]}


def env(fake: FakeOpenAI, **more: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url, "TOLLWAY_TASK_LEASE": "2",
            "TOLLWAY_TASK_POLL_INTERVAL": "0.2", "TOLLWAY_LEASE_TTL": "2", "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1",
            "TOLLWAY_LEDGER_FLUSH_INTERVAL": "0.05", **more}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, redis_url: str, fake: FakeOpenAI,
             request: pytest.FixtureRequest) -> Iterator[tuple[GatewayProcess, GatewayProcess, str]]:
    postgres_url = request.getfixturevalue("postgres_url_module")
    with redis_namespace(redis_url) as prefix:
        shared = env(fake, TOLLWAY_DATABASE_URL=postgres_url, TOLLWAY_REDIS_URL=redis_url,
                     TOLLWAY_REDIS_PREFIX=prefix)
        a = GatewayProcess(tmp_path_factory.mktemp("task-a"), env=shared, config=CONFIG).start()
        try:
            b = GatewayProcess(tmp_path_factory.mktemp("task-b"), env=shared, config=CONFIG).start()
            try:
                yield a, b, postgres_url
            finally:
                b.stop()
        finally:
            a.stop()


def key(gw: GatewayProcess, credits: str) -> tuple[str, int]:
    with gw.admin() as admin:
        r = admin.post("/admin/api-key/apply", json={"name": "tasks", "role": "user"})
        secret, key_id = r.json()["api_key"], r.json()["id"]
        assert admin.post("/admin/api-key/recharge", json={"api_key": key_id, "balance": credits}).status_code == 200
    return secret, key_id


def task_of(gw: GatewayProcess, secret: str, task_id: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait(gw: GatewayProcess, secret: str, task_id: str, ok: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = task_of(gw, secret, task_id)
        if ok(task):
            return task
        time.sleep(0.1)
    raise AssertionError(f"{task_id}: {task}")


async def _sql(url: str, sql: str, **args: Any) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql), args)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


def sql(url: str, sql_: str, **args: Any) -> list[Any]:
    return asyncio.run(_sql(url, sql_, **args))


def test_a_video_task_survives_the_sigkill_of_the_replica_that_accepted_it(
        replicas: tuple[GatewayProcess, GatewayProcess, str], fake: FakeOpenAI) -> None:
    a, b, pg = replicas
    fake.script("sora-2", Behavior(polls=8))
    secret, key_id = key(a, "2")
    r = httpx.post(f"{a.url}/v1/videos", headers={"Authorization": f"Bearer {secret}"},
                   json={"model": "paid-sora", "prompt": "survive", "seconds": "8"}, timeout=10)
    assert r.status_code == 200, r.text
    task_id = r.json()["id"]
    started = wait(a, secret, task_id, lambda t: t["provider_task_id"] is not None)
    creates = len(fake.seen("sora-2", path="/v1/videos"))
    a.signal(signal.SIGKILL)
    a.wait()
    try:
        done = wait(b, secret, task_id, lambda t: t["status"] in ("succeeded", "failed"), timeout=40)
        assert done["status"] == "succeeded", done
        assert done["provider_task_id"] == started["provider_task_id"]  # the same upstream job, polled on
        assert len(fake.seen("sora-2", path="/v1/videos")) == creates  # never started twice
        content = httpx.get(done["data"][0]["url"], timeout=10)
        assert content.status_code == 200 and content.content[4:8] == b"ftyp"
        rows = sql(pg, "SELECT attempts, cost_micro FROM tasks WHERE id = :id", id=task_id)
        assert rows[0][0] == 2 and rows[0][1] == 800_000
        deadline = time.time() + 10
        while time.time() < deadline:
            charges = sql(pg, "SELECT kind, amount FROM ledger WHERE key_id = :k AND kind != 'recharge'", k=key_id)
            if charges:
                break
            time.sleep(0.1)
        assert [(k, int(v)) for k, v in charges] == [("charge", -800_000)]  # once
        # nothing is left held: the whole rest of the balance can be held again
        again = httpx.post(f"{b.url}/v1/videos", headers={"Authorization": f"Bearer {secret}"},
                           json={"model": "paid-sora", "prompt": "rest", "seconds": "12"}, timeout=10)
        assert again.status_code == 200, again.text
        httpx.post(f"{b.url}/api/v1/tasks/{again.json()['id']}/cancel", headers={"Authorization": f"Bearer {secret}"})
    finally:
        fake.script("sora-2", Behavior())
        a.start()


def test_two_replicas_never_run_one_task_twice(replicas: tuple[GatewayProcess, GatewayProcess, str],
                                               fake: FakeOpenAI) -> None:
    a, b, pg = replicas
    fake.script("dall-e-2", Behavior(headers_delay=0.3))
    n = 12
    now = time.time()

    async def orphan() -> None:  # tasks a crashed process accepted: their lease long gone
        engine = create_async_engine(pg)
        try:
            repo = TaskRepository(engine)
            for i in range(n):
                await repo.create(Task(id=f"task_race{i:02d}", kind="image", shape="platform", owner="admin",
                                       model="race-images", status=PENDING, attempts=1, lease_owner="dead",
                                       lease_until=now - 60, created_at=now, updated_at=now,
                                       request={"image": {"prompt": f"race {i}", "n": 1}}))
        finally:
            await engine.dispose()

    asyncio.run(orphan())
    try:
        deadline = time.time() + 40
        while time.time() < deadline:
            rows = sql(pg, "SELECT status, attempts FROM tasks WHERE id LIKE 'task_race%'")
            if all(s == "succeeded" for s, _ in rows):
                break
            time.sleep(0.2)
        assert sorted(s for s, _ in rows) == ["succeeded"] * n
        assert all(att == 2 for _, att in rows)  # taken over once each
        prompts = [s.body["prompt"] for s in fake.seen("dall-e-2") if s.body["prompt"].startswith("race ")]
        assert sorted(prompts) == sorted(f"race {i}" for i in range(n))  # each generated exactly once
        deadline = time.time() + 10  # each run's log row: the request log's write-behind, a moment later
        while True:
            runs = sql(pg, "SELECT id FROM request_logs WHERE path = '/tasks/image' AND id LIKE 'task_race%'")
            if len(runs) >= n or time.time() > deadline:
                break
            time.sleep(0.1)
        assert sorted(r[0] for r in runs) == sorted(f"task_race{i:02d}.2" for i in range(n))  # one run each
    finally:
        fake.script("dall-e-2", Behavior())


def test_a_task_survives_a_restart_on_sqlite(tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script("dall-e-3", Behavior(headers_delay=4.0))
    gw = GatewayProcess(tmp_path, env=env(fake)).start()
    try:
        secret, key_id = key(gw, "1")
        with gw.admin() as admin:
            assert admin.post("/admin/model/save", json={"name": "dall-e-3", "provider": "openai",
                                                          "category": "image", "capabilities": ["images"],
                                                          "credit_cost": 0.1}).status_code == 200
        r = httpx.post(f"{gw.url}/api/v1/images/generations", headers={"Authorization": f"Bearer {secret}"},
                       json={"model": "dall-e-3", "prompt": "restart me"}, timeout=10)
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]
        wait(gw, secret, task_id, lambda t: t["status"] == "running")
        time.sleep(0.5)  # the upstream call is on its way
        gw.signal(signal.SIGKILL)
        gw.wait()
        fake.script("dall-e-3", Behavior())
        gw.start()
        done = wait(gw, secret, task_id, lambda t: t["status"] in ("succeeded", "failed"), timeout=30)
        assert done["status"] == "succeeded", done
        assert done["cost"] == pytest.approx(0.1)
        deadline = time.time() + 5
        with gw.admin() as admin:
            while True:  # the stored balance follows the ledger's write-behind
                listed = admin.get("/admin/api-key/list", params={"limit": 1000}).json()["items"]
                mine = next(k for k in listed if k["id"] == key_id)
                if mine["balance"] < 1 or time.time() > deadline:
                    break
                time.sleep(0.05)
        assert mine["balance"] == pytest.approx(0.9)
        # the CLI reads the same tasks
        cli = [sys.executable, "-m", "tollway.cli", "tasks"]
        listed_cli = subprocess.run([*cli, "list", "--data-dir", str(gw.data_dir)], capture_output=True, text=True,
                                    env=gw.env, cwd=tmp_path, timeout=60)
        assert task_id in listed_cli.stdout and "succeeded" in listed_cli.stdout, listed_cli.stderr
        shown = subprocess.run([*cli, "show", task_id, "--data-dir", str(gw.data_dir)], capture_output=True,
                               text=True, env=gw.env, cwd=tmp_path, timeout=60)
        assert json.loads(shown.stdout)["attempts"] == 2
        late = subprocess.run([*cli, "cancel", task_id, "--data-dir", str(gw.data_dir)], capture_output=True,
                              text=True, env=gw.env, cwd=tmp_path, timeout=60)
        assert late.returncode == 1 and "is succeeded" in late.stdout  # a final task stays as it is
    finally:
        fake.script("dall-e-3", Behavior())
        gw.stop()


def test_the_admin_sees_every_task(replicas: tuple[GatewayProcess, GatewayProcess, str]) -> None:
    a, _, _ = replicas
    r = httpx.get(f"{a.url}/api/v1/tasks", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                  params={"limit": 100}, timeout=10)
    assert r.status_code == 200 and r.json()["data"]
