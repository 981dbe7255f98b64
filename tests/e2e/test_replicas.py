"""Two `tollway serve` processes on one PostgreSQL and one Redis, hammered at once.

They must hold together: a balance is never overspent whatever replica a request lands on, an
RPM limit holds across both (within one request), and an admin change made through one replica
(revoking a key, disabling a model, changing a price) reaches the other within a second.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import redis_namespace
from tests.e2e.harness import ADMIN_KEY, GatewayProcess, fake_config
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tests.fakes.tcp_proxy import TcpProxy

COST = 0.25  # credits per echo request in these tests (credit_cost only: the hold is exact)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
             request: pytest.FixtureRequest) -> Iterator[tuple[GatewayProcess, GatewayProcess, str]]:
    postgres_url = request.getfixturevalue("postgres_url_module")
    with redis_namespace(redis_url) as prefix:
        env = {"TOLLWAY_DATABASE_URL": postgres_url, "TOLLWAY_REDIS_URL": redis_url, "TOLLWAY_REDIS_PREFIX": prefix,
               "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1", "TOLLWAY_LEDGER_FLUSH_INTERVAL": "0.05",
               # the poll is the fallback: a change must travel through Redis to be seen in time
               "TOLLWAY_CHANGE_POLL_INTERVAL": "30"}
        a = GatewayProcess(tmp_path_factory.mktemp("replica-a"), env=env).start()
        try:
            b = GatewayProcess(tmp_path_factory.mktemp("replica-b"), env=env).start()
            try:
                yield a, b, postgres_url
            finally:
                b.stop()
        finally:
            a.stop()


def _admin(gw: GatewayProcess, path: str, body: dict[str, object]) -> dict[str, object]:
    with gw.admin() as client:
        r = client.post(path, json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())


def _key(gw: GatewayProcess, **fields: object) -> tuple[int, str]:
    out = _admin(gw, "/admin/api-key/apply", {"name": "replica", "role": "user", **fields})
    return int(out["id"]), str(out["api_key"])  # type: ignore[call-overload]


def _price_echo(gw: GatewayProcess, credit_cost: float, **fields: object) -> int:
    with gw.admin() as client:
        listed = client.get("/admin/model/list", params={"q": "echo"}).json()["items"]
    existing = next((m for m in listed if m["name"] == "echo"), None)
    body: dict[str, object] = {"name": "echo", "provider": "echo", "credit_cost": credit_cost, **fields}
    if existing is not None:
        body["id"] = existing["id"]
    return int(_admin(gw, "/admin/model/save", body)["id"])  # type: ignore[call-overload]


async def _chat(client: httpx.AsyncClient, base: str, key: str, text_: str = "hello there") -> httpx.Response:
    return await client.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             json={"model": "echo", "messages": [{"role": "user", "content": text_}]})


async def _hammer(urls: list[str], key: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        results = await asyncio.gather(*(_chat(client, urls[i % len(urls)], key) for i in range(n)))
    return [r.status_code for r in results]


def _scalar(url: str, sql: str, **params: object) -> int:
    async def run() -> int:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text(sql), params)).scalar() or 0)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _settled(url: str, key_id: int, expected_rows: int, timeout: float = 5.0) -> tuple[int, int]:
    """(stored balance, ledger sum) once both replicas' ledger writers have flushed."""
    deadline = time.time() + timeout
    while True:
        rows = _scalar(url, "SELECT count(*) FROM ledger WHERE key_id = :k AND kind <> 'recharge'", k=key_id)
        if rows >= expected_rows or time.time() > deadline:
            break
        time.sleep(0.05)
    balance = _scalar(url, "SELECT balance FROM api_keys WHERE id = :k", k=key_id)
    total = _scalar(url, "SELECT coalesce(sum(amount), 0) FROM ledger WHERE key_id = :k", k=key_id)
    return balance, total


def test_no_overspend_across_two_replicas(replicas: tuple[GatewayProcess, GatewayProcess, str]) -> None:
    a, b, url = replicas
    _price_echo(a, COST)
    key_id, key = _key(a, balance=10)  # 40 requests' worth, 200 asked for over both replicas at once
    statuses = asyncio.run(_hammer([a.url, b.url], key, 200))
    assert statuses.count(200) == 40, statuses
    assert set(statuses) == {200, 402}
    balance, total = _settled(url, key_id, 40)
    assert balance == total == 0
    charged = _scalar(url, "SELECT count(*) FROM ledger WHERE key_id = :k AND kind = 'charge' AND amount = :a",
                      k=key_id, a=-int(COST * 1_000_000))
    assert charged == 40
    with a.admin() as client:  # the live balance as either replica sees it: nothing left
        r = client.post("/admin/api-key/recharge", json={"id": key_id, "balance": 0.5})
        assert r.json()["balance_micro"] == 500_000
    statuses = asyncio.run(_hammer([b.url], key, 5))  # the other replica sees the recharge: exactly two more
    assert statuses.count(200) == 2


