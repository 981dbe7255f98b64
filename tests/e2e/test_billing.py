"""Billing through a real gateway: what a key pays, what it is refused, and what the ledger says.

One gateway process on SQLite serves the module (a PostgreSQL one runs the concurrency test once
more). Prices come from the model registry (``/admin/model/save``); keys get their money through
``/admin/api-key/apply`` and ``/admin/api-key/recharge``. Every expected charge is computed here
from the prices, never with ``billing.pricing``; the ledger and ``api_keys.balance`` are read
straight from the database.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess, fake_config
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI

PRICE_IN, PRICE_OUT, PER_REQUEST = Fraction("1.5"), Fraction("8.25"), Fraction("0.0001")  # credits
FLAT = 10_000  # flat-echo's credit_cost: 0.01 credits, in micro-credits
MICRO = 1_000_000

MODELS: list[dict[str, Any]] = [
    {"name": "priced-chat", "provider": "fake", "upstream_id": "priced-up", "price_in": 1.5, "price_out": "8.25",
     "credit_cost": "0.0001", "max_output_tokens": 1000},
    {"name": "priced-fail", "provider": "fake", "upstream_id": "fail-up", "price_in": 1.5, "price_out": "8.25",
     "credit_cost": "0.0001"},
    {"name": "priced-slow", "provider": "fake", "upstream_id": "slow-up", "price_in": 1.5, "price_out": "8.25",
     "credit_cost": "0.0001"},
    {"name": "flat-echo", "provider": "echo", "upstream_id": "echo", "credit_cost": 0.01},
]


def expected_cost(prompt_tokens: int, completion_tokens: int, multiplier: int = 1) -> int:
    """priced-chat's price for this usage, in micro-credits, rounded up."""
    credits = (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / MICRO + PER_REQUEST
    return math.ceil(credits * MICRO * multiplier)


# --- the database, read directly -----------------------------------------------------------

class Books:
    """Reads the ledger and balances of a gateway's SQLite file or PostgreSQL database."""

    def __init__(self, *, sqlite: Path | None = None, postgres: str | None = None) -> None:
        self.sqlite, self.postgres = sqlite, postgres

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        if self.sqlite is not None:
            con = sqlite3.connect(self.sqlite, timeout=10)
            try:
                return [tuple(r) for r in con.execute(sql, args).fetchall()]
            finally:
                con.close()
        url = self.postgres
        assert url is not None
        n = iter(range(1, 100))
        pg_sql = "".join(f"${next(n)}" if c == "?" else c for c in sql)

        async def run() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                return [tuple(r) for r in await conn.fetch(pg_sql, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def ledger(self, key_id: int) -> list[tuple[str, int, int, str | None]]:
        """(kind, amount, reserved, request_id) of every row of a key, oldest first."""
        return [(r[0], int(r[1]), int(r[2]), r[3]) for r in self.query(
            "SELECT kind, amount, reserved, request_id FROM ledger WHERE key_id = ? ORDER BY id", key_id)]

    def balance(self, key_id: int) -> int:
        return int(self.query("SELECT balance FROM api_keys WHERE id = ?", key_id)[0][0])

    def settled(self, key_id: int, rows: int, timeout: float = 2.0) -> list[tuple[str, int, int, str | None]]:
        """The key's ledger once it has ``rows`` rows, and its balance is their sum (the flush
        writes both in one transaction)."""
        deadline = time.time() + timeout
        while True:
            entries = self.ledger(key_id)
            if len(entries) >= rows or time.time() > deadline:
                break
            time.sleep(0.05)
        assert len(entries) == rows, entries
        assert self.balance(key_id) == sum(e[1] for e in entries)
        return entries


# --- the gateway ---------------------------------------------------------------------------

def start(workdir: Path, fake: FakeOpenAI, **env: str) -> GatewayProcess:
    gw = GatewayProcess(workdir, config=fake_config(fake.base_url, UPSTREAM_SECRET),
                        env={"TOLLWAY_LEDGER_FLUSH_INTERVAL": "0.05", "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1", **env})
    gw.start()
    try:
        with gw.admin() as admin:
            for model in MODELS:
                r = admin.post("/admin/model/save", json=model)
                assert r.status_code == 200, r.text
    except BaseException:
        gw.stop()
        raise
    return gw


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = start(tmp_path_factory.mktemp("billing"), fake)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def books(gw: GatewayProcess) -> Books:
    return Books(sqlite=gw.db_path)


def apply_key(gw: GatewayProcess, **fields: Any) -> tuple[str, int]:
    with gw.admin() as admin:
        r = admin.post("/admin/api-key/apply", json={"name": "billing", "role": "user", **fields})
        assert r.status_code == 200, r.text
        return str(r.json()["api_key"]), int(r.json()["id"])


def recharge(gw: GatewayProcess, ref: str | int, credits: object) -> dict[str, Any]:
    with gw.admin() as admin:
        r = admin.post("/admin/api-key/recharge", json={"api_key": ref, "balance": credits})
        assert r.status_code == 200, r.text
        return dict(r.json())


def group(gw: GatewayProcess, name: str, **fields: Any) -> int:
    with gw.admin() as admin:
        r = admin.post("/admin/group/save", json={"name": name, **fields})
        assert r.status_code == 200, r.text
        return int(r.json()["id"])


def chat(gw: GatewayProcess, secret: str, model: str, *, platform: bool = False, text: str = "hi",
         **extra: Any) -> httpx.Response:
    path = "/api/v1/chat/completions" if platform else "/v1/chat/completions"
    return httpx.post(gw.url + path, headers={"Authorization": f"Bearer {secret}"}, timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": text}], **extra})


def client(gw: GatewayProcess, secret: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=secret, base_url=gw.url + "/v1", max_retries=0)


# --- charges -------------------------------------------------------------------------------

def test_a_success_is_charged_exactly_its_cost(gw: GatewayProcess, books: Books, fake: FakeOpenAI) -> None:
    fake.script("priced-up", Behavior(text="one two three four five", prompt_tokens=11))
    secret, key_id = apply_key(gw, balance="0.5")
    topped = recharge(gw, secret, "0.25")
    assert topped["key_id"] == key_id and topped["amount_micro"] == 250_000
    assert topped["balance_micro"] == 750_000
    charged: dict[str, int] = {}
    with client(gw, secret) as sdk:
        for max_tokens in (50, None):
            raw = sdk.chat.completions.with_raw_response.create(
                model="priced-chat", messages=[{"role": "user", "content": "say five words"}], max_tokens=max_tokens)
            resp = raw.parse()
            assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 5)
            charged[raw.headers["x-request-id"]] = expected_cost(resp.usage.prompt_tokens,
                                                                 resp.usage.completion_tokens)
        stream = sdk.chat.completions.with_raw_response.create(
            model="priced-chat", messages=[{"role": "user", "content": "stream them"}], stream=True,
            stream_options={"include_usage": True})
        usage = [c.usage for c in stream.parse() if c.usage is not None]
        assert len(usage) == 1
        charged[stream.headers["x-request-id"]] = expected_cost(usage[0].prompt_tokens, usage[0].completion_tokens)
    platform = chat(gw, secret, "priced-chat", platform=True)
    assert platform.status_code == 200, platform.text
    u = platform.json()["usage"]
    charged[platform.headers["x-request-id"]] = expected_cost(u["prompt_tokens"], u["completion_tokens"])
    assert set(charged.values()) == {158}  # 16.5 + 41.25 + 100, rounded up once

    entries = books.settled(key_id, 2 + len(charged))
    assert [(k, a) for k, a, _, _ in entries[:2]] == [("recharge", 500_000), ("recharge", 250_000)]
    by_request = {rid: (kind, amount, reserved) for kind, amount, reserved, rid in entries[2:]}
    assert set(by_request) == set(charged)  # one row per request
    for rid, cost in charged.items():
        kind, amount, reserved = by_request[rid]
        assert (kind, amount) == ("charge", -cost)
        assert reserved >= cost
    assert books.balance(key_id) == 750_000 - sum(charged.values())
    logged = dict(books.query(f"SELECT id, cost_micro FROM request_logs WHERE id IN "
                              f"({', '.join('?' * len(charged))})", *charged))
    deadline = time.time() + 2
    while len(logged) < len(charged) and time.time() < deadline:
        time.sleep(0.05)
        logged = dict(books.query(f"SELECT id, cost_micro FROM request_logs WHERE id IN "
                                  f"({', '.join('?' * len(charged))})", *charged))
    assert logged == charged


def test_an_upstream_failure_is_refunded(gw: GatewayProcess, books: Books, fake: FakeOpenAI) -> None:
    fake.script("fail-up", Behavior(status=500))
    secret, key_id = apply_key(gw, balance=1)
    before = len(fake.seen("fail-up"))
    r = chat(gw, secret, "priced-fail", max_tokens=20)
    assert r.status_code >= 500, r.text
    assert len(fake.seen("fail-up")) > before  # the upstream was asked, and failed every time
    entries = books.settled(key_id, 2)
    kind, amount, reserved, rid = entries[1]
    assert (kind, amount, rid) == ("refund", 0, r.headers["x-request-id"])
    assert reserved > 0  # it had held its worst case
    assert books.balance(key_id) == MICRO
    assert recharge(gw, key_id, "0.000001")["balance_micro"] == MICRO + 1  # the live wallet agrees


def test_a_group_multiplier_multiplies_the_price(gw: GatewayProcess, books: Books, fake: FakeOpenAI) -> None:
    fake.script("priced-up", Behavior(text="one two three four", prompt_tokens=10))
    double = group(gw, "double", multiplier=2)
    secret, key_id = apply_key(gw, balance=1, group_id=double)
    plain, plain_id = apply_key(gw, balance=1)
    for s in (secret, plain):
        assert chat(gw, s, "flat-echo").status_code == 200
        assert chat(gw, s, "priced-chat").status_code == 200
    assert [a for _, a, _, _ in books.settled(key_id, 3)[1:]] == [-2 * FLAT, -2 * expected_cost(10, 4)]
    assert [a for _, a, _, _ in books.settled(plain_id, 3)[1:]] == [-FLAT, -expected_cost(10, 4)]
    assert expected_cost(10, 4, multiplier=2) == 296


# --- refusals ------------------------------------------------------------------------------

def test_insufficient_credits_are_refused_before_the_upstream(gw: GatewayProcess, books: Books,
                                                              fake: FakeOpenAI) -> None:
    fake.script("priced-up", Behavior(text="one two three four five", prompt_tokens=11))
    secret, key_id = apply_key(gw, balance="0.001")  # 1,000 micro: enough for one answer, not for 1,000 tokens
    before = len(fake.seen("priced-up"))
    platform = chat(gw, secret, "priced-chat", platform=True, max_tokens=1000)
    assert platform.status_code == 402
    err = platform.json()
    assert set(err) == {"error"} and set(err["error"]) == {"message", "type", "code"}
    assert err["error"]["type"] == err["error"]["code"] == "insufficient_credits"
    assert "0.001000 credits" in err["error"]["message"]
    native = chat(gw, secret, "priced-chat", max_tokens=1000)
    assert native.status_code == 402
    assert native.json()["error"]["code"] == "insufficient_credits"
    assert set(native.json()["error"]) == {"message", "type", "param", "code"}
    with client(gw, secret) as sdk, pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="priced-chat", messages=[{"role": "user", "content": "hi"}],
                                    max_tokens=1000)
    assert info.value.status_code == 402
    assert len(fake.seen("priced-up")) == before  # refused before any upstream call
    ok = chat(gw, secret, "priced-chat", max_tokens=5)  # a smaller bound fits the balance
    assert ok.status_code == 200, ok.text
    assert len(fake.seen("priced-up")) == before + 1
    entries = books.settled(key_id, 2)
    assert entries[1][:2] == ("charge", -158)
    assert books.balance(key_id) == 1000 - 158


def test_the_monthly_quota_refuses_past_it(gw: GatewayProcess, books: Books) -> None:
    secret, key_id = apply_key(gw, balance=1, month_quota="0.03")  # three flat-echo calls
    assert [chat(gw, secret, "flat-echo").status_code for _ in range(3)] == [200] * 3
    native = chat(gw, secret, "flat-echo")
    platform = chat(gw, secret, "flat-echo", platform=True)
    assert native.status_code == platform.status_code == 429
    assert native.json()["error"]["code"] == "insufficient_quota"
    assert platform.json()["error"] == {"message": platform.json()["error"]["message"],
                                        "type": "insufficient_quota", "code": "insufficient_quota"}
    entries = books.settled(key_id, 4)
    assert [a for _, a, _, _ in entries] == [MICRO, -FLAT, -FLAT, -FLAT]
    assert books.balance(key_id) == MICRO - 3 * FLAT  # refused with money left: the quota, not the balance


def test_the_quota_refusal_has_openais_type(gw: GatewayProcess) -> None:
    secret, _ = apply_key(gw, balance=1, month_quota="0.01")
    assert chat(gw, secret, "flat-echo").status_code == 200
    refused = chat(gw, secret, "flat-echo")
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "insufficient_quota"


def test_models_outside_the_whitelist_or_the_group_are_not_available(gw: GatewayProcess) -> None:
    listed, _ = apply_key(gw, balance=1, models=["echo"])
    only_flat = group(gw, "only-flat")
    with gw.admin() as admin:
        r = admin.post("/admin/group/model/authorize", json={"group_id": only_flat, "model": "flat-echo"})
        assert r.status_code == 200 and r.json()["added"] == 1, r.text
    grouped, _ = apply_key(gw, balance=1, group_id=only_flat)
    for secret, allowed, refused in ((listed, "echo", "flat-echo"), (grouped, "flat-echo", "priced-chat")):
        assert chat(gw, secret, allowed).status_code == 200
        native, platform = chat(gw, secret, refused), chat(gw, secret, refused, platform=True)
        assert native.status_code == platform.status_code == 403
        assert native.json()["error"]["code"] == "model_not_available"
        assert platform.json()["error"]["type"] == platform.json()["error"]["code"] == "model_not_available"
    models = httpx.get(gw.url + "/api/v1/models", headers={"Authorization": f"Bearer {grouped}"}).json()["data"]
    assert [(m["id"], m["credit_cost"]) for m in models] == [("flat-echo", 0.01)]
    models = httpx.get(gw.url + "/api/v1/models", headers={"Authorization": f"Bearer {listed}"}).json()["data"]
    assert [(m["id"], m["credit_cost"]) for m in models] == [("echo", 0.0)]


def test_a_group_stays_closed_when_its_last_authorization_goes(gw: GatewayProcess) -> None:
    closed = group(gw, "closed-after")
    with gw.admin() as admin:
        assert admin.post("/admin/group/model/authorize", json={"group_id": closed, "model": "echo"}).status_code == 200
        secret, _ = apply_key(gw, balance=1, group_id=closed)
        assert chat(gw, secret, "echo").status_code == 200
        assert chat(gw, secret, "flat-echo").status_code == 403
        gone = admin.post("/admin/group/model/deauthorize", json={"group_id": closed, "model": "echo"})
        assert gone.status_code == 200
        _eventually(lambda: chat(gw, secret, "echo").status_code == 403)
        assert chat(gw, secret, "flat-echo").status_code == 403  # not opened by losing its last model
        listed = admin.get("/admin/group/list", params={"q": "closed-after"}).json()["items"]
        assert [g["restricted"] for g in listed] == [True]
        # the key's own authorization adds to its group's
        key_id = _key_id(gw, secret)
        assert admin.post("/admin/api-key/model/authorize", json={"key_id": key_id, "model": "echo"}).status_code == 200
        _eventually(lambda: chat(gw, secret, "echo").status_code == 200)
        # an admin opens the group again explicitly
        assert admin.post("/admin/group/save", json={"id": closed, "restricted": False}).status_code == 200
        _eventually(lambda: chat(gw, secret, "flat-echo").status_code == 200)


def _eventually(check: Any, timeout: float = 3.0) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline
        time.sleep(0.05)


def _key_id(gw: GatewayProcess, secret: str) -> int:
    with gw.admin() as admin:
        keys = admin.get("/admin/api-key/list", params={"q": secret[:10], "limit": 1000}).json()["items"]
    return int(next(k["id"] for k in keys if secret.startswith(k["prefix"])))


def test_rpm_refuses_the_fourth_request_in_a_minute(gw: GatewayProcess) -> None:
    secret, _ = apply_key(gw, rpm=3)
    assert [chat(gw, secret, "echo").status_code for _ in range(3)] == [200] * 3
    native = chat(gw, secret, "echo")
    assert native.status_code == 429 and int(native.headers["retry-after"]) >= 1
    assert native.json()["error"]["code"] == "rate_limited"
    assert native.json()["error"]["type"] == "rate_limit_error"
    platform = chat(gw, secret, "echo", platform=True)
    assert platform.status_code == 429 and int(platform.headers["retry-after"]) >= 1
    assert platform.json()["error"]["type"] == platform.json()["error"]["code"] == "rate_limited"
    with client(gw, secret) as sdk, pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])


