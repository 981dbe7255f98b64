"""Alert rules and firing claims on SQLite and PostgreSQL: rules round-trip, a firing is claimed
by exactly one of several claimants (and so sent by one of two engines on one database), and the
figures the rules watch are read right from the ledger, balances, request log, kept settlements
and tasks."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.webhook_server import WebhookServer
from tollway.alerts.config import validate
from tollway.alerts.engine import AlertEngine
from tollway.auth.secret_box import SecretBox
from tollway.store.alerts import SENT, SUPERSEDED, AlertRepository, top_needed
from tollway.store.ledger import month_of
from tollway.store.tables import api_keys, ledger, pending_settlements, request_logs, tasks

BOX = SecretBox(Fernet.generate_key())


@pytest.fixture(scope="module")
def hooks() -> Any:
    server = WebhookServer().start()
    yield server
    server.stop()


async def insert(engine: AsyncEngine, table: Any, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(table.insert(), rows)


def key_row(key_id: int, *, balance: int = 0, quota: int | None = None, revoked: bool = False) -> dict[str, Any]:
    return {"id": key_id, "name": f"k{key_id}", "prefix": f"tw-{key_id:04d}", "key_hash": f"h{key_id}",
            "role": "user", "email": "", "enabled": True, "created_at": 1.0, "balance": balance,
            "month_quota": quota, "revoked_at": 2.0 if revoked else None}


def log_row(i: int, model: str, status: int, latency: float, at: float, provider: str = "p") -> dict[str, Any]:
    return {"id": f"r{model}{i}", "created_at": at, "path": "/v1/chat/completions", "dialect": "openai",
            "status": status, "model": model, "provider": provider, "latency_ms": latency, "stream": False}


async def test_rules_round_trip_sealed(engine: AsyncEngine) -> None:
    repo = AlertRepository(engine)
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    rule = await repo.create(validate(BOX, {"kind": "error_rate", "threshold": 0.2, "webhook": url,
                                            "format": "slack", "filter": {"model": "m"}}, None))
    assert rule.webhook != url and BOX.decrypt(rule.webhook) == url
    assert (rule.threshold, rule.window, rule.min_requests, rule.debounce) == ("0.2", 5, 10, 60)
    got = await repo.get(rule.id)
    assert got is not None and got.filters == {"model": "m"} and got.enabled
    changed = await repo.update(rule.id, validate(BOX, {"enabled": False, "webhook": "https://hooks.slack.com/…"}, got))
    assert changed is not None and not changed.enabled and BOX.decrypt(changed.webhook) == url  # the mask kept it
    rules, total = await repo.page(limit=10)
    assert total == 1 and [r.id for r in rules] == [rule.id]
    assert (await repo.page(enabled=True))[1] == 0
    assert await repo.delete(rule.id) and not await repo.delete(rule.id)
    assert await repo.get(rule.id) is None


async def test_one_claimant_of_a_firing(engine: AsyncEngine) -> None:
    repo = AlertRepository(engine)
    claims = await asyncio.gather(*(repo.claim(7, "model m", "after:0", value=0.5, message="x") for _ in range(6)))
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].id > 0
    await repo.finish(won[0].id, SENT)
    assert await repo.claim(7, "model m", "after:0", value=0.5, message="x") is None  # a restart finds it taken
    assert await repo.claim(7, "model n", "after:0", value=0.5, message="x") is not None  # another subject
    second = await repo.claim(7, "model m", f"after:{won[0].id}", value=0.6, message="y")
    assert second is not None
    last = await repo.last(7, ["model m", "model n", "model o"])
    assert last["model m"].id == second.id and "model o" not in last
    await repo.claim(7, "key 1", "2026-12/80", value=80.0, message="q", status=SUPERSEDED)
    assert await repo.periods(7, "2026-12/") == {("key 1", "2026-12/80")}
    assert "key 1" not in await repo.last(7, ["key 1"])  # a quota's firings are no debounce chain
    assert [f.status for f in await repo.firings(rule_id=7, limit=1)] == [SUPERSEDED]
    assert await repo.purge(time.time() + 1) == 4


async def test_the_figures_rules_watch(engine: AsyncEngine) -> None:
    repo = AlertRepository(engine)
    now = time.time()
    month = month_of(now)
    await insert(engine, api_keys, [key_row(1, balance=5_000_000, quota=10_000_000), key_row(2, balance=100),
                                    key_row(3, balance=0), key_row(4, balance=1, quota=1, revoked=True)])
    await insert(engine, ledger, [
        {"key_id": 1, "kind": "charge", "amount": -7_000_000, "reserved": 0, "month": month, "created_at": now},
        {"key_id": 1, "kind": "charge", "amount": -1_500_000, "reserved": 0, "month": month, "created_at": now},
        {"key_id": 1, "kind": "charge", "amount": -9_000_000, "reserved": 0, "month": "2001-01", "created_at": 1.0},
        {"key_id": 2, "kind": "recharge", "amount": 100, "reserved": 0, "month": month, "created_at": now},
        {"key_id": 4, "kind": "charge", "amount": -5, "reserved": 0, "month": month, "created_at": now},
    ])
    spend = await repo.quota_spend(month)
    assert [(k.key_id, k.amount, k.quota) for k in spend] == [(1, 8_500_000, 10_000_000)]
    # below 1 credit: key 2 (recharged once), not key 3 (never given money) unless named
    assert [k.key_id for k in await repo.low_balances(1_000_000)] == [2]
    assert [k.key_id for k in await repo.low_balances(1_000_000, 3)] == [3]

    rows = [log_row(i, "a", 502 if i < 3 else 200, float(i), now - 10) for i in range(10)]
    rows += [log_row(i, "b", 200, 100.0 + i, now - 10) for i in range(200)]
    rows += [log_row(1000, "a", 500, 1.0, now - 3600), log_row(1001, "a", 499, 1.0, now - 10)]
    await insert(engine, request_logs, rows)
    errors = {m.model: (m.requests, m.errors) for m in await repo.model_errors(now - 60, {})}
    assert errors == {"a": (10, 3), "b": (200, 0)}
    assert [m.model for m in await repo.model_errors(now - 60, {"model": "b"})] == ["b"]
    lat = {m: (n, top) for m, n, top in await repo.model_latencies(now - 60, {}, 100)}
    assert list(lat) == ["b"]  # a: 7 answered, fewer than 100
    n, top = lat["b"]
    assert n == 200 and len(top) == top_needed(200) == 3 and top == [299.0, 298.0, 297.0]

    await insert(engine, pending_settlements, [
        {"hold_id": "h1", "key_id": 1, "reserved": 1, "charge": 1, "request_id": "x1", "created_at": now - 1200},
        {"hold_id": "h2", "key_id": 1, "reserved": 1, "charge": 1, "request_id": "x2", "created_at": now - 5}])
    count, oldest = await repo.stranded(now - 600)
    assert count == 1 and oldest == pytest.approx(now - 1200)

    task = {"kind": "image", "shape": "platform", "owner": "key:1", "model": "img", "request": "{}",
            "hold": 0, "cost_micro": 0, "attempts": 1, "created_at": now - 100, "updated_at": now - 50}
    await insert(engine, tasks, [{**task, "id": "t1", "status": "failed", "finished_at": now - 50},
                                 {**task, "id": "t2", "status": "failed", "finished_at": now - 7200},
                                 {**task, "id": "t3", "status": "succeeded", "finished_at": now - 50},
                                 {**task, "id": "t4", "status": "failed", "finished_at": now - 10, "model": "v"}])
    assert await repo.failed_tasks(now - 600, {}) == 2
    assert await repo.failed_tasks(now - 600, {"model": "img"}) == 1


async def test_two_engines_send_a_firing_once(engine: AsyncEngine, hooks: WebhookServer) -> None:
    """Two replicas' engines on one database: each firing is claimed by one, and debounced."""
    repo = AlertRepository(engine)
    path = f"/replicas-{engine.dialect.name}"  # the receiver serves the module: one path per database
    now = time.time()
    await insert(engine, request_logs, [log_row(i, "m", 500, 1.0, now - 5) for i in range(4)])
    await repo.create(validate(BOX, {"kind": "error_rate", "threshold": 0.5, "min_requests": 2,
                                     "webhook": hooks.url(path)}, None))
    gateway = SimpleNamespace(engine=engine, env={"TOLLWAY_ALERT_GATEWAY_NAME": "gw-test"}, pools={},
                              secret_box=BOX)
    engines = [AlertEngine(gateway), AlertEngine(gateway)]  # type: ignore[arg-type]
    try:
        fired = await asyncio.gather(*(e.check() for e in engines))
        assert sorted(len(f) for f in fired) == [0, 1]
        sent = next(f for f in fired if f)[0]
        assert sent.status == SENT and sent.subject == "model m"
        body = hooks.wait_for(path, 1)
        assert len(body) == 1 and body[0]["alert"] == "error_rate" and body[0]["gateway"] == "gw-test"
        assert body[0]["value"] == 1.0 and body[0]["threshold"] == 0.5
        assert [await e.check() for e in engines] == [[], []]  # within the debounce window
    finally:
        for e in engines:
            await e.stop()
    assert len(hooks.bodies(path)) == 1
