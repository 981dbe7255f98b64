"""WriteBehind keeps every row it should: over slow, cancelled, unreachable and refusing databases."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from tollway.store.log_buffer import RequestLogBuffer, WriteBehind


class Refused(Exception):
    """The database refuses a row (not a connection error)."""


class FakeDb:
    """An in-memory ``insert``: can hang (``gate``), be unreachable (``down_calls``, ``down_from``)
    or refuse given rows."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.calls = 0
        self.refuse: set[int] = set()
        self.down_calls = 0  # the first n calls fail with a connection error
        self.down_from: int | None = None  # every call from the n-th on fails with one
        self.gate: asyncio.Event | None = None  # when set, an insert waits for it
        self.entered = asyncio.Event()

    async def insert(self, rows: Sequence[int]) -> None:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.calls <= self.down_calls or (self.down_from is not None and self.calls >= self.down_from):
            raise OSError("connection refused")
        if self.refuse.intersection(rows):
            raise Refused("duplicate key")
        self.rows.extend(rows)


def buffer(db: FakeDb, **kw: object) -> WriteBehind[int]:
    return WriteBehind(db.insert, name="test", **{"interval": 3600.0, "batch": 1000, **kw})  # type: ignore[arg-type]


async def test_close_during_a_slow_insert_stores_every_row() -> None:
    db = FakeDb()
    db.gate = asyncio.Event()
    buf = buffer(db, batch=5)
    buf.start()
    for i in range(10):
        buf.add(i)  # the fifth wakes the writer, which takes all ten and hangs in insert
    await asyncio.wait_for(db.entered.wait(), 1)
    for i in range(10, 15):
        buf.add(i)  # added while the insert is in flight
    closing = asyncio.create_task(buf.close())
    await asyncio.sleep(0.01)
    assert not closing.done()  # close waits for the flush in progress instead of cancelling it
    db.gate.set()
    await asyncio.wait_for(closing, 1)
    assert db.rows == list(range(15)) and buf.pending == 0 and buf.dropped == 0


async def test_a_cancelled_flush_puts_its_rows_back_in_order() -> None:
    db = FakeDb()
    db.gate = asyncio.Event()
    buf = buffer(db)
    for i in range(10):
        buf.add(i)
    flushing = asyncio.create_task(buf.flush())
    await asyncio.wait_for(db.entered.wait(), 1)
    assert buf.pending == 0  # the slice is out of the list, in flight
    buf.add(10)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert buf.pending == 11 and db.rows == []
    db.gate.set()
    await buf.flush()
    assert db.rows == list(range(11)) and buf.pending == 0 and buf.dropped == 0


async def test_a_cancelled_one_by_one_insert_puts_the_rest_back() -> None:
    db = FakeDb()
    db.refuse = {0}
    buf = buffer(db)
    for i in range(4):
        buf.add(i)
    first = True

    async def insert(rows: Sequence[int]) -> None:
        nonlocal first
        if rows == [2] and first:  # hangs on the third single row, then gets cancelled
            first = False
            await asyncio.Event().wait()
        await db.insert(rows)

    buf.insert = insert
    flushing = asyncio.create_task(buf.flush())
    for _ in range(20):
        await asyncio.sleep(0)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert db.rows == [1] and buf.dropped == 1 and buf.pending == 2
    await buf.flush()
    assert db.rows == [1, 2, 3] and buf.pending == 0


async def test_one_by_one_keeps_the_tail_when_the_connection_is_lost() -> None:
    db = FakeDb()
    db.refuse = {1}
    db.down_from = 4  # call 1: the batch (refused), 2: row 0, 3: row 1 (refused), 4: row 2 -> unreachable
    buf = buffer(db)
    for i in range(6):
        buf.add(i)
    with pytest.raises(OSError):
        await buf.flush()
    assert db.rows == [0] and buf.dropped == 1 and buf.pending == 4
    db.down_from = None
    db.refuse = set()
    await buf.flush()
    assert db.rows == [0, 2, 3, 4, 5] and buf.pending == 0 and buf.dropped == 1


async def test_a_refused_row_is_dropped_alone_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    db = FakeDb()
    db.refuse = {2}
    buf = buffer(db)
    for i in range(5):
        buf.add(i)
    with caplog.at_level(logging.ERROR, logger="tollway.request_log"):
        await buf.flush()
    assert db.rows == [0, 1, 3, 4] and buf.dropped == 1 and buf.pending == 0
    assert any("refused by the database" in r.getMessage() for r in caplog.records)


