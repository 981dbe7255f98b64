"""The request-log repository: batched inserts and filtered reads."""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import BigInteger, ColumnElement, Float, Integer, String, and_, case, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.core.request_log import RequestLog
from tollway.store.db import insert_rows, writing
from tollway.store.tables import request_logs

_FIELDS = tuple(f for f in RequestLog.__struct_fields__)
_INT_MAX: dict[type, int] = {Integer: 2**31 - 1, BigInteger: 2**63 - 1}
GROUPS = ("key", "model", "day", "hour")  # what ``usage`` can group by
ORDERS = ("cost", "requests", "tokens", "errors")  # what ``usage`` can order its groups by, largest first


# from the table definition: (column, max length) of each text column, (column, max value) of each integer one
_TEXTS = tuple((c.name, c.type.length or 1_000_000) for c in request_logs.columns if isinstance(c.type, String))
_INTS = tuple((c.name, _INT_MAX[type(c.type)]) for c in request_logs.columns if type(c.type) in _INT_MAX)


def _clean(row: RequestLog) -> dict[str, object]:
    """A row any database accepts: text without NUL and within its column's width, integers
    within their column's range. Values come partly from callers and upstreams."""
    data = msgspec.structs.asdict(row)
    for name, limit in _TEXTS:
        value = data.get(name)
        if isinstance(value, str) and (len(value) > limit or "\x00" in value):
            data[name] = value.replace("\x00", "")[:limit]
    for name, limit in _INTS:
        value = data.get(name)
        if isinstance(value, int) and not -limit <= value <= limit:
            data[name] = max(-limit, min(value, limit))
    return data


class RequestLogRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert_many(self, rows: Sequence[RequestLog]) -> None:
        if not rows:
            return
        async with writing(self.engine) as conn:
            await insert_rows(conn, request_logs, _FIELDS, [_clean(r) for r in rows])

    async def list(self, *, key_id: int | None = None, model: str | None = None,
                   status: int | str | None = None, since: float | None = None, until: float | None = None,
                   request_id: str | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[RequestLog], int]:
        """Rows newest first, and how many match. ``status`` is an exact code (``404``) or a class
        (``"4xx"``: 400 to 499); ``since`` is inclusive, ``until`` exclusive (epoch seconds);
        ``request_id`` one request's row."""
        cond = _filters(key_id=key_id, model=model, since=since, until=until)
        if status is not None:
            cond.append(_status(status))
        if request_id is not None:
            cond.append(request_logs.c.id == request_id)
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(request_logs).where(*cond))).scalar()
            rows = await conn.execute(select(request_logs).where(*cond)
                                      .order_by(request_logs.c.created_at.desc(), request_logs.c.id.desc())
                                      .limit(limit).offset(offset))
            return [RequestLog(**{f: getattr(r, f) for f in _FIELDS}) for r in rows], int(total or 0)

    async def usage(self, *, key_id: int | None = None, model: str | None = None, since: float | None = None,
                    until: float | None = None, group_by: Sequence[str] = ("key", "model", "day"),
                    order: str | None = None, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """Requests, errors, tokens and cost summed per group, in SQL. ``group_by`` names some of
        ``key``, ``model``, ``day`` (the UTC calendar day, ``YYYY-MM-DD``) and ``hour`` (the UTC
        hour, ``YYYY-MM-DDTHH:00:00Z``); without any, one row sums everything. Each row holds the
        grouped fields (``key_id``, ``model``, ``day``, ``hour``) and ``requests``, ``errors``
        (status 400 and above), ``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
        ``cost_micro`` and ``estimated_cost_micro`` (list-price estimates of unpriced calls, never
        charged). Ordered by day, hour, key and model (a missing key or model last), or with
        ``order`` (one of ``ORDERS``) by that sum, largest first, ties in that same order: the top
        groups. At most ``limit`` rows."""
        unknown = set(group_by) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown group_by: {sorted(unknown)}")
        if order is not None and order not in ORDERS:
            raise ValueError(f"unknown order: {order!r}")
        c = request_logs.c
        columns: dict[str, tuple[str, ColumnElement[Any]]] = {
            "day": ("day", _bucket_index(c.created_at, 86400)), "hour": ("hour", _bucket_index(c.created_at, 3600)),
            "key": ("key_id", c.key_id), "model": ("model", c.model)}
        keys = [columns[name] for name in ("day", "hour", "key", "model") if name in group_by]
        zero = literal_column("0", BigInteger)
        sums: dict[str, ColumnElement[Any]] = {
            "requests": func.count(),
            "errors": func.coalesce(func.sum(case((c.status >= literal_column("400", Integer),
                                                   literal_column("1", BigInteger)), else_=zero)), zero),
            "prompt_tokens": func.coalesce(func.sum(c.prompt_tokens), zero),
            "completion_tokens": func.coalesce(func.sum(c.completion_tokens), zero),
            "cost_micro": func.coalesce(func.sum(c.cost_micro), zero),
            "estimated_cost_micro": func.coalesce(func.sum(c.estimated_cost_micro), zero),
        }
        stmt = (select(*[expr.label(name) for name, expr in keys], *[expr.label(name) for name, expr in sums.items()])
                .where(*_filters(key_id=key_id, model=model, since=since, until=until)))
        if keys:
            stmt = stmt.group_by(*[expr for _, expr in keys])
            ranking: builtins.list[ColumnElement[Any]] = []
            if order is not None:
                first = {"cost": [sums["cost_micro"], sums["estimated_cost_micro"]],
                         "requests": [sums["requests"]], "errors": [sums["errors"]],
                         "tokens": [sums["prompt_tokens"] + sums["completion_tokens"]]}[order]
                ranking = [e.desc() for e in (*first, sums["requests"])]
            stmt = stmt.order_by(*ranking, *[part for _, expr in keys for part in (expr.is_(None), expr)])
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        out: builtins.list[dict[str, Any]] = []
        for r in rows:
            item: dict[str, Any] = {}
            if "key_id" in r:
                item["key_id"] = r["key_id"]
            if "model" in r:
                item["model"] = r["model"]
            if "day" in r:
                item["day"] = _day_name(int(r["day"]))
            if "hour" in r:
                item["hour"] = _hour_name(int(r["hour"]))
            prompt, completion = int(r["prompt_tokens"]), int(r["completion_tokens"])
            item.update(requests=int(r["requests"]), errors=int(r["errors"]), prompt_tokens=prompt,
                        completion_tokens=completion, total_tokens=prompt + completion,
                        cost_micro=int(r["cost_micro"]), estimated_cost_micro=int(r["estimated_cost_micro"]))
            out.append(item)
        return out

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(request_logs))).scalar() or 0)


