"""Admission rules (billing/admission.py) without a server: authorization, limits, holds, settling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tollway.billing import admission
from tollway.billing.admission import Access, Billing, Bound
from tollway.billing.wallet import Hold, MemoryWallet
from tollway.core.billing import BillingUnavailable, Group, LedgerEntry, PendingSettlement
from tollway.core.catalog import ModelInfo
from tollway.core.errors import InsufficientCredits, InternalError, InvalidRequest, PermissionDenied, RateLimited
from tollway.core.keys import ApiKey
from tollway.limits.memory import MemoryLimiter
from tollway.routing.catalog import Route

PRICED = ModelInfo(id="m", provider="p", upstream_id="m", credit_cost=1_000)
OTHER = ModelInfo(id="other", provider="p", upstream_id="other", credit_cost=5_000)


def key(**kw: Any) -> ApiKey:
    return ApiKey(**{"id": 7, "name": "k", "prefix": "tw-x", "key_hash": "h", **kw})


class Books:
    """A ledger repository in memory: what the writer would have written, and the settlements
    kept for later while the wallet store was away (``down``: the database is away too)."""

    def __init__(self, balance: int) -> None:
        self.balance = balance
        self.rows: list[LedgerEntry] = []
        self.pending: dict[str, PendingSettlement] = {}
        self.down = False

    async def apply(self, entries: Sequence[LedgerEntry]) -> None:
        self.rows.extend(entries)

    async def state(self, key_id: int, month: str) -> tuple[int, int]:
        return self.balance, 0

    async def defer(self, pending: PendingSettlement) -> None:
        if self.down:
            raise OSError("database unreachable")
        self.pending[pending.hold_id] = pending

    async def deferred(self, limit: int = 500) -> list[PendingSettlement]:
        if self.down:
            raise OSError("database unreachable")
        return list(self.pending.values())[:limit]

    async def book(self, pending: PendingSettlement, entry: LedgerEntry) -> bool:
        if self.pending.pop(pending.hold_id, None) is None:
            return False
        self.rows.append(entry)
        return True


def billing(books: Books, wallet: Any = None) -> Billing:
    return Billing(wallet or MemoryWallet(books.state), MemoryLimiter(), books, flush_interval=0.01)  # type: ignore[arg-type]


@pytest.mark.parametrize(("whitelist", "restricted", "by_group", "by_key", "model", "allowed"), [
    (None, False, None, None, "m", True),  # nothing configured: open
    (("m",), False, None, None, "m", True),
    (("x",), False, None, None, "m", False),  # outside the whitelist
    (None, True, {"m"}, None, "m", True),
    (None, True, {"x"}, None, "m", False),  # a restricted group: only what it is authorized for
    (None, True, None, None, "m", False),  # restricted with every authorization removed: still closed
    (None, True, {"x"}, {"m"}, "m", True),  # the key's own add to its group's
    (None, False, None, {"x"}, "m", True),  # ... and do not close an open group
    (("x",), True, {"m"}, None, "m", False),  # the whitelist restricts even an authorized model
])
def test_who_may_call_what(whitelist: tuple[str, ...] | None, restricted: bool, by_group: set[str] | None,
                           by_key: set[str] | None, model: str, allowed: bool) -> None:
    access = Access(groups={1: Group(id=1, name="g", restricted=restricted)},
                    group_models={1: frozenset(by_group)} if by_group is not None else {},
                    key_models={7: frozenset(by_key)} if by_key is not None else {})
    assert access.allowed(key(group_id=1, models=whitelist), (model,)) is allowed


async def test_a_refused_model_and_a_filtered_fallback() -> None:
    b = billing(Books(10**6))
    b.access = Access(groups={1: Group(id=1, name="g", restricted=True)}, key_models={7: frozenset({"m"})})
    with pytest.raises(PermissionDenied) as err:
        b.check_access(key(group_id=1), "other", [Route(model=OTHER, provider="p")])
    assert err.value.code == "model_not_available"
    routes = b.check_access(key(group_id=1), "m", [Route(model=PRICED, provider="p"), Route(model=OTHER, provider="p")])
    assert [r.model.id for r in routes] == ["m"]  # the unauthorized fallback is dropped


async def test_hold_charge_and_refund_with_a_group_multiplier() -> None:
    books = Books(10_000)
    b = billing(books)
    b.access = Access(groups={1: Group(id=1, name="g", multiplier=2_000_000)})
    b.start()
    try:
        k = key(group_id=1)
        routes, ticket = await b.admit(k, "m", [Route(model=PRICED, provider="p")], Bound(10))
        assert ticket.hold is not None and ticket.hold.amount == 2_000  # credit_cost x2
        assert b.settle(ticket, PRICED, (10, 5), "r1") == 2_000
        _, ticket = await b.admit(k, "m", routes, Bound(10))
        assert b.settle(ticket, PRICED, None, "r2") == 0  # refunded
        await b.writer.flush()
        assert [(r.kind, r.amount, r.reserved) for r in books.rows] == [("charge", -2_000, 2_000),
                                                                         ("refund", 0, 2_000)]
        assert await b.wallet.state(7) == (8_000, 0, 2_000)
    finally:
        await b.close()


async def test_a_refused_hold_gives_back_its_tokens_but_counts_the_request() -> None:
    b = billing(Books(500))  # less than one request's credit_cost
    k = key(rpm=2, tpm=100)
    with pytest.raises(InsufficientCredits):
        await b.admit(k, "m", [Route(model=PRICED, provider="p")], Bound(40))
    with pytest.raises(InsufficientCredits):  # its 40 tokens were given back: the TPM has room
        await b.admit(k, "m", [Route(model=PRICED, provider="p")], Bound(90))
    with pytest.raises(RateLimited) as err:  # but both requests count against the RPM
        await b.admit(k, "m", [Route(model=PRICED, provider="p")], Bound(1))
    assert err.value.retry_after is not None and err.value.retry_after > 0
    await b.close()


class CountingWallet:
    """The in-process wallet, local or posing as a shared one, counting its reservations."""

    def __init__(self, books: Books, *, local: bool) -> None:
        self.inner = MemoryWallet(books.state)
        self.local = local
        self.reserves = 0
        self.release, self.state, self.close = self.inner.release, self.inner.state, self.inner.close

    async def reserve(self, key_id: int, amount: int, *, quota: int | None, month: str) -> Hold:
        self.reserves += 1
        return await self.inner.reserve(key_id, amount, quota=quota, month=month)

    lease = None

    async def renew(self) -> None:
        return None

    def settle_now(self, hold: Hold, charge: int, *, quota: int | None, month: str) -> int | None:
        return self.inner.settle_now(hold, charge, quota=quota, month=month) if self.local else None

    async def settle(self, hold: Hold, charge: int, *, quota: int | None, month: str, keep: float | None = None) -> int:
        return self.inner.settle_now(hold, charge, quota=quota, month=month)


@pytest.mark.parametrize("local", [True, False])
async def test_local_steps_stop_at_a_refusal_and_shared_ones_are_undone(local: bool) -> None:
    """Local backends: one step after the other, so a refused limit never reaches the wallet, and
    a settlement is applied before ``settle`` returns. A shared wallet: the limits and the hold go
    out together, the refusal gives the hold back, and settling happens in the background."""
    books = Books(10_000)
    wallet = CountingWallet(books, local=local)
    b = billing(books, wallet)
    route = [Route(model=PRICED, provider="p")]
    try:
        _, ticket = await b.admit(key(rpm=1), "m", route, Bound(1))
        with pytest.raises(RateLimited):
            await b.admit(key(rpm=1), "m", route, Bound(1))
        assert wallet.reserves == (1 if local else 2)
        await asyncio.gather(*b._settling)  # a shared wallet's hold given back
        assert await wallet.state(7) == (10_000, 1_000, 0)
        assert b.settle(ticket, PRICED, (1, 1), "r") == 1_000
        assert bool(b._settling) is not local
        await asyncio.gather(*b._settling)
        assert await wallet.state(7) == (9_000, 0, 1_000)
    finally:
        await b.close()


class FlakyWallet:
    """A shared wallet (not the in-process one, which settles without awaiting) whose settling
    fails ``failures`` times (Redis away), then works; ``down`` fails reservations too."""

    local = False
    lease = 60.0

    def __init__(self, books: Books, failures: int) -> None:
        self.inner = MemoryWallet(books.state)
        self.failures = failures
        self.attempts = 0
        self.down = False
        self.keep: list[float | None] = []
        self.load, self.credit, self.state = self.inner.load, self.inner.credit, self.inner.state
        self.release = self.inner.release

    async def reserve(self, key_id: int, amount: int, *, quota: int | None, month: str) -> Hold:
        if self.down:
            raise InternalError("wallet: Redis failed to reserve credits (ConnectionError: refused)")
        return await self.inner.reserve(key_id, amount, quota=quota, month=month)

    async def renew(self) -> None:
        return None

    def settle_now(self, hold: Hold, charge: int, *, quota: int | None, month: str) -> None:
        return None  # shared: settling is a round trip

    async def settle(self, hold: Hold, charge: int, *, quota: int | None, month: str, keep: float | None = None) -> int:
        self.attempts += 1
        self.keep.append(keep)
        if self.failures:
            self.failures -= 1
            raise InternalError("wallet: Redis failed to settle a request")
        return self.inner.settle_now(hold, charge, quota=quota, month=month)

    async def close(self) -> None:
        await self.inner.close()


async def test_settling_retries_through_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "SETTLE_RETRIES", (0.01, 0.01, 0.01))
    books = Books(10_000)
    wallet = FlakyWallet(books, failures=2)
    b = billing(books, wallet)
    b.start()
    _, ticket = await b.admit(key(), "m", [Route(model=PRICED, provider="p")], Bound(1))
    b.settle(ticket, PRICED, (1, 1), "r")
    await b.close()  # waits for the settling, flushes the ledger
    assert wallet.attempts == 3
    assert [(r.kind, r.amount) for r in books.rows] == [("charge", -1_000)]


async def until(check: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not in time")


async def test_a_settlement_the_wallet_store_cannot_take_is_kept_and_booked_when_it_returns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17.13: an outage longer than the retries used to drop the charge (served, never
    booked). It is kept in the database and applied once the wallet store answers again."""
    monkeypatch.setattr(admission, "SETTLE_RETRIES", (0.01,))
    monkeypatch.setattr(admission, "REPLAY_INTERVAL", 0.02)
    books = Books(10_000)
    wallet = FlakyWallet(books, failures=6)  # two in memory, then the replays fail until the 7th attempt
    b = billing(books, wallet)
    b.start()
    try:
        _, ticket = await b.admit(key(), "m", [Route(model=PRICED, provider="p")], Bound(1))
        assert b.settle(ticket, PRICED, (1, 1), "r9") == 1_000  # what the log row shows
        await until(lambda: "r9" in {p.request_id for p in books.pending.values()} or books.rows)
        await until(lambda: bool(books.rows))
        assert [(r.kind, r.amount, r.reserved, r.request_id) for r in books.rows] == [("charge", -1_000, 1_000, "r9")]
        assert books.pending == {}
        assert wallet.keep[-1] is not None and wallet.keep[-1] >= 86_400  # its answer outlives a slow database
        assert await wallet.state(7) == (9_000, 0, 1_000)
    finally:
        await b.close()