async def test_close_retries_the_configured_times_then_logs_the_loss(caplog: pytest.LogCaptureFixture) -> None:
    db = FakeDb()
    db.down_from = 1
    buf = buffer(db, close_attempts=4, close_delay=0.0, max_pending=None)
    for i in range(3):
        buf.add(i)
    with caplog.at_level(logging.ERROR, logger="tollway.request_log"):
        await buf.close()
    assert db.calls == 4 and db.rows == [] and buf.pending == 3
    lost = [r for r in caplog.records if r.levelno == logging.ERROR and "rows lost" in r.getMessage()]
    assert len(lost) == 1 and "3 rows lost" in lost[0].getMessage() and "after 4 attempts" in lost[0].getMessage()


async def test_close_without_a_limit_waits_for_the_database() -> None:
    db = FakeDb()
    db.down_calls = 25
    buf = buffer(db, close_attempts=None, close_delay=0.0, max_pending=None)
    buf.start()
    for i in range(3):
        buf.add(i)
    await asyncio.wait_for(buf.close(), 2)
    assert db.rows == [0, 1, 2] and buf.pending == 0 and buf.dropped == 0


async def test_close_stops_a_writer_waiting_to_retry_at_once() -> None:
    db = FakeDb()
    db.down_calls = 1
    buf = buffer(db, batch=2, close_delay=0.0)
    buf.start()
    buf.add(0)
    buf.add(1)  # wakes the writer: its flush fails, it waits an hour before retrying
    await asyncio.wait_for(db.entered.wait(), 1)
    await asyncio.sleep(0)
    await asyncio.wait_for(buf.close(), 1)
    assert db.rows == [0, 1] and buf.pending == 0


async def test_put_back_rows_still_respect_max_pending() -> None:
    db = FakeDb()
    db.down_from = 1
    buf = buffer(db, max_pending=3)
    for i in range(5):
        buf.add(i)
    with pytest.raises(OSError):
        await buf.flush()
    assert buf.pending == 3 and buf.dropped == 2  # the oldest go first
    db.down_from = None
    await buf.flush()
    assert db.rows == [2, 3, 4]


def test_request_log_keeps_its_close_defaults() -> None:
    async def insert_many(rows: Sequence[object]) -> None:
        return None

    class Repo:
        pass

    repo = Repo()
    repo.insert_many = insert_many  # type: ignore[attr-defined]
    buf = RequestLogBuffer(repo)  # type: ignore[arg-type]
    assert (buf.close_attempts, buf.close_delay, buf.max_pending) == (3, 0.2, 200_000) and buf.repo is repo


async def test_a_writer_far_behind_makes_new_requests_wait_until_it_is_under_half() -> None:
    """Backpressure: past ``high_water`` pending rows ``room`` waits; it returns once a flush has
    brought the writer under half of it, and every row is written."""
    db = FakeDb()
    db.gate = asyncio.Event()
    buf = buffer(db, batch=10, high_water=40)
    buf.start()
    for i in range(30):
        buf.add(i)
    assert not buf.behind
    await buf.room()  # under the mark: returns at once
    await asyncio.wait_for(db.entered.wait(), 1)  # the writer took a batch and hangs in insert
    for i in range(30, 80):
        buf.add(i)
    assert buf.behind
    waiting = asyncio.create_task(buf.room())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # a new request waits for the writer
    db.gate.set()
    await asyncio.wait_for(waiting, 2)
    assert not buf.behind
    await buf.close()
    assert db.rows == list(range(80))


async def test_nothing_waits_while_the_database_is_unreachable_however_many_rows_arrive() -> None:
    """The failed flush lifts the wait; rows added past the high water mark while the database is
    away keep nothing waiting; once an insert goes through again, the mark holds again."""
    db = FakeDb()
    db.down_from = 1
    buf = buffer(db, batch=10, high_water=20, interval=0.01)
    buf.start()
    for i in range(25):
        buf.add(i)
    assert buf.behind
    await asyncio.wait_for(buf.room(), 1)  # the failed flush lifts the wait: rows are kept instead
    assert buf.pending == 25 and not buf.behind
    for i in range(25, 60):  # far past the mark while the database is away
        buf.add(i)
    assert not buf.behind
    await asyncio.wait_for(buf.room(), 0.5)
    db.down_from = None
    await buf.flush()
    db.gate = asyncio.Event()
    for i in range(60, 100):  # the database is back: past the mark, new requests wait again
        buf.add(i)
    assert buf.behind
    db.gate.set()
    await buf.close()
    assert db.rows == list(range(100))


