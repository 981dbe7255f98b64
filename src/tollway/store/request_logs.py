"""The request-log repository: batched inserts and filtered reads."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy import BigInteger, ColumnElement, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.core.request_log import RequestLog
from tollway.store.tables import request_logs

_FIELDS = tuple(f for f in RequestLog.__struct_fields__)
_INT_MAX = {Integer: 2**31 - 1, BigInteger: 2**63 - 1}


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

    async def list(self, *, key_id: int | None = None, model: str | None = None, status: int | None = None,
                   since: float | None = None, until: float | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[RequestLog], int]:
        cond: list[ColumnElement[bool]] = []
        if key_id is not None:
            cond.append(request_logs.c.key_id == key_id)
        if model:
            cond.append(request_logs.c.model == model)
        if status is not None:
            cond.append(request_logs.c.status == status)
        if since is not None:
            cond.append(request_logs.c.created_at >= since)
        if until is not None:
            cond.append(request_logs.c.created_at < until)
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(request_logs).where(*cond))).scalar()
            rows = await conn.execute(select(request_logs).where(*cond)
                                      .order_by(request_logs.c.created_at.desc()).limit(limit).offset(offset))
            return [RequestLog(**{f: getattr(r, f) for f in _FIELDS}) for r in rows], int(total or 0)

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(request_logs))).scalar() or 0)