async def test_settlements_kept_by_a_process_that_died_are_booked_by_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "REPLAY_INTERVAL", 0.02)
    books = Books(10_000)
    wallet = FlakyWallet(books, failures=0)
    hold = await wallet.reserve(7, 3_000, quota=None, month="2026-11")
    books.pending[hold.id] = PendingSettlement(hold_id=hold.id, key_id=7, reserved=3_000, charge=2_500, quota=None,
                                               request_id="dead-1", model="m", created_at=1.0)
    b = billing(books, wallet)
    b.start()  # a process starting later books what the dead one kept
    try:
        await until(lambda: bool(books.rows))
        assert [(r.kind, r.amount, r.reserved, r.request_id) for r in books.rows] == [("charge", -2_500, 3_000,
                                                                                        "dead-1")]
        assert await wallet.state(7) == (7_500, 0, 2_500)
    finally:
        await b.close()


async def test_admission_while_the_wallet_store_is_unreachable_is_a_503_with_retry_after() -> None:
    """Issue 17.13: a billed call during a Redis outage is refused as unavailable (503, Retry-After),
    not failed as an internal error (500)."""
    books = Books(10_000)
    wallet = FlakyWallet(books, failures=0)
    wallet.down = True
    b = billing(books, wallet)
    try:
        with pytest.raises(BillingUnavailable) as err:
            await b.admit(key(), "m", [Route(model=PRICED, provider="p")], Bound(1))
        assert err.value.http_status == 503 and err.value.code == "billing_unavailable"
        assert err.value.retry_after is not None and err.value.retry_after >= 1
        wallet.down = False
        _, ticket = await b.admit(key(), "m", [Route(model=PRICED, provider="p")], Bound(1))
        assert ticket.hold is not None
    finally:
        await b.close()


