"""The Anthropic codec: wire <-> canonical, both directions, and the error envelope."""

from __future__ import annotations

import base64
import json

import pytest

from tollway.core.chat import (
    ChatRequest,
    ChatResponse,
    DocumentBlock,
    ImageBlock,
    Message,
    ReasoningBlock,
    TextBlock,
    Tool,
    ToolCallBlock,
    ToolChoice,
    ToolResultBlock,
    Usage,
)
from tollway.core.errors import InvalidRequest, RateLimited, UpstreamError
from tollway.dialects.anthropic.decode import decode_request, decode_response
from tollway.dialects.anthropic.encode import encode_request, encode_response, unencoded
from tollway.dialects.anthropic.errors import anthropic_error_body
from tollway.dialects.anthropic.thinking import DEFAULT_MAX_TOKENS

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()


def body(**kw: object) -> dict[str, object]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **kw}


def test_system_as_string_and_as_blocks() -> None:
    a = decode_request(body(system="be brief"))
    b = decode_request(body(system=[{"type": "text", "text": "be"}, {"type": "text", "text": " brief"}]))
    assert a.messages[0] == Message(role="system", content=(TextBlock(text="be brief"),))
    assert [m.role for m in b.messages] == ["system", "user"]
    assert "".join(x.text for x in b.messages[0].content if isinstance(x, TextBlock)) == "be brief"


def test_tool_results_become_tool_messages_before_the_rest_of_the_turn() -> None:
    req = decode_request(body(messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "checking"},
                                          {"type": "tool_use", "id": "t1", "name": "w", "input": {"c": "X"}},
                                          {"type": "tool_use", "id": "t2", "name": "w", "input": {"c": "Y"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "t2", "is_error": True,
             "content": [{"type": "text", "text": "no data"}]},
            {"type": "text", "text": "and tomorrow?"}]},
    ]))
    roles = [m.role for m in req.messages]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    calls = [b for b in req.messages[1].content if isinstance(b, ToolCallBlock)]
    assert [(c.id, json.loads(c.arguments)) for c in calls] == [("t1", {"c": "X"}), ("t2", {"c": "Y"})]
    r1, r2 = req.messages[2].content[0], req.messages[3].content[0]
    assert isinstance(r1, ToolResultBlock) and r1.tool_call_id == "t1" and not r1.is_error
    assert isinstance(r2, ToolResultBlock) and r2.is_error and r2.content == (TextBlock(text="no data"),)


def test_images_documents_and_thinking_decode() -> None:
    req = decode_request(body(messages=[
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERg=="},
             "title": "a.pdf"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
            {"type": "document", "source": {"type": "url", "url": "https://example.com/d.pdf"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                          {"type": "redacted_thinking", "data": "opaque"},
                                          {"type": "text", "text": "ok"}]},
        {"role": "user", "content": "go on"},
    ]))
    blocks = req.messages[0].content
    assert blocks[0] == ImageBlock(url=f"data:image/png;base64,{PNG}")
    assert blocks[1] == ImageBlock(url="https://example.com/a.jpg")
    assert blocks[2] == DocumentBlock(data="JVBERg==", media_type="application/pdf", name="a.pdf")
    assert isinstance(blocks[3], DocumentBlock) and base64.b64decode(blocks[3].data) == b"plain"
    assert blocks[4] == DocumentBlock(url="https://example.com/d.pdf")
    assert req.messages[1].content[:2] == (ReasoningBlock(text="hmm", signature="sig"),
                                           ReasoningBlock(redacted_data="opaque"))


def test_parameters_map_to_canonical_slots_and_the_rest_to_extras() -> None:
    req = decode_request(body(stop_sequences=["END"], temperature=0.2, top_p=0.9, top_k=5,
                              metadata={"user_id": "u1"}, thinking={"type": "enabled", "budget_tokens": 2048},
                              tools=[{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
                              tool_choice={"type": "any", "disable_parallel_tool_use": True},
                              service_tier="auto"))
    assert req.stop == ("END",) and req.temperature == 0.2 and req.top_p == 0.9 and req.top_k == 5
    assert req.user == "u1" and req.reasoning_budget == 2048 and req.max_tokens == 100
    assert req.tools == (Tool(name="f", description="d", parameters={"type": "object"}),)
    assert req.tool_choice == ToolChoice(mode="required") and req.parallel_tool_calls is False
    assert req.extras == {"service_tier": "auto"} and req.dialect == "anthropic"


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, ToolChoice(mode="auto")),
    ({"type": "none"}, ToolChoice(mode="none")),
    ({"type": "tool", "name": "f"}, ToolChoice(mode="required", name="f")),
])
def test_tool_choice_kinds(choice: dict[str, object], expected: ToolChoice) -> None:
    assert decode_request(body(tool_choice=choice)).tool_choice == expected


