"""The Gemini codec's pure functions: canonical request -> GenerateContentRequest, responses and
stream chunks -> canonical, finish/usage mapping, schema cleaning and what the adapter drops."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest

from tests.fakes.gemini_server import call_key, request_problems, thinking_problems
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import (
    ChatRequest,
    DocumentBlock,
    Finish,
    ImageBlock,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    StreamStart,
    TextBlock,
    TextDelta,
    Tool,
    ToolCallBlock,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResultBlock,
    Usage,
    UsageReport,
)
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.providers import gemini
from tollway.providers.base import ProviderContext
from tollway.providers.http import Timeouts
from tollway.providers.media import Media, MediaFetcher, MediaPolicy
from tollway.providers.sse import SSEEvent

PNG = b"\x89PNG\r\n\x1a\nfake"
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def user(*blocks: Any) -> Message:
    return Message(role="user", content=tuple(blocks))


def assistant(*blocks: Any) -> Message:
    return Message(role="assistant", content=tuple(blocks))


def tool(call_id: str, text: str, *, is_error: bool = False, name: str | None = None) -> Message:
    return Message(role="tool", name=name,
                   content=(ToolResultBlock(tool_call_id=call_id, content=(TextBlock(text=text),), is_error=is_error),))


def req(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="gemini-2.5-flash", messages=messages, **kw)


def ids() -> Any:
    counter = itertools.count()
    return lambda prefix: f"{prefix}{next(counter)}"


# --- request --------------------------------------------------------------------------------------


def test_system_messages_become_the_system_instruction_and_roles_map_to_user_and_model() -> None:
    body = gemini.encode_request(req(
        Message(role="system", content=(TextBlock(text="be brief"),)),
        user(TextBlock(text="hi")),
        assistant(TextBlock(text="hello")),
        Message(role="system", content=(TextBlock(text="and exact"),)),
        user(TextBlock(text="2+2?")),
    ))
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}, {"text": "and exact"}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "hello"}]},
        {"role": "user", "parts": [{"text": "2+2?"}]},
    ]
    assert "generationConfig" not in body and "tools" not in body
    assert request_problems(body) == []


def test_a_system_image_is_refused_rather_than_dropped() -> None:
    with pytest.raises(InvalidRequest, match="only text in system"):
        gemini.encode_request(req(Message(role="system", content=(ImageBlock(url=PNG_URL),)),
                                  user(TextBlock(text="x"))))


def test_a_request_with_no_content_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="at least one"):
        gemini.encode_request(req(Message(role="system", content=(TextBlock(text="only a system"),))))


def test_tool_results_are_one_user_turn_named_after_the_earlier_calls() -> None:
    body = gemini.encode_request(req(
        user(TextBlock(text="weather in Paris and Rome?")),
        assistant(ToolCallBlock(id="c1", name="weather", arguments='{"city": "Paris"}'),
                  ToolCallBlock(id="c2", name="weather_v2", arguments='{"city": "Rome"}')),
        tool("c2", "sunny"),
        tool("c1", "no such city", is_error=True),
        user(TextBlock(text="thanks")),
    ))
    model_turn, results = body["contents"][1], body["contents"][2]
    assert model_turn == {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}, "id": "c1"}},
        {"functionCall": {"name": "weather_v2", "args": {"city": "Rome"}, "id": "c2"}},
    ]}
    assert results == {"role": "user", "parts": [
        {"functionResponse": {"name": "weather_v2", "id": "c2", "response": {"output": "sunny"}}},
        {"functionResponse": {"name": "weather", "id": "c1", "response": {"error": "no such city"}}},
        {"text": "thanks"},
    ]}
    assert len(body["contents"]) == 3
    assert request_problems(body) == []


def test_a_tool_result_without_a_known_call_uses_the_message_name_or_is_refused() -> None:
    body = gemini.encode_request(req(user(TextBlock(text="x")), tool("orphan", "42", name="lookup")))
    assert body["contents"][0]["parts"][0]["functionResponse"]["name"] == "lookup"
    with pytest.raises(InvalidRequest, match="orphan"):
        gemini.encode_request(req(user(TextBlock(text="x")), tool("orphan", "42")))


def test_function_responses_come_first_in_a_turn_and_tool_result_images_follow_inline() -> None:
    result = ToolResultBlock(tool_call_id="c1", content=(TextBlock(text="see image"), ImageBlock(url=PNG_URL)))
    body = gemini.encode_request(req(
        user(TextBlock(text="draw")),
        assistant(ToolCallBlock(id="c1", name="draw", arguments="")),
        Message(role="user", content=(TextBlock(text="here"), result)),
    ))
    parts = body["contents"][2]["parts"]
    assert [next(iter(p)) for p in parts] == ["functionResponse", "text", "inlineData"]
    assert body["contents"][1]["parts"][0]["functionCall"]["args"] == {}
    assert parts[2]["inlineData"] == {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}


def test_tool_call_arguments_must_be_a_json_object() -> None:
    for bad in ("[1, 2]", "{not json"):
        with pytest.raises(InvalidRequest, match="not a JSON object"):
            gemini.encode_request(req(user(TextBlock(text="x")),
                                      assistant(ToolCallBlock(id="c", name="f", arguments=bad))))


def test_images_and_documents_go_inline() -> None:
    fetched = {"https://example.com/cat.jpg": Media(media_type="image/jpeg", data=b"jpeg-bytes"),
               "https://example.com/doc": Media(media_type="application/octet-stream", data=b"%PDF-1.4")}
    body = gemini.encode_request(req(user(
        TextBlock(text="compare"),
        ImageBlock(url=PNG_URL, detail="high"),
        ImageBlock(url="https://example.com/cat.jpg"),
        DocumentBlock(data=base64.b64encode(b"plain words").decode(), media_type="text/plain", name="a.txt"),
        DocumentBlock(url="https://example.com/doc", media_type="application/pdf"),
    )), media=fetched)
    parts = body["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    assert parts[2] == {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(b"jpeg-bytes").decode()}}
    assert parts[3] == {"inlineData": {"mimeType": "text/plain", "data": base64.b64encode(b"plain words").decode()}}
    # the server said octet-stream: the block's own media type wins
    assert parts[4] == {"inlineData": {"mimeType": "application/pdf", "data": base64.b64encode(b"%PDF-1.4").decode()}}
    assert request_problems(body) == []


def test_an_http_image_that_was_not_loaded_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(InvalidRequest, match="not loaded"):
        gemini.encode_request(req(user(ImageBlock(url="https://example.com/x.png"))))


def test_media_urls_lists_each_http_url_once_including_tool_results_and_skips_data_urls() -> None:
    r = req(
        user(ImageBlock(url="https://a.example/1.png"), ImageBlock(url=PNG_URL),
             DocumentBlock(url="https://a.example/d.pdf"), DocumentBlock(data="QUJD", url="https://ignored.example")),
        assistant(ToolCallBlock(id="c", name="f", arguments="{}")),
        Message(role="tool", content=(ToolResultBlock(tool_call_id="c", content=(
            ImageBlock(url="https://a.example/1.png"), ImageBlock(url="https://a.example/2.png"))),)),
    )
    assert gemini.media_urls(r) == ["https://a.example/1.png", "https://a.example/d.pdf", "https://a.example/2.png"]


def test_a_signature_closing_a_thought_goes_on_the_part_after_it() -> None:
    sig = base64.b64encode(b"sig-1").decode()
    body = gemini.encode_request(req(
        user(TextBlock(text="x")),
        assistant(ReasoningBlock(text="let me look", signature=sig),
                  ToolCallBlock(id="a", name="f", arguments='{"q": 1}'),
                  ToolCallBlock(id="b", name="f", arguments='{"q": 2}')),
    ))
    assert body["contents"][1]["parts"] == [
        {"text": "let me look", "thought": True},
        {"functionCall": {"name": "f", "args": {"q": 1}, "id": "a"}, "thoughtSignature": sig},
        {"functionCall": {"name": "f", "args": {"q": 2}, "id": "b"}},
    ]


def test_a_signature_block_before_a_part_signs_that_part_and_a_trailing_one_the_last_part() -> None:
    s1, s2 = "c2lnLTE=", "c2lnLTI="
    body = gemini.encode_request(req(
        user(TextBlock(text="x")),
        assistant(ReasoningBlock(signature=s1), ReasoningBlock(text="thinking"), TextBlock(text="answer"),
                  ReasoningBlock(signature=s2)),
    ))
    assert body["contents"][1]["parts"] == [
        {"text": "thinking", "thought": True, "thoughtSignature": s1},
        {"text": "answer", "thoughtSignature": s2},
    ]


def test_reasoning_with_only_a_signature_and_nothing_after_it_makes_no_empty_turn() -> None:
    body = gemini.encode_request(req(user(TextBlock(text="x")), assistant(ReasoningBlock(signature="c2ln"))))
    assert body["contents"] == [{"role": "user", "parts": [{"text": "x"}]}]


def test_generation_config_maps_every_sampling_field() -> None:
    body = gemini.encode_request(req(user(TextBlock(text="x")), max_tokens=100, temperature=0.2, top_p=0.9, top_k=40,
                                     seed=7, stop=("END", "STOP")))
    assert body["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.2, "topP": 0.9, "topK": 40,
                                        "seed": 7, "stopSequences": ["END", "STOP"]}
    assert request_problems(body) == []


def test_response_formats_map_to_json_mime_type_and_json_schema() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    body = gemini.encode_request(req(user(TextBlock(text="x")), response_format={
        "type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}))
    assert body["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}}
    body = gemini.encode_request(req(user(TextBlock(text="x")), response_format={"type": "json_object"}))
    assert body["generationConfig"] == {"responseMimeType": "application/json"}
    body = gemini.encode_request(req(user(TextBlock(text="x")), response_format={"type": "text"}))
    assert "generationConfig" not in body


@pytest.mark.parametrize(("kw", "config"), [
    ({"reasoning_budget": 2048}, {"thinkingBudget": 2048, "includeThoughts": True}),
    ({"reasoning_effort": "low"}, {"thinkingBudget": 1024, "includeThoughts": True}),
    ({"reasoning_effort": "high"}, {"thinkingBudget": 24576, "includeThoughts": True}),
    ({"reasoning_effort": "none"}, {"thinkingBudget": 0, "includeThoughts": False}),
    ({"reasoning_effort": "high", "reasoning_budget": 300}, {"thinkingBudget": 300, "includeThoughts": True}),
    ({"reasoning_effort": "ludicrous"}, None),
])
def test_reasoning_budget_and_effort_map_to_thinking_config(kw: dict[str, Any], config: Any) -> None:
    body = gemini.encode_request(req(user(TextBlock(text="x")), **kw))
    assert body.get("generationConfig", {}).get("thinkingConfig") == config


def _thinking(budget: int, thoughts: bool = True) -> dict[str, Any]:
    return {"thinkingBudget": budget, "includeThoughts": thoughts}


@pytest.mark.parametrize(("model", "kw", "config", "named"), [
    # 2.5 Flash: 0..24576, -1 dynamic
    ("gemini-2.5-flash", {"reasoning_budget": 30000}, _thinking(24576), ["reasoning_budget"]),
    ("gemini-2.5-flash", {"reasoning_budget": 24576}, _thinking(24576), []),
    ("gemini-2.5-flash", {"reasoning_budget": 0}, _thinking(0, False), []),
    ("gemini-2.5-flash", {"reasoning_budget": -1}, _thinking(-1), []),
    ("gemini-2.5-flash", {"reasoning_budget": -7}, _thinking(-1), ["reasoning_budget"]),
    ("gemini-2.5-flash-preview-09-2025", {"reasoning_budget": 99999}, _thinking(24576), ["reasoning_budget"]),
    # 2.5 Pro: 128..32768, cannot turn thinking off
    ("gemini-2.5-pro", {"reasoning_budget": 50}, _thinking(128), ["reasoning_budget"]),
    ("gemini-2.5-pro", {"reasoning_budget": 40000}, _thinking(32768), ["reasoning_budget"]),
    ("gemini-2.5-pro", {"reasoning_budget": 32768}, _thinking(32768), []),
    ("gemini-2.5-pro", {"reasoning_effort": "none"}, _thinking(128), ["reasoning_effort"]),
    ("gemini-2.5-pro", {"reasoning_effort": "high"}, _thinking(24576), []),
    ("models/gemini-2.5-pro", {"reasoning_budget": 0}, _thinking(128), ["reasoning_budget"]),
    ("Gemini-2.5-Pro", {"reasoning_budget": 1}, _thinking(128), ["reasoning_budget"]),
    # 2.5 Flash-Lite: 0 or 512..24576
    ("gemini-2.5-flash-lite", {"reasoning_budget": 100}, _thinking(512), ["reasoning_budget"]),
    ("gemini-2.5-flash-lite", {"reasoning_effort": "none"}, _thinking(0, False), []),
    ("gemini-2.5-flash-lite", {"reasoning_effort": "minimal"}, _thinking(512), []),
    # no thinking at all: no thinkingConfig
    ("gemini-2.0-flash", {"reasoning_effort": "low"}, None, ["reasoning_effort"]),
    ("gemini-2.0-flash-001", {"reasoning_budget": 100}, None, ["reasoning_budget"]),
    ("gemini-2.0-flash-lite", {"reasoning_budget": 0}, None, ["reasoning_budget"]),
    ("gemini-1.5-pro", {"reasoning_effort": "high"}, None, ["reasoning_effort"]),
    ("gemini-2.0-flash", {"reasoning_effort": "high", "reasoning_budget": 100}, None,
     ["reasoning_effort", "reasoning_budget"]),
    ("gemini-2.0-flash", {"reasoning_effort": "ludicrous"}, None, ["reasoning_effort"]),
    ("gemini-2.0-flash", {}, None, []),
    # models the table does not name: the budget as asked
    ("gemini-3-pro-preview", {"reasoning_budget": 99999}, _thinking(99999), []),
    ("gemini-2.0-flash-thinking-exp", {"reasoning_budget": 99999}, _thinking(99999), []),
    ("my-tuned-model", {"reasoning_budget": 5}, _thinking(5), []),
])
def test_the_thinking_budget_is_fitted_to_the_model_and_a_change_is_named(
        model: str, kw: dict[str, Any], config: Any, named: list[str]) -> None:
    r = ChatRequest(model=model, messages=(user(TextBlock(text="x")),), **kw)
    body = gemini.encode_request(r)
    assert body.get("generationConfig", {}).get("thinkingConfig") == config
    assert gemini.unsupported(r) == named
    assert request_problems(body) == []


def test_the_upstream_model_decides_the_thinking_budget_not_the_public_name() -> None:
    r = ChatRequest(model="fast-alias", messages=(user(TextBlock(text="x")),), reasoning_budget=50)
    assert gemini.encode_request(r)["generationConfig"] == {"thinkingConfig": _thinking(50)}
    assert gemini.unsupported(r) == []
    assert "generationConfig" not in gemini.encode_request(r, upstream_model="gemini-2.0-flash")
    assert gemini.unsupported(r, upstream_model="gemini-2.0-flash") == ["reasoning_budget"]
    body = gemini.encode_request(r, upstream_model="gemini-2.5-pro")
    assert body["generationConfig"]["thinkingConfig"] == _thinking(128)


@pytest.mark.parametrize(("model", "upstream_model", "named"), [
    ("gemini-2.0-flash", "gemini-2.0-flash", ["reasoning_effort"]),  # a catalog model
    ("gemini/gemini-2.0-flash-lite", "gemini-2.0-flash-lite", ["reasoning_effort"]),
    ("fast-alias", "gemini-2.0-flash", ["reasoning_effort"]),  # an alias: the routed model decides
    ("gemini-2.0-flash", "gemini-2.5-flash", []),  # whatever the public name says
])
def test_the_adapter_names_what_the_routed_upstream_model_drops(model: str, upstream_model: str,
                                                                 named: list[str]) -> None:
    p = gemini.build(ProviderConfig(name="gemini", kind="gemini"),
                     ProviderContext(timeouts=Timeouts(), media=MediaFetcher(MediaPolicy())))
    r = ChatRequest(model=model, messages=(user(TextBlock(text="x")),), reasoning_effort="low")
    assert p.unsupported(r, upstream_model=upstream_model) == named


def test_thinking_range_reads_the_model_family() -> None:
    assert gemini.thinking_range("gemini-2.5-flash-lite-preview") == gemini.ThinkingRange(
        thinks=True, low=512, high=24576, can_disable=True)
    assert gemini.thinking_range("gemini-2.0-flash") == gemini.ThinkingRange(thinks=False)
    assert gemini.thinking_range("gemini-3-flash") is None
    assert gemini.fit_budget(500, gemini.ThinkingRange(thinks=False)) is None


def test_tools_become_function_declarations_with_a_json_schema() -> None:
    params = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {"city": {"type": ["string", "null"]},
                             "$schema": {"type": "string", "description": "a property named $schema stays"},
                             "opts": {"type": "object", "$schema": "x", "additionalProperties": {"type": "number"}}},
              "required": ["city"], "additionalProperties": False}
    body = gemini.encode_request(req(user(TextBlock(text="x")), tools=(
        Tool(name="weather", description="the weather", parameters=params),
        Tool(name="now", parameters={"type": "object", "properties": {}}),
        Tool(name="ping"),
    ), tool_choice=ToolChoice(mode="required", name="weather")))
    decls = body["tools"][0]["functionDeclarations"]
    assert decls[0] == {"name": "weather", "description": "the weather", "parametersJsonSchema": {
        "type": "object",
        "properties": {"city": {"type": ["string", "null"]},
                       "$schema": {"type": "string", "description": "a property named $schema stays"},
                       "opts": {"type": "object", "additionalProperties": {"type": "number"}}},
        "required": ["city"], "additionalProperties": False}}
    assert decls[1] == {"name": "now"} and decls[2] == {"name": "ping"}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}
    assert request_problems(body) == []


@pytest.mark.parametrize(("mode", "wire"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")])
def test_tool_choice_modes(mode: Any, wire: str) -> None:
    body = gemini.encode_request(req(user(TextBlock(text="x")), tools=(Tool(name="f"),),
                                     tool_choice=ToolChoice(mode=mode)))
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": wire}}


def test_clean_schema_removes_schema_keys_at_any_depth_but_not_property_names() -> None:
    schema = {"$schema": "x", "anyOf": [{"$schema": "y", "type": "string"}],
              "$defs": {"$schema": {"type": "object", "$schema": "z"}}, "properties": {"$schema": {"$schema": "w"}}}
    assert gemini.clean_schema(schema) == {"anyOf": [{"type": "string"}], "$defs": {"$schema": {"type": "object"}},
                                           "properties": {"$schema": {}}}


def test_gemini_dialect_extras_are_merged_and_other_dialects_extras_are_named_as_dropped() -> None:
    extras = {"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
              "generationConfig": {"candidateCount": 1, "temperature": 1.5}}
    r = req(user(TextBlock(text="x")), temperature=0.1, extras=extras, dialect="gemini")
    body = gemini.encode_request(r)
    assert body["safetySettings"] == extras["safetySettings"]
    assert body["generationConfig"] == {"temperature": 0.1, "candidateCount": 1}
    assert gemini.unsupported(r) == []
    r = req(user(TextBlock(text="x")), extras={"logprobs": True, "n": 1}, dialect="openai")
    assert "safetySettings" not in gemini.encode_request(r)
    assert gemini.unsupported(r) == ["logprobs", "n"]


def test_unsupported_names_every_field_the_encoder_drops() -> None:
    assert gemini.unsupported(req(user(TextBlock(text="x")), temperature=0.3, top_k=3, seed=1, stop=("a",),
                                  max_tokens=5, reasoning_effort="low", response_format={"type": "json_object"},
                                  tools=(Tool(name="f"),), tool_choice=ToolChoice(mode="auto"))) == []
    r = req(
        Message(role="user", name="alice", content=(ImageBlock(url=PNG_URL, detail="low"),
                                                     DocumentBlock(data="QUJD", name="a.pdf"))),
        assistant(ReasoningBlock(redacted_data="opaque")),
        parallel_tool_calls=False, user="u-1", reasoning_effort="ludicrous",
        response_format={"type": "grammar"}, tools=(Tool(name="f", strict=True),),
    )
    assert gemini.unsupported(r) == ["parallel_tool_calls", "user", "reasoning_effort", "response_format",
                                     "tools.strict", "messages.name", "image.detail", "document.name",
                                     "reasoning.redacted_data"]
    both = req(user(TextBlock(text="x")), reasoning_effort="high", reasoning_budget=100)
    assert gemini.unsupported(both) == ["reasoning_effort"]


# --- response -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "calls", "want"), [
    ("STOP", False, "stop"), ("STOP", True, "tool_calls"), (None, True, "tool_calls"),
    ("MAX_TOKENS", False, "length"), ("MAX_TOKENS", True, "length"),
    ("SAFETY", False, "content_filter"), ("RECITATION", False, "content_filter"),
    ("BLOCKLIST", False, "content_filter"), ("PROHIBITED_CONTENT", False, "content_filter"),
    ("SPII", False, "content_filter"), ("IMAGE_SAFETY", False, "content_filter"),
    ("OTHER", False, "stop"), ("MALFORMED_FUNCTION_CALL", False, "stop"), ("LANGUAGE", False, "stop"),
])
def test_finish_reasons(reason: str | None, calls: bool, want: str) -> None:
    assert gemini.finish_reason_of(reason, calls) == want


def test_usage_counts_thoughts_as_output_and_reasoning_and_cached_as_part_of_input() -> None:
    u = gemini.usage_of({"promptTokenCount": 100, "cachedContentTokenCount": 40, "candidatesTokenCount": 7,
                         "thoughtsTokenCount": 30, "totalTokenCount": 137})
    assert u == Usage(input_tokens=100, output_tokens=37, cached_tokens=40, reasoning_tokens=30)
    assert gemini.usage_of(None) == Usage()
    assert gemini.usage_of({"promptTokenCount": 5, "toolUsePromptTokenCount": 3}).input_tokens == 8


GEMINI_ANSWER: dict[str, Any] = {
    "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
        {"text": "The user wants weather.", "thought": True},
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "U0lHLTE="},
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}, "id": "given-id"}},
    ]}}],
    "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 10, "thoughtsTokenCount": 5,
                      "totalTokenCount": 35},
    "modelVersion": "gemini-2.5-flash-001", "responseId": "resp-1",
}


def test_decode_response_maps_thoughts_calls_signatures_finish_and_usage() -> None:
    resp = gemini.decode_response(GEMINI_ANSWER, model="gemini-2.5-flash", created=1234, make_id=ids())
    assert resp.id == "resp-1" and resp.model == "gemini-2.5-flash-001" and resp.created == 1234
    assert resp.content == (
        ReasoningBlock(text="The user wants weather."),
        ReasoningBlock(signature="U0lHLTE="),
        ToolCallBlock(id="call_0", name="weather", arguments='{"city":"Paris"}'),
        ToolCallBlock(id="given-id", name="weather", arguments='{"city":"Rome"}'),
    )
    assert resp.finish_reason == "tool_calls"
    assert resp.usage == Usage(input_tokens=20, output_tokens=15, reasoning_tokens=5)


def test_wire_to_canonical_to_wire_keeps_every_part_and_signature_in_place() -> None:
    resp = gemini.decode_response(GEMINI_ANSWER, model="m", created=0, make_id=ids())
    body = gemini.encode_request(req(user(TextBlock(text="weather?")), Message(role="assistant", content=resp.content)))
    sent = body["contents"][1]["parts"]
    original = GEMINI_ANSWER["candidates"][0]["content"]["parts"]
    assert sent == [
        original[0],
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}, "id": "call_0"},
         "thoughtSignature": "U0lHLTE="},
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}, "id": "given-id"}},
    ]


def test_decode_response_text_with_a_signature_and_defaults() -> None:
    data = {"candidates": [{"finishReason": "MAX_TOKENS", "content": {"role": "model", "parts": [
        {"text": "Hel"}, {"text": "", "thoughtSignature": "U0lH"}]}}]}
    resp = gemini.decode_response(data, model="gemini-2.5-pro", created=5, make_id=ids())
    assert resp.id == "gen-0" and resp.model == "gemini-2.5-pro"
    assert resp.content == (TextBlock(text="Hel"), ReasoningBlock(signature="U0lH"))
    assert resp.finish_reason == "length" and resp.usage == Usage()


def test_a_blocked_prompt_is_an_empty_content_filter_answer() -> None:
    data = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}}
    resp = gemini.decode_response(data, model="m", created=0)
    assert resp.content == () and resp.finish_reason == "content_filter" and resp.usage.input_tokens == 9


def test_a_safety_stop_without_content_is_content_filter() -> None:
    resp = gemini.decode_response({"candidates": [{"finishReason": "SAFETY", "index": 0}]}, model="m", created=0)
    assert resp.content == () and resp.finish_reason == "content_filter"


@pytest.mark.parametrize("data", [{"candidates": []}, {"error": {"message": "boom"}}, [1, 2]])
def test_decode_response_refuses_what_is_not_an_answer(data: Any) -> None:
    with pytest.raises(ValueError):
        gemini.decode_response(data, model="m", created=0)


MALFORMED: list[Any] = [
    {"candidates": "not a list"},
    {"candidates": ["not an object"]},
    {"candidates": [{"content": ["not an object"]}]},
    {"candidates": [{"content": {"parts": "text"}}]},
    {"candidates": [{"content": {"parts": ["not an object"]}}]},
    {"candidates": [{"content": {"parts": [None]}}]},
    {"candidates": [{"content": {"parts": [{"text": 5}]}}]},
    {"candidates": [{"content": {"parts": [{"text": ["a"]}]}}]},
    {"candidates": [{"content": {"parts": [{"text": "a", "thought": "yes"}]}}]},
    {"candidates": [{"content": {"parts": [{"thoughtSignature": {"x": 1}}]}}]},
    {"candidates": [{"content": {"parts": [{"functionCall": "f"}]}}]},
    {"candidates": [{"content": {"parts": [{"functionCall": {"name": 7}}]}}]},
    {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": [1, 2]}}]}}]},
    {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "id": 3}}]}}]},
    {"candidates": [{"finishReason": ["STOP"]}]},
    {"candidates": [{"finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": "9"}},
    {"candidates": [{"finishReason": "STOP"}], "usageMetadata": {"thoughtsTokenCount": 1.5}},
    {"candidates": [{"finishReason": "STOP"}], "usageMetadata": "lots"},
    {"candidates": [{"finishReason": "STOP"}], "responseId": 12},
    {"candidates": [{"finishReason": "STOP"}], "modelVersion": {"v": 1}},
    {"promptFeedback": "blocked"},
    {"promptFeedback": {"blockReason": 3}},
]


@pytest.mark.parametrize("data", MALFORMED)
def test_a_response_of_the_wrong_shape_is_a_value_error_naming_where(data: Any) -> None:
    with pytest.raises(ValueError, match=r"at `\$\.") as caught:
        gemini.decode_response(data, model="m", created=0)
    assert not isinstance(caught.value, UpstreamError)


@pytest.mark.parametrize("data", MALFORMED)
def test_a_stream_chunk_of_the_wrong_shape_is_a_value_error_and_changes_nothing(data: Any) -> None:
    d = gemini.StreamDecoder(model="m", created=0, make_id=ids())
    with pytest.raises(ValueError, match=r"at `\$\."):
        d.feed(data)
    assert not d.started and not d.ended and d.calls == 0
    assert d.feed({"candidates": [{"content": {"parts": [{"text": "ok"}]}}]})[1:] == [TextDelta(text="ok")]


def test_null_fields_are_read_as_absent() -> None:
    data = {"candidates": [{"content": {"parts": [{"text": None, "functionCall": {"name": "f", "args": None,
                                                                                   "id": None}}]},
                            "finishReason": None}],
            "usageMetadata": {"promptTokenCount": None, "candidatesTokenCount": 3}, "responseId": None}
    resp = gemini.decode_response(data, model="m", created=0, make_id=ids())
    assert resp.content == (ToolCallBlock(id="call_1", name="f", arguments="{}"),)
    assert resp.id == "gen-0" and resp.finish_reason == "tool_calls" and resp.usage == Usage(output_tokens=3)


def test_the_decoders_take_the_typed_view_as_well() -> None:
    view = gemini.GenerateContentResponse(candidates=[])
    with pytest.raises(ValueError, match="no candidates"):
        gemini.decode_response(view, model="m", created=0)
    raw = json.dumps(GEMINI_ANSWER).encode()
    from_view = gemini.decode_response(gemini.codec.response_decoder.decode(raw), model="m", created=0,
                                       make_id=ids())
    assert from_view == gemini.decode_response(GEMINI_ANSWER, model="m", created=0, make_id=ids())


def test_stream_decoder_yields_start_deltas_tool_calls_finish_and_the_last_usage() -> None:
    d = gemini.StreamDecoder(model="gemini-2.5-flash", created=77, make_id=ids())

    def chunk(parts: list[dict[str, Any]], finish: str | None = None, out: int = 0) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            cand["finishReason"] = finish
        return {"candidates": [cand], "responseId": "r-9", "modelVersion": "gemini-2.5-flash",
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": out, "thoughtsTokenCount": 2}}

    events = d.feed(chunk([{"text": "Hmm ", "thought": True}]))
    assert events == [StreamStart(id="r-9", model="gemini-2.5-flash", created=77), ReasoningDelta(text="Hmm ")]
    assert d.feed(chunk([{"text": "Let me call."}])) == [TextDelta(text="Let me call.")]
    assert not d.ended
    events = d.feed(chunk([{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "U0k="},
                           {"functionCall": {"name": "g", "id": "x"}}], "STOP", out=6))
    assert events == [
        ReasoningDelta(signature="U0k="),
        ToolCallStart(index=0, id="call_0", name="f"), ToolCallDelta(index=0, arguments='{"a":1}'),
        ToolCallStart(index=1, id="x", name="g"), ToolCallDelta(index=1, arguments="{}"),
        Finish(reason="tool_calls"),
        UsageReport(usage=Usage(input_tokens=4, output_tokens=8, reasoning_tokens=2)),
    ]
    assert d.ended


def test_stream_decoder_blocked_prompt_and_error_chunks() -> None:
    d = gemini.StreamDecoder(model="m", created=0, make_id=ids())
    events = d.feed({"promptFeedback": {"blockReason": "OTHER"}, "usageMetadata": {"promptTokenCount": 3}})
    assert events[0] == StreamStart(id="gen-0", model="m", created=0)
    assert events[1:] == [Finish(reason="content_filter"), UsageReport(usage=Usage(input_tokens=3))]
    assert d.ended
    with pytest.raises(UpstreamError, match="overloaded"):
        gemini.StreamDecoder(model="m", created=0).feed({"error": {"code": 503, "message": "overloaded"}})
    with pytest.raises(ValueError):
        gemini.StreamDecoder(model="m", created=0).feed(["not", "an", "object"])


def sse(*chunks: Any) -> list[SSEEvent]:
    return [SSEEvent(None, c if isinstance(c, bytes) else json.dumps(c).encode()) for c in chunks]


def test_a_read_is_decoded_up_to_the_chunk_that_ends_the_stream() -> None:
    d = gemini.StreamDecoder(model="m", created=0, make_id=ids())
    events = list(d.feed_read(sse({"candidates": [{"content": {"parts": [{"text": "a"}]}}]},
                                  {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}]},
                                  {"candidates": [{"content": {"parts": [{"text": "after"}]}}]})))
    assert events == [StreamStart(id="gen-0", model="m", created=0), TextDelta(text="a"), TextDelta(text="b"),
                      Finish(reason="stop"), UsageReport(usage=Usage())]
    assert d.ended


def test_a_read_turns_what_the_upstream_got_wrong_into_the_error_the_client_sees() -> None:
    d = gemini.StreamDecoder(model="m", created=0, provider="g2", secret="AIza-secret-key")
    with pytest.raises(UpstreamError) as caught:
        list(d.feed_read(sse({"error": {"code": 503, "message": "overloaded for AIza-secret-key"}})))
    assert caught.value.message == "g2 upstream reported an error mid-stream: overloaded for ***"
    for raw in (b"{not json", b'{"candidates": [{"content": {"parts": "text"}}]}', b"null"):
        with pytest.raises(UpstreamError, match="^g2 upstream sent a malformed stream chunk: ") as caught:
            list(d.feed_read(sse(raw)))
        assert caught.value.status == 502 and caught.value.upstream_status is None


def test_stream_decoder_keeps_the_usage_seen_when_a_chunk_has_empty_usage() -> None:
    d = gemini.StreamDecoder(model="m", created=0, make_id=ids())
    d.feed({"candidates": [{"content": {"parts": [{"text": "a"}]}}], "usageMetadata": {"promptTokenCount": 4}})
    events = d.feed({"candidates": [{"finishReason": "STOP"}], "usageMetadata": {}})
    assert events == [Finish(reason="stop"), UsageReport(usage=Usage(input_tokens=4))]


def test_stream_decoder_signature_on_an_empty_last_part() -> None:
    d = gemini.StreamDecoder(model="m", created=0, make_id=ids())
    d.feed({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})
    events = d.feed({"candidates": [{"content": {"parts": [{"text": "", "thoughtSignature": "U0lH"}]},
                                     "finishReason": "STOP"}]})
    assert events == [ReasoningDelta(signature="U0lH"), Finish(reason="stop"), UsageReport(usage=Usage())]


@pytest.mark.parametrize(("body", "want"), [
    (b'{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}',
     "RESOURCE_EXHAUSTED: Quota exceeded"),
    (b'[{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}]', "INVALID_ARGUMENT: bad"),
    (b'{"error": {"code": 500, "message": "only a message"}}', "only a message"),
    (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
    (b'{"something": "else"}', None),
    (b"", None),
])
def test_parse_gemini_error(body: bytes, want: str | None) -> None:
    assert gemini.parse_gemini_error(body) == want


@pytest.mark.parametrize(("value", "want"), [
    ("7s", 7.0), ("0.5s", 0.5), ("1.5s", 1.5), ("0s", 0.0), ("30s", 30.0), ("0.000000001s", 1e-9), ("-2s", -2.0),
    ("7", None), ("s", None), ("7.s", None), ("1.5ms", None), (" 7s", None), ("7s ", None), ("1e3s", None),
    ("infs", None), ("nans", None), ("0.1234567890s", None), ("", None), (7, None), (None, None),
])
def test_duration_seconds_reads_protobuf_json_durations(value: object, want: float | None) -> None:
    assert gemini.duration_seconds(value) == want


QUOTA = {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []}


def retry_info(delay: str) -> dict[str, str]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


@pytest.mark.parametrize(("body", "want"), [
    ({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [QUOTA, retry_info("7s")]}}, 7.0),
    ([{"error": {"code": 429, "details": [retry_info("0.5s")]}}], 0.5),
    ({"error": {"code": 429, "details": [retry_info("soon")]}}, None),
    ({"error": {"code": 429, "details": [QUOTA]}}, None),
    ({"error": {"code": 429, "details": {"retryDelay": "7s"}}}, None),
    ({"error": {"code": 429, "message": "no details"}}, None),
    ({"retryDelay": "7s"}, None),
    (b"<html>Too Many Requests</html>", None),
    (b"", None),
])
def test_parse_gemini_retry_after_reads_retry_info_from_the_error_details(body: Any, want: float | None) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert gemini.parse_gemini_retry_after(raw) == want


# --- the adapter's URL and headers -----------------------------------------------------------------


@pytest.mark.parametrize("base", ["https://g.example", "https://g.example/", "https://g.example/v1beta",
                                  "https://g.example/v1beta/"])
def test_urls_carry_the_model_and_never_the_key(base: str) -> None:
    p = gemini.build(ProviderConfig(name="gemini", kind="gemini", base_url=base),
                     ProviderContext(timeouts=Timeouts(), media=MediaFetcher(MediaPolicy())))
    assert p.url("models/gemini-2.5-flash", stream=False) == \
        "https://g.example/v1beta/models/gemini-2.5-flash:generateContent"
    assert p.url("gemini-2.5-flash", stream=True) == \
        "https://g.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    headers = p.headers(Credential(id="k", secret="AIza-secret"), stream=True)
    assert headers["x-goog-api-key"] == "AIza-secret" and "Authorization" not in headers
    assert "x-goog-api-key" not in p.headers(Credential(id="k"), stream=False)


def test_spec_declares_the_env_models_and_features() -> None:
    spec = gemini.SPEC
    assert spec.kind == "gemini" and spec.api_key_env == "GEMINI_API_KEY" and spec.base_url_env == "GEMINI_BASE_URL"
    assert spec.configured({"GEMINI_API_KEY": "k"}) and not spec.configured({"GEMINI_BASE_URL": "u"})
    chat = [m for m in spec.models if m.category == "chat"]
    assert {m.id for m in chat} == {"gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"}
    assert all("vision" in m.capabilities and "reasoning" in m.capabilities for m in chat)
    media = {m.id: m.capabilities for m in spec.models if m.category != "chat"}
    assert media["gemini-embedding-001"] == ("embeddings",) and media["veo-3.0-generate-001"] == ("video",)
    assert spec.open_catalog and spec.features == {"chat", "stream", "tools", "reasoning", "usage", "errors",
                                                   "images"}


# --- the fake server's request checks (they guard every e2e test, so they must be able to fail) -------


def _ok() -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.mark.parametrize(("change", "problem"), [
    (lambda b: b.update(contents=[]), "contents: required"),
    (lambda b: b.update(system_instruction={"parts": [{"text": "x"}]}), "unknown field 'system_instruction'"),
    (lambda b: b["contents"][0].update(role="assistant"), "role: must be user or model"),
    (lambda b: b["contents"][0].update(parts=[]), "parts: required"),
    (lambda b: b["contents"][0]["parts"][0].update(inlineData={"mimeType": "image/png", "data": "QQ=="}),
     "exactly one data field"),
    (lambda b: b["contents"][0]["parts"].append({"inlineData": {"mimeType": "image/png", "data": "not base64!"}}),
     "inlineData.data"),
    (lambda b: b["contents"][0]["parts"].append({"inlineData": {"data": "QQ=="}}), "inlineData.mimeType"),
    (lambda b: b["contents"][0]["parts"].append({"text": ""}), "text: empty"),
    (lambda b: b.update(generationConfig={"max_tokens": 5}), "unknown field 'max_tokens'"),
    (lambda b: b.update(generationConfig={"stopSequences": ["1", "2", "3", "4", "5", "6"]}), "up to 5"),
    (lambda b: b.update(generationConfig={"responseJsonSchema": {"type": "object"}}), "needs responseMimeType"),
    (lambda b: b.update(generationConfig={"thinkingConfig": {"budget": 5}}), "unknown field 'budget'"),
    (lambda b: b.update(tools=[{"functionDeclarations": [{"description": "no name"}]}]), ".name: required"),
    (lambda b: b.update(tools=[{"functionDeclarations": [{"name": "f"}]}],
                        toolConfig={"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}}),
     "only with mode ANY"),
    (lambda b: b.update(tools=[{"functionDeclarations": [{"name": "f"}]}],
                        toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}}),
     "names of declared functions"),
    (lambda b: b["contents"].extend([
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}},
                                    {"functionCall": {"name": "g", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"output": "1"}}}]}]),
     "do not answer the calls"),
    (lambda b: b["contents"].extend([
        {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
        {"role": "user", "parts": [{"functionResponse": {"response": {"output": "1"}}}]}]),
     "functionResponse.name: required"),
    (lambda b: b["contents"].append({"role": "model",
                                     "parts": [{"text": "x", "thoughtSignature": "bm90LWlzc3VlZA=="}]}),
     "not a signature this server issued"),
    (lambda b: b["contents"].append({"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}),
     "lost the thoughtSignature"),
])
def test_the_fake_flags_requests_gemini_would_refuse(change: Any, problem: str) -> None:
    body = _ok()
    assert request_problems(body, {}, set()) == []
    change(body)
    issued = {call_key("f", {"a": 1}): "c2ln"}
    problems = request_problems(body, issued, {"c2ln"})
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(("model", "budget", "problem"), [
    ("gemini-2.0-flash", 0, "does not support thinking"),
    ("gemini-2.5-pro", 0, "cannot be turned off"),
    ("gemini-2.5-pro", 100, "outside 128..32768"),
    ("gemini-2.5-flash", 24577, "outside 1..24576"),
    ("gemini-2.5-flash-lite", 511, "outside 512..24576"),
    ("gemini-2.5-pro", 128, None),
    ("gemini-2.5-flash", 0, None),
    ("gemini-2.5-flash-lite", -1, None),
    ("g-think", 10**6, None),
])
def test_the_fake_checks_thinking_budgets_per_model(model: str, budget: int, problem: str | None) -> None:
    body = {**_ok(), "generationConfig": {"thinkingConfig": {"thinkingBudget": budget}}}
    problems = thinking_problems(model, body)
    assert any(problem in p for p in problems) if problem else problems == []
    assert thinking_problems(model, _ok()) == []
