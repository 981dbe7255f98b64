"""The request-log repository: batched inserts and filtered reads."""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import msgspec
from sqlalchemy import BigInteger, ColumnElement, Float, Integer, String, and_, case, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.core.request_log import RequestLog
from tollway.store.tables import request_logs

_FIELDS = tuple(f for f in RequestLog.__struct_fields__)
_INT_MAX = {Integer: 2**31 - 1, BigInteger: 2**63 - 1}
GROUPS = ("key", "model", "day")  # what ``usage`` can group by


def _limits() -> dict[str, tuple[str, int]]:
    """Per column: ("str", max length) or ("int", max value), from the table definition."""
    out: dict[str, tuple[str, int]] = {}
    for col in request_logs.columns:
        kind = type(col.type)
        if isinstance(col.type, String):
            out[col.name] = ("str", col.type.length or 1_000_000)
        elif kind in _INT_MAX:
            out[col.name] = ("int", _INT_MAX[kind])
    return out


_LIMITS = _limits()


def _clean(row: RequestLog) -> dict[str, object]:
    """A row any database accepts: text without NUL and within its column's width, integers
    within their column's range. Values come partly from callers and upstreams."""
    data = msgspec.structs.asdict(row)
    for name, (kind, limit) in _LIMITS.items():
        value = data.get(name)
        if value is None:
            continue
        if kind == "str" and isinstance(value, str):
            if "\x00" in value:
                value = value.replace("\x00", "")
            data[name] = value[:limit]
        elif kind == "int" and isinstance(value, int):
            data[name] = max(-limit, min(value, limit))
    return data


class RequestLogRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert_many(self, rows: Sequence[RequestLog]) -> None:
        if not rows:
            return
        async with self.engine.begin() as conn:
            await conn.execute(request_logs.insert(), [_clean(r) for r in rows])

    async def list(self, *, key_id: int | None = None, model: str | None = None,
                   status: int | str | None = None, since: float | None = None, until: float | None = None,
                   limit: int = 50, offset: int = 0) -> tuple[list[RequestLog], int]:
        """Rows newest first, and how many match. ``status`` is an exact code (``404``) or a class
        (``"4xx"``: 400 to 499); ``since`` is inclusive, ``until`` exclusive (epoch seconds)."""
        cond = _filters(key_id=key_id, model=model, since=since, until=until)
        if status is not None:
            cond.append(_status(status))
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(request_logs).where(*cond))).scalar()
            rows = await conn.execute(select(request_logs).where(*cond)
                                      .order_by(request_logs.c.created_at.desc(), request_logs.c.id.desc())
                                      .limit(limit).offset(offset))
            return [RequestLog(**{f: getattr(r, f) for f in _FIELDS}) for r in rows], int(total or 0)

    async def usage(self, *, key_id: int | None = None, model: str | None = None, since: float | None = None,
                    until: float | None = None, group_by: Sequence[str] = GROUPS,
                    limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """Requests, tokens and cost summed per group, in SQL. ``group_by`` names some of ``key``,
        ``model`` and ``day`` (the UTC calendar day, ``YYYY-MM-DD``); without any, one row sums
        everything. Each row holds the grouped fields (``key_id``, ``model``, ``day``) and
        ``requests``, ``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``cost_micro`` and
        ``estimated_cost_micro`` (list-price estimates of unpriced calls, never charged).
        Ordered by day, key and model (a missing key or model last); at most ``limit`` rows."""
        unknown = set(group_by) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown group_by: {sorted(unknown)}")
        c = request_logs.c
        columns: dict[str, tuple[str, ColumnElement[Any]]] = {
            "day": ("day", _day_index(c.created_at)), "key": ("key_id", c.key_id), "model": ("model", c.model)}
        keys = [columns[name] for name in ("day", "key", "model") if name in group_by]
        stmt = (select(*[expr.label(name) for name, expr in keys], func.count().label("requests"),
                       func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
                       func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
                       func.coalesce(func.sum(c.cost_micro), 0).label("cost_micro"),
                       func.coalesce(func.sum(c.estimated_cost_micro), 0).label("estimated_cost_micro"))
                .where(*_filters(key_id=key_id, model=model, since=since, until=until)))
        if keys:
            stmt = stmt.group_by(*[expr for _, expr in keys])
            stmt = stmt.order_by(*[part for _, expr in keys for part in (expr.is_(None), expr)])
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
            prompt, completion = int(r["prompt_tokens"]), int(r["completion_tokens"])
            item.update(requests=int(r["requests"]), prompt_tokens=prompt, completion_tokens=completion,
                        total_tokens=prompt + completion, cost_micro=int(r["cost_micro"]),
                        estimated_cost_micro=int(r["estimated_cost_micro"]))
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


def _day_index(t: ColumnElement[float]) -> ColumnElement[int]:
    """floor(t / 86400): the UTC day number of an epoch time, the same on SQLite and PostgreSQL.

    CAST(x AS BIGINT) truncates on SQLite but rounds to nearest on PostgreSQL, and SQLite may be
    built without floor(). Either way the cast gives floor(x) or ceil(x), so subtracting 1 when it
    came out above x is floor(x) on both. Constants are literal SQL, not bound parameters, so the
    GROUP BY expression is textually the SELECT's (PostgreSQL demands that)."""
    x = t / literal_column("86400.0", Float)
    n = cast(x, BigInteger)
    return n - case((n > x, literal_column("1", BigInteger)), else_=literal_column("0", BigInteger))


def _day_name(index: int) -> str:
    return (_EPOCH + timedelta(days=index)).isoformat()


_EPOCH = date(1970, 1, 1)
