"""Request-log listing and usage aggregation, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.core.request_log import RequestLog
from tollway.store.request_logs import RequestLogRepository


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def row(rid: str, t: float, *, key: int | None = 1, model: str | None = "echo", status: int = 200,
        prompt: int = 0, completion: int = 0, cost: int = 0) -> RequestLog:
    return RequestLog(id=rid, created_at=t, path="/v1/chat/completions", dialect="openai", status=status,
                      key_id=key, model=model, prompt_tokens=prompt, completion_tokens=completion,
                      cost_micro=cost)


async def test_day_buckets_split_at_utc_midnight(engine: AsyncEngine) -> None:
    """CAST rounds on PostgreSQL and truncates on SQLite: the bucket must be floor on both."""
    repo = RequestLogRepository(engine)
    await repo.insert_many([
        row("late", at("2026-11-22T23:59:59.900"), prompt=1),
        row("early", at("2026-11-23T00:00:00.100"), prompt=10),
        row("midnight", at("2026-11-24T00:00:00"), prompt=100),
        row("noon", at("2026-11-24T12:00:00"), prompt=1000),  # exactly half a day: round-half cases
        row("half", at("2026-11-24T12:00:00.500"), prompt=10000),
        row("before-1970", at("1969-12-31T23:59:59.500"), prompt=100000),  # negative: truncation is ceil
    ])
    by_day = {u["day"]: u["prompt_tokens"] for u in await repo.usage(group_by=["day"])}
    assert by_day == {"1969-12-31": 100000, "2026-11-22": 1, "2026-11-23": 10, "2026-11-24": 11100}
    assert list(by_day) == sorted(by_day)  # ordered by day


async def test_usage_groups_and_sums(engine: AsyncEngine) -> None:
    repo = RequestLogRepository(engine)
    d1, d2 = at("2026-11-22T10:00:00"), at("2026-11-23T10:00:00")
    await repo.insert_many([
        row("a1", d1, key=1, model="echo", prompt=3, completion=5, cost=1_500_000),
        row("a2", d1 + 60, key=1, model="echo", prompt=2, completion=1, cost=2_000_000_000_000),  # > int32
        row("a3", d2, key=1, model="gpt", prompt=7, completion=0, cost=10),
        row("a4", d2 + 1, key=1, model="nope", status=404),
        row("b1", d2 + 2, key=2, model="echo", prompt=4, completion=4, cost=7),
        row("n1", d2 + 3, key=None, model=None, status=401),  # unauthenticated: no key, no model
    ])
    full = await repo.usage()
    assert full == [
        {"key_id": 1, "model": "echo", "day": "2026-11-22", "requests": 2, "errors": 0, "prompt_tokens": 5,
         "completion_tokens": 6, "total_tokens": 11, "cost_micro": 2_000_001_500_000,
         "estimated_cost_micro": 0},
        {"key_id": 1, "model": "gpt", "day": "2026-11-23", "requests": 1, "errors": 0, "prompt_tokens": 7,
         "completion_tokens": 0, "total_tokens": 7, "cost_micro": 10,
         "estimated_cost_micro": 0},
        {"key_id": 1, "model": "nope", "day": "2026-11-23", "requests": 1, "errors": 1, "prompt_tokens": 0,
         "completion_tokens": 0, "total_tokens": 0, "cost_micro": 0,
         "estimated_cost_micro": 0},
        {"key_id": 2, "model": "echo", "day": "2026-11-23", "requests": 1, "errors": 0, "prompt_tokens": 4,
         "completion_tokens": 4, "total_tokens": 8, "cost_micro": 7,
         "estimated_cost_micro": 0},
        {"key_id": None, "model": None, "day": "2026-11-23", "requests": 1, "errors": 1, "prompt_tokens": 0,
         "completion_tokens": 0, "total_tokens": 0, "cost_micro": 0,
         "estimated_cost_micro": 0},
    ]
    assert all(type(v) is int for u in full for k, v in u.items() if k not in ("key_id", "model", "day"))

    per_key = await repo.usage(group_by=["key"])
    assert [(u["key_id"], u["requests"], u["total_tokens"]) for u in per_key] == [(1, 4, 18), (2, 1, 8),
                                                                                 (None, 1, 0)]
    assert all(set(u) == {"key_id", "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens",
                          "cost_micro", "estimated_cost_micro"} for u in per_key)
    per_model = await repo.usage(group_by=("model",), key_id=1)
    assert [(u["model"], u["requests"]) for u in per_model] == [("echo", 2), ("gpt", 1), ("nope", 1)]

    (totals,) = await repo.usage(group_by=())
    assert totals == {"requests": 6, "errors": 2, "prompt_tokens": 16, "completion_tokens": 10, "total_tokens": 26,
                      "cost_micro": 2_000_001_500_017, "estimated_cost_micro": 0}
    (none,) = await repo.usage(group_by=(), key_id=99)
    assert none == {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                    "cost_micro": 0, "estimated_cost_micro": 0}
    assert await repo.usage(key_id=99) == []

    # filters: model, and a window [since, until)
    assert [u["key_id"] for u in await repo.usage(model="echo", group_by=["key"])] == [1, 2]
    window = await repo.usage(since=d1 + 60, until=d2 + 2, group_by=["day"])
    assert [(u["day"], u["requests"]) for u in window] == [("2026-11-22", 1), ("2026-11-23", 2)]
    assert len(await repo.usage(limit=2)) == 2

    with pytest.raises(ValueError, match="group_by"):
        await repo.usage(group_by=["week"])
    with pytest.raises(ValueError, match="order"):
        await repo.usage(group_by=["key"], order="latency")


async def test_hour_buckets_split_at_utc_hours(engine: AsyncEngine) -> None:
    """The hour bucket is floor(t / 3600) on both databases, as the day's is."""
    repo = RequestLogRepository(engine)
    await repo.insert_many([
        row("h1", at("2026-11-23T09:59:59.900"), prompt=1),
        row("h2", at("2026-11-23T10:00:00.100"), prompt=10),
        row("h3", at("2026-11-23T10:30:00"), prompt=100),  # exactly half an hour: round-half cases
        row("h4", at("2026-11-23T10:59:59.500"), prompt=1000, status=500),
        row("h5", at("2026-11-23T11:00:00"), prompt=10000, status=404),
        row("h6", at("2026-11-24T00:00:00.001"), prompt=100000),
        row("h7", at("1969-12-31T23:30:00"), prompt=1000000),  # negative: truncation is ceil
    ])
    by_hour = await repo.usage(group_by=["hour"])
    assert [(u["hour"], u["prompt_tokens"], u["requests"], u["errors"]) for u in by_hour] == [
        ("1969-12-31T23:00:00Z", 1000000, 1, 0), ("2026-11-23T09:00:00Z", 1, 1, 0),
        ("2026-11-23T10:00:00Z", 1110, 3, 1), ("2026-11-23T11:00:00Z", 10000, 1, 1),
        ("2026-11-24T00:00:00Z", 100000, 1, 0)]
    assert all(set(u) == {"hour", "requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens",
                          "cost_micro", "estimated_cost_micro"} for u in by_hour)
    both = await repo.usage(group_by=["day", "hour", "model"], since=at("2026-11-23T10:00:00"),
                            until=at("2026-11-23T11:00:00"))
    assert both == [{"model": "echo", "day": "2026-11-23", "hour": "2026-11-23T10:00:00Z", "requests": 3,
                     "errors": 1, "prompt_tokens": 1110, "completion_tokens": 0, "total_tokens": 1110,
                     "cost_micro": 0, "estimated_cost_micro": 0}]


