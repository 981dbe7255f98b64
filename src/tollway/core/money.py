"""Money: integer micro-credits (1 credit = 1,000,000 micro-credits), never floats.

Callers send amounts in credits as JSON numbers or decimal strings (``0.23``, ``"10.5"``); they
are parsed as decimals, so ``0.1`` is exactly 100,000 micro-credits. Amounts go back out both
ways: ``credits`` (a number for display) and ``*_micro`` (the exact integer).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from tollway.core.errors import InvalidRequest

MICRO = 1_000_000
MAX_CREDITS = Decimal(10) ** 9  # a billion credits: 10^15 micro-credits stay exact in a double (Redis Lua)


def to_micro(value: object, name: str, *, allow_negative: bool = False) -> int:
    """Credits (a JSON number or a decimal string) as micro-credits; at most 6 decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"{name} must be a number of credits", param=name)
    try:
        amount = Decimal(str(value).strip()) if isinstance(value, float | str) else Decimal(value)
    except InvalidOperation:
        raise InvalidRequest(f"{name} must be a number of credits", param=name) from None
    if not amount.is_finite():
        raise InvalidRequest(f"{name} must be a finite number", param=name)
    if abs(amount) >= MAX_CREDITS:
        raise InvalidRequest(f"{name} must be below {MAX_CREDITS:,} credits", param=name)
    if amount < 0 and not allow_negative:
        raise InvalidRequest(f"{name} must not be negative", param=name)
    micro = amount * MICRO
    if micro != micro.to_integral_value():
        raise InvalidRequest(f"{name} has more than 6 decimals", param=name)
    return int(micro)


def ppm(value: object, name: str) -> int:
    """A multiplier (``1.5``) as parts per million (1,500,000)."""
    return to_micro(value, name)
