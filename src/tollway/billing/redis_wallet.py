"""``RedisWallet``: the wallets (see ``wallet``) shared by every replica and worker.

Per key ``K`` (``{K}`` is a Redis Cluster hash tag: one key's Redis keys share a slot):

- ``{prefix}wallet:{K}``        HASH ``b`` balance, ``h`` held, ``m`` month (``YYYY-MM``), ``s`` spent in it
- ``{prefix}wallet:{K}:holds``  ZSET hold id -> deadline (server ms); ``...:amt`` HASH hold id -> amount
- ``{prefix}wallet:{K}:done:<id>``  what settling (or releasing) hold ``<id>`` charged, kept an hour

Each operation is one Lua script, so a check and its hold are one atomic step however many replicas
ask at once. Holds have ids, which makes every step safe to repeat or to lose:

- a settlement retried after a lost reply answers what the first one charged (the ``done`` key,
  kept an hour, or as long as the caller asks: a settlement replayed from the database keeps it
  until its ledger row is surely written);
- a reservation whose caller gave up (a client gone, a timeout) is released by id; a release that
  overtakes its reservation leaves a ``done`` mark that the reservation then respects;
- a hold is a lease: its deadline (``HOLD_TTL``, TOLLWAY_LEASE_TTL in the gateway: a minute) is
  pushed back by ``renew`` while its call runs, and a hold whose process died is swept once it
  passes (by the next reservation on the key), so a crash leaks no credits for longer than that.
  A renewal keeps a hold that is past its deadline but not yet swept (its credits were never
  handed to anyone: Redis was away, say); a swept one stays gone;
- a hold Redis lost (a restart without persistence), or one swept before its settlement came,
  settles as no hold: the charge comes only from what is available, so a balance never goes
  below zero.

A key's hash is made from the database the first time any replica needs it (``INIT`` writes only
if it is absent) and kept without expiry; afterwards every change goes through these scripts,
while each replica writes what it charged to the ledger (the database lags by at most one flush).
A recharge is credited once per ledger row (``...:credit:<row>``), however often it is retried.

All amounts are integers below 2^53 (``core.money`` caps them), exact in Lua's doubles. A Redis
failure is translated into ``InternalError`` naming the wallet.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from typing import Any, cast

import redis.asyncio as aioredis

from tollway.billing.wallet import Hold, StateLoader, refused
from tollway.store.redis import ScriptBatch, translated

log = logging.getLogger("tollway.billing")
HOLD_TTL = 60.0  # seconds a hold outlives a process that died holding it (renewed while its call runs)
DONE_TTL_MS = 3_600_000

# KEYS: wallet. ARGV: balance, spent, month
INIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'b', ARGV[1], 'h', 0, 'm', ARGV[3], 's', ARGV[2])
end
return 1
"""

# KEYS: wallet, holds, amounts, done. ARGV: id, amount, quota (-1: none), month, ttl ms.
# Returns {0, 0} held; {1|2, room} refused (balance, quota); {3, 0} released before it came;
# {-1, 0} when the wallet is absent (load it, then ask again).
RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {3, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'b', 'h', 'm', 's')
local b, h, m, s = tonumber(v[1]), tonumber(v[2]), v[3], tonumber(v[4])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(gone) do
  h = h - tonumber(redis.call('HGET', KEYS[3], id) or '0')
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
end
local amount, quota, month = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if month > m then m = month; s = 0 end
local code, room = 0, 0
if b - h < amount then
  code, room = 1, b - h
elseif quota >= 0 and s + h + amount > quota then
  code, room = 2, quota - s - h
