"""Admission and settlement: whether a key may call a model now, and what the call costs it.

Before the upstream call (``Billing.admit``), in this order:

1. **Authorization.** The model must be in the key's whitelist (``api_keys.models``) when it has
   one, and, when the key's group is restricted, authorized to the group or to the key (a key's
   own authorizations add to its group's). A group is restricted from its first authorization
   until an admin clears the flag, so removing authorizations never opens it. Otherwise 403
   ``model_not_available``.
2. **Limits.** RPM and TPM per key, and per key on the model when the model sets them: one
   sliding-window hit each (a ``core.limiter.Limiter``); 429 ``rate_limited`` with Retry-After.
3. **Credits.** The worst case (every input token plus the output bound, times the group's
   multiplier, plus the model's per-request cost) is held in the key's wallet; 402
   ``insufficient_credits`` when the balance cannot cover it, 429 ``insufficient_quota`` past the
   monthly quota. Unpriced models hold nothing (with ``TOLLWAY_UNPRICED_MODELS=deny`` a key may not
   call them at all); the admin secret and direct tokens are not billed.

When the call ends (``Billing.settle``, from ``Call.finish``), the hold is released and the actual
cost charged: a success (or a stream the client cut after it had begun) pays for its tokens, any
other failure is refunded in full. The charge goes to the ledger in the background (one row per
billed request), and the TPM reservation is replaced by the actual token count.

The wallet and the limiter say whether they are ``local`` (this process's memory, no I/O) or
shared (Redis, a round trip per call). With both local the steps above run one after the other,
each only if the last passed, and a settlement is applied before ``settle`` returns. Otherwise
every limit and the hold go out together (one round trip through the shared ``ScriptBatch``) and
whichever refuses undoes the rest; settlements run in the background.

A shared wallet's holds are leases, renewed (``renew``, from the gateway's lease renewal) while
their calls run, so a process that dies gives its holds back within ``lease`` seconds. When the
shared store cannot be reached, a billed call is refused with 503 ``billing_unavailable`` and a
Retry-After (``BillingUnavailable``), and a call already served is not left unbilled: after a few
quick retries its settlement is kept in the database beside the ledger (``LedgerRepository.defer``,
durable across a crash), its hold still renewed, and ``replay`` (every ``REPLAY_INTERVAL`` seconds,
in any process) applies it to the wallet and books its ledger row once the store answers again.
A model without an operator price charges nothing; its log row gets a list-price estimate
(``reference_prices``), never charged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from tollway.billing.pricing import DEFAULT_RESERVE_OUTPUT, cost, reservation
from tollway.billing.reference_prices import estimate
from tollway.billing.wallet import Hold, Wallet
from tollway.core.billing import BillingUnavailable, Group, LedgerEntry, PendingSettlement
from tollway.core.catalog import ModelInfo
from tollway.core.errors import InternalError, InvalidRequest, PermissionDenied, RateLimited
from tollway.core.keys import ApiKey
from tollway.core.limiter import Limiter
from tollway.core.money import MICRO
from tollway.core.request_log import RequestLog
from tollway.store.ledger import CHARGE, REFUND, LedgerRepository, month_of
from tollway.store.log_buffer import WriteBehind

log = logging.getLogger("tollway.billing")
# seconds between attempts to settle in Redis before the settlement is kept in the database
SETTLE_RETRIES = (0.1, 0.5)
CREDIT_RETRIES = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0)  # seconds between attempts to credit a recharge in Redis
REPLAY_INTERVAL = 2.0  # seconds between looks at the settlements kept in the database
REPLAY_BATCH = 500
KEEP_ANSWER = 7 * 86_400.0  # a replayed settlement's answer stays in Redis until its ledger row is surely in
CLOSE_GRACE = 25.0  # at shutdown, how long settlements that reach neither Redis nor the database are tried
UNAVAILABLE_RETRY_AFTER = 5.0  # seconds a call refused while the wallet store is away is told to wait


MAX_TOKENS = 2**31 - 1  # a bound beyond any model's; larger asks are clamped to it


class Bound(msgspec.Struct, frozen=True):
    """What a request may use at most, as far as it is known before the call."""

    input_tokens: int
    max_tokens: int | None = None
    count: int = 1  # things the request makes that the model prices each (images)
    units: int = 0  # units of the model's price unit the request may use at most (characters, seconds)

    def __post_init__(self) -> None:
        if self.max_tokens is not None:  # a garbage 10**40 must not reach a counter
            msgspec.structs.force_setattr(self, "max_tokens", max(0, min(self.max_tokens, MAX_TOKENS)))


def estimate_tokens(raw: bytes | str) -> int:
    """An upper-leaning estimate of a request's input tokens from its size: a token is about four
    bytes of English and three of most other scripts; a reservation settles to the real count."""
    return len(raw) // 3 + 8


class Candidate(Protocol):
    """A route as admission reads it: the model it would call (``routing.catalog.Route`` is one;
    billing is below routing, so it names the shape, not the class)."""

    @property
    def model(self) -> ModelInfo: ...


R = TypeVar("R", bound=Candidate)


class Access(msgspec.Struct, frozen=True):
    """Groups and model authorizations, as of the last reload (one snapshot, swapped whole)."""

    groups: dict[int, Group] = msgspec.field(default_factory=dict)
    group_models: dict[int, frozenset[str]] = msgspec.field(default_factory=dict)
    key_models: dict[int, frozenset[str]] = msgspec.field(default_factory=dict)

    def allowed(self, key: ApiKey, names: Sequence[str]) -> bool:
        """May ``key`` call the model known by any of ``names`` (as asked, as resolved)?"""
        if key.models is not None and not any(n in key.models for n in names):
            return False
        group = self.groups.get(key.group_id) if key.group_id is not None else None
        if group is None or not group.restricted:
            return True
        by_group = self.group_models.get(group.id, frozenset())
        by_key = self.key_models.get(key.id, frozenset())
        return any(n in by_group or n in by_key for n in names)

    def multiplier(self, key: ApiKey) -> int:
        group = self.groups.get(key.group_id) if key.group_id is not None else None
        return group.multiplier if group is not None else MICRO


class Ticket:
    """One admitted call's holds: credits, and the limit reservations to settle."""

    __slots__ = ("key", "hold", "limits", "multiplier", "bound", "quota", "month")

    def __init__(self, key: ApiKey, multiplier: int, bound: Bound) -> None:
        self.key = key
        self.hold: Hold | None = None
        # (limit key, reservation, tokens reserved, the model whose limit it is; None: the key's)
        self.limits: list[tuple[str, str, int, str | None]] = []
        self.multiplier = multiplier
        self.bound = bound  # what the request may use: its limits and hold were counted from it
        self.quota = key.month_quota
        self.month = ""