async def test_usage_top_groups_by_a_sum(engine: AsyncEngine) -> None:
    """``order`` ranks the groups by a sum, largest first, ties by requests then the usual order."""
    repo = RequestLogRepository(engine)
    t = at("2026-11-23T10:00:00")
    cheap_many = [row(f"c{i}", t + i, key=1, model="cheap", prompt=1, completion=1, cost=1) for i in range(5)]
    pricey = [row("p1", t, key=2, model="pricey", prompt=50, completion=50, cost=5_000),
              row("p2", t + 1, key=2, model="pricey", status=502)]
    wordy = [row("w1", t, key=3, model="wordy", prompt=900, completion=900),
             row("w2", t + 1, key=3, model="wordy", status=429), row("w3", t + 2, key=3, model="wordy", status=401)]
    estimated = row("e1", t, key=4, model="listed", prompt=1, completion=1)
    estimated.estimated_cost_micro = 77
    tie = [row("t1", t, key=5, model="tie-b"), row("t2", t, key=6, model="tie-a")]
    await repo.insert_many([*cheap_many, *pricey, *wordy, estimated, *tie])

    def names(items: list[dict[str, object]]) -> list[object]:
        return [u["model"] for u in items]

    assert names(await repo.usage(group_by=["model"], order="cost")) == [
        "pricey", "cheap", "listed", "wordy", "tie-a", "tie-b"]  # estimate breaks the zero-cost tie
    assert names(await repo.usage(group_by=["model"], order="cost", limit=2)) == ["pricey", "cheap"]
    assert names(await repo.usage(group_by=["model"], order="requests", limit=3)) == ["cheap", "wordy", "pricey"]
    assert names(await repo.usage(group_by=["model"], order="tokens", limit=2)) == ["wordy", "pricey"]
    assert names(await repo.usage(group_by=["model"], order="errors", limit=2)) == ["wordy", "pricey"]
    top_keys = await repo.usage(group_by=["key"], order="requests", limit=2)
    assert [(u["key_id"], u["requests"], u["errors"]) for u in top_keys] == [(1, 5, 0), (3, 3, 2)]
    # a filter applies before the ranking
    assert names(await repo.usage(group_by=["model"], order="cost", key_id=3)) == ["wordy"]
    # the order without a ranking is unchanged: by model name
    assert names(await repo.usage(group_by=["model"])) == ["cheap", "listed", "pricey", "tie-a", "tie-b", "wordy"]