else
  h = h + amount
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], amount)
end
redis.call('HSET', KEYS[1], 'h', h, 'm', m, 's', s)
return {code, room}
"""

# KEYS: wallet, holds, amounts, done. ARGV: id, charge, quota (-1: none), month, done ttl ms.
# Returns what was charged (see wallet.settled; a hold not found counts as none), the same again
# for a hold settled before, or -1 when the wallet is absent (load it, then ask again).
SETTLE = """
local before = redis.call('GET', KEYS[4])
if before then return tonumber(before) end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local v = redis.call('HMGET', KEYS[1], 'b', 'h', 'm', 's')
local b, h, m, s = tonumber(v[1]), tonumber(v[2]), v[3], tonumber(v[4])
local hold = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if hold > 0 then
  h = h - hold
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
local charge, quota, month = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if month > m then m = month; s = 0 end
local applied = charge
if charge < 0 then
  applied = 0
elseif charge > hold then
  local room = b - h - hold
  if quota >= 0 then room = math.min(room, quota - s - h - hold) end
  if room < 0 then room = 0 end
  applied = hold + math.min(charge - hold, room)
end
redis.call('HSET', KEYS[1], 'b', b - applied, 'h', h, 'm', m, 's', s + applied)
redis.call('SET', KEYS[4], applied, 'PX', ARGV[5])
return applied
"""

# KEYS: holds, amounts. ARGV: ttl ms, then hold ids. Pushes back the deadline of each hold still
# counted (past its deadline too, if no reservation has swept it yet); returns the ids already gone
# (settled, released or swept), which the caller stops renewing.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[1])
local gone = {}
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[1], deadline, ARGV[i])
  else
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
"""

# KEYS: wallet, holds, amounts, done. ARGV: id, done ttl ms. Gives a hold back (a reservation
# whose caller gave up); marks it done, so a reservation still on its way is refused.
RELEASE = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local hold = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if hold > 0 then
  redis.call('HINCRBY', KEYS[1], 'h', -hold)
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('SET', KEYS[4], 0, 'PX', ARGV[2])
return hold
"""

# KEYS: wallet, credit mark. ARGV: amount, mark ttl ms. Returns 1 credited, 2 credited before,
# 0 when the wallet is absent (its first load reads the database, which has the recharge).
CREDIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], 'b', ARGV[1])
  return 1
end
return 2
"""