def test_an_rpm_limit_holds_across_replicas(replicas: tuple[GatewayProcess, GatewayProcess, str]) -> None:
    a, b, _ = replicas
    _price_echo(a, 0)
    _, key = _key(a, rpm=10)
    statuses = asyncio.run(_hammer([a.url, b.url], key, 40))
    assert 10 <= statuses.count(200) <= 11, statuses
    assert set(statuses) == {200, 429}


def _until(check: object, timeout: float = 1.0) -> float:
    """Seconds until ``check()`` holds; fails past ``timeout``."""
    t0 = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - t0 < timeout, "the change did not reach the other replica within a second"
        time.sleep(0.02)
    return time.monotonic() - t0


def _status(gw: GatewayProcess, key: str) -> int:
    r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    return r.status_code


def test_admin_changes_reach_the_other_replica_within_a_second(
        replicas: tuple[GatewayProcess, GatewayProcess, str]) -> None:
    a, b, url = replicas
    model_id = _price_echo(a, 0)
    key_id, key = _key(a, balance=100)
    assert _status(b, key) == 200

    # a price change made on A: B lists and charges the new price within a second
    _price_echo(a, 1.5)
    _until(lambda: _credit_cost(b, key) == 1.5)
    before = _settled(url, key_id, 0, 0)[0]
    assert _status(b, key) == 200
    deadline = time.time() + 2
    while _scalar(url, "SELECT count(*) FROM ledger WHERE key_id = :k AND amount = -1500000", k=key_id) < 1:
        assert time.time() < deadline, "B did not charge the new price"
        time.sleep(0.02)
    assert _settled(url, key_id, 0, 0)[0] == before - 1_500_000

    # disabling the model on A: B refuses it within a second
    _admin(a, "/admin/model/save", {"id": model_id, "enabled": False})
    _until(lambda: _status(b, key) == 404)
    _admin(a, "/admin/model/save", {"id": model_id, "enabled": True})
    _until(lambda: _status(b, key) == 200)

    # revoking the key on A: B refuses it within a second
    _admin(a, "/admin/api-key/delete", {"id": key_id})
    _until(lambda: _status(b, key) == 401)