def test_a_stream_the_client_cuts_is_charged_within_its_hold(gw: GatewayProcess, books: Books,
                                                             fake: FakeOpenAI) -> None:
    fake.script("slow-up", Behavior(text="word " * 100, chunk_delay=0.05))
    secret, key_id = apply_key(gw, balance=1)
    body = {"model": "priced-slow", "messages": [{"role": "user", "content": "talk slowly"}], "stream": True,
            "max_tokens": 200}
    with httpx.Client(timeout=30) as http, http.stream(
            "POST", gw.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}) as r:
        assert r.status_code == 200
        rid = r.headers["x-request-id"]
        frames = 0
        for line in r.iter_lines():
            frames += line.startswith("data: ")
            if frames == 5:
                break
    entries = books.settled(key_id, 2, timeout=5)
    kind, amount, reserved, logged = entries[1]
    assert (kind, logged) == ("charge", rid)
    assert 0 < -amount <= reserved
    assert -amount < expected_cost(100, 100)  # far less than the whole answer
    deadline = time.time() + 5
    while "slow-up" not in fake.disconnects and time.time() < deadline:
        time.sleep(0.05)
    assert "slow-up" in fake.disconnects  # the upstream call was cut too


# --- concurrency ---------------------------------------------------------------------------

def spend_concurrently(gw: GatewayProcess, books: Books, requests: int = 200, covered: int = 50) -> None:
    secret, key_id = apply_key(gw, balance=covered * FLAT / MICRO)

    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
        async with httpx.AsyncClient(base_url=gw.url, timeout=60, limits=limits,
                                     headers={"Authorization": f"Bearer {secret}"}) as http:
            async def one(i: int) -> int:
                r = await http.post("/v1/chat/completions", json={
                    "model": "flat-echo", "messages": [{"role": "user", "content": f"request {i}"}]})
                return r.status_code

            return list(await asyncio.gather(*(one(i) for i in range(requests))))

    statuses = asyncio.run(run())
    assert statuses.count(200) == covered
    assert statuses.count(402) == requests - covered
    entries = books.settled(key_id, 1 + covered, timeout=5)
    assert [(k, a) for k, a, _, _ in entries[1:]] == [("charge", -FLAT)] * covered  # the refused left no row
    assert books.balance(key_id) == 0
    assert recharge(gw, key_id, "0.01")["balance_micro"] == FLAT  # the live wallet is at zero too


