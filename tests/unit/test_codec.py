"""OpenAI request codec: golden round trips wire -> canonical -> wire, and request errors."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tollway.core.chat import (
    DocumentBlock,
    ImageBlock,
    Message,
    ReasoningBlock,
    TextBlock,
    Tool,
    ToolCallBlock,
    ToolChoice,
    ToolResultBlock,
)
from tollway.core.errors import InvalidRequest
from tollway.dialects.openai.codec import decode_request, encode_request

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openai"
REQUEST_FIXTURES = sorted(p.name for p in FIXTURES.glob("req_*.json"))


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load(name: str) -> dict[str, Any]:
    return json.loads(raw(name))


# --- golden round trips ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["req_plain_text.json", "req_tools.json", "req_parallel_tool_calls.json", "req_images.json", "req_file.json"],
)
def test_round_trip_reproduces_the_wire_request(name: str) -> None:
    assert encode_request(decode_request(raw(name))) == load(name)


@pytest.mark.parametrize("name", REQUEST_FIXTURES)
def test_canonical_form_is_stable_under_a_second_round_trip(name: str) -> None:
    once = decode_request(raw(name))
    # encode_request always asks a stream for usage, so include_usage comes back set on streams
    expected = msgspec.structs.replace(once, include_usage=True) if once.stream else once
    assert decode_request(encode_request(once)) == expected


def test_plain_text_decodes_to_one_user_text_message() -> None:
    req = decode_request(raw("req_plain_text.json"))
    assert req.model == "gpt-4o-mini"
    assert req.messages == (Message(role="user", content=(TextBlock(text="Say hello in French."),)),)
    assert (req.stream, req.include_usage, req.tools, req.tool_choice, req.max_tokens) == (False, False, (), None, None)
    assert req.extras == {}


def test_system_multi_turn_keeps_roles_order_and_name_and_lists_a_string_stop() -> None:
    wire = load("req_system_multiturn.json")
    req = decode_request(raw("req_system_multiturn.json"))
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "user"]
    assert req.messages[2].content == (TextBlock(text="4"),)
    assert req.messages[3].name == "alice"
    assert req.stop == ("END",)
    out = encode_request(req)
    # documented normalisation: a string stop goes back out as a one-element list
    assert out["stop"] == ["END"]
    expected = {**wire, "stop": ["END"]}
    assert out == expected


def test_tools_and_named_tool_choice_decode_to_canonical_tools() -> None:
    req = decode_request(raw("req_tools.json"))
    weather = load("req_tools.json")["tools"][0]["function"]
    assert req.tools == (
        Tool(name="get_weather", description="Current weather for a city", parameters=weather["parameters"],
             strict=True),
        Tool(name="get_time", parameters={"type": "object", "properties": {"tz": {"type": "string"}}}),
    )
    assert req.tool_choice == ToolChoice(mode="required", name="get_weather")
    assert req.parallel_tool_calls is True


@pytest.mark.parametrize("mode", ["auto", "none", "required"])
def test_string_tool_choice_round_trips(mode: str) -> None:
    wire = {**load("req_tools.json"), "tool_choice": mode}
    req = decode_request(wire)
    assert req.tool_choice == ToolChoice(mode=mode)
    assert encode_request(req) == wire


def test_parallel_tool_calls_and_results_decode_in_order() -> None:
    req = decode_request(raw("req_parallel_tool_calls.json"))
    assistant, r1, r2, summary = req.messages[1:5]
    assert assistant.content == (
        ReasoningBlock(text="Two cities, so two parallel calls."),
        ToolCallBlock(id="call_a1", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCallBlock(id="call_b2", name="get_weather", arguments='{"city": "Tokyo"}'),
    )
    assert r1.content == (ToolResultBlock(tool_call_id="call_a1", content=(TextBlock(text="18C, cloudy"),)),)
    assert r2.content == (ToolResultBlock(tool_call_id="call_b2", content=(TextBlock(text="25C, sunny"),)),)
    assert summary.content == (ReasoningBlock(text="Summarise both."), TextBlock(text="Paris is 18C, Tokyo 25C."))
    assert req.tool_choice == ToolChoice(mode="auto")


def test_image_parts_keep_data_url_http_url_and_detail() -> None:
    req = decode_request(raw("req_images.json"))
    parts = load("req_images.json")["messages"][0]["content"]
    assert req.messages[0].content == (
        TextBlock(text="Compare these two images."),
        ImageBlock(url=parts[1]["image_url"]["url"], detail=None),
        ImageBlock(url="https://example.com/cat.jpg", detail="high"),
    )


def test_file_part_decodes_to_a_document_with_media_type_from_the_data_url() -> None:
    req = decode_request(raw("req_file.json"))
    doc = req.messages[0].content[1]
    assert doc == DocumentBlock(data="JVBERi0xLjQKJcfsj6IK", media_type="application/pdf", name="report.pdf")
    assert base64.b64decode(doc.data).startswith(b"%PDF-1.4")


def test_sampling_params_response_format_and_extras_round_trip_with_documented_normalisations() -> None:
    wire = load("req_params.json")
    req = decode_request(raw("req_params.json"))
    assert req.messages[0].role == "system"  # developer is read as system
    assert (req.stream, req.include_usage) == (True, False)
    assert req.stop == ("\n\n", "END")
    assert req.response_format == wire["response_format"]
    assert (req.seed, req.user, req.temperature, req.top_p) == (42, "user-1234", 0.2, 0.9)
    assert (req.max_tokens, req.reasoning_effort) == (256, "low")
    assert req.extras == {"frequency_penalty": 0.5, "logit_bias": {"50256": -100}, "metadata": {"trace": "abc"},
                          "store": False, "service_tier": "default"}

    out = encode_request(req)
    expected = copy.deepcopy(wire)
    expected["messages"][0]["role"] = "system"  # developer -> system
    expected["max_tokens"] = expected.pop("max_completion_tokens")  # max_completion_tokens -> max_tokens
    expected["stream_options"] = {"include_usage": True}  # a stream always asks for usage
    assert "max_completion_tokens" not in out
    assert out == expected


def test_max_completion_tokens_wins_over_max_tokens_and_max_tokens_alone_is_read() -> None:
    base = load("req_plain_text.json")
    assert decode_request({**base, "max_tokens": 10}).max_tokens == 10
    assert decode_request({**base, "max_tokens": 10, "max_completion_tokens": 20}).max_tokens == 20


def test_stream_options_include_usage_is_read_and_dropped_without_stream() -> None:
    base = load("req_plain_text.json")
    req = decode_request({**base, "stream": True, "stream_options": {"include_usage": True}})
    assert (req.stream, req.include_usage) == (True, True)
    out = encode_request(decode_request({**base, "stream": False, "stream_options": {"include_usage": True}}))
    assert "stream" not in out and "stream_options" not in out


def test_encode_request_model_override_replaces_only_the_model() -> None:
    req = decode_request(raw("req_tools.json"))
    out = encode_request(req, model="gpt-4o-mini-2024-07-18")
    assert out == {**load("req_tools.json"), "model": "gpt-4o-mini-2024-07-18"}


def test_a_single_text_part_array_is_sent_back_as_a_string() -> None:
    wire = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert encode_request(decode_request(wire))["messages"] == [{"role": "user", "content": "hi"}]


# --- seed 004's doc part -------------------------------------------------------------------


def test_seed_004_doc_part_bytes_map_decodes_to_base64_of_those_bytes_in_index_order() -> None:
    wire = load("req_doc_seed004.json")
    byte_map = wire["messages"][0]["content"][1]["doc"]["source"]["bytes"]
    expected = bytes(byte_map[str(i)] for i in range(len(byte_map)))
    doc = decode_request(raw("req_doc_seed004.json")).messages[0].content[1]
    assert isinstance(doc, DocumentBlock)
    assert base64.b64decode(doc.data) == expected == b"%PDF-1.4\n%\xff\x00"
    assert (doc.media_type, doc.name) == ("application/pdf", "tiny.pdf")
    # it leaves as an OpenAI file part
    part = encode_request(decode_request(wire))["messages"][0]["content"][1]
    assert part == {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{doc.data}",
                                             "filename": "tiny.pdf"}}


@pytest.mark.parametrize(
    ("source", "fmt", "data", "media_type"),
    [
        ({"bytes": [104, 105]}, "txt", base64.b64encode(b"hi").decode(), "text/plain"),
        ({"bytes": "aGk="}, "md", "aGk=", "text/markdown"),
        ({"bytes": {"1": 105, "0": 104}}, "weird", base64.b64encode(b"hi").decode(), "application/octet-stream"),
    ],
)
def test_doc_part_accepts_list_and_base64_string_sources(source: Any, fmt: str, data: str, media_type: str) -> None:
    wire = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "doc", "doc": {"name": "d", "format": fmt, "source": source}}]}]}
    assert decode_request(wire).messages[0].content == (DocumentBlock(data=data, media_type=media_type, name="d"),)


# --- errors ----------------------------------------------------------------------------------

_USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"messages": [_USER]}, "model", id="missing-model"),
        pytest.param({"model": "", "messages": [_USER]}, "model", id="empty-model"),
        pytest.param({"model": "m", "messages": []}, "messages", id="empty-messages"),
        pytest.param({"model": "m"}, "messages", id="missing-messages"),
        pytest.param({"model": "m", "messages": [_USER, {"role": "robot", "content": "x"}]}, "messages[1].role",
                     id="bad-role"),
        pytest.param({"model": "m", "messages": [_USER], "n": 2}, "n", id="n=2"),
        pytest.param({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}, "messages[0].content",
            id="unknown-part"),
        pytest.param({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id",
                     id="tool-without-id"),
        pytest.param({"model": "m", "messages": [_USER], "tool_choice": "sometimes"}, "tool_choice",
                     id="bad-tool-choice"),
    ],
)
def test_invalid_requests_name_the_offending_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_request(json.dumps(body).encode())
    assert info.value.param == param
    assert (info.value.status, info.value.code) == (400, "invalid_request")


@pytest.mark.parametrize("body", [b'{"model": "m", "messages": [', b"not json", b"[1, 2]"])
def test_a_body_that_is_not_a_json_object_is_an_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_request(body)
    assert info.value.param is None
    assert info.value.status == 400


def test_n_equal_one_is_accepted() -> None:
    assert decode_request({"model": "m", "messages": [_USER], "n": 1}).model == "m"


# --- regressions (bugs found by these tests, since fixed) -------------------------------------


def test_null_max_completion_tokens_falls_back_to_max_tokens() -> None:
    req = decode_request({"model": "m", "messages": [_USER], "max_completion_tokens": None, "max_tokens": 50})
    assert req.max_tokens == 50


def test_legacy_functions_are_not_silently_dropped() -> None:
    wire = {"model": "m", "messages": [_USER], "functions": [{"name": "f", "parameters": {"type": "object"}}],
            "function_call": "auto"}
    out = encode_request(decode_request(wire))
    assert "functions" in out or [t["function"]["name"] for t in out.get("tools", [])] == ["f"]


@pytest.mark.parametrize("field, value", [
    ("max_tokens", "100"), ("max_tokens", 0), ("temperature", "0.5"), ("top_p", [1]), ("reasoning_effort", ["high"]),
    ("response_format", "json_object"), ("stream", "yes"), ("stop", [1, 2]), ("seed", 1.5), ("user", 5),
    ("parallel_tool_calls", "no"),
])
def test_fields_of_the_wrong_type_are_400s(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest) as exc:
        decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}], field: value})
    assert exc.value.param == field


# --- issue 17 #4: values of the wrong type or size are 400s naming the field, never a 500 later -----

_TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def _tool_turns(call: dict[str, Any]) -> list[dict[str, Any]]:
    return [_USER, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]


def _call(**fields: Any) -> dict[str, Any]:
    return {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}, **fields}


_DEEP_ARGUMENTS = '{"a": ' + "[" * 3000 + "]" * 3000 + "}"


@pytest.mark.parametrize(("body", "where"), [
    pytest.param({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
                 "messages[0].content[0].text", id="text-part-int"),
    pytest.param({"messages": [_USER], "response_format": {"type": {}}}, "response_format.type",
                 id="response-format-type-object"),
    pytest.param({"messages": [_USER], "response_format": {"type": "json_schema", "json_schema": [1]}},
                 "response_format.json_schema", id="json-schema-array"),
    pytest.param({"messages": [_USER], "tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]},
                 "tools[0].function.parameters", id="tool-parameters-array"),
    pytest.param({"messages": [_USER], "tools": [{"type": "function", "function": {"name": "f", "description": 5}}]},
                 "tools[0].function.description", id="tool-description-int"),
    pytest.param({"messages": _tool_turns(_call(id=[1])), "tools": _TOOLS}, "messages[1].tool_calls[0].id",
                 id="tool-call-id-array"),
    pytest.param({"messages": _tool_turns(_call(function={"name": "f", "arguments": {"a": 1}})), "tools": _TOOLS},
                 "messages[1].tool_calls[0].function.arguments", id="arguments-object"),
    pytest.param({"messages": _tool_turns(_call(function={"name": "f", "arguments": _DEEP_ARGUMENTS})),
                  "tools": _TOOLS}, "messages[1].tool_calls[0].function.arguments", id="arguments-3000-deep"),
    pytest.param({"messages": [_USER], "tool_choice": {"type": "function", "function": {"name": 5}}},
                 "tool_choice.function.name", id="tool-choice-name-int"),
    pytest.param({"messages": [{"role": "user", "content": "x", "name": ["n"]}]}, "messages[0].name",
                 id="message-name-array"),
    pytest.param({"messages": [_USER], "user": "u" * 1_000_000}, "user", id="user-1mb"),
    pytest.param({"messages": [_USER], "max_tokens": 2**63}, "max_tokens", id="max-tokens-2**63"),
    pytest.param({"messages": [_USER], "seed": 2**64}, "seed", id="seed-2**64"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "doc", "doc": {"source": {"bytes": [256]}}}]}]},
                 "messages[0].content[0].doc.source.bytes", id="doc-byte-256"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": "x",
                                                                                          "filename": 5}}]}]},
                 "messages[0].content[0].file.filename", id="file-name-int"),
])
def test_values_the_encoders_cannot_take_are_400s_naming_the_field(body: dict[str, Any], where: str) -> None:
    """Issue 17 #4: each of these passed the decoder and crashed a provider's encoder (echo,
    Gemini) with a 500."""
    with pytest.raises(InvalidRequest) as info:
        decode_request({"model": "m", **body})
    assert info.value.status == 400
    assert info.value.param == where or where in info.value.message, (info.value.param, info.value.message)


def test_the_bounds_keep_what_real_requests_send() -> None:
    req = decode_request({"model": "m", "messages": _tool_turns(_call()), "tools": _TOOLS, "user": "u" * 512,
                          "max_tokens": 2**31 - 1, "seed": -(2**63), "response_format": {"type": "json_object"}})
    assert (req.user, req.max_tokens, req.seed) == ("u" * 512, 2**31 - 1, -(2**63))


# --- issue 17 #20: seed 004's doc part through the pass-through --------------------------------


def _passed_through(wire: dict[str, Any]) -> dict[str, Any]:
    from tollway.dialects.openai.front import OpenAIPassThrough, decode

    body = OpenAIPassThrough().body(decode(json.dumps(wire).encode()), "upstream-model")
    return dict(msgspec.json.decode(msgspec.json.encode(body)))


def test_the_pass_through_sends_a_doc_part_as_an_openai_file_part() -> None:
    """Issue 17 #20: an OpenAI-compatible upstream got seed 004's ``doc`` part unchanged."""
    wire = load("req_doc_seed004.json")
    sent = _passed_through(wire)
    data = base64.b64encode(b"%PDF-1.4\n%\xff\x00").decode()
    assert sent["messages"][0]["content"] == [
        wire["messages"][0]["content"][0],
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{data}", "filename": "tiny.pdf"}}]
    assert sent["model"] == "upstream-model"


def test_the_pass_through_leaves_messages_without_doc_parts_as_they_came() -> None:
    from tollway.dialects.openai.front import OpenAIPassThrough, decode

    raw_body = b'{"model": "m", "messages": [ {"role": "user", "content": "a \\"doc\\" part"} ]}'
    body = OpenAIPassThrough().body(decode(raw_body), "up")
    assert bytes(body["messages"]) == b'[ {"role": "user", "content": "a \\"doc\\" part"} ]'


def test_a_broken_doc_part_in_the_pass_through_is_a_400() -> None:
    with pytest.raises(InvalidRequest):
        _passed_through({"model": "m", "messages": [{"role": "user", "content": [{"type": "doc", "doc": {}}]}]})
