"""Request logs, usage and payments over HTTP on a real gateway: ``/admin/log/list``,
``/admin/usage``, ``/admin/payment/list`` and a key's own ``/user/usage``. Traffic goes through
the ``openai`` SDK to the built-in ``echo`` model, so the token sums can be checked against
what the SDK reported."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tollway.core.request_log import RequestLog
from tollway.store.db import create_engine
from tollway.store.ledger import LedgerRepository
from tollway.store.request_logs import RequestLogRepository

SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost_micro")
ESTIMATE = {"estimated_cost_micro", "estimated_cost"}  # at list price, for models without a price: never charged


class Caller:
    """A key, and the usage the SDK reported for its successful requests."""

    def __init__(self, gw: GatewayProcess, name: str) -> None:
        with gw.admin() as admin:
            r = admin.post("/admin/api-key/apply", json={"name": name, "role": "user"})
        assert r.status_code == 200, r.text
        self.id: int = r.json()["id"]
        self.name = name
        self.secret: str = r.json()["api_key"]
        self.sdk = openai.OpenAI(api_key=self.secret, base_url=gw.url + "/v1", max_retries=0, timeout=20)
        self.prompt = self.completion = self.ok = 0

    def chat(self, text: str, *, stream: bool = False) -> None:
        messages: Any = [{"role": "user", "content": text}]
        if stream:
            chunks = list(self.sdk.chat.completions.create(model="echo", messages=messages, stream=True,
                                                           stream_options={"include_usage": True}))
            usage = chunks[-1].usage
        else:
            usage = self.sdk.chat.completions.create(model="echo", messages=messages).usage
        assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
        self.prompt += usage.prompt_tokens
        self.completion += usage.completion_tokens
        self.ok += 1

    def unknown_model(self) -> None:
        with pytest.raises(openai.NotFoundError):
            self.sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])

    def client(self, gw: GatewayProcess) -> httpx.Client:
        return httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {self.secret}"}, timeout=10)


class Traffic:
    def __init__(self, gw: GatewayProcess, a: Caller, b: Caller, started: float) -> None:
        self.gw, self.a, self.b, self.started = gw, a, b, started


def _store(gw: GatewayProcess, *recharges: tuple[int, int], rows: tuple[RequestLog, ...] = ()) -> None:
    """Write to the gateway's database beside it: recharges through the ledger, log rows."""

    async def run() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{gw.db_path}")
        try:
            ledger = LedgerRepository(engine)
            for key_id, amount in recharges:
                await ledger.recharge(key_id, amount, note="e2e")
            await RequestLogRepository(engine).insert_many(rows)
        finally:
            await engine.dispose()

    asyncio.run(run())


# a row from long ago, as a failover leaves it: no key (an admin's), two attempts, a cost
OLD = RequestLog(id="old-1", created_at=datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC).timestamp(),
                 path="/v1/chat/completions", dialect="openai", status=502, model="fake-chat", provider="fake",
                 prompt_tokens=7, cost_micro=1234, error_code="provider_error",
                 attempts='[{"provider":"fake","status":502},{"provider":"fake","status":502}]')


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("usage"), env={"TOLLWAY_LOG_FLUSH_INTERVAL": "0.05"}).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def traffic(gw: GatewayProcess) -> Iterator[Traffic]:
    """Two keys' requests (successes, a streamed one, unknown models) and one without a key,
    once the log rows are written."""
    a, b = Caller(gw, "alice"), Caller(gw, "bob")
    # before the traffic, in case it bills
    _store(gw, (a.id, 500_000), (b.id, 1_000_000), (a.id, 250_000), rows=(OLD,))
    started = time.time()
    a.chat("hello there world")
    a.chat("one two three four five six")
    a.chat("streamed words come back", stream=True)
    a.unknown_model()
    b.chat("bob says hi")
    b.chat("bob again with more words here")
    b.unknown_model()
    anonymous = httpx.post(gw.url + "/v1/chat/completions", json={"model": "echo", "messages": []})
    assert anonymous.status_code == 401
    with gw.admin() as admin:
        deadline = time.time() + 10
        while admin.get("/admin/log/list", params={"since": started}).json()["total"] < 8:
            assert time.time() < deadline, "request-log rows were not flushed"
            time.sleep(0.05)
    yield Traffic(gw, a, b, started)
    a.sdk.close()
    b.sdk.close()


