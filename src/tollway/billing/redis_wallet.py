"""``RedisWallet``: the wallets (see ``wallet``) shared by every replica and worker.

One HASH per key, ``{prefix}wallet:{<key id>}``: ``b`` balance, ``h`` held by requests in flight,
``m`` the month (``YYYY-MM``) ``s`` counts, ``s`` spent in it. Each operation is one Lua script, so
a check and its hold are one atomic step however many replicas ask at once. A key's hash is made
from the database the first time any replica needs it (``INIT`` writes only if it is absent) and
kept without expiry: afterwards every change to it goes through these scripts, while each replica
writes what it charged to the ledger (the database lags the hash by at most one flush).

All amounts are integers below 2^53 (``core.money`` caps them), exact in Lua's doubles. A Redis
failure is translated into ``InternalError`` naming the wallet.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

import redis.asyncio as aioredis

from tollway.billing.wallet import Hold, StateLoader, refused, settled
from tollway.store.redis import ScriptBatch, translated

# KEYS: wallet. ARGV: balance, spent, month
INIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'b', ARGV[1], 'h', 0, 'm', ARGV[3], 's', ARGV[2])
end
return 1
"""

# KEYS: wallet. ARGV: amount, quota (-1: none), month. Returns {0, 0} held; {1|2, room} refused
# (1 balance, 2 quota); {-1, 0} when the hash is absent (load it, then ask again).
RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local v = redis.call('HMGET', KEYS[1], 'b', 'h', 'm', 's')
local b, h, m, s = tonumber(v[1]), tonumber(v[2]), v[3], tonumber(v[4])
local amount, quota, month = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if month > m then s = 0; redis.call('HSET', KEYS[1], 'm', month, 's', 0) end
if b - h < amount then return {1, b - h} end
if quota >= 0 and s + h + amount > quota then return {2, quota - s - h} end
redis.call('HINCRBY', KEYS[1], 'h', amount)
return {0, 0}
"""

# KEYS: wallet. ARGV: hold, charge, quota (-1: none), month. Returns what was charged (see
# wallet.settled), or -1 when the hash is gone (Redis lost its data: the hold went with it).
SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local v = redis.call('HMGET', KEYS[1], 'b', 'h', 'm', 's')
local b, h, m, s = tonumber(v[1]), tonumber(v[2]), v[3], tonumber(v[4])
local hold, charge, quota, month = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
h = h - hold
if month > m then s = 0; m = month end
local applied = charge
if charge > hold then
  local room = b - h - hold
  if quota >= 0 then room = math.min(room, quota - s - h - hold) end
  if room < 0 then room = 0 end
  applied = hold + math.min(charge - hold, room)
elseif charge < 0 then
  applied = 0
end
redis.call('HSET', KEYS[1], 'b', b - applied, 'h', h, 'm', m, 's', s + applied)
return applied
"""

# KEYS: wallet. ARGV: amount. Returns 1, or 0 when the hash is absent.
CREDIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'b', ARGV[1])
return 1
"""


class RedisWallet:
    def __init__(self, client: aioredis.Redis, load: StateLoader, *, prefix: str = "tollway:",
                 batch: ScriptBatch | None = None) -> None:
        """With ``batch``, the scripts go out in its pipelines (shared with the rate limits)."""
        self.client = client
        self._load = load
        self.prefix = prefix
        self._batch = batch
        register = batch.register if batch is not None else client.register_script
        self._init = register(INIT)
        self._reserve = register(RESERVE)
        self._settle = register(SETTLE)
        self._credit = register(CREDIT)
        self._ids = itertools.count(1)

    def _key(self, key_id: int) -> str:
        return f"{self.prefix}wallet:{{{key_id}}}"

    async def load(self, key_id: int, month: str) -> bool:
        state = await self._load(key_id, month)
        if state is None:
            return False
        with translated("wallet", "load a key's balance"):
            await self._init(keys=[self._key(key_id)], args=[state[0], state[1], month])
        return True

    async def reserve(self, key_id: int, amount: int, *, quota: int | None, month: str) -> Hold:
        args: list[int | str] = [amount, -1 if quota is None else quota, month]
        with translated("wallet", "reserve credits"):
            code, room = cast(list[Any], await self._reserve(keys=[self._key(key_id)], args=args))
        if code == -1:
            if not await self.load(key_id, month):
                raise refused(1, 0)
            with translated("wallet", "reserve credits"):
                code, room = cast(list[Any], await self._reserve(keys=[self._key(key_id)], args=args))
        if code != 0:
            raise refused(int(code), int(room))
        return Hold(key_id, amount, str(next(self._ids)))

    async def settle(self, hold: Hold, charge: int, *, quota: int | None, month: str) -> int:
        args: list[int | str] = [hold.amount, charge, -1 if quota is None else quota, month]
        with translated("wallet", "settle a request"):
            applied = int(await self._settle(keys=[self._key(hold.key_id)], args=args))
        if applied < 0:  # the hash is gone, and the hold with it: charge what the hold covered
            return settled(hold.amount, charge, hold.amount, None)
        return applied

    async def credit(self, key_id: int, amount: int) -> None:
        with translated("wallet", "credit a recharge"):
            await self._credit(keys=[self._key(key_id)], args=[amount])

    async def state(self, key_id: int) -> tuple[int, int, int] | None:
        """(balance, held, spent) as Redis has it, for tests and listings."""
        values = await self.client.hmget(self._key(key_id), ["b", "h", "s"])  # type: ignore[misc]
        if values[0] is None:
            return None
        return int(values[0]), int(values[1]), int(values[2])

    async def close(self) -> None:
        if self._batch is not None:
            await self._batch.close()
        await self.client.aclose()
