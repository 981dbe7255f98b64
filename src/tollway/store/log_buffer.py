"""Rows written in batches, off the hot path: request-log rows and ledger rows.

``add`` appends to an in-memory list (no I/O); a background task inserts the list every
``interval`` seconds or as soon as ``batch`` rows wait. ``close`` flushes everything left,
so a graceful shutdown (SIGTERM) loses no row. When the database is unreachable the rows are
kept for the next attempt (past ``max_pending``, if there is one, the oldest are dropped and
counted: request logs may be, ledger rows never are); when it refuses a batch, the rows go in
one by one so a single bad row cannot block the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from tollway.core.request_log import RequestLog
from tollway.store.request_logs import RequestLogRepository

log = logging.getLogger("tollway.request_log")


def _is_connection_error(exc: Exception) -> bool:
    """Worth retrying later (the database is away), as opposed to a row it refuses."""
    return isinstance(exc, OSError | TimeoutError | DBAPIError) and (
        not isinstance(exc, DBAPIError) or exc.connection_invalidated or isinstance(exc, OperationalError))


T = TypeVar("T")


class WriteBehind(Generic[T]):
    def __init__(self, insert: Callable[[Sequence[T]], Awaitable[None]], *, name: str, interval: float = 0.5,
                 batch: int = 500, max_pending: int | None = 200_000) -> None:
        self.insert = insert
        self.name = name
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self.dropped = 0
        self._rows: list[T] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-writer")

    def add(self, row: T) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._rows)

    async def flush(self) -> None:
        async with self._lock:
            while self._rows:
                rows, self._rows = self._rows[: self.batch * 4], self._rows[self.batch * 4 :]
                try:
                    await self.insert(rows)
                except Exception as exc:
                    if _is_connection_error(exc):
                        self._keep(rows)
                        raise
                    await self._insert_one_by_one(rows)

    def _keep(self, rows: list[T]) -> None:
        """The database is unreachable: keep the rows for the next attempt, within bounds."""
        log.warning("%s insert failed (database unreachable); %d rows kept for retry", self.name, len(rows))
        self._rows[:0] = rows
        if self.max_pending is None:
            return
        overflow = len(self._rows) - self.max_pending
        if overflow > 0:
            del self._rows[:overflow]
            self.dropped += overflow

    async def _insert_one_by_one(self, rows: list[T]) -> None:
        """A batch the database refused (a bad row): insert row by row so one bad row cannot
        block every later batch; rows refused on their own are dropped and counted."""
        for row in rows:
            try:
                await self.insert([row])
            except Exception as exc:
                if _is_connection_error(exc):
                    self._keep([row])
                    raise
                self.dropped += 1
                log.error("%s row %s refused by the database: %s", self.name, getattr(row, "id", "?"),
                          type(exc).__name__)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _ in range(3):
            try:
                await self.flush()
                return
            except Exception:
                await asyncio.sleep(0.2)


class RequestLogBuffer(WriteBehind[RequestLog]):
    def __init__(self, repo: RequestLogRepository, *, interval: float = 0.5, batch: int = 500,
                 max_pending: int = 200_000) -> None:
        super().__init__(repo.insert_many, name="request log", interval=interval, batch=batch,
                         max_pending=max_pending)
        self.repo = repo
