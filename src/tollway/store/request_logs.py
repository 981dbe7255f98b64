"""The request-log repository: batched inserts and filtered reads."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.core.request_log import RequestLog
from tollway.store.tables import request_logs

_FIELDS = tuple(f for f in RequestLog.__struct_fields__)


class RequestLogRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert_many(self, rows: Sequence[RequestLog]) -> None:
        if not rows:
            return
        async with self.engine.begin() as conn:
            await conn.execute(request_logs.insert(), [msgspec.structs.asdict(r) for r in rows])

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
