"""Durable tasks: the rows of the ``tasks`` table, and how processes share them.

A task is owned by the caller that made it (``owner``: ``key:<id>`` or ``admin``): another
owner's id is not found. A process runs a task while it holds its **lease** (``lease_owner``
until ``lease_until``), which it renews while it works (``renew``). The process that accepts a
task creates it already leased to itself; a lease that runs out (its process died) lets any
process take the task over (``claim``): a compare-and-set on the lease, so two processes never
both hold one task; on PostgreSQL the candidates are picked ``FOR UPDATE SKIP LOCKED`` so
replicas do not contend for the same rows. Every write a runner makes after that is conditional
on still holding the lease (``update`` with ``lease_owner``), so a process that lost its lease
(a long pause) cannot overwrite the process that took the task over.

Statuses: pending (accepted, not started), running, succeeded, failed, cancelled. The last three
are final; a final task is never changed again except by deletion (``purge`` after
``expires_at``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.tables import tasks as t

PENDING: Final = "pending"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
LIVE: Final = (PENDING, RUNNING)
FINAL: Final = frozenset({SUCCEEDED, FAILED, CANCELLED})
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class Task(msgspec.Struct, kw_only=True):
    id: str
    kind: str  # image | video
    shape: str  # platform | openai | city
    owner: str
    model: str
    status: str
    request: dict[str, Any]
    key_id: int | None = None
    studio_id: str | None = None
    progress: int | None = None
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error: str | None = None
    provider: str | None = None
    credential: str | None = None
    provider_task_id: str | None = None
    hold: int = 0
    cost_micro: int = 0
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    expires_at: float | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL


def _task(row: Any) -> Task:
    data = {str(k): v for k, v in row._mapping.items()}
    data["request"] = _decoder.decode(data["request"])
    data["result"] = _decoder.decode(data["result"]) if data["result"] is not None else None
    return msgspec.convert(data, Task)


def _row(task: Task) -> dict[str, Any]:
    data = msgspec.structs.asdict(task)
    data["request"] = _encoder.encode(task.request).decode()
    data["result"] = _encoder.encode(task.result).decode() if task.result is not None else None
    return data


class TaskRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._skip_locked = engine.dialect.name == "postgresql"

    async def create(self, task: Task) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(t.insert().values(**_row(task)))

    async def get(self, task_id: str, owner: str | None = None) -> Task | None:
        """The task, if ``owner`` (None: anyone, the admin's view) owns it."""
        query = select(t).where(t.c.id == task_id)
        if owner is not None:
            query = query.where(t.c.owner == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _task(row) if row is not None else None

    async def page(self, *, owner: str | None = None, kind: str | None = None, status: str | None = None,
                   limit: int = 20, after: str | None = None, newest_first: bool = True) -> list[Task]:
        """Tasks by creation time, paged after the task ``after`` (its id)."""
        query = select(t)
        if owner is not None:
            query = query.where(t.c.owner == owner)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        if status is not None:
            query = query.where(t.c.status == status)
        order = (t.c.created_at.desc(), t.c.id.desc()) if newest_first else (t.c.created_at, t.c.id)
        async with self.engine.connect() as conn:
            if after is not None:
                mark = (await conn.execute(select(t.c.created_at, t.c.id).where(t.c.id == after))).first()
                if mark is not None:
                    at, mid = mark
                    if newest_first:
                        query = query.where(or_(t.c.created_at < at, and_(t.c.created_at == at, t.c.id < mid)))
                    else:
                        query = query.where(or_(t.c.created_at > at, and_(t.c.created_at == at, t.c.id > mid)))
            rows = (await conn.execute(query.order_by(*order).limit(limit))).all()
        return [_task(r) for r in rows]

    async def update(self, task_id: str, lease_owner: str, **values: Any) -> bool:
        """Change a live task this process still holds; False when it no longer does (taken over,
        cancelled, or finished)."""
        if "result" in values and values["result"] is not None:
            values["result"] = _encoder.encode(values["result"]).decode()
        values["updated_at"] = time.time()
        async with self.engine.begin() as conn:
            done = await conn.execute(update(t).where(t.c.id == task_id, t.c.lease_owner == lease_owner,
                                                      t.c.status.in_(LIVE)).values(**values))
        return done.rowcount == 1

    async def set_cost(self, task_id: str, cost: int) -> None:
        """What a finished task was charged (its row is final: written whoever holds it)."""
        async with self.engine.begin() as conn:
            await conn.execute(update(t).where(t.c.id == task_id).values(cost_micro=cost))

    async def renew(self, lease_owner: str, until: float) -> int:
        """Push back the lease of every live task this process holds."""
        async with self.engine.begin() as conn:
            done = await conn.execute(update(t).where(t.c.lease_owner == lease_owner, t.c.status.in_(LIVE))
                                      .values(lease_until=until))
        return done.rowcount

    async def statuses(self, ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """Each task's status and lease owner (a task missing is absent)."""
        if not ids:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.c.id, t.c.status, t.c.lease_owner).where(t.c.id.in_(list(ids))))).all()
        return {r.id: (r.status, r.lease_owner) for r in rows}

    async def claim(self, lease_owner: str, now: float, until: float, limit: int) -> list[Task]:
        """Live tasks whose lease ran out, taken over by ``lease_owner`` (at most ``limit``)."""
        if limit <= 0:
            return []
        stale = and_(t.c.status.in_(LIVE), or_(t.c.lease_until.is_(None), t.c.lease_until < now))
        query = select(t.c.id).where(stale).order_by(t.c.created_at).limit(limit)
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        claimed = []
        async with self.engine.begin() as conn:
            ids = [r.id for r in (await conn.execute(query)).all()]
            for task_id in ids:
                done = await conn.execute(update(t).where(t.c.id == task_id, stale).values(
                    lease_owner=lease_owner, lease_until=until, attempts=t.c.attempts + 1, updated_at=now))
                if done.rowcount == 1:
                    claimed.append(task_id)
        if not claimed:
            return []
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).where(t.c.id.in_(claimed)))).all()
        return [_task(r) for r in rows]

    async def cancel(self, task_id: str, owner: str | None) -> Task | None:
        """Cancel a live task of ``owner`` (None: any); the task as it is after (None: not found).
        Its holder sees the status and stops; its hold is released there."""
        where = [t.c.id == task_id, t.c.status.in_(LIVE)]
        if owner is not None:
            where.append(t.c.owner == owner)
        now = time.time()
        async with self.engine.begin() as conn:
            await conn.execute(update(t).where(*where).values(status=CANCELLED, updated_at=now, finished_at=now,
                                                             error_code="cancelled",
                                                             error="The task was cancelled."))
        return await self.get(task_id, owner)

    async def delete(self, task_id: str, owner: str | None) -> Task | None:
        task = await self.get(task_id, owner)
        if task is None:
            return None
        async with self.engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.id == task_id))
        return task

    async def expired(self, now: float, limit: int = 500) -> list[Task]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).where(t.c.expires_at.is_not(None), t.c.expires_at < now,
                                                       t.c.status.in_(tuple(FINAL))).limit(limit))).all()
        return [_task(r) for r in rows]

    async def remove(self, ids: Sequence[str]) -> None:
        if ids:
            async with self.engine.begin() as conn:
                await conn.execute(delete(t).where(t.c.id.in_(list(ids))))

    async def oldest_pending(self) -> float | None:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(func.min(t.c.created_at)).where(t.c.status == PENDING))).scalar()
        return float(value) if value is not None else None

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.c.status, func.count()).group_by(t.c.status))).all()
        return {r[0]: int(r[1]) for r in rows}