@pytest.mark.parametrize("bad, fragment", [
    ({"model": ""}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
    ({"messages": [{"role": "system", "content": "x"}]}, "at least one message"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "9"}, "max_tokens"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "video"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                                                                               "media_type": "image/bmp",
                                                                               "data": "x"}}]}]}, "media_type"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tool"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"stream": "no"}, "stream"),
    ({"temperature": "hot"}, "temperature"),
    ({"thinking": {"type": "enabled", "budget_tokens": "abc"}}, "budget_tokens"),
    ({"tools": [{"name": "x", "description": 5, "input_schema": {}}]}, "description"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "title": 5, "source": {
        "type": "text", "media_type": "text/plain", "data": "d"}}]}]}, "title"),
])
def test_bad_requests_are_400s_that_name_the_field(bad: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        decode_request({**body(), **bad})
    assert fragment in exc.value.message


def test_encode_request_merges_turns_and_puts_tool_results_first() -> None:
    req = ChatRequest(model="m", messages=(
        Message(role="system", content=(TextBlock(text="sys"),)),
        Message(role="user", content=(TextBlock(text="q"),)),
        Message(role="assistant", content=(ReasoningBlock(text="r", signature="s"), TextBlock(text="a"),
                                           ToolCallBlock(id="c1", name="f", arguments='{"x": 1}'))),
        Message(role="tool", content=(ToolResultBlock(tool_call_id="c1", content=(TextBlock(text="42"),),
                                                      is_error=True),)),
        Message(role="user", content=(ImageBlock(url=f"data:image/png;base64,{PNG}"),
                                      ImageBlock(url="https://h/x.png"))),
    ), tools=(Tool(name="f", parameters={"type": "object"}),), parallel_tool_calls=False)
    wire = encode_request(req, model="up")
    assert wire["model"] == "up" and wire["system"] == "sys" and wire["max_tokens"] == DEFAULT_MAX_TOKENS
    assert [t["role"] for t in wire["messages"]] == ["user", "assistant", "user"]
    assistant = wire["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": "r", "signature": "s"}
    assert assistant[2] == {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}}
    last = wire["messages"][2]["content"]
    assert last[0]["type"] == "tool_result" and last[0]["is_error"] is True and last[0]["tool_use_id"] == "c1"
    assert last[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
    assert last[2]["source"] == {"type": "url", "url": "https://h/x.png"}
    assert wire["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_thinking_budget_fits_the_callers_max_tokens_and_drops_what_thinking_refuses() -> None:
    msgs = (Message(role="user", content=(TextBlock(text="q"),)),)
    fits = ChatRequest(model="m", messages=msgs, max_tokens=8000, reasoning_budget=4000, temperature=0.5, top_k=3,
                       tool_choice=ToolChoice(mode="required"), tools=(Tool(name="f"),))
    wire = encode_request(fits, model="m")
    assert wire["thinking"] == {"type": "enabled", "budget_tokens": 4000} and wire["max_tokens"] == 8000
    assert "temperature" not in wire and "top_k" not in wire and "tool_choice" not in wire
    assert sorted(unencoded(fits)) == ["temperature", "tool_choice", "top_k"]
    capped = ChatRequest(model="m", messages=msgs, max_tokens=3000, reasoning_effort="high")
    wire = encode_request(capped, model="m")
    assert wire["thinking"]["budget_tokens"] == 2999 and wire["max_tokens"] == 3000  # the caller's cap holds
    too_small = ChatRequest(model="m", messages=msgs, max_tokens=100, reasoning_effort="high")
    assert "thinking" not in encode_request(too_small, model="m") and unencoded(too_small) == ["reasoning_effort"]
    open_ended = encode_request(ChatRequest(model="m", messages=msgs, reasoning_budget=2048), model="m")
    assert open_ended["max_tokens"] > open_ended["thinking"]["budget_tokens"] == 2048


def test_empty_text_never_reaches_anthropic_and_ids_are_made_valid() -> None:
    req = ChatRequest(model="m", messages=(
        Message(role="user", content=(TextBlock(text="q"),)),
        Message(role="assistant", content=(TextBlock(text=""), ToolCallBlock(id="functions.f:0", name="f",
                                                                              arguments="{}"))),
        Message(role="tool", content=(ToolResultBlock(tool_call_id="functions.f:0", content=(TextBlock(text=""),)),)),
        Message(role="user", content=(TextBlock(text=""),)),
    ))
    wire = encode_request(req, model="m")
    assert wire["messages"][1]["content"] == [{"type": "tool_use", "id": "functions_f_0", "name": "f", "input": {}}]
    assert wire["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "functions_f_0"}]
    text_doc = ChatRequest(model="m", messages=(Message(role="user", content=(
        DocumentBlock(data="not base64!", media_type="text/plain"),)),))
    with pytest.raises(InvalidRequest):
        encode_request(text_doc, model="m")


def test_nested_fields_without_a_canonical_slot_are_named() -> None:
    req = decode_request(body(system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
                              messages=[{"role": "user", "content": [
                                  {"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}},
                                  {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                  "data": "d"}, "citations": {"enabled": True}}]}],
                              thinking={"type": "adaptive"}))
    assert req.lossy == ("messages[].content[].cache_control", "messages[].content[].citations",
                         "system[].cache_control", "thinking.adaptive")


def test_unencoded_names_what_anthropic_cannot_take() -> None:
    req = ChatRequest(model="m", seed=1, response_format={"type": "json_object"}, extras={"logprobs": True},
                      tools=(Tool(name="f", strict=True),),
                      messages=(Message(role="assistant", content=(ReasoningBlock(text="deepseek thoughts"),)),
                                Message(role="user", name="jo", content=(ImageBlock(url="https://h/i.png",
                                                                                    detail="low"),))))
    assert sorted(unencoded(req)) == ["image_url.detail", "logprobs", "messages[].name",
                                      "messages[].reasoning_content", "response_format", "seed", "tools[].strict"]
    wire = encode_request(req, model="m")
    assert "seed" not in wire and "logprobs" not in wire
    assert all(b["type"] != "thinking" for t in wire["messages"] for b in t["content"])


def test_encode_request_refuses_a_non_base64_or_unknown_image_data_url() -> None:
    req = ChatRequest(model="m", messages=(Message(role="user", content=(ImageBlock(url="data:image/bmp,xx"),)),))
    with pytest.raises(InvalidRequest):
        encode_request(req, model="m")


def test_response_round_trip_and_usage_accounting() -> None:
    wire = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "tool_use",
            "stop_sequence": None,
            "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                        {"type": "text", "text": "hello"},
                        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1]}}],
            "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 30,
                      "cache_creation_input_tokens": 5}}
    resp = decode_response(json.dumps(wire).encode())
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=45, output_tokens=7, cached_tokens=30, cache_write_tokens=5)
    out = encode_response(resp)
    assert out["usage"]["input_tokens"] == 10 and out["usage"]["cache_read_input_tokens"] == 30
    assert out["usage"]["cache_creation_input_tokens"] == 5
    assert [b["type"] for b in out["content"]] == ["thinking", "text", "tool_use"]
    assert out["content"][2]["input"] == {"a": [1]} and out["stop_reason"] == "tool_use"
    for key in ("id", "type", "role", "content", "model", "stop_reason", "stop_sequence", "stop_details", "usage"):
        assert key in out  # what Anthropic's own answers carry
    assert "container" not in out and "citations" not in out["content"][1]  # ... and what they leave out
    assert None not in out["usage"].values()