async def test_closing_with_both_stores_away_gives_up_in_bounded_time(monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(admission, "SETTLE_RETRIES", (0.01,))
    monkeypatch.setattr(admission, "CLOSE_GRACE", 0.3)
    books = Books(10_000)
    b = billing(books, FlakyWallet(books, failures=10**6))
    b.start()
    _, ticket = await b.admit(key(), "m", [Route(model=PRICED, provider="p")], Bound(1))
    books.down = True
    b.settle(ticket, PRICED, (1, 1), "r7")
    await asyncio.wait_for(b.close(), 5)
    assert books.rows == [] and books.pending == {}
    assert "r7" in caplog.text and "lost" in caplog.text


async def test_unpriced_models_can_be_refused() -> None:
    free = ModelInfo(id="free", provider="p", upstream_id="free")
    b = Billing(MemoryWallet(Books(10**6).state), MemoryLimiter(), Books(10**6), deny_unpriced=True)  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied) as err:
        await b.admit(key(), "free", [Route(model=free, provider="p")], Bound(1))
    assert err.value.code == "model_not_available"
    routes, ticket = await b.admit(key(), "m", [Route(model=PRICED, provider="p"), Route(model=free, provider="p")],
                                   Bound(1))
    assert [r.model.id for r in routes] == ["m"]  # a free fallback is dropped too
    assert b.settle(ticket, PRICED, (1, 1), "r") == 1_000
    await b.close()


