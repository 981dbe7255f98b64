"""Wallets under random sequences of reserve, settle and credit.

``MemoryWallet`` is checked against a reference model after every step (the ledger arithmetic,
the holds, the monthly quota), and ``RedisWallet`` must give the same answer as ``MemoryWallet``
at every step of the same sequence (a differential test).

Redis: TOLLWAY_TEST_REDIS_URL (see tests/conftest.py). Each example uses a key id of its own under
the test's prefix.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.billing.redis_wallet import RedisWallet
from tollway.billing.wallet import Hold, MemoryWallet, StateLoader, Wallet, settled
from tollway.core.errors import InsufficientCredits, QuotaExceeded
from tollway.store.redis import connect

MONTHS = ("2026-01", "2026-02", "2026-03")
KEY = 7
REFS = (f"recharge-{i}" for i in itertools.count())  # each credit its own ledger row


def loader(balance: int, spent: int, calls: list[int] | None = None) -> StateLoader:
    async def load(key_id: int, month: str) -> tuple[int, int] | None:
        if calls is not None:
            calls.append(key_id)
        return (balance, spent) if key_id == KEY else None

    return load


# --- scenarios -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Reserve:
    amount: int
    month: str


@dataclass(frozen=True)
class Settle:
    pick: int  # which open hold (modulo how many there are)
    mode: str  # below, equal, above
    delta: int
    month: str


@dataclass(frozen=True)
class Credit:
    amount: int


Step = Reserve | Settle | Credit


@dataclass
class Scenario:
    scale: int
    balance: int
    spent: int
    quota: int | None
    steps: list[Step] = field(default_factory=list)


@st.composite
def scenarios(draw: st.DrawFn, max_steps: int = 40) -> Scenario:
    scale = draw(st.sampled_from([1, 997, 10**9]), label="scale")  # 10**9: figures near 10**12 stay exact
    units = st.integers(min_value=0, max_value=60)
    balance = draw(units) * scale
    quota = draw(st.one_of(st.none(), units.map(lambda n: n * scale)), label="quota")
    spent = draw(st.integers(min_value=0, max_value=(quota // scale) if quota is not None else 60)) * scale
    month = st.sampled_from(MONTHS)
    step = st.one_of(
        st.builds(Reserve, st.integers(min_value=0, max_value=25).map(lambda n: n * scale), month),
        st.builds(Settle, st.integers(min_value=0, max_value=50), st.sampled_from(["below", "equal", "above"]),
                  st.integers(min_value=0, max_value=20 * scale), month),
        st.builds(Credit, st.integers(min_value=1, max_value=10).map(lambda n: n * scale)),
    )
    steps = draw(st.lists(step, max_size=max_steps), label="steps")
    return Scenario(scale=scale, balance=balance, spent=spent, quota=quota, steps=steps)


def charge_of(hold: Hold, step: Settle) -> int:
    if step.mode == "equal":
        return hold.amount
    if step.mode == "below":
        return hold.amount - step.delta  # may go below zero: a settlement never pays anything back
    return hold.amount + max(1, step.delta)


Outcome = tuple[str, int | str, tuple[int, int, int] | None]


async def play(wallet: Wallet, s: Scenario) -> list[Outcome]:
    """Run ``s`` on ``wallet``; after each step, (what happened, its figure, the wallet's state)."""
    holds: list[Hold] = []
    out: list[Outcome] = []
    for step in s.steps:
        result: tuple[str, int | str]
        if isinstance(step, Reserve):
            try:
                holds.append(await wallet.reserve(KEY, step.amount, quota=s.quota, month=step.month))
                result = ("held", step.amount)
            except (InsufficientCredits, QuotaExceeded) as err:
                result = (type(err).__name__, err.message)
        elif isinstance(step, Settle):
            if not holds:
                continue
            hold = holds.pop(step.pick % len(holds))
            result = ("settled", await wallet.settle(hold, charge_of(hold, step), quota=s.quota, month=step.month))
        else:
            await wallet.credit(KEY, step.amount, next(REFS))
            result = ("credited", step.amount)
        await wallet.renew()  # the holds still open are renewed: nothing else changes
        out.append((*result, await wallet.state(KEY)))
    return out


# --- MemoryWallet against a reference model ------------------------------------------------

@dataclass
class Model:
    """What the wallet must hold, kept by hand."""

    balance: int
    spent: int
    month: str | None = None
    held: list[Hold] = field(default_factory=list)
    credits: int = 0
    charged: int = 0


async def play_both(s: Scenario, redis_url: str, prefix: str) -> tuple[list[Outcome], list[Outcome]]:
    """``s`` played on a memory wallet, then on a Redis wallet: (expected, actual)."""
    memory = MemoryWallet(loader(s.balance, s.spent))
    shared = RedisWallet(await connect(redis_url), loader(s.balance, s.spent), prefix=prefix)
    try:
        return await play(memory, s), await play(shared, s)
    finally:
        await memory.close()
        await shared.close()


def roll(m: Model, month: str) -> None:
    """The first reservation loads the key in its month; a later month restarts the spend."""
    if m.month is None:
        m.month = month
    elif month > m.month:
        m.month, m.spent = month, 0


@settings(max_examples=300)
@given(scenarios(max_steps=60))
def test_memory_wallet_keeps_its_books_at_every_step(s: Scenario) -> None:
    async def run() -> None:
        wallet = MemoryWallet(loader(s.balance, s.spent))
        m = Model(balance=s.balance, spent=s.spent)
        holds: list[Hold] = []
        for step in s.steps:
            if isinstance(step, Reserve):
                roll(m, step.month)
                room = m.balance - sum(h.amount for h in holds)
                over_quota = s.quota is not None and m.spent + sum(h.amount for h in holds) + step.amount > s.quota
                try:
                    hold = await wallet.reserve(KEY, step.amount, quota=s.quota, month=step.month)
                except InsufficientCredits:
                    assert room < step.amount
                except QuotaExceeded as err:
                    assert room >= step.amount and over_quota
                    assert err.code == "insufficient_quota" and err.http_status == 429
                else:
                    assert room >= step.amount and not over_quota
                    assert hold.key_id == KEY and hold.amount == step.amount
                    assert hold.id not in {h.id for h in holds}
                    holds.append(hold)
            elif isinstance(step, Settle):
                if not holds:
                    continue
                hold = holds.pop(step.pick % len(holds))
                charge = charge_of(hold, step)
                applied = await wallet.settle(hold, charge, quota=s.quota, month=step.month)
                roll(m, step.month)
                assert 0 <= applied <= max(0, charge)
                if charge <= hold.amount:
                    assert applied == max(0, charge)  # a charge the hold covers is taken in full
                else:
                    assert applied >= hold.amount
                    if applied < charge:  # cut short: the balance or the quota is used up exactly
                        others = sum(h.amount for h in holds)
                        assert (m.balance - applied == others
                                or (s.quota is not None and m.spent + applied + others == s.quota))
                m.balance -= applied
                m.spent += applied
                m.charged += applied
            else:
                await wallet.credit(KEY, step.amount, next(REFS))
                if m.month is not None:  # a credit before the first load is for a key not loaded here
                    m.balance += step.amount
                    m.credits += step.amount
            state = await wallet.state(KEY)
            if m.month is None:
                assert state is None
                continue
            assert state is not None
            balance, held, spent = state
            assert held == sum(h.amount for h in holds)
            assert balance >= 0 and held >= 0 and balance >= held
            assert balance == s.balance + m.credits - m.charged == m.balance  # exact ledger arithmetic
            assert spent == m.spent
            if s.quota is not None:
                assert spent + held <= s.quota  # never over quota when the quota was never lowered
        await wallet.close()

    asyncio.run(run())


async def test_the_month_rolls_forward_never_back() -> None:
    wallet = MemoryWallet(loader(1000, 100))
    with pytest.raises(QuotaExceeded, match="0.000000 credits are left"):
        await wallet.reserve(KEY, 1, quota=100, month="2026-05")  # May is used up
    assert await wallet.state(KEY) == (1000, 0, 100)
    may = await wallet.reserve(KEY, 0, quota=100, month="2026-05")  # a zero hold fits
    june = await wallet.reserve(KEY, 60, quota=100, month="2026-06")  # a new month: spent restarts
    assert await wallet.state(KEY) == (1000, 60, 0)
    assert await wallet.settle(june, 60, quota=100, month="2026-06") == 60
    assert await wallet.state(KEY) == (940, 0, 60)
    late = await wallet.reserve(KEY, 40, quota=100, month="2026-05")  # a late clock: still June's spend
    assert await wallet.state(KEY) == (940, 40, 60)
    with pytest.raises(QuotaExceeded):
        await wallet.reserve(KEY, 1, quota=100, month="2026-05")
    assert await wallet.settle(late, 40, quota=100, month="2026-05") == 40
    assert await wallet.settle(may, 0, quota=100, month="2026-05") == 0
    assert await wallet.state(KEY) == (900, 0, 100)
    assert await wallet.settle(await wallet.reserve(KEY, 10, quota=100, month="2027-01"), 10, quota=100,
                               month="2027-01") == 10
    assert await wallet.state(KEY) == (890, 0, 10)
    hold = await wallet.reserve(KEY, 10, quota=100, month="2027-01")
    assert await wallet.settle(hold, 5, quota=100, month="2027-02") == 5  # settled in the next month
    assert await wallet.state(KEY) == (885, 0, 5)


async def test_memory_holds_die_with_their_process_and_need_no_renewal() -> None:
    wallet = MemoryWallet(loader(1000, 0))
    assert wallet.lease is None  # nothing outlives this process: there is nothing to renew
    hold = await wallet.reserve(KEY, 600, quota=None, month="2026-01")
    await wallet.renew()
    assert await wallet.state(KEY) == (1000, 600, 0)
    assert await wallet.settle(hold, 600, quota=None, month="2026-01", keep=3600.0) == 600
    assert await wallet.settle(hold, 600, quota=None, month="2026-01") == 0  # settled once


async def test_settle_rolls_the_month_before_charging() -> None:
    wallet = MemoryWallet(loader(1000, 90))
    hold = await wallet.reserve(KEY, 10, quota=100, month="2026-01")
    # past its hold, January would allow nothing more; February's quota allows all of it
    assert await wallet.settle(hold, 50, quota=100, month="2026-02") == 50
    assert await wallet.state(KEY) == (950, 0, 50)


async def test_an_unknown_key_is_refused_and_loaded_once() -> None:
    calls: list[int] = []
    wallet = MemoryWallet(loader(500, 0, calls))
    with pytest.raises(InsufficientCredits):
        await wallet.reserve(KEY + 1, 1, quota=None, month="2026-01")
    assert not await wallet.load(KEY + 1, "2026-01")
    holds = await asyncio.gather(*(wallet.reserve(KEY, 100, quota=None, month="2026-01") for _ in range(8)),
                                 return_exceptions=True)
    assert sum(isinstance(h, Hold) for h in holds) == 5
    assert all(isinstance(h, Hold | InsufficientCredits) for h in holds)
    assert calls.count(KEY) == 1  # eight first reservations, one load
    assert await wallet.state(KEY) == (500, 500, 0)


@pytest.mark.parametrize(("hold", "charge", "balance_room", "quota_room", "expected"), [
    (10, 5, 0, 0, 5),  # within the hold: always, whatever the rooms say
    (10, -3, 100, None, 0),
    (10, 30, 25, None, 25),  # beyond: as far as the balance allows
    (10, 30, 100, 12, 12),  # ... and the quota
    (10, 30, 5, None, 10),  # never less than the hold itself
    (10, 30, 100, None, 30),
])
def test_settled(hold: int, charge: int, balance_room: int, quota_room: int | None, expected: int) -> None:
    assert settled(hold, charge, balance_room, quota_room) == expected


# --- RedisWallet gives the same answers ----------------------------------------------------

_key_ids = itertools.count(1000)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=scenarios())
def test_redis_wallet_matches_memory_wallet_step_by_step(redis_url: str, redis_prefix: str, s: Scenario) -> None:
    prefix = f"{redis_prefix}{next(_key_ids)}:"  # an example of its own
    expected, actual = asyncio.run(play_both(s, redis_url, prefix))
    assert actual == expected