@pytest.mark.parametrize("finish, stop_sequence, expected", [
    ("stop", None, "end_turn"), ("length", None, "max_tokens"), ("tool_calls", None, "tool_use"),
    ("stop", "END", "stop_sequence"), ("content_filter", None, "refusal"),
])
def test_stop_reasons_out(finish: str, stop_sequence: str | None, expected: str) -> None:
    resp = ChatResponse(id="x", model="m", created=0, content=(TextBlock(text="a"),), finish_reason=finish,  # type: ignore[arg-type]
                        usage=Usage(), stop_sequence=stop_sequence)
    out = encode_response(resp)
    assert out["stop_reason"] == expected and out["stop_sequence"] == stop_sequence
    assert out["id"].startswith("msg_")


def test_tool_use_ids_from_other_upstreams_are_made_valid() -> None:
    resp = ChatResponse(id="chatcmpl-1", model="m", created=0, finish_reason="tool_calls", usage=Usage(),
                        content=(ToolCallBlock(id="call:1/a", name="f", arguments="not json"),))
    block = encode_response(resp)["content"][0]
    assert block["id"] == "call_1_a" and block["input"] == {"_raw": "not json"}


def test_error_envelope() -> None:
    body_ = anthropic_error_body(RateLimited("slow down"))
    assert body_ == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"},
                     "request_id": None}
    assert anthropic_error_body(UpstreamError("boom", provider="p"))["error"]["type"] == "api_error"
    assert anthropic_error_body(InvalidRequest("bad"))["error"]["type"] == "invalid_request_error"