def _filters(*, key_id: int | None, model: str | None, since: float | None,
             until: float | None) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if key_id is not None:
        cond.append(request_logs.c.key_id == key_id)
    if model:
        cond.append(request_logs.c.model == model)
    if since is not None:
        cond.append(request_logs.c.created_at >= since)
    if until is not None:
        cond.append(request_logs.c.created_at < until)
    return cond


_STATUS_CLASS = re.compile(r"[1-5]xx")


def _status(status: int | str) -> ColumnElement[bool]:
    """An exact code, or a class such as ``"5xx"`` (500 to 599)."""
    if isinstance(status, int):
        return request_logs.c.status == status
    if not _STATUS_CLASS.fullmatch(status):
        raise ValueError(f"status must be a code or a class like 4xx, not {status!r}")
    low = int(status[0]) * 100
    return and_(request_logs.c.status >= low, request_logs.c.status < low + 100)


def _bucket_index(t: ColumnElement[float], seconds: int) -> ColumnElement[int]:
    """floor(t / seconds): the UTC day (86400) or hour (3600) number of an epoch time, the same on
    SQLite and PostgreSQL.

    CAST(x AS BIGINT) truncates on SQLite but rounds to nearest on PostgreSQL, and SQLite may be
    built without floor(). Either way the cast gives floor(x) or ceil(x), so subtracting 1 when it
    came out above x is floor(x) on both. Constants are literal SQL, not bound parameters, so the
    GROUP BY expression is textually the SELECT's (PostgreSQL demands that)."""
    x = t / literal_column(f"{seconds}.0", Float)
    n = cast(x, BigInteger)
    return n - case((n > x, literal_column("1", BigInteger)), else_=literal_column("0", BigInteger))


def _day_name(index: int) -> str:
    return (_EPOCH + timedelta(days=index)).isoformat()


def _hour_name(index: int) -> str:
    return (_EPOCH_TIME + timedelta(hours=index)).strftime("%Y-%m-%dT%H:00:00Z")


_EPOCH = date(1970, 1, 1)
_EPOCH_TIME = datetime(1970, 1, 1, tzinfo=UTC)