async def test_redis_wallet_rolls_the_month_like_memory(redis_url: str, redis_prefix: str) -> None:
    s = Scenario(scale=1, balance=1000, spent=100, quota=100, steps=[
        Reserve(1, "2026-05"), Reserve(60, "2026-06"), Settle(0, "equal", 0, "2026-06"), Reserve(40, "2026-05"),
        Reserve(1, "2026-05"), Settle(0, "above", 30, "2026-07"), Credit(5), Reserve(30, "2026-07"),
    ])
    expected, actual = await play_both(s, redis_url, redis_prefix)
    assert actual == expected
    assert [o[0] for o in expected] == ["QuotaExceeded", "held", "settled", "held", "QuotaExceeded", "settled",
                                        "credited", "held"]
    assert expected[5][1] == 70  # settled in July: a new month's quota, so the whole charge
    assert expected[-1][2] == (875, 30, 70)


EDGES = {
    "beyond the hold, up to the quota": Scenario(scale=1, balance=100, spent=0, quota=50, steps=[
        Reserve(20, "2026-01"), Reserve(10, "2026-01"), Settle(0, "above", 40, "2026-01"),
        Settle(0, "above", 40, "2026-01")]),
    "beyond the hold, up to the balance": Scenario(scale=1, balance=50, spent=0, quota=None, steps=[
        Reserve(20, "2026-01"), Reserve(10, "2026-01"), Settle(0, "above", 40, "2026-01"),
        Settle(0, "above", 40, "2026-01")]),
    "below and negative charges": Scenario(scale=1, balance=50, spent=5, quota=60, steps=[
        Reserve(20, "2026-01"), Reserve(20, "2026-01"), Settle(1, "below", 30, "2026-01"),
        Settle(0, "below", 5, "2026-01"), Reserve(40, "2026-01"), Reserve(20, "2026-01")]),
    "amounts near 10**15": Scenario(scale=1, balance=10**15 - 1, spent=0, quota=None, steps=[
        Reserve(10**15 - 3, "2026-01"), Credit(10**14 + 7), Settle(0, "above", 10**14 + 9, "2026-01"),
        Reserve(5, "2026-01")]),
}


@pytest.mark.parametrize("name", list(EDGES))
async def test_redis_wallet_matches_memory_wallet_on_edges(redis_url: str, redis_prefix: str, name: str) -> None:
    s = EDGES[name]
    expected, actual = await play_both(s, redis_url, redis_prefix)
    assert actual == expected
    if name.startswith("beyond"):
        assert [o[1] for o in expected if o[0] == "settled"] == [40, 10]  # 20 + 20 of 60, then just the hold of 50
