"""Pool state in Redis: in-flight caps, cooldowns, disabled marks and the queue held across replicas.

``RedisState`` implements ``pools.PoolState`` for ``TOLLWAY_REDIS_URL`` (DESIGN principle 4):
every replica's ``CredentialPool`` of one provider takes its slots from the same keys, so each
credential's cap (every take carries the caps of its candidates) and the queue's capacity hold
however many processes serve.

Keys (``prefix`` defaults to ``tollway:``; ``{pool}`` is a Redis Cluster hash tag, so one pool's
keys share a slot and a script may touch them all):

- ``pool:{P}:slots:C``  ZSET of lease tokens scored by expiry (server ms); one per credential
- ``pool:{P}:queue``    ZSET of waiter ids scored by expiry (server ms)
- ``pool:{P}:cool:C``   STRING, cooling until (epoch seconds), with a PX expiry of the cooldown
- ``pool:{P}:disabled`` HASH, credential id -> reason

Taking a slot, renewing leases, counting and entering the queue are Lua scripts: each is one
atomic round trip, and each reads "now" from the server's TIME, so replicas' clocks never decide
whether a lease or a waiter has expired. The ZSET keys carry a PEXPIRE a little past their last
lease, so a pool that goes quiet leaves nothing behind. Needs Redis 5 or later (scripts that
write after TIME).

A Redis failure while serving is translated once, here, into ``InternalError``.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import cast

import redis.asyncio as aioredis

from tollway.store.redis import ScriptBatch, translated
from tollway.store.redis import connect as connect_redis

GRACE_MS = 5_000  # a ZSET key outlives its last lease (or waiter) by this much

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
"""

# KEYS: the candidates' slot sets, in order. ARGV: ttl ms, token, grace ms, then each candidate's cap.
# Among the candidates under their own cap, the first with the fewest live leases wins: its
# 1-based index, else 0.
TAKE = _NOW + """
local ttl = tonumber(ARGV[1])
local best, low = 0, 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local n = redis.call('ZCARD', key)
  if n < tonumber(ARGV[i + 3]) and (best == 0 or n < low) then best, low = i, n end
end
if best == 0 then return 0 end
redis.call('ZADD', KEYS[best], now + ttl, ARGV[2])
keep(KEYS[best], ttl + tonumber(ARGV[3]))
return best
"""

# KEYS: one slot set per lease. ARGV: ttl ms, grace ms, then one token per key.
# A lease that is gone or already expired stays gone: its slot may have been counted free.
RENEW = _NOW + """
local ttl, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local token = ARGV[i + 2]
  local score = redis.call('ZSCORE', key, token)
  if score and tonumber(score) > now then
    redis.call('ZADD', key, 'XX', now + ttl, token)
    keep(key, ttl + grace)
  end
end
return 0
"""

# KEYS: slot sets. Returns the live leases of each.
COUNTS = _NOW + """
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  out[i] = redis.call('ZCARD', key)
end
return out
"""

