"""What a request costs, in integer micro-credits. Pure functions.

A model has a price per million input tokens, a price per million output tokens (both in
micro-credits), a ``credit_cost`` per request (per image for an image model: ``count`` is the
images asked for) and a ``unit_price`` per unit of its ``price_unit`` (a character of speech, a
second of audio or video: ``units``); a group multiplies the whole by its multiplier (parts per
million). Arithmetic is on integers and rounds up once, at the end, so a request is
never billed less than its exact cost and never a whole micro-credit above it.
"""

from __future__ import annotations

from tollway.core.catalog import ModelInfo
from tollway.core.money import MICRO

DEFAULT_RESERVE_OUTPUT = 4096  # output tokens a request without max_tokens reserves, if its model says none


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def cost(model: ModelInfo, input_tokens: int, output_tokens: int, multiplier: int = MICRO, *,
         count: int = 1, units: int = 0) -> int:
    """Micro-credits for one request that used these tokens (and made ``count`` things, and
    ``units`` of the model's price unit)."""
    tokens = max(0, input_tokens) * model.price_in + max(0, output_tokens) * model.price_out
    fixed = model.credit_cost * max(1, count) + model.unit_price * max(0, units)
    return _ceil_div((tokens + fixed * 1_000_000) * multiplier, 1_000_000 * MICRO)


def output_bound(model: ModelInfo, max_tokens: int | None, default: int = DEFAULT_RESERVE_OUTPUT) -> int:
    """The output tokens a reservation covers: the request's max_tokens, else the model's, else ``default``."""
    if max_tokens is not None and max_tokens > 0:
        return max_tokens
    return model.max_output_tokens or default


def reservation(model: ModelInfo, input_tokens: int, max_tokens: int | None, multiplier: int = MICRO,
                default_output: int = DEFAULT_RESERVE_OUTPUT, *, count: int = 1, units: int = 0) -> int:
    """The worst case to hold before the upstream call: every input token plus the output bound
    (and the things and units the request may make)."""
    return cost(model, input_tokens, output_bound(model, max_tokens, default_output), multiplier,
                count=count, units=units)