def _rows(gw: GatewayProcess, **params: Any) -> list[dict[str, Any]]:
    with gw.admin() as admin:
        r = admin.get("/admin/log/list", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def _hour(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:00:00Z")


def _expected(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, int]]:
    """What /admin/usage should say, summed here from the listed rows."""
    out: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS, 0))
    for row in rows:
        group = {"key_id": row["key_id"], "model": row["model"], "day": _day(row["created_at"]),
                 "hour": _hour(row["created_at"])}
        sums = out[tuple(group[f] for f in fields)]
        sums["requests"] += 1
        sums["errors"] += row["status"] >= 400
        sums["prompt_tokens"] += row["prompt_tokens"]
        sums["completion_tokens"] += row["completion_tokens"]
        sums["total_tokens"] += row["prompt_tokens"] + row["completion_tokens"]
        sums["cost_micro"] += row["cost_micro"]
    return dict(out)


def _by_group(items: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, int]]:
    out = {}
    for item in items:
        assert set(item) == set(fields) | set(SUMS) | ESTIMATE | {"cost"}, item  # only the grouped fields
        assert item["cost"] == item["cost_micro"] / 1_000_000
        assert (item["estimated_cost_micro"], item["estimated_cost"]) == (0, 0)  # echo has no list price
        out[tuple(item[f] for f in fields)] = {s: item[s] for s in SUMS}
    return out