# KEYS: the queue. ARGV: size, ttl ms, waiter, grace ms. 1 when the waiter got a place, else 0.
ENTER_QUEUE = _NOW + """
local size, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= size then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
keep(KEYS[1], ttl + tonumber(ARGV[4]))
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


# KEYS: slots. ARGV: token. A script (not a plain ZREM) so that it can ride in a ScriptBatch.
GIVE_BACK = "return redis.call('ZREM', KEYS[1], ARGV[1])"


class RedisState:
    """``PoolState`` in Redis, shared by every replica that uses the same server and prefix."""

    shared = True

    def __init__(self, client: aioredis.Redis, *, prefix: str = "tollway:", batch: ScriptBatch | None = None) -> None:
        """With ``batch``, taking and giving back slots go out in its pipelines (one round trip for
        every call of a loop turn, shared with billing)."""
        self.client = client  # decode_responses=True
        self.prefix = prefix
        self._batch = batch
        register = batch.register if batch is not None else client.register_script
        self._take = register(TAKE)
        self._give_back = register(GIVE_BACK)
        self._renew = client.register_script(RENEW)
        self._run = secrets.token_hex(6)  # slot tokens: unique across replicas, cheap per take
        self._ids = itertools.count(1)
        self._counts = client.register_script(COUNTS)
        self._enter = client.register_script(ENTER_QUEUE)

    def _key(self, pool: str, kind: str, credential_id: str | None = None) -> str:
        base = f"{self.prefix}pool:{{{pool}}}:{kind}"
        return base if credential_id is None else f"{base}:{credential_id}"

    async def take(self, pool: str, candidates: Sequence[str], caps: int | Sequence[int],
                   ttl: float) -> tuple[str, str] | None:
        limits = [caps] * len(candidates) if isinstance(caps, int) else list(caps)
        if len(limits) != len(candidates):
            raise ValueError(f"{len(limits)} caps for {len(candidates)} candidates")
        if not candidates or max(limits) <= 0:
            return None
        token = f"{self._run}.{next(self._ids)}"
        keys = [self._key(pool, "slots", cid) for cid in candidates]
        with translated("pool state", "take a slot"):
            index = int(await self._take(keys=keys, args=[_ms(ttl), token, GRACE_MS, *limits]))
        return (candidates[index - 1], token) if index else None

    async def give_back(self, pool: str, credential_id: str, token: str) -> None:
        with translated("pool state", "give back a slot"):
            await self._give_back(keys=[self._key(pool, "slots", credential_id)], args=[token])

    async def renew(self, pool: str, leases: Iterable[tuple[str, str]], ttl: float) -> None:
        held = list(leases)
        if not held:
            return
        keys = [self._key(pool, "slots", cid) for cid, _ in held]
        with translated("pool state", "renew leases"):
            await self._renew(keys=keys, args=[_ms(ttl), GRACE_MS, *(token for _, token in held)])

    async def counts(self, pool: str, credential_ids: Sequence[str]) -> list[int]:
        if not credential_ids:
            return []
        keys = [self._key(pool, "slots", cid) for cid in credential_ids]
        with translated("pool state", "count slots"):
            found = cast(list[int], await self._counts(keys=keys))
        return [int(n) for n in found]

    async def cool(self, pool: str, credential_id: str, seconds: float) -> None:
        key = self._key(pool, "cool", credential_id)
        with translated("pool state", "cool a credential down"):
            if seconds <= 0:
                await self.client.delete(key)
            else:
                await self.client.set(key, repr(time.time() + seconds), px=_ms(seconds))

    async def disable(self, pool: str, credential_id: str, reason: str) -> None:
        with translated("pool state", "disable a credential"):
            await cast(Awaitable[int], self.client.hset(self._key(pool, "disabled"), credential_id, reason))

    async def enable(self, pool: str, credential_id: str) -> None:
        with translated("pool state", "enable a credential"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._key(pool, "disabled"), credential_id)
                pipe.delete(self._key(pool, "cool", credential_id))
                await pipe.execute()

    async def health(self, pool: str, credential_ids: Sequence[str]) -> dict[str, tuple[float, str | None]]:
        if not credential_ids:
            return {}
        ids = list(credential_ids)
        with translated("pool state", "read credential health"):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.mget([self._key(pool, "cool", cid) for cid in ids])
                pipe.hmget(self._key(pool, "disabled"), ids)
                cooling, disabled = await pipe.execute()
        now = time.time()
        out: dict[str, tuple[float, str | None]] = {}
        for cid, until, reason in zip(ids, cooling, disabled, strict=True):
            end = float(until) if until else 0.0
            out[cid] = (end if end > now else 0.0, reason)
        return out

    async def enter_queue(self, pool: str, waiter: str, size: int, ttl: float) -> bool:
        if size <= 0:
            return False
        with translated("pool state", "enter the queue"):
            got = await self._enter(keys=[self._key(pool, "queue")], args=[size, _ms(ttl), waiter, GRACE_MS])
        return bool(int(got))

    async def leave_queue(self, pool: str, waiter: str) -> None:
        with translated("pool state", "leave the queue"):
            await self.client.zrem(self._key(pool, "queue"), waiter)

    async def close(self) -> None:
        if self._batch is not None:
            await self._batch.close()
        await self.client.aclose()


async def connect(url: str, *, prefix: str = "tollway:") -> RedisState:
    """A ``RedisState`` on ``url`` (TOLLWAY_REDIS_URL), once the server answers a PING;
    ConfigError saying so when it does not."""
    client = await connect_redis(url)
    return RedisState(client, prefix=prefix)