class Billing:
    def __init__(self, wallet: Wallet, limiter: Limiter, ledger: LedgerRepository, *, enabled: bool = True,
                 flush_interval: float = 0.1, default_output: int = DEFAULT_RESERVE_OUTPUT,
                 deny_unpriced: bool = False) -> None:
        self.wallet = wallet
        self.limiter = limiter
        self.ledger = ledger
        self.enabled = enabled
        self.deny_unpriced = deny_unpriced  # an operator who bills every call: no model is free
        self.default_output = default_output
        self.access = Access()
        # ledger rows are never dropped while the database is away; at shutdown it gets ~25 s
        self.writer: WriteBehind[LedgerEntry] = WriteBehind(ledger.apply, name="ledger", interval=flush_interval,
                                                           batch=1000, max_pending=None, close_attempts=50,
                                                           close_delay=0.5)
        self._settling: set[asyncio.Task[None]] = set()
        self._replaying: asyncio.Task[None] | None = None
        self._unavailable_logged = -math.inf

    # before the call -----------------------------------------------------------------------

    def check_access(self, key: ApiKey, asked: str, routes: Sequence[R]) -> list[R]:
        """The routes ``key`` may use (the first must be allowed: fallbacks are filtered)."""
        if not self.access.allowed(key, (asked, routes[0].model.id)):
            raise PermissionDenied(f"Model '{asked}' is not available to this key.", code="model_not_available")
        return [routes[0], *(r for r in routes[1:] if self.access.allowed(key, (r.model.id,)))]

    async def admit(self, key: ApiKey, asked: str, routes: Sequence[R], bound: Bound) -> tuple[list[R], Ticket]:
        allowed = self.check_access(key, asked, routes)
        if self.deny_unpriced:
            allowed = [r for r in allowed if r.model.priced]
            if not allowed:
                raise PermissionDenied(f"Model '{asked}' has no price, and this gateway serves priced models only.",
                                       code="model_not_available")
        ticket = Ticket(key, self.access.multiplier(key), bound)
        first = allowed[0].model
        steps = [self._limit(ticket, None, key.rpm, key.tpm)]
        if first.rpm is not None or first.tpm is not None:
            steps.append(self._limit(ticket, first.id, first.rpm, first.tpm))
        amount = 0
        if self.enabled:
            amount = max(reservation(r.model, bound.input_tokens, bound.max_tokens, ticket.multiplier,
                                     self.default_output, count=bound.count, units=bound.units) for r in allowed)
        if amount > 0:
            ticket.month = month_of(time.time())
            steps.append(self._hold(ticket, amount))
        if self.wallet.local and self.limiter.local:  # no I/O: one after the other, each only if the last passed
            try:
                for step in steps:
                    await step
            except BaseException:
                for step in steps:
                    step.close()  # the ones never started
                self._undo(ticket)
                raise
            return allowed, ticket
        # shared state: every limit and the hold in one round trip; whichever refuses undoes the rest
        try:
            results = await asyncio.gather(*steps, return_exceptions=True)
        except BaseException:  # cancelled (the client went away)
            self._undo(ticket)
            raise
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            self._undo(ticket)
            if isinstance(failed, InternalError):
                raise self._unavailable(failed) from failed
            raise failed
        return allowed, ticket

    def _unavailable(self, err: InternalError) -> BillingUnavailable:
        """A shared store (Redis) failure at admission: the call cannot hold its credits now. The
        cause is logged at most every ``UNAVAILABLE_RETRY_AFTER`` seconds (each refusal is logged
        at the edge)."""
        now = time.monotonic()
        if now - self._unavailable_logged >= UNAVAILABLE_RETRY_AFTER:
            self._unavailable_logged = now
            log.warning("billed calls refused with 503 while the wallet store is unreachable: %s", err.message)
        return BillingUnavailable(f"Billing is unavailable: the wallet store cannot be reached. Retry after "
                                  f"{UNAVAILABLE_RETRY_AFTER:g} s.", retry_after=UNAVAILABLE_RETRY_AFTER)

    async def _hold(self, ticket: Ticket, amount: int) -> None:
        ticket.hold = await self.wallet.reserve(ticket.key.id, amount, quota=ticket.key.month_quota,
                                                month=ticket.month)

    def _undo(self, ticket: Ticket) -> None:
        """A refused admission: its hold given back, its limits keep the request but no tokens."""
        if ticket.hold is not None:
            self._spawn(self.wallet.release(ticket.hold))
            ticket.hold = None
        self._release_limits(ticket)

    async def rehold(self, key: ApiKey, amount: int) -> Ticket:
        """Hold ``amount`` again for a task another process admitted (its hold went with that
        process): no limits are counted again. InsufficientCredits / QuotaExceeded when the key
        cannot cover it any more."""
        ticket = Ticket(key, self.access.multiplier(key), Bound(0, 0))
        if self.enabled and amount > 0:
            ticket.month = month_of(time.time())
            try:
                await self._hold(ticket, amount)
            except InternalError as err:
                raise self._unavailable(err) from err
        return ticket

    async def admit_fallback(self, ticket: Ticket, model: ModelInfo) -> None:
        """Count a fallback model's own limits before it is tried (the key's were counted at
        admission); RateLimited or InvalidRequest (``tpm_exceeded``) when it may not be tried."""
        if model.rpm is not None or model.tpm is not None:
            try:
                await self._limit(ticket, model.id, model.rpm, model.tpm)
            except InternalError as err:
                raise self._unavailable(err) from err

    async def _limit(self, ticket: Ticket, model: str | None, rpm: int | None, tpm: int | None) -> None:
        """Count one limit: the key's (``model`` None) or the key's on ``model``."""
        if rpm is None and tpm is None:
            return
        on = "" if model is None else f" on {model}"
        tokens = ticket.bound.input_tokens + (ticket.bound.max_tokens or 0)
        if tpm is not None and tokens > tpm:  # no window will ever have room: not a wait, a refusal
            raise InvalidRequest(f"This request may use {tokens} tokens, more than this key's limit of {tpm} "
                                 f"tokens per minute{on}: lower max_tokens or shorten the input.",
                                 code="tpm_exceeded")
        name = f"k{ticket.key.id}" if model is None else f"k{ticket.key.id}:{model}"
        decision = await self.limiter.hit(name, rpm=rpm, tpm=tpm, tokens=tokens)
        if not decision.allowed:
            which = f"{rpm} requests" if decision.reason == "rpm" else f"{tpm} tokens"
            raise RateLimited(f"Rate limit reached: {which} per minute for this key{on}. "
                              f"Retry after {max(1, math.ceil(decision.retry_after))} s.",
                              retry_after=decision.retry_after)
        if decision.reservation is not None and tpm is not None:  # RPM alone: nothing to settle later
            ticket.limits.append((name, decision.reservation, tokens, model))

    def _release_limits(self, ticket: Ticket) -> None:
        """A refused admission keeps its request counts (it was a request) but no tokens."""
        self._settle_limits(ticket, None, 0)
        ticket.limits = []

    def _settle_limits(self, ticket: Ticket, served: str | None, tokens: int) -> None:
        """The key's limits take the tokens used; a model's, only if that model served them."""
        limiter = self.limiter
        for name, rid, reserved, model in ticket.limits:
            # a model tried that did not serve the request keeps the request, not the tokens
            tokens_here = 0 if model is not None and model != served else tokens
            if reserved == tokens_here:
                continue  # the estimate was right: nothing to correct
            if not limiter.settle_now(name, rid, actual_tokens=tokens_here):  # local: now, not in a task
                self._spawn(limiter.settle(name, rid, actual_tokens=tokens_here))

    # after the call ------------------------------------------------------------------------

    def settle(self, ticket: Ticket, model: ModelInfo | None, tokens: tuple[int, int] | None,
               request_id: str, row: RequestLog | None = None, *, count: int = 1, units: int = 0) -> int:
        """Release the holds; charge for ``tokens`` (input, output) on ``model``, or refund
        (``tokens`` None). Returns the cost (what the request log shows); in a shared wallet the
        charge is settled in the background and ``row`` corrected if less could be charged. A
        model without a price gets a list-price estimate in ``row`` (never charged)."""
        self._settle_limits(ticket, model.id if model is not None else None,
                            0 if tokens is None else tokens[0] + tokens[1])
        charge = 0 if tokens is None or model is None else cost(model, tokens[0], tokens[1], ticket.multiplier,
                                                                count=count, units=units)
        if row is not None:
            row.estimated_cost_micro = self.estimated(model, tokens, count=count, units=units)
        hold = ticket.hold
        if hold is None:
            return charge
        ticket.hold = None
        applied = self.wallet.settle_now(hold, charge, quota=ticket.quota, month=month_of(time.time()))
        if applied is not None:  # a local wallet: settled now
            self._record(ticket, hold, charge, applied, model, request_id)
            return applied
        self._spawn(self._settle(ticket, hold, charge, model, request_id, row))
        return charge

    def estimated(self, model: ModelInfo | None, tokens: tuple[int, int] | None, *, count: int = 1,
                  units: int = 0) -> int | None:
        """What a call that used ``tokens`` on an unpriced ``model`` would cost at its provider's
        list price (micro-USD, ``reference_prices``): an estimate for the request log, never charged."""
        if model is None or tokens is None:
            return None
        return estimate(model, tokens[0], tokens[1], count=count, units=units)

    async def _settle(self, ticket: Ticket, hold: Hold, charge: int, model: ModelInfo | None,
                      request_id: str, row: RequestLog | None) -> None:
        """Settle in the shared wallet. Through an outage longer than a few quick retries the
        settlement is kept in the database (``replay`` applies it when the wallet answers again),
        so that nothing served goes unbilled; while the database is away too, both are tried in
        turn until one takes it (at shutdown, for ``CLOSE_GRACE`` seconds)."""
        attempt = 0
        try:
            while True:
                try:
                    applied = await self.wallet.settle(hold, charge, quota=ticket.quota, month=month_of(time.time()))
                    break
                except Exception as err:  # Redis away (InternalError), or its wallet lost while the database is
                    if attempt >= len(SETTLE_RETRIES) and await self._defer(ticket, hold, charge, model, request_id,
                                                                            err):
                        return
                    await asyncio.sleep(SETTLE_RETRIES[min(attempt, len(SETTLE_RETRIES) - 1)])
                    attempt += 1
        except asyncio.CancelledError:
            log.error("request %s: its settlement (%d micro-credits on key %s) reached neither the wallet store nor "
                      "the database before shutdown and is lost", request_id, charge, hold.key_id)
            raise
        if row is not None and applied != charge:
            row.cost_micro = applied  # the log row, if it is still waiting for its batch
        self._record(ticket, hold, charge, applied, model, request_id)

    async def _defer(self, ticket: Ticket, hold: Hold, charge: int, model: ModelInfo | None, request_id: str,
                     err: Exception) -> bool:
        """Keep a settlement the wallet store cannot take in the database; False if that fails too."""
        pending = PendingSettlement(hold_id=hold.id, key_id=hold.key_id, reserved=hold.amount, charge=charge,
                                    quota=ticket.quota, request_id=request_id,
                                    model=model.id if model is not None else None, created_at=time.time())
        try:
            await self.ledger.defer(pending)
        except Exception as exc:
            log.error("request %s: neither the wallet store (%s) nor the database (%s) takes its settlement of %d "
                      "micro-credits; still trying", request_id, _reason(err), type(exc).__name__, charge)
            return False
        log.warning("request %s: the wallet store is unreachable (%s); its settlement of %d micro-credits is kept in "
                    "the database and booked when it returns", request_id, _reason(err), charge)
        return True

    async def replay(self) -> int:
        """Apply the settlements kept in the database (by this process, or by one that died) to the
        wallet, and book each (ledger row, balance, kept copy removed) in one transaction; returns how
        many were booked. A settlement is applied once per hold however many processes replay it,
        and booked once. One the wallet still cannot take waits for the next round."""
        kept = await self.ledger.deferred(REPLAY_BATCH)
        if not kept:
            return 0
        month = month_of(time.time())
        results = await asyncio.gather(*(
            self.wallet.settle(Hold(p.key_id, p.reserved, p.hold_id), p.charge, quota=p.quota, month=month,
                               keep=KEEP_ANSWER) for p in kept), return_exceptions=True)
        booked = 0
        for pending, applied in zip(kept, results, strict=True):
            if isinstance(applied, InternalError):
                continue  # the wallet store is still away
            if isinstance(applied, BaseException):
                raise applied
            now = time.time()
            short = f"charged {applied} of {pending.charge}: balance or quota ran out; " if applied < pending.charge \
                else ""
            entry = LedgerEntry(key_id=pending.key_id, kind=CHARGE if pending.charge > 0 else REFUND, amount=-applied,
                                reserved=pending.reserved, month=month_of(now), request_id=pending.request_id,
                                model=pending.model, created_at=now,
                                note=f"{short}settled after the wallet store was unreachable")
            if await self.ledger.book(pending, entry):
                booked += 1
        if booked:
            log.info("booked %d settlements kept while the wallet store was unreachable", booked)
        return booked

    async def _replay_forever(self) -> None:
        while True:
            try:
                await self.replay()
            except Exception as exc:  # the database is away: next round
                log.warning("applying the settlements kept in the database failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(REPLAY_INTERVAL)

    @property
    def lease(self) -> float | None:
        """Seconds a hold outlives a process that stopped renewing it (None: holds die with it)."""
        return self.wallet.lease

    async def renew(self) -> None:
        """Keep the holds of this process's calls (and of its settlements still on their way) alive."""
        try:
            await self.wallet.renew()
        except Exception as err:  # Redis away (InternalError): the holds last their lease, the next round tries again
            log.warning("renewing credit holds failed (each lasts %s s from its last renewal): %s", self.lease,
                        _reason(err))

    def _record(self, ticket: Ticket, hold: Hold, charge: int, applied: int, model: ModelInfo | None,
                request_id: str) -> None:
        now = time.time()
        note = None if applied >= charge else f"charged {applied} of {charge}: balance or quota ran out"
        self.writer.add(LedgerEntry(key_id=hold.key_id, kind=CHARGE if charge > 0 else REFUND, amount=-applied,
                                    reserved=hold.amount, month=month_of(now), request_id=request_id,
                                    model=model.id if model is not None else None, note=note, created_at=now))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("settling a request failed: %s", task.exception())

    # recharges -----------------------------------------------------------------------------

    async def recharge(self, key_id: int, amount: int, note: str | None = None) -> tuple[LedgerEntry, int]:
        """Add credits: the wallet is loaded first, so it neither misses nor double-counts them;
        the ledger row is written, then the live wallet credited once per row (retried in the
        background if Redis fails: the row is already there)."""
        month = month_of(time.time())
        await self.wallet.load(key_id, month)
        entry, balance = await self.ledger.recharge(key_id, amount, note=note)
        ref = str(entry.id)
        try:
            await self.wallet.credit(key_id, amount, ref)
        except InternalError as err:
            log.error("recharge %s of key %s is in the ledger; crediting the live wallet failed, retrying: %s",
                      ref, key_id, err.message)
            self._spawn(self._credit_later(key_id, amount, ref))
        return entry, balance

    async def _credit_later(self, key_id: int, amount: int, ref: str) -> None:
        for delay in CREDIT_RETRIES:
            await asyncio.sleep(delay)
            try:
                await self.wallet.credit(key_id, amount, ref)
                return
            except InternalError:
                continue
        log.error("recharge %s of key %s never reached the live wallet; restart with its Redis state removed "
                  "to reload balances from the ledger", ref, key_id)

    def start(self) -> None:
        self.writer.start()
        if not self.wallet.local:  # settlements kept while Redis was away, by this process or another
            self._replaying = asyncio.create_task(self._replay_forever(), name="settlement-replay")

    async def close(self) -> None:
        if self._replaying is not None:
            self._replaying.cancel()
            await asyncio.gather(self._replaying, return_exceptions=True)
            self._replaying = None
        if self._settling:
            _, late = await asyncio.wait(list(self._settling), timeout=CLOSE_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.writer.close()
        await self.wallet.close()
        await self.limiter.close()


def _reason(err: Exception) -> str:
    return err.message if isinstance(err, InternalError) else f"{type(err).__name__}: {err}"
