"""Wallets: the live balance of each key, with the holds of its requests in flight.

A request reserves its worst case before the upstream call (``reserve``), which fails when the
balance, less what other requests hold, cannot cover it, or when the month's spend plus holds
would pass the key's monthly quota. Afterwards ``settle`` releases the hold and charges the actual
cost. A charge up to the hold is always covered; a charge beyond it (a longer answer than the
request's max_tokens promised) is taken only as far as balance and quota allow, so neither is ever
overspent. The month's spend restarts at zero in each calendar month (UTC).

Holds live only here (in this process, or in Redis for every replica): a process that dies takes
its holds with it, so no reservation leaks into the database. A shared wallet's holds are leases
(``lease`` seconds, renewed by ``renew`` while their calls run), so a process that dies without
settling gives them back within a lease. What ``settle`` charged goes to the ledger through
``admission.Billing``'s write-behind.

``MemoryWallet`` serves one process. Its state of a key is loaded from the database the first
time the key pays; afterwards this process is the only writer of that key's balance (several
processes share state through ``RedisWallet``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from tollway.core.errors import InsufficientCredits, QuotaExceeded
from tollway.core.money import MICRO

StateLoader = Callable[[int, str], Awaitable["tuple[int, int] | None"]]  # (key id, month) -> (balance, spent)


class Hold(msgspec.Struct, frozen=True):
    key_id: int
    amount: int
    id: str


def refused(reason: int, room: int) -> Exception:
    """The error for a refused reservation: 1 = balance, 2 = monthly quota."""
    room = max(0, room)
    if reason == 1:
        return InsufficientCredits(f"Insufficient credits: this request may cost more than the key's available "
                                   f"balance ({room / MICRO:.6f} credits).")
    return QuotaExceeded(f"Monthly quota exhausted: {room / MICRO:.6f} credits are left this month.",
                         code="insufficient_quota")


def settled(hold: int, charge: int, balance_room: int, quota_room: int | None) -> int:
    """What a settlement charges: all of it up to the hold; beyond, only what both rooms allow.

    ``balance_room`` and ``quota_room`` are what is left with this request's hold released."""
    if charge <= hold:
        return max(0, charge)
    room = balance_room - hold
    if quota_room is not None:
        room = min(room, quota_room - hold)
    return hold + min(charge - hold, max(0, room))


class Wallet(Protocol):
    @property
    def local(self) -> bool:
        """True when the balances are in this process: nothing waits on I/O but a key's first
        load, so a reservation may follow the limits one after another and ``settle_now``
        always settles. False for balances shared over the network (each call a round trip)."""
        ...

    @property
    def lease(self) -> float | None:
        """Seconds a hold outlives a process that stopped renewing it (one that died); None when
        holds die with their process (a local wallet: nothing to renew)."""
        ...

    async def reserve(self, key_id: int, amount: int, *, quota: int | None, month: str) -> Hold: ...

    async def renew(self) -> None:
        """Extend the lease of every hold this process made and has not settled or released
        (calls still running, settlements still on their way)."""
        ...

    def settle_now(self, hold: Hold, charge: int, *, quota: int | None, month: str) -> int | None:
        """``settle`` without awaiting, when this wallet can (a local one): what was charged; None,
        changing nothing, when settling takes a round trip (await ``settle``)."""
        ...

    async def settle(self, hold: Hold, charge: int, *, quota: int | None, month: str, keep: float | None = None) -> int:
        """Release ``hold`` and charge up to ``charge``; returns what was charged. Settling the
        same hold again answers the same and changes nothing, for ``keep`` seconds (by default an
        hour; longer for a settlement whose ledger row is written only afterwards)."""
        ...

    async def release(self, hold: Hold) -> None:
        """Give back a hold whose request will not run (an admission refused by a limit)."""
        ...

    async def load(self, key_id: int, month: str) -> bool:
        """Make sure the key's state is here (from the database if not); False for no such key.
        A recharge calls this before writing its ledger row, then ``credit``s the amount."""
        ...

    async def credit(self, key_id: int, amount: int, ref: str) -> None:
        """A recharge the database has recorded since ``load`` (``ref``: its ledger row, so that
        a retried credit is applied once)."""
        ...

    async def state(self, key_id: int) -> tuple[int, int, int] | None:
        """(balance, held, spent this month) as the wallet has it now; None if not loaded yet."""
        ...

    async def close(self) -> None: ...