class RedisWallet:
    """``Wallet`` in Redis: not local, every call is a round trip (those of one event-loop turn
    share one with ``batch``)."""

    local = False

    def __init__(self, client: aioredis.Redis, load: StateLoader, *, prefix: str = "tollway:",
                 batch: ScriptBatch | None = None, hold_ttl: float = HOLD_TTL) -> None:
        """With ``batch``, the scripts go out in its pipelines (shared with the rate limits)."""
        self.client = client
        self._load = load
        self.prefix = prefix
        self._batch = batch
        self.hold_ttl_ms = max(1, round(hold_ttl * 1000))
        register = batch.register if batch is not None else client.register_script
        self._init = register(INIT)
        self._reserve = register(RESERVE)
        self._settle = register(SETTLE)
        self._release = register(RELEASE)
        self._credit = register(CREDIT)
        self._renew = register(RENEW)
        self._run = secrets.token_hex(6)  # hold ids: unique across replicas, cheap per request
        self._ids = itertools.count(1)
        self._pending: set[asyncio.Task[Any]] = set()
        self._live: dict[str, Hold] = {}  # holds this process made and has not settled: renewed

    @property
    def lease(self) -> float:
        return self.hold_ttl_ms / 1000

    @property
    def holding(self) -> int:
        """Holds this process keeps alive (calls running, settlements on their way)."""
        return len(self._live)

    def _key(self, key_id: int) -> str:
        return f"{self.prefix}wallet:{{{key_id}}}"

    def _keys(self, key_id: int, hold_id: str) -> list[str]:
        base = self._key(key_id)
        return [base, f"{base}:holds", f"{base}:amt", f"{base}:done:{hold_id}"]

    async def load(self, key_id: int, month: str) -> bool:
        state = await self._load(key_id, month)
        if state is None:
            return False
        with translated("wallet", "load a key's balance"):
            await self._init(keys=[self._key(key_id)], args=[state[0], state[1], month])
        return True

    async def reserve(self, key_id: int, amount: int, *, quota: int | None, month: str) -> Hold:
        hold = Hold(key_id, amount, f"{self._run}.{next(self._ids)}")
        args: list[int | str] = [hold.id, amount, -1 if quota is None else quota, month, self.hold_ttl_ms]
        keys = self._keys(key_id, hold.id)
        try:
            with translated("wallet", "reserve credits"):
                code, room = cast(list[Any], await self._reserve(keys=keys, args=args))
            if code == -1:
                if not await self.load(key_id, month):
                    raise refused(1, 0)
                with translated("wallet", "reserve credits"):
                    code, room = cast(list[Any], await self._reserve(keys=keys, args=args))
        except BaseException:
            # cancelled (the client went away) or failed on the way back: the script may have run
            self._spawn(self.release(hold))
            raise
        if code != 0:
            raise refused(int(code) if code in (1, 2) else 1, int(room))
        self._live[hold.id] = hold
        return hold

    async def renew(self) -> None:
        """One script per key with live holds (all in one round trip through ``batch``)."""
        by_key: dict[int, list[str]] = {}
        for hold in self._live.values():
            by_key.setdefault(hold.key_id, []).append(hold.id)
        if not by_key:
            return
        calls = [self._renew(keys=[f"{self._key(key_id)}:holds", f"{self._key(key_id)}:amt"],
                             args=[self.hold_ttl_ms, *ids]) for key_id, ids in by_key.items()]
        with translated("wallet", "renew holds"):
            answers = await asyncio.gather(*calls)
        for gone in answers:
            for hold_id in cast(list[Any], gone):
                self._live.pop(str(hold_id), None)

    async def release(self, hold: Hold) -> None:
        """Give back a hold whose request never ran (safe to repeat; ahead of its reservation too)."""
        self._live.pop(hold.id, None)  # not renewed: if the release fails, the lease runs out
        for delay in (0.1, 1.0, 5.0, None):
            try:
                with translated("wallet", "release a hold"):
                    await self._release(keys=self._keys(hold.key_id, hold.id), args=[hold.id, DONE_TTL_MS])
                return
            except Exception as err:
                if delay is None:
                    log.error("releasing hold %s of key %s failed; it expires in %.0f s: %s", hold.id, hold.key_id,
                              self.hold_ttl_ms / 1000, err)
                    return
                await asyncio.sleep(delay)

    def settle_now(self, hold: Hold, charge: int, *, quota: int | None, month: str) -> None:
        """Never: settling here is a round trip (await ``settle``)."""
        return None

    async def settle(self, hold: Hold, charge: int, *, quota: int | None, month: str, keep: float | None = None) -> int:
        """A failure (InternalError) leaves the hold renewed: the caller keeps the settlement for later."""
        done_ttl = DONE_TTL_MS if keep is None else max(DONE_TTL_MS, round(keep * 1000))
        args: list[int | str] = [hold.id, charge, -1 if quota is None else quota, month, done_ttl]
        keys = self._keys(hold.key_id, hold.id)
        with translated("wallet", "settle a request"):
            applied = int(await self._settle(keys=keys, args=args))
        if applied < 0:  # the wallet is gone (Redis lost it): rebuild it, then settle as without a hold
            await self.load(hold.key_id, month)
            with translated("wallet", "settle a request"):
                applied = int(await self._settle(keys=keys, args=args))
        self._live.pop(hold.id, None)
        return max(0, applied)

    async def credit(self, key_id: int, amount: int, ref: str) -> None:
        keys = [self._key(key_id), f"{self._key(key_id)}:credit:{ref}"]
        with translated("wallet", "credit a recharge"):
            await self._credit(keys=keys, args=[amount, DONE_TTL_MS * 24])

    async def state(self, key_id: int) -> tuple[int, int, int] | None:
        """(balance, held, spent) as Redis has it, for tests and listings."""
        values = await self.client.hmget(self._key(key_id), ["b", "h", "s"])  # type: ignore[misc]
        if values[0] is None:
            return None
        return int(values[0]), int(values[1]), int(values[2])

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        self._live.clear()
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        if self._batch is not None:
            await self._batch.close()
        await self.client.aclose()
