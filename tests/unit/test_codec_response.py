"""OpenAI completion codec: decode_response/encode_response round trips and usage mapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tollway.core.chat import ChatResponse, ReasoningBlock, TextBlock, ToolCallBlock, Usage
from tollway.dialects.openai.codec import (
    decode_response,
    decode_usage,
    encode_response,
    encode_usage,
    finish_reason_in,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openai"
RESPONSES = ["resp_text.json", "resp_reasoning.json", "resp_tool_calls.json"]


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def semantic(body: dict[str, Any]) -> dict[str, Any]:
    """What a completion means, leaving out fields tollway does not carry (fingerprints, audio counts)."""
    choice = body["choices"][0]
    msg = choice["message"]
    usage = body["usage"]
    return {
        "id": body["id"], "object": body["object"], "created": body["created"], "model": body["model"],
        "role": msg["role"], "content": msg.get("content"), "reasoning": msg.get("reasoning_content"),
        "tool_calls": msg.get("tool_calls"), "finish_reason": choice["finish_reason"],
        "usage": (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"],
                  usage["prompt_tokens_details"]["cached_tokens"],
                  usage["completion_tokens_details"]["reasoning_tokens"]),
    }


@pytest.mark.parametrize("name", RESPONSES)
def test_response_round_trip_keeps_the_semantic_content(name: str) -> None:
    out = encode_response(decode_response(raw(name)))
    assert semantic(out) == semantic(json.loads(raw(name)))
    assert len(out["choices"]) == 1 and out["choices"][0]["index"] == 0


@pytest.mark.parametrize("name", RESPONSES)
def test_canonical_response_is_stable_under_a_second_round_trip(name: str) -> None:
    once = decode_response(raw(name))
    assert decode_response(encode_response(once)) == once


def test_text_completion_decodes_to_canonical() -> None:
    assert decode_response(raw("resp_text.json")) == ChatResponse(
        id="chatcmpl-AbC123", model="gpt-4o-mini-2024-07-18", created=1730000000,
        content=(TextBlock(text="Bonjour !"),), finish_reason="stop",
        usage=Usage(input_tokens=12, output_tokens=3),
    )


def test_reasoning_completion_puts_reasoning_first_and_reads_cached_and_reasoning_tokens() -> None:
    resp = decode_response(raw("resp_reasoning.json"))
    assert resp.content == (ReasoningBlock(text="4 times 3 is 12."), TextBlock(text="The answer is 12."))
    assert resp.usage == Usage(input_tokens=1200, output_tokens=40, cached_tokens=1024, reasoning_tokens=30)
    assert resp.usage.total_tokens == 1240


def test_tool_call_completion_decodes_every_call_and_encodes_null_content() -> None:
    resp = decode_response(raw("resp_tool_calls.json"))
    assert resp.content == (
        ToolCallBlock(id="call_p", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCallBlock(id="call_t", name="get_weather", arguments='{"city":"Tokyo"}'),
    )
    assert resp.finish_reason == "tool_calls"
    assert resp.usage.cached_tokens == 64
    message = encode_response(resp)["choices"][0]["message"]
    assert message["content"] is None
    assert [c["type"] for c in message["tool_calls"]] == ["function", "function"]


def test_encoded_completion_has_the_openai_envelope() -> None:
    out = encode_response(decode_response(raw("resp_text.json")))
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour !", "refusal": None}
    assert out["choices"][0]["logprobs"] is None


def test_empty_answer_without_tool_calls_encodes_an_empty_string_not_null() -> None:
    resp = ChatResponse(id="x", model="m", created=1, content=(), finish_reason="stop", usage=Usage())
    assert encode_response(resp)["choices"][0]["message"]["content"] == ""


def test_usage_encoding_sums_total_and_carries_details() -> None:
    u = Usage(input_tokens=7, output_tokens=5, cached_tokens=3, reasoning_tokens=2)
    assert encode_usage(u) == {
        "prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2},
    }
    assert decode_usage(encode_usage(u)) == u


def test_usage_decoding_reads_deepseek_cache_hits_and_tolerates_missing_usage() -> None:
    assert decode_usage({"prompt_tokens": 10, "completion_tokens": 2, "prompt_cache_hit_tokens": 8}) == Usage(
        input_tokens=10, output_tokens=2, cached_tokens=8)
    assert decode_usage(None) == Usage()
    assert decode_usage({"prompt_tokens": None, "completion_tokens_details": None}) == Usage()


@pytest.mark.parametrize(
    ("wire", "canonical"),
    [("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"), ("function_call", "tool_calls"),
     ("content_filter", "content_filter"), ("tool_use", "tool_calls"), ("end_turn", "stop"), (None, "stop"),
     ("something_new", "stop")],
)
def test_finish_reasons_map_to_canonical(wire: str | None, canonical: str) -> None:
    assert finish_reason_in(wire) == canonical