async def test_room_waits_at_most_room_timeout() -> None:
    db = FakeDb()
    db.gate = asyncio.Event()
    buf = buffer(db, batch=5, high_water=10)
    buf.room_timeout = 0.05
    buf.start()
    for i in range(20):
        buf.add(i)
    await asyncio.wait_for(db.entered.wait(), 1)
    buf.add(20)
    assert buf.behind
    await asyncio.wait_for(buf.room(), 1)  # gives up after room_timeout: a stuck writer never hangs requests
    db.gate.set()
    await buf.close()
    assert len(db.rows) == 21


async def test_heavy_rows_make_new_requests_wait_before_the_row_count_does() -> None:
    """Counted in bytes (``weigh``): ten rows of 100 past ``max_bytes=500`` hold new requests
    though the row count is far under ``high_water``; a heavy row wakes the writer early."""
    db = FakeDb()
    db.gate = asyncio.Event()
    buf = buffer(db, batch=1000, high_water=10_000, weigh=lambda row: 100, max_bytes=500, interval=3600.0)
    buf.start()
    buf.add(0)  # 100 >= 500 // 8: the writer wakes though 1 row is far under batch
    await asyncio.wait_for(db.entered.wait(), 1)
    for i in range(1, 11):
        buf.add(i)
    assert buf.behind and buf.pending == 10
    waiting = asyncio.create_task(buf.room())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    db.gate.set()
    await asyncio.wait_for(waiting, 2)
    await buf.close()
    assert db.rows == list(range(11)) and buf.dropped == 0


async def test_rows_kept_through_an_outage_stay_within_max_bytes() -> None:
    db = FakeDb()
    db.down_from = 1
    sizes = {i: 100 * (i + 1) for i in range(6)}  # 100, 200, ... 600: 2,100 in all
    buf = buffer(db, weigh=sizes.__getitem__, max_bytes=1_200)
    for i in range(6):
        buf.add(i)
    with pytest.raises(OSError):
        await buf.flush()
    # the oldest go until the rest weigh at most 1,200: 0, 1, 2 (600) go; 3, 4, 5 (1,500) is
    # still over, so 3 goes too: 4 and 5 (1,100) stay
    assert buf.pending == 2 and buf.dropped == 4 and buf.pending_bytes == 1_100
    db.down_from = None
    buf.add(0)  # a light row after the outage: the weight kept is counted on from there
    assert buf.pending_bytes == 1_200
    await buf.flush()
    assert db.rows == [4, 5, 0] and buf.pending_bytes == 0


async def test_chat_recorder_counts_its_records_in_bytes() -> None:
    from tollway.core.request_log import RequestLog
    from tollway.records.recorder import ChatRecorder, Recording

    async def write(rows: Sequence[object]) -> None:
        return None

    recorder = ChatRecorder(None, max_pending_bytes=10_000)  # type: ignore[arg-type]
    recorder.writer.insert = write  # type: ignore[assignment]
    recording = Recording("openai", b"x" * 3_000)
    recording.body = b"y" * 2_000
    row = RequestLog(id="req_1", created_at=1.0, path="/v1/chat/completions", dialect="openai", status=200)
    recorder.add(None, row, recording)
    recorder.add(None, row, recording)  # 2 x (3,000 + 2,000 + its row): over 10,000
    assert recorder.writer.pending == 2 and recorder.writer.pending_bytes == 2 * (512 + 3_000 + 2_000) > 10_000


async def test_rows_given_up_are_handed_to_on_drop() -> None:
    db = FakeDb()
    gone: list[int] = []
    db.down_from = 1
    buf = buffer(db, max_pending=3, on_drop=gone.extend)
    for i in range(5):
        buf.add(i)
    with pytest.raises(OSError):
        await buf.flush()
    assert gone == [0, 1]  # over max_pending, the oldest
    db.down_from = None
    db.refuse = {3}
    await buf.flush()  # the batch is refused, then row by row: 3 alone is given up
    assert gone == [0, 1, 3] and db.rows == [2, 4]