async def test_list_filters_pages_newest_first(engine: AsyncEngine) -> None:
    repo = RequestLogRepository(engine)
    base = at("2026-11-23T10:00:00")
    statuses = [200, 200, 404, 502, 200, 429, 500, 200]
    await repo.insert_many([row(f"r{i}", base + i, key=1 + i % 2, status=s, model="echo" if i < 6 else "gpt")
                            for i, s in enumerate(statuses)])

    page, total = await repo.list(limit=3)
    assert total == 8 and [r.id for r in page] == ["r7", "r6", "r5"]
    page, total = await repo.list(limit=3, offset=6)
    assert total == 8 and [r.id for r in page] == ["r1", "r0"]

    assert {r.id for r in (await repo.list(status=200))[0]} == {"r0", "r1", "r4", "r7"}
    assert [r.id for r in (await repo.list(status="5xx"))[0]] == ["r6", "r3"]
    assert [r.id for r in (await repo.list(status="4xx"))[0]] == ["r5", "r2"]
    assert (await repo.list(status="3xx"))[1] == 0
    assert [r.id for r in (await repo.list(key_id=2, model="echo"))[0]] == ["r5", "r3", "r1"]
    assert [r.id for r in (await repo.list(since=base + 2, until=base + 4))[0]] == ["r3", "r2"]
    items, total = await repo.list(key_id=1, status="2xx", limit=1)
    assert total == 2 and [r.id for r in items] == ["r4"]

    with pytest.raises(ValueError, match="status"):
        await repo.list(status="4x")


async def test_estimated_costs_are_stored_and_summed_apart_from_charges(engine: AsyncEngine) -> None:
    """Issue 17.23: a model without an operator price logs cost 0 and an estimate at list price."""
    repo = RequestLogRepository(engine)
    t = at("2026-11-23T10:00:00")
    estimated = row("est", t, model="gpt-4o", prompt=1000, completion=100)
    estimated.estimated_cost_micro = 3_500
    await repo.insert_many([estimated, row("charged", t + 1, model="priced", cost=900),
                            row("unknown", t + 2, model="llama")])
    rows, _ = await repo.list()
    assert {r.id: (r.cost_micro, r.estimated_cost_micro) for r in rows} == {
        "est": (0, 3_500), "charged": (900, None), "unknown": (0, None)}
    by_model = {u["model"]: (u["cost_micro"], u["estimated_cost_micro"]) for u in await repo.usage(group_by=["model"])}
    assert by_model == {"gpt-4o": (0, 3_500), "priced": (900, 0), "llama": (0, 0)}
    (total,) = await repo.usage(group_by=())
    assert (total["cost_micro"], total["estimated_cost_micro"]) == (900, 3_500)