def _credit_cost(gw: GatewayProcess, key: str) -> float | None:
    r = httpx.get(f"{gw.url}/api/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return next((m["credit_cost"] for m in r.json()["data"] if m["id"] == "echo"), None)


def test_the_admin_key_is_not_billed(replicas: tuple[GatewayProcess, GatewayProcess, str]) -> None:
    a, _, _ = replicas
    _price_echo(a, 5)
    r = httpx.post(f"{a.url}/v1/chat/completions", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                   json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert r.status_code == 200


def test_workers_share_one_wallet(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    """``serve --workers 2`` on SQLite: the same Redis wallet between its workers."""
    gw = GatewayProcess(tmp_path, workers=2, env={"TOLLWAY_REDIS_URL": redis_url, "TOLLWAY_REDIS_PREFIX": redis_prefix,
                                                  "TOLLWAY_LEDGER_FLUSH_INTERVAL": "0.05"}).start()
    try:
        _price_echo(gw, COST)
        key_id, key = _key(gw, balance=5)
        statuses = asyncio.run(_hammer([gw.url], key, 60))  # new connections: the kernel spreads them
        assert statuses.count(200) == 20
        url = f"sqlite+aiosqlite:///{gw.db_path}"
        balance, total = _settled(url, key_id, 20)
        assert balance == total == 0
    finally:
        gw.stop()


def test_workers_without_redis_are_refused(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, workers=2)
    with pytest.raises(RuntimeError, match="needs TOLLWAY_REDIS_URL"):
        gw.start(timeout=20)


# --- a replica killed with calls in flight, and Redis going away under one (issue 17.12, 17.13) ------

def _slow_gateways_env(postgres_url: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {"TOLLWAY_DATABASE_URL": postgres_url, "TOLLWAY_REDIS_URL": redis_url, "TOLLWAY_REDIS_PREFIX": prefix,
            "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1", "TOLLWAY_LEDGER_FLUSH_INTERVAL": "0.05",
            "TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL": "64", **extra}


def _fire(url: str, key: str, model: str, n: int) -> tuple[ThreadPoolExecutor, list[Future[int]]]:
    """``n`` calls at once, left running; each future answers its status (or raises)."""
    pool = ThreadPoolExecutor(n)

    def call() -> int:
        r = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
                       timeout=60)
        return r.status_code

    return pool, [pool.submit(call) for _ in range(n)]


def _wait_seen(fake: FakeOpenAI, upstream: str, n: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while len(fake.seen(upstream)) < n:
        assert time.time() < deadline, f"only {len(fake.seen(upstream))} of {n} calls reached the upstream"
        time.sleep(0.02)


def test_the_holds_of_a_killed_replica_come_back_within_their_lease(
        tmp_path: Path, fake: FakeOpenAI, postgres_url: str, redis_url: str, redis_prefix: str) -> None:
    """Issue 17.12: a replica SIGKILLed with 20 calls in flight held the key's whole balance for an
    hour (402 on the other replica meanwhile). Holds are leases renewed while their call runs: the
    dead replica's come back within TOLLWAY_LEASE_TTL (here 3 s; 60 s by default)."""
    env = _slow_gateways_env(postgres_url, redis_url, redis_prefix, TOLLWAY_LEASE_TTL="3")
    config = fake_config(fake.base_url, UPSTREAM_SECRET)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = GatewayProcess(tmp_path / "a", env=env, config=config).start()
    b = GatewayProcess(tmp_path / "b", env=env, config=config)
    pool = None
    try:
        b.start()
        _admin(a, "/admin/model/save", {"name": "held-chat", "provider": "fake", "upstream_id": "held-up",
                                       "credit_cost": 1})
        key_id, key = _key(a, balance=20)
        fake.script("held-up", Behavior(headers_delay=30.0))
        seen = len(fake.seen("held-up"))
        pool, _ = _fire(a.url, key, "held-chat", 20)
        _wait_seen(fake, "held-up", seen + 20)  # 20 calls in flight on A, 20 credits held
        _until(lambda: _status_on(b, key, "held-chat") == 402, timeout=5)
        a.signal(signal.SIGKILL)
        a.wait(10)
        fake.script("held-up", Behavior(text="back"))
        t0 = time.monotonic()
        while (status := _status_on(b, key, "held-chat")) != 200:
            assert status == 402 and time.monotonic() - t0 < 15, f"the dead replica's holds stayed ({status})"
            time.sleep(0.25)
        balance, total = _settled(postgres_url, key_id, 1)
        assert balance == total == 19_000_000  # the killed calls were never settled: nothing charged for them
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        b.stop()
        a.stop()


def _status_on(gw: GatewayProcess, key: str, model: str) -> int:
    r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}, timeout=10)
    return r.status_code


def _redis_balance(redis_url: str, prefix: str, key_id: int) -> int | None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        for name in client.scan_iter(match=f"{prefix}*wallet:{{{key_id}}}", count=1000):
            return int(client.hget(name, "b") or 0)  # type: ignore[arg-type]
    return None


def test_a_redis_outage_bills_every_call_served_and_refuses_new_ones_with_503(
        tmp_path: Path, fake: FakeOpenAI, postgres_url: str, redis_url: str, redis_prefix: str) -> None:
    """Issue 17.13: 10 calls in flight when Redis went away for more than half a minute were served
    and never booked, and every call meanwhile got a 500. Now a billed call meanwhile gets 503 with
    Retry-After; a settlement that cannot reach Redis is kept in the database, so it survives even
    its replica's SIGKILL, and another replica books it once Redis is back."""
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    db = int((target.path or "/0").strip("/") or 0)
    env = _slow_gateways_env(postgres_url, proxy.url(db), redis_prefix)
    config = fake_config(fake.base_url, UPSTREAM_SECRET)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = GatewayProcess(tmp_path / "a", env=env, config=config).start()
    b = GatewayProcess(tmp_path / "b", env=env, config=config)
    pool = None
    try:
        _admin(a, "/admin/model/save", {"name": "outage-chat", "provider": "fake", "upstream_id": "outage-up",
                                       "credit_cost": 1})
        key_id, key = _key(a, balance=100)
        fake.script("outage-up", Behavior(headers_delay=2.0))
        seen = len(fake.seen("outage-up"))
        pool, calls = _fire(a.url, key, "outage-chat", 10)
        _wait_seen(fake, "outage-up", seen + 10)
        proxy.cut()
        assert [c.result(30) for c in calls] == [200] * 10  # served while Redis is away
        r = httpx.post(f"{a.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "outage-chat", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "billing_unavailable" and int(r.headers["retry-after"]) >= 1
        deadline = time.time() + 20
        while _scalar(postgres_url, "SELECT count(*) FROM pending_settlements WHERE key_id = :k", k=key_id) < 10:
            assert time.time() < deadline, "the settlements were not kept in the database"
            time.sleep(0.1)
        logged = _scalar(postgres_url, "SELECT count(*) FROM request_logs WHERE model = 'outage-chat' AND "
                                       "status = 200 AND cost_micro = 1000000")
        assert logged == 10
        a.signal(signal.SIGKILL)  # whatever it kept in memory is gone
        a.wait(10)
        proxy.restore()
        b.start()  # books what A kept
        balance, total = _settled(postgres_url, key_id, 10, timeout=20)
        assert balance == total == 90_000_000  # 100 credits less the 10 calls served: none unbilled
        assert _scalar(postgres_url, "SELECT count(*) FROM pending_settlements") == 0
        assert _redis_balance(redis_url, redis_prefix, key_id) == 90_000_000
        assert _status_on(b, key, "outage-chat") == 200
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        b.stop()
        a.stop()
        proxy.stop()
