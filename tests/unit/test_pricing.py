"""Money parsing and prices as properties: ``core.money.to_micro`` and ``billing.pricing``.

Every expected figure is computed exactly with ``Decimal`` or ``Fraction``, never with the code
under test.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tollway.billing.pricing import DEFAULT_RESERVE_OUTPUT, cost, output_bound, reservation
from tollway.core.catalog import ModelInfo
from tollway.core.errors import InvalidRequest
from tollway.core.money import MAX_CREDITS, MICRO, to_micro

LIMIT = int(MAX_CREDITS) * MICRO  # exclusive bound on |micro-credits|

micro_amounts = st.integers(min_value=-(LIMIT - 1), max_value=LIMIT - 1)
prices = st.integers(min_value=0, max_value=1_000 * MICRO)  # up to 1,000 credits per million tokens
tokens = st.integers(min_value=0, max_value=10_000_000)
multipliers = st.integers(min_value=1, max_value=1_000 * MICRO)  # what /admin/group/save accepts
at_most_one = st.integers(min_value=1, max_value=MICRO)


def model(price_in: int = 0, price_out: int = 0, credit_cost: int = 0, max_output_tokens: int | None = None
          ) -> ModelInfo:
    return ModelInfo(id="m", provider="p", upstream_id="m", price_in=price_in, price_out=price_out,
                     credit_cost=credit_cost, max_output_tokens=max_output_tokens)


models = st.builds(model, prices, prices, st.integers(min_value=0, max_value=10 * MICRO),
                   st.one_of(st.none(), st.integers(min_value=1, max_value=200_000)))


def exact_cost(m: ModelInfo, input_tokens: int, output_tokens: int, multiplier: int) -> Fraction:
    """The rational cost in micro-credits, with no rounding anywhere."""
    per_token = Fraction(input_tokens * m.price_in + output_tokens * m.price_out, 1_000_000)
    return (per_token + m.credit_cost) * Fraction(multiplier, MICRO)


# --- to_micro ------------------------------------------------------------------------------

@given(micro_amounts)
def test_a_decimal_string_with_at_most_six_places_is_exact(micro: int) -> None:
    text = str(Decimal(micro).scaleb(-6))  # "-12.345678", "1E-6", "0.000000"
    assert to_micro(text, "x", allow_negative=True) == micro
    if micro >= 0:
        assert to_micro(text, "x") == micro


@given(micro_amounts, st.integers(min_value=1, max_value=6))
def test_any_spelling_of_the_same_amount_is_the_same_micro(micro: int, extra_zeros: int) -> None:
    plain = format(Decimal(micro).scaleb(-6), "f")  # never exponent notation
    padded = plain + ("0" * extra_zeros if "." in plain else "." + "0" * extra_zeros)
    assert to_micro(f"  {padded} ", "x", allow_negative=True) == micro


@given(micro_amounts)
@example(100_000)  # 0.1
@example(1)  # 1e-06
@example(LIMIT - 1)  # 999999999.999999
def test_a_float_is_read_as_its_shortest_decimal(micro: int) -> None:
    # every amount with <= 15 significant digits survives float -> repr -> Decimal exactly
    assert to_micro(micro / MICRO, "x", allow_negative=True) == micro


def test_float_spellings_of_common_amounts() -> None:
    assert to_micro(0.1, "x") == 100_000
    assert to_micro(0.23, "x") == 230_000
    with pytest.raises(InvalidRequest, match="more than 6 decimals"):
        to_micro(0.1 + 0.2, "x")  # 0.30000000000000004
    assert to_micro(10, "x") == 10 * MICRO
    assert to_micro("10.5", "x") == 10_500_000


@given(micro_amounts, st.integers(min_value=1, max_value=9))
def test_a_seventh_decimal_place_is_refused(micro: int, seventh: int) -> None:
    value = Decimal(micro).scaleb(-6)
    value += Decimal(seventh).scaleb(-7) if micro >= 0 else -Decimal(seventh).scaleb(-7)
    with pytest.raises(InvalidRequest, match="more than 6 decimals") as info:
        to_micro(str(value), "price_in", allow_negative=True)
    assert info.value.param == "price_in"


@pytest.mark.parametrize("value", [True, False, None, [1], {"a": 1}, b"1", Decimal("1")])
def test_what_is_no_json_number_is_refused(value: object) -> None:
    with pytest.raises(InvalidRequest, match="must be a number of credits"):
        to_micro(value, "x")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "NaN", "Infinity", "-inf", "sNaN"])
def test_nan_and_infinity_are_refused(value: object) -> None:
    with pytest.raises(InvalidRequest):
        to_micro(value, "x", allow_negative=True)


@pytest.mark.parametrize("value", ["", "abc", "1,5", "0x10", "1 000"])
def test_garbage_strings_are_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="must be a number of credits"):
        to_micro(value, "x")


@given(st.integers(min_value=1, max_value=LIMIT - 1))
def test_negatives_are_refused_unless_allowed(micro: int) -> None:
    text = str(Decimal(-micro).scaleb(-6))
    with pytest.raises(InvalidRequest, match="must not be negative"):
        to_micro(text, "x")
    assert to_micro(text, "x", allow_negative=True) == -micro


@pytest.mark.parametrize("value", [10**9, -(10**9), "1000000000", "1e9", 1e9, 10**30])
def test_a_billion_credits_or_more_is_refused(value: object) -> None:
    with pytest.raises(InvalidRequest, match="must be below"):
        to_micro(value, "x", allow_negative=True)


# --- cost ----------------------------------------------------------------------------------

@given(models, tokens, tokens, at_most_one)
def test_cost_is_never_below_the_exact_cost_nor_two_micro_above_it(m: ModelInfo, i: int, o: int,
                                                                   multiplier: int) -> None:
    exact = exact_cost(m, i, o, multiplier)
    charged = cost(m, i, o, multiplier)
    assert exact <= charged < exact + 2


@given(models, tokens, tokens, multipliers)
def test_cost_is_the_exact_cost_rounded_up_for_any_multiplier(m: ModelInfo, i: int, o: int, multiplier: int) -> None:
    exact = exact_cost(m, i, o, multiplier)
    assert exact <= cost(m, i, o, multiplier) < exact + 1


def test_a_multiplier_does_not_multiply_the_rounding_error() -> None:
    # 1 input token at 0.5 credits per million is 0.5 micro-credits exactly; times 10 it is 5
    m = model(price_in=500_000)
    exact = exact_cost(m, 1, 0, 10 * MICRO)
    assert exact == 5
    assert cost(m, 1, 0, 10 * MICRO) == 5  # rounded once, at the end


@given(models, tokens, tokens, multipliers)
def test_cost_without_any_rounding_is_exact(m: ModelInfo, i: int, o: int, multiplier: int) -> None:
    # whole-credit token prices and whole multipliers leave nothing to round
    m = model(price_in=m.price_in // MICRO * MICRO, price_out=m.price_out // MICRO * MICRO,
              credit_cost=m.credit_cost)
    whole = multiplier // MICRO * MICRO or MICRO
    assert cost(m, i, o, whole) == exact_cost(m, i, o, whole)


@given(models, tokens, tokens, multipliers, st.integers(min_value=0, max_value=1_000_000),
       st.integers(min_value=0, max_value=1_000_000))
def test_cost_is_monotone_in_tokens(m: ModelInfo, i: int, o: int, multiplier: int, di: int, do: int) -> None:
    base = cost(m, i, o, multiplier)
    assert cost(m, i + di, o, multiplier) >= base
    assert cost(m, i, o + do, multiplier) >= base
    assert cost(m, i + di, o + do, multiplier) >= base


@given(models, tokens, tokens, multipliers, st.integers(min_value=0, max_value=100 * MICRO))
def test_cost_is_monotone_in_the_multiplier(m: ModelInfo, i: int, o: int, multiplier: int, more: int) -> None:
    assert cost(m, i, o, multiplier + more) >= cost(m, i, o, multiplier)


@given(models, st.integers(min_value=-10, max_value=0), st.integers(min_value=-10, max_value=0))
def test_negative_token_counts_cost_what_zero_does(m: ModelInfo, i: int, o: int) -> None:
    assert cost(m, i, o) == cost(m, 0, 0) == math.ceil(Fraction(m.credit_cost))


def test_an_unpriced_model_costs_nothing() -> None:
    assert cost(model(), 10**6, 10**6, 1000 * MICRO) == 0


def test_a_worked_example() -> None:
    # 1.5 credits / M in, 8.25 / M out, 0.0001 per request: 11 in + 5 out = 16.5 + 41.25 + 100 micro
    assert cost(model(1_500_000, 8_250_000, 100), 11, 5) == 158
    assert cost(model(1_500_000, 8_250_000, 100), 11, 5, 2 * MICRO) == 316


# --- reservation ---------------------------------------------------------------------------

@given(models, tokens, st.one_of(st.none(), st.integers(min_value=-5, max_value=200_000)), multipliers,
       st.data())
def test_a_reservation_covers_any_usage_within_its_bound(m: ModelInfo, estimate: int, max_tokens: int | None,
                                                         multiplier: int, data: st.DataObject) -> None:
    bound = output_bound(m, max_tokens)
    used_in = data.draw(st.integers(min_value=0, max_value=estimate), label="input")
    used_out = data.draw(st.integers(min_value=0, max_value=bound), label="output")
    held = reservation(m, estimate, max_tokens, multiplier)
    assert held >= cost(m, used_in, used_out, multiplier)
    assert held == cost(m, estimate, bound, multiplier)  # exactly the worst case, nothing more


@given(models, st.one_of(st.none(), st.integers(min_value=-5, max_value=0)))
def test_the_output_bound_without_max_tokens(m: ModelInfo, max_tokens: int | None) -> None:
    assert output_bound(m, max_tokens) == (m.max_output_tokens or DEFAULT_RESERVE_OUTPUT)
    assert output_bound(m, max_tokens, default=7) == (m.max_output_tokens or 7)


@given(models, st.integers(min_value=1, max_value=10**6))
def test_max_tokens_wins_over_the_model_bound(m: ModelInfo, max_tokens: int) -> None:
    assert output_bound(m, max_tokens) == max_tokens


# --- reference prices: estimates for models without an operator price (issue 17.23) ----------

LIST_PRICES = {  # USD per million input / output tokens, the providers' own pages, late 2025
    "gpt-4o": ("2.50", "10.00"), "gpt-4o-mini": ("0.15", "0.60"), "claude-sonnet-4-5": ("3", "15"),
    "claude-haiku-4-5": ("1", "5"), "gemini-2.5-pro": ("1.25", "10"), "deepseek-chat": ("0.28", "0.42"),
    "bedrock/nova-micro": ("0.035", "0.14"),
}


def test_every_built_in_model_of_a_paid_provider_has_a_reference_price() -> None:
    from tollway.billing.reference_prices import reference_price
    from tollway.providers.kinds import SPECS

    paid = [s for s in SPECS if s.name in ("openai", "anthropic", "gemini", "bedrock", "deepseek")]
    assert len(paid) == 5
    for spec in paid:
        for m in spec.models:
            assert reference_price(m) is not None, m.id
            # a name made up for the same upstream model ("openai/gpt-4o", a dated id) finds it too
            made_up = ModelInfo(id=f"{spec.name}/x", provider=spec.name, upstream_id=m.upstream_id)
            assert reference_price(made_up) == reference_price(m), m.upstream_id


@pytest.mark.parametrize("name", list(LIST_PRICES))
def test_an_estimate_is_the_list_price_rounded_up_once(name: str) -> None:
    from tollway.billing.reference_prices import estimate

    price_in, price_out = (Fraction(p) for p in LIST_PRICES[name])
    m = ModelInfo(id=name, provider="p", upstream_id=name)
    for n_in, n_out in ((1_000_000, 1_000_000), (1, 1), (12_345, 678), (0, 0)):
        exact = (n_in * price_in + n_out * price_out) / MICRO  # dollars
        assert estimate(m, n_in, n_out) == math.ceil(exact * MICRO), (n_in, n_out)  # micro-dollars


def test_no_estimate_for_a_priced_model_or_one_without_a_reference_price() -> None:
    from tollway.billing.reference_prices import estimate

    assert estimate(ModelInfo(id="gpt-4o", provider="openai", upstream_id="gpt-4o", price_in=1), 10, 10) is None
    assert estimate(ModelInfo(id="ollama/llama3", provider="ollama", upstream_id="llama3"), 10, 10) is None
    assert estimate(ModelInfo(id="echo", provider="echo", upstream_id="echo"), 10, 10) is None