class _Account:
    __slots__ = ("balance", "held", "month", "spent", "holds")

    def __init__(self, balance: int, month: str, spent: int) -> None:
        self.balance, self.held, self.month, self.spent = balance, 0, month, spent
        self.holds: dict[str, int] = {}  # hold id -> amount, for the requests in flight

    def roll(self, month: str) -> None:
        if month > self.month:
            self.month, self.spent = month, 0


class MemoryWallet:
    """Every key's wallet in this process (local). ``reserve`` awaits only the first load of a key."""

    local = True
    lease = None  # holds die with this process

    def __init__(self, load: StateLoader) -> None:
        self._load = load
        self._accounts: dict[int, _Account] = {}
        self._loading: dict[int, asyncio.Future[_Account | None]] = {}
        self._ids = itertools.count(1)  # a hold's id only needs to be unique here

    async def _account(self, key_id: int, month: str) -> _Account | None:
        account = self._accounts.get(key_id)
        if account is not None:
            return account
        pending = self._loading.get(key_id)
        if pending is None:
            pending = self._loading[key_id] = asyncio.ensure_future(self._fetch(key_id, month))
        try:
            return await asyncio.shield(pending)
        finally:
            self._loading.pop(key_id, None)

    async def _fetch(self, key_id: int, month: str) -> _Account | None:
        state = await self._load(key_id, month)
        if state is None:
            return None
        return self._accounts.setdefault(key_id, _Account(state[0], month, state[1]))

    async def reserve(self, key_id: int, amount: int, *, quota: int | None, month: str) -> Hold:
        account = await self._account(key_id, month)
        if account is None:
            raise refused(1, 0)
        account.roll(month)  # from here on, no await: the check and the hold are one step
        room = account.balance - account.held
        if room < amount:
            raise refused(1, room)
        if quota is not None and account.spent + account.held + amount > quota:
            raise refused(2, quota - account.spent - account.held)
        account.held += amount
        hold = Hold(key_id, amount, str(next(self._ids)))
        account.holds[hold.id] = amount
        return hold

    def settle_now(self, hold: Hold, charge: int, *, quota: int | None, month: str) -> int:
        """A hold this process never made, or settled already, changes nothing (answers 0):
        nothing here retries a settlement, and no hold here expires."""
        account = self._accounts.get(hold.key_id)
        held = account.holds.pop(hold.id, None) if account is not None else None
        if account is None or held is None:
            return 0
        account.held -= held
        account.roll(month)
        quota_room = None if quota is None else quota - account.spent - account.held
        applied = settled(held, charge, account.balance - account.held, quota_room)
        account.balance -= applied
        account.spent += applied
        return applied

    async def settle(self, hold: Hold, charge: int, *, quota: int | None, month: str, keep: float | None = None) -> int:
        return self.settle_now(hold, charge, quota=quota, month=month)

    async def renew(self) -> None:
        """Nothing to renew: no hold here outlives its process."""

    async def release(self, hold: Hold) -> None:
        account = self._accounts.get(hold.key_id)
        held = account.holds.pop(hold.id, None) if account is not None else None
        if account is not None and held is not None:
            account.held -= held

    async def load(self, key_id: int, month: str) -> bool:
        return await self._account(key_id, month) is not None

    async def credit(self, key_id: int, amount: int, ref: str) -> None:
        account = self._accounts.get(key_id)
        if account is not None:
            account.balance += amount

    async def state(self, key_id: int) -> tuple[int, int, int] | None:
        a = self._accounts.get(key_id)
        return None if a is None else (a.balance, a.held, a.spent)

    async def close(self) -> None:
        self._accounts.clear()
