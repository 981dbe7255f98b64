"""``RedisLimiter``: the sliding-log limiter (see ``base``) shared by every replica.

Keys (``prefix`` defaults to ``tollway:``; ``{K}`` is a Redis Cluster hash tag, so one limit
key's two Redis keys share a slot and one script may touch both):

- ``rl:{K}:log``  ZSET of reservation ids scored by admission time (server ms)
- ``rl:{K}:tok``  HASH, reservation id -> tokens, and ``=`` -> the sum of the log's tokens

A hit is ONE Lua script: it reads "now" from the server's TIME, drops the entries that have left
the window (subtracting their tokens from the sum), checks RPM (ZCARD) and TPM (the sum), and
records both or neither, so no replica's clock or interleaving can let an extra request in. Both
keys expire a little after their last admission. ``settle`` is a second, smaller script: it swaps
an estimate for the actual count and moves the sum by the difference, leaving the time alone.

A Redis failure while serving is translated once, here, into ``InternalError``.
"""

from __future__ import annotations

import itertools
import secrets
from typing import cast

import redis.asyncio as aioredis

from tollway.core.limiter import Decision
from tollway.limits.base import UNCOUNTED, WINDOW
from tollway.store.redis import ScriptBatch, translated
from tollway.store.redis import connect as connect_redis

GRACE_MS = 5_000  # the keys outlive their last admission by a window plus this much

# KEYS: log, tokens. ARGV: rpm (-1: none), tpm (-1: none), tokens, window ms, id, grace ms.
# Returns {0, 0} when admitted, else {1 (rpm) or 2 (tpm), ms until the hit would fit}.
HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local log, tok = KEYS[1], KEYS[2]
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local edge = now - window
local total = tonumber(redis.call('HGET', tok, '=') or '0')
local gone = redis.call('ZRANGEBYSCORE', log, '-inf', edge)
if #gone > 0 then
  for _, id in ipairs(gone) do
    total = total - tonumber(redis.call('HGET', tok, id) or '0')
    redis.call('HDEL', tok, id)
  end
  redis.call('ZREMRANGEBYSCORE', log, '-inf', edge)
  redis.call('HSET', tok, '=', string.format('%d', total))
end
local n = redis.call('ZCARD', log)
if rpm >= 0 and n >= rpm then
  if rpm == 0 then return {1, window} end
  local oldest = redis.call('ZRANGE', log, n - rpm, n - rpm, 'WITHSCORES')
  return {1, tonumber(oldest[2]) + window - now}
end
if tpm >= 0 and total + tokens > tpm then
  if tokens > tpm then return {2, window} end
  local need, freed, i = total + tokens - tpm, 0, 0
  while i < n do
    local page = redis.call('ZRANGE', log, i, i + 127, 'WITHSCORES')
    local ids = {}
    for j = 1, #page, 2 do ids[#ids + 1] = page[j] end
    local counts = redis.call('HMGET', tok, unpack(ids))
    for j = 1, #ids do
      freed = freed + tonumber(counts[j] or '0')
      if freed >= need then return {2, tonumber(page[2 * j]) + window - now} end
    end
    i = i + 128
  end
  return {2, window}
end
redis.call('ZADD', log, now, ARGV[5])
redis.call('HSET', tok, ARGV[5], string.format('%d', tokens), '=', string.format('%d', total + tokens))
local ttl = window + tonumber(ARGV[6])
redis.call('PEXPIRE', log, ttl)
redis.call('PEXPIRE', tok, ttl)
return {0, 0}
"""

# KEYS: tokens. ARGV: id, actual tokens. A reservation no longer held is left alone.
SETTLE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], '=', tonumber(ARGV[2]) - tonumber(old))
return 1
"""


class RedisLimiter:
    """``Limiter`` in Redis, shared by every replica that uses the same server and prefix: not
    local, every call is a round trip (those of one event-loop turn share one with ``batch``)."""

    local = False

    def __init__(self, client: aioredis.Redis, prefix: str = "tollway:", *, window: float = WINDOW,
                 batch: ScriptBatch | None = None) -> None:
        """With ``batch``, the scripts go out in its pipelines (shared with the wallets)."""
        self.client = client  # decode_responses=True
        self.prefix = prefix
        self.window_ms = max(1, round(window * 1000))
        self._batch = batch
        register = batch.register if batch is not None else client.register_script
        self._hit = register(HIT)
        self._settle = register(SETTLE)
        # reservation ids: unique across replicas (a random part per process), cheap per hit
        self._run = secrets.token_hex(6)
        self._ids = itertools.count(1)

    def _keys(self, key: str) -> list[str]:
        base = f"{self.prefix}rl:{{{key}}}"
        return [f"{base}:log", f"{base}:tok"]

    async def hit(self, key: str, *, rpm: int | None, tpm: int | None, tokens: int) -> Decision:
        if rpm is None and tpm is None:
            return UNCOUNTED
        reservation = f"{self._run}.{next(self._ids)}"
        args: list[int | str] = [-1 if rpm is None else rpm, -1 if tpm is None else tpm, max(0, tokens),
                self.window_ms, reservation, GRACE_MS]
        with translated("rate limits", "count a hit"):
            code, wait_ms = cast(list[int], await self._hit(keys=self._keys(key), args=args))
        if not code:
            return Decision(allowed=True, reservation=reservation)
        return Decision(allowed=False, retry_after=int(wait_ms) / 1000, reason="rpm" if code == 1 else "tpm")

    def settle_now(self, key: str, reservation: str, *, actual_tokens: int) -> bool:
        """Never: settling here is a round trip (await ``settle``)."""
        return False

    async def settle(self, key: str, reservation: str, *, actual_tokens: int) -> None:
        with translated("rate limits", "settle a reservation"):
            await self._settle(keys=self._keys(key)[1:], args=[reservation, max(0, actual_tokens)])

    async def close(self) -> None:
        if self._batch is not None:
            await self._batch.close()
        await self.client.aclose()


async def connect(url: str, *, prefix: str = "tollway:", window: float = WINDOW) -> RedisLimiter:
    """A ``RedisLimiter`` on ``url`` (TOLLWAY_REDIS_URL), once the server answers a PING;
    ConfigError (without the password) when it does not."""
    client = await connect_redis(url)
    return RedisLimiter(client, prefix, window=window)
