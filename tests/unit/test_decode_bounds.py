"""Issue 17 #4 on the Anthropic and City decoders: numbers past any model's range and oversized
identifiers are 400s naming the field at decode, never values an encoder or a counter chokes on."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.core.errors import InvalidRequest
from tollway.dialects.anthropic.decode import check_request, decode_request
from tollway.dialects.city.front import decode_request as city_decode_request

_MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("fields", "named"), [
    pytest.param({"thinking": {"type": "enabled", "budget_tokens": 2**63}}, "thinking.budget_tokens",
                 id="budget-2**63"),
    pytest.param({"thinking": {"type": "enabled", "budget_tokens": 2**64 + 5}}, "thinking.budget_tokens",
                 id="budget-2**64"),
    pytest.param({"max_tokens": 2**63}, "max_tokens", id="max-tokens-2**63"),
    pytest.param({"top_k": 2**63}, "top_k", id="top-k-2**63"),
    pytest.param({"metadata": {"user_id": "u" * 1_000_000}}, "metadata", id="user-id-1mb"),
])
def test_anthropic_bounds(fields: dict[str, Any], named: str) -> None:
    body = {"model": "m", "messages": _MESSAGES, "max_tokens": 64, **fields}
    with pytest.raises(InvalidRequest) as info:
        check_request(body)
    assert info.value.message.startswith(named + ":"), info.value.message


def test_anthropic_values_within_the_bounds_decode() -> None:
    req = decode_request({"model": "m", "messages": _MESSAGES, "max_tokens": 2**31 - 1, "top_k": 40,
                          "thinking": {"type": "enabled", "budget_tokens": 2**31 - 2},
                          "metadata": {"user_id": "u" * 512}})
    assert (req.max_tokens, req.reasoning_budget, req.user) == (2**31 - 1, 2**31 - 2, "u" * 512)


def test_city_max_tokens_past_any_models_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        city_decode_request({"model": "m", "prompt": "hi", "max_tokens": 2**63}, stream=False)
    assert info.value.param == "max_tokens"


def test_an_anthropic_thinking_block_of_the_wrong_type_is_a_400() -> None:
    turn = {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": {"s": 1}}]}
    with pytest.raises(InvalidRequest, match=r"messages\.1\.content\.0\.signature"):
        decode_request({"model": "m", "messages": [*_MESSAGES, turn, *_MESSAGES], "max_tokens": 64})