# 200 requests on 200 fresh connections from one httpx client: now and then (about one run in
# five under load) the client leaves one connect unfinished when its loop closes, and the socket's
# ResourceWarning surfaces here; the gateway's side and every assertion below are unaffected
CLIENT_SOCKET_WARNING = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@CLIENT_SOCKET_WARNING
def test_concurrent_requests_spend_exactly_the_balance(gw: GatewayProcess, books: Books) -> None:
    spend_concurrently(gw, books)


@CLIENT_SOCKET_WARNING
def test_concurrent_requests_spend_exactly_the_balance_on_postgres(tmp_path: Path, postgres_url: str,
                                                                   fake: FakeOpenAI) -> None:
    pg = start(tmp_path, fake, TOLLWAY_DATABASE_URL=postgres_url)
    try:
        assert not pg.db_path.exists()
        spend_concurrently(pg, Books(postgres=postgres_url))
    finally:
        pg.stop()


# --- estimates for models without an operator price (issue 17.23) --------------------------------

def test_an_unpriced_model_logs_an_estimate_at_list_price_and_charges_nothing(
        gw: GatewayProcess, books: Books, fake: FakeOpenAI) -> None:
    with gw.admin() as admin:  # no price: served for free, as before, but no longer shown as costing nothing
        r = admin.post("/admin/model/save", json={"name": "listed-mini", "provider": "fake",
                                                  "upstream_id": "gpt-4o-mini"})
        assert r.status_code == 200, r.text
    fake.script("gpt-4o-mini", Behavior(text="one two three", prompt_tokens=100_000))
    secret, key_id = apply_key(gw, balance=1)
    keyed = chat(gw, secret, "listed-mini")
    assert keyed.status_code == 200, keyed.text
    admin_call = chat(gw, ADMIN_KEY, "listed-mini")
    assert admin_call.status_code == 200, admin_call.text
    # gpt-4o-mini lists at $0.15 / $0.60 per million tokens: 100,000 in and 3 out
    expected = math.ceil((100_000 * Fraction("0.15") + 3 * Fraction("0.60")) / MICRO * MICRO)
    assert expected == 15_002
    ids = {keyed.headers["x-request-id"], admin_call.headers["x-request-id"]}
    deadline = time.time() + 5
    with gw.admin() as admin:
        while True:
            items = [i for i in admin.get("/admin/log/list", params={"model": "listed-mini"}).json()["items"]
                     if i["id"] in ids]
            if len(items) == 2 or time.time() > deadline:
                break
            time.sleep(0.05)
        assert len(items) == 2
        for item in items:
            assert (item["cost_micro"], item["estimated_cost_micro"]) == (0, expected), item
            assert item["estimated_cost"] == expected / MICRO
        usage = admin.get("/admin/usage", params={"model": "listed-mini", "group_by": "model"}).json()
    assert usage["totals"]["cost_micro"] == 0
    assert usage["totals"]["estimated_cost_micro"] == 2 * expected
    assert usage["items"][0]["estimated_cost"] == 2 * expected / MICRO
    assert books.balance(key_id) == MICRO  # never charged
    assert [e[0] for e in books.ledger(key_id)] == ["recharge"]