async def test_a_fallback_model_counts_its_own_limits_and_keeps_tokens_only_if_it_served() -> None:
    limited = ModelInfo(id="f", provider="p", upstream_id="f", credit_cost=1_000, rpm=2, tpm=100)
    b = billing(Books(10**6))
    routes = [Route(model=PRICED, provider="p"), Route(model=limited, provider="p")]
    try:
        _, first = await b.admit(key(), "m", routes, Bound(30, 30))
        await b.admit_fallback(first, limited)  # tried: 60 of its 100 tokens held
        b.settle(first, PRICED, (20, 20), "r1")  # but "m" served: the fallback's window keeps no tokens
        _, second = await b.admit(key(), "m", routes, Bound(30, 30))
        await b.admit_fallback(second, limited)  # room for 60 again
        b.settle(second, limited, (40, 30), "r2")  # served by the fallback: its window keeps 70
        _, third = await b.admit(key(), "m", routes, Bound(10, 10))
        with pytest.raises(RateLimited) as err:  # two requests a minute on "f"
            await b.admit_fallback(third, limited)
        assert "2 requests per minute for this key on f" in err.value.message
        b.settle(third, PRICED, (1, 1), "r3")
        _, big = await b.admit(key(), "m", routes, Bound(90, 20))
        with pytest.raises(InvalidRequest) as too_big:  # never fits its TPM: a refusal, not a wait
            await b.admit_fallback(big, limited)
        assert too_big.value.code == "tpm_exceeded"
        b.settle(big, PRICED, (1, 1), "r4")
        over = await b.limiter.hit("k7:f", rpm=None, tpm=100, tokens=31)  # 70 kept + 31
        assert not over.allowed and over.reason == "tpm"
        assert (await b.limiter.hit("k7:f", rpm=None, tpm=100, tokens=30)).allowed
    finally:
        await b.close()


