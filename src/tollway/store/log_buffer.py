"""Request-log rows written in batches, off the hot path.

``add`` appends to an in-memory list (no I/O); a background task inserts the list every
``interval`` seconds or as soon as ``batch`` rows wait. ``close`` flushes everything left,
so a graceful shutdown (SIGTERM) loses no row. A failed insert keeps its rows for the next
attempt; past ``max_pending`` rows the oldest are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tollway.core.request_log import RequestLog
from tollway.store.request_logs import RequestLogRepository

log = logging.getLogger("tollway.request_log")


class RequestLogBuffer:
    def __init__(self, repo: RequestLogRepository, *, interval: float = 0.5, batch: int = 500,
                 max_pending: int = 200_000) -> None:
        self.repo = repo
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self.dropped = 0
        self._rows: list[RequestLog] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-log-writer")

    def add(self, row: RequestLog) -> None:
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
                    await self.repo.insert_many(rows)
                except Exception:
                    log.exception("request log insert failed; %d rows kept for retry", len(rows))
                    self._rows[:0] = rows
                    overflow = len(self._rows) - self.max_pending
                    if overflow > 0:
                        del self._rows[:overflow]
                        self.dropped += overflow
                    raise

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
