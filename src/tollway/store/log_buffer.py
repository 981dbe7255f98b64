"""Rows written in batches, off the hot path: request-log rows and ledger rows.

``add`` appends to an in-memory list (no I/O); a background task inserts the list every
``interval`` seconds or as soon as ``batch`` rows wait. ``close`` flushes everything left,
so a graceful shutdown (SIGTERM) loses no row. When the database is unreachable the rows are
kept for the next attempt (past ``max_pending``, if there is one, the oldest are dropped and
counted: request logs may be, ledger rows never are); when it refuses a batch, the rows go in
one by one so a single bad row cannot block the rest.

Backpressure: past ``high_water`` pending rows (the writer falls behind: more requests a second
than the database takes rows under that load), ``room`` makes new requests wait (up to
``room_timeout`` each) until the writer is back under half of it. Without it a gateway under
sustained overload answered faster than it wrote, and its memory grew by the rows it owed until
``max_pending`` dropped them (issue 19: 90 -> 390 MB RSS in 60 s at 3,200 req/s with chat records
on). While the database is unreachable nothing waits: rows are kept, within ``max_pending``
(and ``max_bytes``), until an insert goes through again.

Rows of very different sizes (a chat record holds the request and answer it will extract) are
also counted in bytes when the writer is given ``weigh``: past ``max_bytes`` pending, new requests
wait as past ``high_water``, and rows kept for an unreachable database are dropped, oldest first,
beyond it. Counted in rows alone, 4,000 records of 300 KB agent prompts were 1.2 GB before
anything waited, and 50,000 kept through an outage 15 GB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
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


def _weightless(row: object) -> int:
    return 0


class WriteBehind(Generic[T]):
    """``close_attempts`` flushes, ``close_delay`` seconds apart, are tried on ``close`` while the
    database is unreachable (``None``: until one succeeds); rows still unwritten then are logged as
    lost. The request log gives up after three; the ledger should wait much longer."""

    def __init__(self, insert: Callable[[Sequence[T]], Awaitable[None]], *, name: str, interval: float = 0.5,
                 batch: int = 500, max_pending: int | None = 200_000, close_attempts: int | None = 3,
                 close_delay: float = 0.2, high_water: int | None = None,
                 weigh: Callable[[T], int] | None = None, max_bytes: int | None = None,
                 on_drop: Callable[[Sequence[T]], None] | None = None) -> None:
        self.insert = insert
        self.name = name
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self.close_attempts = close_attempts
        self.close_delay = close_delay
        self.dropped = 0
        # told of each flush (buffer name, seconds, failed): the metrics' hook
        self.on_flush: Callable[[str, float, bool], None] | None = None
        self._rows: list[T] = []
        self.weigh: Callable[[T], int] = weigh or _weightless
        self.max_bytes = max_bytes if weigh is not None else None
        self._bytes = 0  # what the pending rows weigh, with ``weigh``
        self.on_drop = on_drop  # told of rows given up (past a bound, or refused by the database)
        self._away = False  # the last insert found the database unreachable: nothing waits for it
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.high_water = high_water if high_water is not None else max(batch * 20, 2_000)
        self.room_timeout = 5.0
        self._room = asyncio.Event()  # set: under the high water mark (or the database is away)
        self._room.set()

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-writer")

    def add(self, row: T) -> None:
        self._rows.append(row)
        heavy = False
        if self.max_bytes is not None:
            self._bytes += self.weigh(row)
            heavy = self._bytes >= self.max_bytes // 8
        if len(self._rows) >= self.batch or heavy:
            self._wake.set()
            if (len(self._rows) >= self.high_water or self._over(1)) and self._task is not None \
                    and not self._away:
                self._room.clear()

    def _over(self, share: int) -> bool:
        """The pending rows weigh more than ``max_bytes // share``."""
        return self.max_bytes is not None and self._bytes > self.max_bytes // share

    def _weight(self, rows: Sequence[T]) -> int:
        return sum(map(self.weigh, rows)) if self.max_bytes is not None else 0

    @property
    def behind(self) -> bool:
        """More than ``high_water`` rows wait: new requests should wait in ``room``."""
        return not self._room.is_set()

    async def room(self) -> None:
        """Wait while the writer is behind by more than ``high_water`` rows (see the module doc)."""
        if self._room.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), self.room_timeout)

    @property
    def pending(self) -> int:
        return len(self._rows)

    @property
    def pending_bytes(self) -> int:
        """What the pending rows weigh (0 without ``weigh``)."""
        return self._bytes

    async def flush(self) -> None:
        """Insert every pending row. Raises the connection error when the database is unreachable;
        the rows not written are pending again, in their order, also when the flush is cancelled."""
        async with self._lock:
            while self._rows:
                rows = self._rows[: self.batch * 4]
                del self._rows[: len(rows)]
                self._bytes -= self._weight(rows)
                started = time.perf_counter()
                try:
                    await self.insert(rows)
                    self._away = False
                    if len(self._rows) <= self.high_water // 2 and not self._over(2):
                        self._room.set()
                    if self.on_flush is not None:
                        self.on_flush(self.name, time.perf_counter() - started, False)
                except Exception as exc:
                    if self.on_flush is not None:
                        self.on_flush(self.name, time.perf_counter() - started, True)
                    if _is_connection_error(exc):
                        self._keep(rows)
                        raise
                    self._away = False  # it answered: it refused a row
                    await self._insert_one_by_one(rows)
                except BaseException:  # cancelled mid-insert: the rows go back, ahead of newer ones
                    self._put_back(rows)
                    raise
            self._bytes = 0  # all written (and no rounding of ``weigh`` can accumulate)
            self._room.set()

    def _keep(self, rows: list[T]) -> None:
        """The database is unreachable: keep the rows for the next attempt, within bounds."""
        log.warning("%s insert failed (database unreachable); %d rows kept for retry", self.name, len(rows))
        self._away = True  # until an insert succeeds, nothing waits: max_pending and max_bytes bound what is kept
        self._room.set()
        self._put_back(rows)

    def _put_back(self, rows: list[T]) -> None:
        self._rows[:0] = rows
        self._bytes += self._weight(rows)
        overflow = len(self._rows) - self.max_pending if self.max_pending is not None else 0
        if overflow > 0:
            self._drop(overflow, f"more than {self.max_pending} pending")
        if self.max_bytes is not None and self._bytes > self.max_bytes:
            overflow, weight = 0, self._bytes
            while weight > self.max_bytes:
                weight -= self.weigh(self._rows[overflow])
                overflow += 1
            self._drop(overflow, f"more than {self.max_bytes} bytes pending")

    def _drop(self, count: int, why: str) -> None:
        """The ``count`` oldest rows go, counted and logged."""
        gone = self._rows[:count]
        self._bytes -= self._weight(gone)
        del self._rows[:count]
        self.dropped += count
        log.error("%s: %d oldest rows dropped (%s)", self.name, count, why)
        if self.on_drop is not None:
            self.on_drop(gone)

    async def _insert_one_by_one(self, rows: list[T]) -> None:
        """A batch the database refused (a bad row): insert row by row so one bad row cannot
        block every later batch; rows refused on their own are dropped and counted. On a
        connection error or a cancellation, the row at hand and every later one are kept."""
        for i, row in enumerate(rows):
            try:
                await self.insert([row])
            except Exception as exc:
                if _is_connection_error(exc):
                    self._keep(rows[i:])
                    raise
                self.dropped += 1
                log.error("%s row %s refused by the database: %s", self.name, getattr(row, "id", "?"),
                          type(exc).__name__)
                if self.on_drop is not None:
                    self.on_drop([row])
            except BaseException:
                self._put_back(rows[i:])
                raise

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return  # close flushes what is left
            try:
                await self.flush()
            except Exception:
                with contextlib.suppress(TimeoutError):  # wait before retrying, unless closing
                    await asyncio.wait_for(self._stop.wait(), self.interval)

    async def close(self) -> None:
        """Stop the writer (a flush in progress finishes first) and write what is left, trying
        ``close_attempts`` times; rows that could not be written are logged as lost (and stay pending)."""
        if self._task is not None:
            task, self._task = self._task, None
            self._room.set()
            self._stop.set()
            self._wake.set()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # close itself is cancelled
                # else the writer alone was cancelled: its rows are pending again, flushed below
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.flush()
                return
            except Exception as exc:
                if self.close_attempts is not None and attempt >= self.close_attempts:
                    log.error("%s: database unreachable at close after %d attempts (%s); %d rows lost",
                              self.name, attempt, type(exc).__name__, len(self._rows))
                    return
            await asyncio.sleep(self.close_delay)


class RequestLogBuffer(WriteBehind[RequestLog]):
    def __init__(self, repo: RequestLogRepository, *, interval: float = 0.5, batch: int = 500,
                 max_pending: int = 200_000) -> None:
        super().__init__(repo.insert_many, name="request log", interval=interval, batch=batch,
                         max_pending=max_pending)
        self.repo = repo
