"""ScriptBatch: the Lua calls of one event-loop turn go out in one write on a dedicated connection,
each gets its own answer, and a lost or silent connection fails its calls and is replaced."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hiredis
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tollway.store.redis import ScriptBatch, connect

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAIL = "return redis.error_reply('nope ' .. ARGV[1])"
# busy for ARGV[1] ms on the server's clock: a Redis that does not answer in time
BUSY = """
local function ms() local t = redis.call('TIME'); return t[1] * 1000 + math.floor(t[2] / 1000) end
local stop = ms() + tonumber(ARGV[1])
while ms() < stop do end
return 1
"""


def counting(batch: ScriptBatch) -> list[int]:
    """The size of every write the batch makes."""
    sent: list[int] = []
    send = batch._send

    def wrapped(calls: list[Any]) -> None:
        sent.append(len(calls))
        send(calls)

    batch._send = wrapped  # type: ignore[method-assign]
    return sent


async def test_calls_of_one_turn_share_a_write(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    sent = counting(batch)
    incr = batch.register(INCR)
    try:
        await batch.client.script_load(INCR)  # the steady state: the server knows the script
        key = redis_prefix + "n"
        results = await asyncio.gather(*(incr(keys=[key], args=[i]) for i in range(1, 51)))
        assert results == [sum(range(1, i + 1)) for i in range(1, 51)]  # in order, each its own running total
        assert sent == [50]  # one write for all fifty
        assert await incr(keys=[key], args=[0]) == sum(range(1, 51))
        assert sent == [50, 1]
    finally:
        await batch.close()


async def test_turns_are_pipelined_without_waiting_for_answers(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    incr = batch.register(INCR)
    try:
        await batch.client.script_load(INCR)
        await incr(keys=[redis_prefix + "p"], args=[0])  # connected
        first = incr(keys=[redis_prefix + "p"], args=[1])
        await asyncio.sleep(0)  # the first turn's write goes out
        second = incr(keys=[redis_prefix + "p"], args=[2])
        await asyncio.sleep(0)
        assert len(batch._inflight) == 2  # both written, neither answered yet
        assert await asyncio.gather(first, second) == [1, 3]
    finally:
        await batch.close()


async def test_an_unknown_script_is_sent_again_as_eval(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    text = INCR.replace("INCRBY", "incrby")  # a script the server has surely not cached
    incr = batch.register(text)
    try:
        await batch.client.script_flush()
        sent = counting(batch)
        assert await asyncio.gather(incr(keys=[redis_prefix + "a"], args=[2]),
                                    incr(keys=[redis_prefix + "b"], args=[3])) == [2, 3]
        assert sent == [2, 1, 1]  # refused together, each sent again as EVAL
        assert await batch.client.script_exists(_sha(text)) == [True]  # EVAL cached it
        assert await incr(keys=[redis_prefix + "a"], args=[1]) == 3
        assert sent == [2, 1, 1, 1]
    finally:
        await batch.close()


async def test_one_failing_call_fails_alone(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    incr, fail = batch.register(INCR), batch.register(FAIL)
    try:
        ok, bad, ok2 = await asyncio.gather(incr(keys=[redis_prefix + "c"], args=[1]), fail(keys=[], args=["x"]),
                                            incr(keys=[redis_prefix + "c"], args=[1]), return_exceptions=True)
        assert (ok, ok2) == (1, 2)
        assert isinstance(bad, ResponseError) and "nope x" in str(bad)
    finally:
        await batch.close()


async def test_a_bad_argument_fails_its_call_alone(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    incr = batch.register(INCR)
    try:
        good = incr(keys=[redis_prefix + "g"], args=[1])
        with pytest.raises(DataError):
            incr(keys=[redis_prefix + "g"], args=[None])  # refused as it is made, like redis-py
        also = incr(keys=[redis_prefix + "g"], args=[2])
        assert await asyncio.gather(good, also) == [1, 3]  # the rest of its turn went out
    finally:
        await batch.close()


async def test_closing_fails_what_is_waiting_and_refuses_new_calls(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    incr = batch.register(INCR)
    queued = incr(keys=[redis_prefix + "q"], args=[1])  # not even connected yet
    await asyncio.sleep(0)  # its turn ends: a connection is on its way
    await batch.close()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(queued, 2)  # failed, not left waiting for a connection that never comes
    with pytest.raises(RedisConnectionError):
        incr(keys=[redis_prefix + "q"], args=[1])
    assert batch._conn is None and not batch._tasks


async def test_a_killed_connection_is_replaced(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    incr = batch.register(INCR)
    key = redis_prefix + "k"
    try:
        assert await incr(keys=[key], args=[1]) == 1
        assert batch._writer is not None
        host, port = batch._writer.get_extra_info("sockname")[:2]
        await batch.client.client_kill(f"{host}:{port}")
        await asyncio.sleep(0.1)
        assert batch._writer is None  # the reader saw it go
        assert await incr(keys=[key], args=[1]) == 2  # on a new connection
        assert batch._writer.get_extra_info("sockname")[1] != port
    finally:
        await batch.close()


async def test_calls_in_flight_on_a_lost_connection_fail_and_the_next_call_reconnects() -> None:
    """A server that hangs up on the first connection's first script, and answers the next one."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first, parser = connections == 1, hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                if command[0].upper() != b"EVALSHA":
                    writer.write(b"+OK\r\n")  # the connection's set-up (CLIENT SETINFO ...)
                elif first:
                    writer.close()
                    return
                else:
                    writer.write(b":7\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    batch = ScriptBatch(aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True))
    incr = batch.register(INCR)
    try:
        results = await asyncio.gather(*(incr(keys=["x"], args=[1]) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results)
        assert not batch._inflight
        assert await incr(keys=["x"], args=[1]) == 7
        assert connections == 2
    finally:
        await batch.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_redis_times_out_and_the_next_call_reconnects(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url), timeout=0.3)
    incr, busy = batch.register(INCR), batch.register(BUSY)
    try:
        await incr(keys=[redis_prefix + "t"], args=[1])
        began = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await busy(keys=[], args=[1200])
        assert 0.25 < time.monotonic() - began < 1.0  # the watchdog, not the script's end
        assert not batch._inflight
        assert await incr(keys=[redis_prefix + "t"], args=[1]) == 2  # once Redis answers again
    finally:
        await batch.close()


async def test_an_unreachable_server_fails_every_call_of_the_batch(redis_prefix: str) -> None:
    batch = ScriptBatch(await connect_unreachable())
    incr = batch.register(INCR)
    results = await asyncio.gather(*(incr(keys=[redis_prefix + "d"], args=[1]) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, RedisError) for r in results)
    assert batch._waiting is None and not batch._inflight
    await batch.close()


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()


async def connect_unreachable() -> Any:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, decode_responses=True,
                          retry=Retry(NoBackoff(), 0))


@pytest.fixture(autouse=True)
def _needs_redis(redis_url: str) -> None:
    """Every test here talks to Redis (the last one to a port where none listens)."""