def test_log_list_filters_and_pages(traffic: Traffic) -> None:
    gw, a, b = traffic.gw, traffic.a, traffic.b
    mine = _rows(gw, key_id=a.id)
    assert len(mine) == 4 and Counter(r["status"] for r in mine) == {200: 3, 404: 1}
    assert [r["created_at"] for r in mine] == sorted((r["created_at"] for r in mine), reverse=True)
    row = mine[0]
    for field in ("id", "created_at", "path", "dialect", "status", "key_id", "key_prefix", "model", "provider",
                  "stream", "error_code", "latency_ms", "prompt_tokens", "completion_tokens", "cost_micro",
                  "attempts", "dropped_params", "note"):
        assert field in row, field
    assert all(r["key_prefix"] == a.secret[:10] and r["cost"] == r["cost_micro"] / 1_000_000 for r in mine)
    echo = [r for r in mine if r["status"] == 200]
    assert all(r["model"] == "echo" and r["path"] == "/v1/chat/completions" for r in echo)
    assert sum(r["prompt_tokens"] for r in echo) == a.prompt
    assert sum(r["completion_tokens"] for r in echo) == a.completion
    assert sum(r["stream"] for r in echo) == 1

    (missing,) = _rows(gw, key_id=a.id, status=404)
    assert missing["error_code"] == "model_not_available" and missing["prompt_tokens"] == 0
    assert {r["key_id"] for r in _rows(gw, status="4xx", since=traffic.started)} == {a.id, b.id, None}
    assert len(_rows(gw, status="4XX", since=traffic.started)) == 3
    assert len(_rows(gw, status="2xx", key_id=b.id)) == 2 and _rows(gw, status="5xx", since=traffic.started) == []
    assert len(_rows(gw, model="echo")) == 5

    with gw.admin() as admin:
        pages = [admin.get("/admin/log/list", params={"key_id": a.id, "limit": 3, "offset": o}).json()
                 for o in (0, 3, 6)]
    assert [p["total"] for p in pages] == [4, 4, 4] and [len(p["items"]) for p in pages] == [3, 1, 0]
    assert [r["id"] for p in pages for r in p["items"]] == [r["id"] for r in mine]
    with gw.admin() as admin:
        everything = admin.get("/admin/log/list").json()
    assert everything["total"] == 9 and len(everything["items"]) == 9  # under the default limit, 10
    assert everything["items"][-1]["id"] == OLD.id

    (old,) = _rows(gw, status="5xx")  # a failed failover: its attempts come decoded
    assert old["attempts"] == [{"provider": "fake", "status": 502}, {"provider": "fake", "status": 502}]
    assert old["cost"] == 0.001234 and old["key_id"] is None and old["created_at"] == OLD.created_at
    assert _rows(gw, status=502, until="2001-02-03T04:05:07Z") == [old]
    assert _rows(gw, status=502, until="2001-02-03T04:05:06Z") == []  # until is exclusive

    # time windows: unix seconds and ISO 8601, since inclusive and until exclusive
    first = min(r["created_at"] for r in mine)
    iso_first = datetime.fromtimestamp(int(first), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(_rows(gw, key_id=a.id, since=iso_first)) == 4
    assert len(_rows(gw, key_id=a.id, since=repr(first))) == 4
    assert len(_rows(gw, key_id=a.id, until=repr(first))) == 0
    assert len(_rows(gw, key_id=a.id, until=iso_first)) == 0
    assert _rows(gw, since="2999-01-01T00:00:00+01:00") == []
    assert len(_rows(gw, key_id=a.id, since="2000-01-01", until=int(time.time()) + 60)) == 4


@pytest.mark.parametrize(("params", "param"), [
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"offset": "-1"}, "offset"), ({"offset": "--1"}, "offset"), ({"key_id": "\u00b2"}, "key_id"),
    ({"key_id": "1.5"}, "key_id"), ({"status": "4x"}, "status"), ({"status": "600"}, "status"),
    ({"status": "404 "}, "status"), ({"since": "yesterday"}, "since"), ({"until": "1e9"}, "until"),
    ({"since": "-5"}, "since"), ({"until": "99999-01-01"}, "until"), ({"since": "20", "until": "10"}, "since"),
    ({"model": "x" * 201}, "model"),
])
def test_log_list_rejects_bad_params(gw: GatewayProcess, params: dict[str, str], param: str) -> None:
    with gw.admin() as admin:
        r = admin.get("/admin/log/list", params=params)
    assert r.status_code == 400 and param in r.json()["detail"], r.text


def test_usage_per_key_model_day(traffic: Traffic) -> None:
    gw, a, b = traffic.gw, traffic.a, traffic.b
    rows = _rows(gw, since=traffic.started)
    assert len(rows) == 8
    with gw.admin() as admin:
        full = admin.get("/admin/usage", params={"since": traffic.started}).json()
        per_key = admin.get("/admin/usage", params={"since": traffic.started, "group_by": "key"}).json()
        b_only = admin.get("/admin/usage", params={"key_id": b.id, "group_by": "day,model"}).json()
        echo = admin.get("/admin/usage", params={"model": "echo", "group_by": "key"}).json()
        future = admin.get("/admin/usage", params={"since": "2999-01-01T00:00:00Z"}).json()
        old = admin.get("/admin/usage", params={"until": "2002-01-01", "group_by": "model,day"}).json()

    fields = ("key_id", "model", "day")
    assert _by_group(full["items"], fields) == _expected(rows, fields)
    assert {k: full["totals"][k] for k in SUMS} == _expected(rows, ())[()]
    assert full["totals"]["cost"] == full["totals"]["cost_micro"] / 1_000_000
    assert set(full["totals"]) == set(SUMS) | ESTIMATE | {"cost"} and full["group_by"] == ["key", "model", "day"]

    keys = _by_group(per_key["items"], ("key_id",))
    assert keys == _expected(rows, ("key_id",)) and list(keys) == [(a.id,), (b.id,), (None,)]
    assert keys[(a.id,)]["requests"] == 4 and keys[(b.id,)]["requests"] == 3 and keys[(None,)]["requests"] == 1
    # the sums are what the SDK reported
    assert (keys[(a.id,)]["prompt_tokens"], keys[(a.id,)]["completion_tokens"]) == (a.prompt, a.completion)
    assert (keys[(b.id,)]["prompt_tokens"], keys[(b.id,)]["completion_tokens"]) == (b.prompt, b.completion)
    assert full["totals"]["total_tokens"] == a.prompt + a.completion + b.prompt + b.completion

    b_rows = [r for r in rows if r["key_id"] == b.id]
    assert _by_group(b_only["items"], ("model", "day")) == _expected(b_rows, ("model", "day"))
    assert b_only["group_by"] == ["model", "day"]  # in the canonical order, whatever the query's
    assert {i["key_id"]: i["requests"] for i in echo["items"]} == {a.id: a.ok, b.id: b.ok}
    assert future["items"] == [] and future["totals"]["requests"] == 0 and future["totals"]["cost"] == 0
    assert old["items"] == [{"model": "fake-chat", "day": "2001-02-03", "requests": 1, "errors": 1, "prompt_tokens": 7,
                             "completion_tokens": 0, "total_tokens": 7, "cost": 0.001234, "cost_micro": 1234,
                             "estimated_cost": 0, "estimated_cost_micro": 0}]