async def test_in_redis_a_refusal_undoes_what_the_same_round_trip_held(redis_url: str, redis_prefix: str) -> None:
    """Limits and the hold go to Redis together; a refused limit gives the hold back, a refused
    hold gives the limits their tokens back."""
    from tollway.billing.redis_wallet import RedisWallet
    from tollway.limits.redis import RedisLimiter
    from tollway.store.redis import ScriptBatch, connect

    books = Books(1_500)
    client = await connect(redis_url)
    batch = ScriptBatch(client)
    b = Billing(RedisWallet(client, books.state, prefix=redis_prefix, batch=batch),  # type: ignore[arg-type]
                RedisLimiter(client, redis_prefix, batch=batch), books)  # type: ignore[arg-type]
    try:
        k = key(rpm=1, tpm=1_000)
        route = [Route(model=PRICED, provider="p")]
        _, ticket = await b.admit(k, "m", route, Bound(100))
        with pytest.raises(RateLimited):  # the RPM refuses: the hold made alongside goes back
            await b.admit(k, "m", route, Bound(100))
        for _ in range(50):
            if await b.wallet.state(7) == (1_500, 1_000, 0):
                break
            await asyncio.sleep(0.02)
        assert await b.wallet.state(7) == (1_500, 1_000, 0)  # only the first request's hold
        b.settle(ticket, PRICED, (1, 1), "r1")
        other = key(id=8, tpm=1_000)
        with pytest.raises(InsufficientCredits):  # key 8 has 1,500 too; the hold of 2,000 is refused...
            await b.admit(other, "m", [Route(model=OTHER, provider="p")], Bound(600))
        # ...and its 600 tokens went back (in the background): 600 more fit in the minute
        await asyncio.gather(*b._settling)
        decision = await b.limiter.hit("k8", rpm=None, tpm=1_000, tokens=600)
        assert decision.allowed
    finally:
        await b.close()


async def test_a_real_redis_outage_bills_every_request_served(engine: Any, redis_url: str, redis_prefix: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17.13 against Redis (through a proxy the test cuts) and the database: ten calls in
    flight when Redis goes away are all booked once it is back, a call during the outage is a 503,
    and the balance equals the ledger in the database and in Redis."""
    from urllib.parse import urlsplit

    from tests.fakes.tcp_proxy import TcpProxy
    from tollway.auth.key_service import KeyService
    from tollway.billing.redis_wallet import RedisWallet
    from tollway.limits.redis import RedisLimiter
    from tollway.store.keys import KeyRepository
    from tollway.store.ledger import LedgerRepository
    from tollway.store.redis import ScriptBatch, connect

    monkeypatch.setattr(admission, "SETTLE_RETRIES", (0.05, 0.1))
    monkeypatch.setattr(admission, "REPLAY_INTERVAL", 0.05)
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    client = await connect(proxy.url(int((target.path or "/0").strip("/") or 0)))
    batch = ScriptBatch(client, timeout=1.0)
    ledger = LedgerRepository(engine)
    api_key, _ = await KeyService(KeyRepository(engine)).create(name="outage")
    await ledger.recharge(api_key.id, 100_000)
    b = Billing(RedisWallet(client, ledger.state, prefix=redis_prefix, batch=batch),
                RedisLimiter(client, redis_prefix, batch=batch), ledger, flush_interval=0.02)
    b.start()
    route = [Route(model=PRICED, provider="p")]
    try:
        tickets = [(await b.admit(api_key, "m", route, Bound(1)))[1] for _ in range(10)]
        proxy.cut()
        with pytest.raises(BillingUnavailable):
            await b.admit(api_key, "m", route, Bound(1))
        for i, ticket in enumerate(tickets):
            assert b.settle(ticket, PRICED, (1, 1), f"outage-{i}") == 1_000
        for _ in range(200):  # every settlement kept in the database
            if len(await ledger.deferred()) == 10:
                break
            await asyncio.sleep(0.02)
        assert len(await ledger.deferred()) == 10
        proxy.restore()
        for _ in range(300):
            if await ledger.total(api_key.id) == 90_000 and not await ledger.deferred():
                break
            await asyncio.sleep(0.02)
        assert await ledger.total(api_key.id) == 90_000 and await ledger.deferred() == []
        assert await ledger.state(api_key.id, admission.month_of(time.time())) == (90_000, 10_000)
        assert await b.wallet.state(api_key.id) == (90_000, 0, 10_000)
    finally:
        await b.close()
        proxy.stop()
