"""ScriptBatch: the Lua calls of one event-loop turn share one pipeline, each gets its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ResponseError

from tollway.store.redis import ScriptBatch, connect

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAIL = "return redis.error_reply('nope ' .. ARGV[1])"


async def test_calls_of_one_turn_share_a_pipeline(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    sent: list[int] = []
    pipeline = batch._pipeline

    async def counting(entries: list[Any]) -> list[Any]:
        sent.append(len(entries))
        return await pipeline(entries)

    batch._pipeline = counting  # type: ignore[method-assign]
    incr = batch.register(INCR)
    try:
        await batch.client.script_load(INCR)  # the steady state: the server knows the script
        key = redis_prefix + "n"
        results = await asyncio.gather(*(incr(keys=[key], args=[i]) for i in range(1, 51)))
        assert sorted(results) == sorted(sum(range(1, i + 1)) for i in range(1, 51))  # each its own running total
        assert sent == [50]  # one round trip for all fifty
        assert await incr(keys=[key], args=[0]) == sum(range(1, 51))
        assert sent == [50, 1]
    finally:
        await batch.close()


async def test_an_unknown_script_is_loaded_and_sent_again(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    incr = batch.register(INCR.replace("INCRBY", "incrby"))  # a script the server has surely not cached
    try:
        await batch.client.script_flush()
        sent: list[int] = []
        pipeline = batch._pipeline

        async def counting(entries: list[Any]) -> list[Any]:
            sent.append(len(entries))
            return await pipeline(entries)

        batch._pipeline = counting  # type: ignore[method-assign]
        assert await asyncio.gather(incr(keys=[redis_prefix + "a"], args=[2]),
                                    incr(keys=[redis_prefix + "b"], args=[3])) == [2, 3]
        assert sent == [2, 2]  # refused together, loaded once, sent again together
    finally:
        await batch.close()


async def test_one_failing_call_fails_alone(redis_url: str, redis_prefix: str) -> None:
    batch = ScriptBatch(await connect(redis_url))
    incr, fail = batch.register(INCR), batch.register(FAIL)
    try:
        ok, bad = await asyncio.gather(incr(keys=[redis_prefix + "c"], args=[1]), fail(keys=[], args=["x"]),
                                       return_exceptions=True)
        assert ok == 1
        assert isinstance(bad, ResponseError) and "nope x" in str(bad)
    finally:
        await batch.close()


async def test_a_lost_connection_fails_every_call_of_the_batch(redis_prefix: str) -> None:
    batch = ScriptBatch(await connect_unreachable())
    incr = batch.register(INCR)
    results = await asyncio.gather(*(incr(keys=[redis_prefix + "d"], args=[1]) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    await batch.close()


async def connect_unreachable() -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, decode_responses=True)


@pytest.fixture(autouse=True)
def _needs_redis(redis_url: str) -> None:
    """Every test here talks to Redis (the last one to a port where none listens)."""