def test_usage_per_hour_and_top_groups(traffic: Traffic) -> None:
    """``group_by=hour`` buckets by UTC hour; ``order`` + ``limit`` are the top groups by a sum."""
    gw, a, b = traffic.gw, traffic.a, traffic.b
    rows = _rows(gw, since=traffic.started)
    with gw.admin() as admin:
        hourly = admin.get("/admin/usage", params={"since": traffic.started, "group_by": "hour"}).json()
        hour_model = admin.get("/admin/usage", params={"group_by": "model,hour", "since": traffic.started}).json()
        old = admin.get("/admin/usage", params={"until": "2002-01-01", "group_by": "hour"}).json()
        top_requests = admin.get("/admin/usage", params={"since": traffic.started, "group_by": "key",
                                                         "order": "requests", "limit": 1}).json()
        top_errors = admin.get("/admin/usage", params={"since": traffic.started, "group_by": "key",
                                                       "order": "errors"}).json()
        top_tokens = admin.get("/admin/usage", params={"group_by": "key", "order": "tokens", "limit": 2}).json()
        top_cost = admin.get("/admin/usage", params={"group_by": "model", "order": "cost", "limit": 1}).json()
        first = admin.get("/admin/usage", params={"since": traffic.started, "group_by": "key", "limit": 2}).json()
    assert _by_group(hourly["items"], ("hour",)) == _expected(rows, ("hour",))
    assert [i["hour"] for i in hourly["items"]] == sorted(i["hour"] for i in hourly["items"])
    assert hourly["group_by"] == ["hour"] and hourly["truncated"] is False
    assert _by_group(hour_model["items"], ("model", "hour")) == _expected(rows, ("model", "hour"))
    assert hour_model["group_by"] == ["model", "hour"]
    assert [(i["hour"], i["errors"]) for i in old["items"]] == [("2001-02-03T04:00:00Z", 1)]

    # a has 4 requests (1 error), b 3 (1 error), no key 1 (1 error)
    assert [(i["key_id"], i["requests"]) for i in top_requests["items"]] == [(a.id, 4)]
    assert top_requests["truncated"] is True
    assert top_requests["totals"]["requests"] == len(rows)  # totals sum every row, not the top ones
    assert [(i["key_id"], i["errors"]) for i in top_errors["items"]] == [(a.id, 1), (b.id, 1), (None, 1)]
    tokens = {(i["key_id"],): i["total_tokens"] for i in top_tokens["items"]}
    assert list(tokens.values()) == sorted(tokens.values(), reverse=True) and len(tokens) == 2
    assert top_cost["items"][0]["model"] == "fake-chat" and top_cost["truncated"] is True  # the only cost
    assert [i["key_id"] for i in first["items"]] == [a.id, b.id] and first["truncated"] is True
    with a.client(gw) as client:
        mine = client.get("/user/usage", params={"group_by": "hour"}).json()
        my_top = client.get("/user/usage", params={"group_by": "model", "order": "requests", "limit": 1}).json()
    assert _by_group(mine["items"], ("hour",)) == _expected([r for r in rows if r["key_id"] == a.id], ("hour",))
    assert [(i["model"], i["requests"], i["errors"]) for i in my_top["items"]] == [("echo", 3, 0)]
    assert my_top["truncated"] is True and my_top["totals"]["errors"] == 1


@pytest.mark.parametrize(("params", "param"), [
    ({"group_by": "key,week"}, "group_by"), ({"group_by": "key,"}, "group_by"), ({"key_id": "x"}, "key_id"),
    ({"since": "2026-13-01"}, "since"), ({"until": "nan"}, "until"), ({"order": "latency"}, "order"),
    ({"order": "COST"}, "order"), ({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"),
    ({"limit": "five"}, "limit"),
])
def test_usage_rejects_bad_params(gw: GatewayProcess, params: dict[str, str], param: str) -> None:
    with gw.admin() as admin:
        r = admin.get("/admin/usage", params=params)
    assert r.status_code == 400 and param in r.json()["detail"], r.text


def test_user_usage_sees_only_its_own_key(traffic: Traffic) -> None:
    gw, a, b = traffic.gw, traffic.a, traffic.b
    rows = _rows(gw, since=traffic.started)
    for caller, balance in ((a, 750_000), (b, 1_000_000)):
        with caller.client(gw) as client:
            mine = client.get("/user/usage").json()
            by_key = client.get("/user/usage", params={"group_by": "key"}).json()
            own_id = client.get("/user/usage", params={"key_id": caller.id, "group_by": "model"})
            other = client.get("/user/usage", params={"key_id": (b if caller is a else a).id})
        own = [r for r in rows if r["key_id"] == caller.id]
        assert _by_group(mine["items"], ("model", "day")) == _expected(own, ("model", "day"))
        assert (mine["totals"]["prompt_tokens"], mine["totals"]["completion_tokens"]) == (caller.prompt,
                                                                                      caller.completion)
        assert mine["totals"]["requests"] == len(own)
        assert [i["key_id"] for i in by_key["items"]] == [caller.id]
        assert own_id.status_code == 200 and own_id.json()["totals"] == mine["totals"]
        assert other.status_code == 400 and "key_id" in other.json()["detail"]
        key = mine["key"]
        assert {k: key[k] for k in ("id", "name", "prefix")} == {"id": caller.id, "name": caller.name,
                                                                 "prefix": caller.secret[:10]}
        assert set(key) == {"id", "name", "prefix", "balance", "balance_micro", "month_quota",
                            "month_quota_micro"}
        assert key["month_quota"] is None and key["month_quota_micro"] is None
        assert key["balance"] == key["balance_micro"] / 1_000_000
        if mine["totals"]["cost_micro"] == 0:  # echo is free unless a price was set
            assert key["balance_micro"] == balance


def test_user_log_list_and_request_id(traffic: Traffic) -> None:
    """A key lists its own log rows (as /admin/log/list does); ``request_id`` finds one answer's row."""
    gw, a, b = traffic.gw, traffic.a, traffic.b
    with a.client(gw) as client:
        answer = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
            {"role": "user", "content": "find my row"}]})
        request_id = answer.headers["x-request-id"]
        deadline = time.time() + 10
        while (found := client.get("/user/log/list", params={"request_id": request_id}).json())["total"] == 0:
            assert time.time() < deadline, "the row was not written"
            time.sleep(0.05)
        mine = client.get("/user/log/list", params={"limit": 1000}).json()
        other = client.get("/user/log/list", params={"key_id": b.id})
        errors = client.get("/user/log/list", params={"status": "4xx"}).json()
    (row,) = found["items"]
    assert row["id"] == request_id and row["key_id"] == a.id and row["status"] == 200
    assert (row["prompt_tokens"], row["completion_tokens"]) == (answer.json()["usage"]["prompt_tokens"],
                                                              answer.json()["usage"]["completion_tokens"])
    assert row["cost"] == row["cost_micro"] / 1_000_000
    assert mine["total"] == 5 and {r["key_id"] for r in mine["items"]} == {a.id}  # 4 before, and this one
    assert other.status_code == 400 and "key_id" in other.json()["detail"]
    assert [r["status"] for r in errors["items"]] == [404]
    with b.client(gw) as client:  # another key's request id finds nothing
        assert client.get("/user/log/list", params={"request_id": request_id}).json() == {"items": [], "total": 0}
    assert _rows(gw, request_id=request_id) == [row]
    assert _rows(gw, request_id="no-such-request") == []
    r = httpx.get(gw.url + "/user/log/list", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 400 and "/admin/log/list" in r.json()["detail"]
    assert httpx.get(gw.url + "/user/log/list").status_code == 401


def test_user_usage_auth(gw: GatewayProcess, traffic: Traffic) -> None:
    r = httpx.get(gw.url + "/user/usage")
    assert r.status_code == 401 and "detail" in r.json()
    r = httpx.get(gw.url + "/user/usage", headers={"Authorization": "Bearer tw-not-a-real-key-0000000000"})
    assert r.status_code == 401 and "detail" in r.json()
    r = httpx.get(gw.url + "/user/usage", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 400 and "/admin/usage" in r.json()["detail"]
    with traffic.a.client(gw) as client:
        assert client.get("/user/usage", params={"group_by": "week"}).status_code == 400
        assert client.get("/user/usage", params={"since": "soon"}).status_code == 400
        for path in ("/admin/usage", "/admin/log/list", "/admin/payment/list"):  # a user key is no admin
            r = client.get(path)
            assert r.status_code == 403 and "detail" in r.json(), path
    for path in ("/admin/usage", "/admin/log/list", "/admin/payment/list"):
        r = httpx.get(gw.url + path)
        assert r.status_code == 401 and "detail" in r.json(), path


def test_payment_list(traffic: Traffic) -> None:
    gw, a, b = traffic.gw, traffic.a, traffic.b
    with gw.admin() as admin:
        everything = admin.get("/admin/payment/list").json()
        alice = admin.get("/admin/payment/list", params={"key_id": a.id}).json()
        paged = [admin.get("/admin/payment/list", params={"key_id": a.id, "limit": 1, "offset": o}).json()
                 for o in (0, 1)]
        nobody = admin.get("/admin/payment/list", params={"key_id": 99999}).json()
        bad = [admin.get("/admin/payment/list", params=p) for p in ({"limit": "0"}, {"offset": "x"},
                                                                     {"key_id": "-"})]
    assert everything["total"] == 3
    assert [(e["key_id"], e["amount_micro"]) for e in everything["items"]] == [
        (a.id, 250_000), (b.id, 1_000_000), (a.id, 500_000)]  # newest first
    assert alice["total"] == 2 and [e["amount"] for e in alice["items"]] == [0.25, 0.5]
    entry = alice["items"][0]
    assert entry["kind"] == "recharge" and entry["note"] == "e2e" and entry["month"] == _day(entry["created_at"])[:7]
    assert [p["items"][0]["id"] for p in paged] == [e["id"] for e in alice["items"]]
    assert all(p["total"] == 2 for p in paged)
    assert nobody == {"items": [], "total": 0}
    assert [(r.status_code, r.json()["detail"].split()[0]) for r in bad] == [
        (400, "limit"), (400, "offset"), (400, "key_id")]
