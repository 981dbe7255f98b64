"""The Bedrock Converse codec, both ways, without a network: request mapping (roles merged, tool
results, media, document names, reasoning, tools, model-family fields), what ``unsupported`` names,
response and stream decoding, and the fake's event-stream encoder against botocore's decoder.
Encoded requests are also checked against botocore's service model, as the fake does."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from tests.fakes.bedrock_server import encode_frame, event_frame, exception_frame, request_errors, shape_errors
from tests.fakes.bedrock_server import service_model as bedrock_model
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
from tollway.core.errors import ConfigError, InvalidRequest, UpstreamError
from tollway.providers import bedrock
from tollway.providers.base import ProviderContext
from tollway.providers.http import Timeouts
from tollway.providers.media import Media, MediaFetcher, MediaPolicy, decode_data_url

CLAUDE = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-pro-v1:0"
LLAMA = "meta.llama3-70b-instruct-v1:0"
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
TOOL = Tool(name="lookup", description="look it up", parameters={"type": "object",
                                                                  "properties": {"q": {"type": "string"}}})


def user(*blocks: Any) -> Message:
    return Message(role="user", content=tuple(TextBlock(text=b) if isinstance(b, str) else b for b in blocks))


def assistant(*blocks: Any) -> Message:
    return Message(role="assistant", content=tuple(TextBlock(text=b) if isinstance(b, str) else b for b in blocks))


def tool_result(call_id: str, text: str, is_error: bool = False) -> Message:
    return Message(role="tool", content=(ToolResultBlock(tool_call_id=call_id, content=(TextBlock(text=text),),
                                                         is_error=is_error),))


def req(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="bedrock/x", messages=messages, **kw)


def encode(r: ChatRequest, model: str = CLAUDE) -> dict[str, Any]:
    media = {u: decode_data_url(u) for u in bedrock.media_urls(r)}
    body = bedrock.encode_request(r, upstream_model=model, media=media)
    assert request_errors("Converse", model, body) == []  # every encoded body passes the official model
    return body


# --- request mapping ---------------------------------------------------------------------


def test_system_text_and_inference_config() -> None:
    r = req(Message(role="system", content=(TextBlock(text="be exact"), TextBlock(text="be brief"))), user("hi"),
            max_tokens=64, temperature=0.3, top_p=0.9, stop=("END", ""))
    body = encode(r)
    assert body["system"] == [{"text": "be exact"}, {"text": "be brief"}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]
    assert body["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]}
    assert body["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    assert "toolConfig" not in body and "additionalModelRequestFields" not in body


def test_temperature_above_one_is_clamped() -> None:
    assert encode(req(user("hi"), temperature=1.7))["inferenceConfig"] == {"temperature": 1.0}


def test_adjacent_same_role_messages_merge_and_tool_results_join_one_user_turn() -> None:
    calls = (ToolCallBlock(id="call_a", name="lookup", arguments='{"q": "a"}'),
             ToolCallBlock(id="call_b", name="lookup", arguments=""))
    r = req(user("one"), user("two"), assistant("let me look", *calls),
            tool_result("call_a", "found a"), tool_result("call_b", "no such thing", is_error=True),
            user("and now?"), tools=(TOOL,))
    body = encode(r)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == [{"text": "one"}, {"text": "two"}]
    assert body["messages"][1]["content"] == [
        {"text": "let me look"},
        {"toolUse": {"toolUseId": "call_a", "name": "lookup", "input": {"q": "a"}}},
        {"toolUse": {"toolUseId": "call_b", "name": "lookup", "input": {}}},
    ]
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "call_a", "content": [{"text": "found a"}]}},
        {"toolResult": {"toolUseId": "call_b", "content": [{"text": "no such thing"}], "status": "error"}},
        {"text": "and now?"},
    ]


def test_empty_text_blocks_and_empty_messages_are_left_out() -> None:
    body = encode(req(user("hi"), assistant(""), user("", "again")))
    assert body["messages"] == [{"role": "user", "content": [{"text": "hi"}, {"text": "again"}]}]


def test_tool_call_arguments_must_be_a_json_object() -> None:
    for bad in ("{not json", "[1, 2]"):
        r = req(user("x"), assistant(ToolCallBlock(id="c1", name="lookup", arguments=bad)), tools=(TOOL,))
        with pytest.raises(InvalidRequest, match="c1"):
            encode(r)


def test_images_inline_as_bytes_in_messages_and_tool_results() -> None:
    result = ToolResultBlock(tool_call_id="c1", content=(TextBlock(text="chart:"), ImageBlock(url=PNG)))
    r = req(user("what is this?", ImageBlock(url=PNG)),
            assistant(ToolCallBlock(id="c1", name="lookup", arguments="{}")),
            Message(role="tool", content=(result,)), tools=(TOOL,))
    body = encode(r)
    image = {"image": {"format": "png", "source": {"bytes": base64.b64encode(b"\x89PNG fake").decode()}}}
    assert body["messages"][0]["content"][1] == image
    assert body["messages"][2]["content"][0]["toolResult"]["content"] == [{"text": "chart:"}, image]
    assert bedrock.media_urls(r) == [PNG]  # fetched once


def test_an_image_type_bedrock_does_not_take_is_a_400() -> None:
    r = req(user(ImageBlock(url="data:image/bmp;base64,AAAA")))
    with pytest.raises(InvalidRequest, match="png, jpeg, gif or webp"):
        encode(r)


def test_documents_get_a_format_and_a_name_bedrock_accepts() -> None:
    r = req(user(DocumentBlock(data=PDF, name="Q3_report.final.pdf"),
                 DocumentBlock(data=PDF, name="Q3 report final"),  # sanitises to the same name: made unique
                 DocumentBlock(data=base64.b64encode(b"a,b\n1,2").decode(), media_type="text/csv"),
                 DocumentBlock(data=PDF, name="  weird   name  [v2] (draft)!.pdf"),
                 "summarise"))
    docs = [c["document"] for c in encode(r)["messages"][0]["content"][:4]]
    assert [d["format"] for d in docs] == ["pdf", "pdf", "csv", "pdf"]
    assert [d["name"] for d in docs] == ["Q3-report-final", "Q3 report final", "document",
                                         "weird name [v2] (draft)"]
    assert docs[0]["source"] == {"bytes": PDF}
    assert bedrock.document_name("Q3-report-final", "pdf", {"Q3-report-final"}) == "Q3-report-final (2)"


def test_documents_with_bad_base64_or_an_unknown_type_are_a_400() -> None:
    with pytest.raises(InvalidRequest, match="base64"):
        encode(req(user(DocumentBlock(data="@@not base64@@"))))
    with pytest.raises(InvalidRequest, match="image/svg"):
        encode(req(user(DocumentBlock(data=PDF, media_type="image/svg+xml"))))


def test_document_by_url_uses_the_fetched_bytes_and_type() -> None:
    r = req(user(DocumentBlock(url="https://example.com/notes", media_type="application/pdf", name="notes"), "go"))
    assert bedrock.media_urls(r) == ["https://example.com/notes"]
    body = bedrock.encode_request(r, upstream_model=CLAUDE, media={
        "https://example.com/notes": Media(media_type="text/markdown; charset=utf-8", data=b"# hi")})
    assert body["messages"][0]["content"][0]["document"] == {
        "format": "md", "name": "notes", "source": {"bytes": base64.b64encode(b"# hi").decode()}}


def test_reasoning_round_trips_with_signature_or_redacted_data() -> None:
    r = req(user("think"), assistant(ReasoningBlock(text="hmm", signature="sig-1"),
                                     ReasoningBlock(redacted_data="cmVkYWN0ZWQ="),
                                     ReasoningBlock(text="from another provider"), "answer"), user("more"))
    assert encode(r)["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig-1"}}},
        {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
        {"text": "answer"},
    ]
    assert "messages.reasoning" in bedrock.dropped_fields(r, upstream_model=CLAUDE)


def test_tools_and_tool_choice() -> None:
    strict = Tool(name="pick", parameters={}, strict=True)
    base = req(user("x"), tools=(TOOL, strict))
    cfg = encode(base)["toolConfig"]
    assert cfg["tools"] == [
        {"toolSpec": {"name": "lookup", "description": "look it up",
                      "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}}}}},
        {"toolSpec": {"name": "pick", "inputSchema": {"json": {"type": "object", "properties": {}}}, "strict": True}},
    ]
    assert "toolChoice" not in cfg
    choices = {ToolChoice(mode="auto"): {"auto": {}}, ToolChoice(mode="required"): {"any": {}},
               ToolChoice(mode="required", name="pick"): {"tool": {"name": "pick"}}}
    for choice, wire in choices.items():
        r = req(user("x"), tools=(TOOL, strict), tool_choice=choice)
        assert encode(r)["toolConfig"]["toolChoice"] == wire


def test_tool_choice_none_sends_no_tools_unless_the_history_needs_them() -> None:
    none = ToolChoice(mode="none")
    r = req(user("x"), tools=(TOOL,), tool_choice=none)
    assert "toolConfig" not in encode(r)
    assert "tool_choice" not in bedrock.dropped_fields(r, upstream_model=CLAUDE)
    with_history = req(user("x"), assistant(ToolCallBlock(id="c1", name="lookup", arguments="{}")),
                       tool_result("c1", "ok"), tools=(TOOL,), tool_choice=none)
    assert encode(with_history)["toolConfig"] == {"tools": [  # no toolChoice: Converse has no "none"
        {"toolSpec": {"name": "lookup", "description": "look it up",
                      "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}}}}}]}
    assert "tool_choice" in bedrock.dropped_fields(with_history, upstream_model=CLAUDE)


def test_tool_history_without_tools_gets_minimal_specs() -> None:
    r = req(user("x"), assistant(ToolCallBlock(id="c1", name="lookup", arguments="{}")), tool_result("c1", "ok"))
    assert encode(r)["toolConfig"] == {"tools": [
        {"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}


def test_anthropic_fields_top_k_and_thinking() -> None:
    assert encode(req(user("x"), top_k=40))["additionalModelRequestFields"] == {"top_k": 40}
    body = encode(req(user("x"), reasoning_budget=2048, max_tokens=4096, top_k=40, temperature=0.2, top_p=0.5))
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert body["inferenceConfig"] == {"maxTokens": 4096}
    effort = encode(req(user("x"), reasoning_effort="medium"))
    assert effort["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 8192}}
    assert effort["inferenceConfig"]["maxTokens"] > 8192  # Claude needs room above the budget
    dropped = bedrock.dropped_fields(req(user("x"), reasoning_budget=2048, top_k=40, temperature=0.2, top_p=0.5),
                                     upstream_model=CLAUDE)
    assert sorted(dropped) == ["temperature", "top_k", "top_p"]


def test_claude_thinking_follows_anthropics_rules_on_bedrock() -> None:
    capped = encode(req(user("x"), max_tokens=1000, reasoning_effort="high"))
    assert "additionalModelRequestFields" not in capped or "thinking" not in capped["additionalModelRequestFields"]
    assert bedrock.dropped_fields(req(user("x"), max_tokens=1000, reasoning_effort="high"),
                                  upstream_model=CLAUDE) == ["reasoning_effort"]
    forced = req(user("x"), reasoning_effort="high", tools=(Tool(name="f"),), tool_choice=ToolChoice(mode="required"))
    body = encode(forced)
    assert "toolChoice" not in body["toolConfig"] and "thinking" in body["additionalModelRequestFields"]
    assert "tool_choice" in bedrock.dropped_fields(forced, upstream_model=CLAUDE)


def test_nova_and_other_families() -> None:
    nova = req(user("x"), top_k=5, reasoning_effort="high")
    assert encode(nova, NOVA)["additionalModelRequestFields"] == {"inferenceConfig": {"topK": 5}}
    assert bedrock.dropped_fields(nova, upstream_model=NOVA) == ["reasoning_effort"]
    other = encode(nova, LLAMA)
    assert "additionalModelRequestFields" not in other and "additionalModelResponseFieldPaths" not in other
    assert bedrock.dropped_fields(nova, upstream_model=LLAMA) == ["top_k", "reasoning_effort"]


def test_unsupported_names_every_dropped_field() -> None:
    provider = bedrock.build(ProviderConfig(name="bedrock", kind="bedrock", options={"region": "us-east-1"}),
                             ProviderContext(timeouts=Timeouts(), media=MediaFetcher(MediaPolicy())))
    r = ChatRequest(model="bedrock/nova-pro", messages=(
        Message(role="system", content=(TextBlock(text="s"), ImageBlock(url=PNG))),
        Message(role="user", name="ann", content=(ImageBlock(url=PNG, detail="high"),))),
        seed=1, response_format={"type": "json_object"}, parallel_tool_calls=False, user="u1", top_k=3,
        reasoning_budget=100, extras={"logit_bias": {}, "store": True}, dialect="openai")
    assert provider.unsupported(r, upstream_model=NOVA) == [
        "seed", "response_format", "parallel_tool_calls", "user", "reasoning_budget", "extras.logit_bias",
        "extras.store", "image.detail", "messages.name", "system.image"]
    assert provider.unsupported(ChatRequest(model="bedrock/nova-pro", messages=(user("x"),)), upstream_model=NOVA) == []
    # the routed upstream model tells the family, whatever the public name
    top_k = ChatRequest(model="bedrock/claude-haiku-4-5", messages=(user("x"),), top_k=3)
    assert provider.unsupported(top_k, upstream_model="global.anthropic.claude-haiku-4-5-20251001-v1:0") == []
    assert provider.unsupported(top_k, upstream_model=LLAMA) == ["top_k"]
    assert provider.unsupported(ChatRequest(model="my-llama", messages=(user("x"),), top_k=3),
                                upstream_model=LLAMA) == ["top_k"]
    assert provider.unsupported(ChatRequest(model="my-claude", messages=(user("x"),), top_k=3),
                                upstream_model=CLAUDE) == []
    body = encode(r, NOVA)
    assert body["system"] == [{"text": "s"}]
    wire = json.dumps(body)
    for name in ("seed", "json_object", "parallel", "u1", "logit_bias", "store", "high", "ann", "budget"):
        assert name not in wire, name


def test_bedrock_dialect_extras_pass_through() -> None:
    r = req(user("x"), top_k=7, dialect="bedrock",
            extras={"guardrailConfig": {"guardrailIdentifier": "gr1", "guardrailVersion": "1"},
                    "additionalModelRequestFields": {"anthropic_beta": ["x"]}})
    body = encode(r)
    assert body["guardrailConfig"] == {"guardrailIdentifier": "gr1", "guardrailVersion": "1"}
    assert body["additionalModelRequestFields"] == {"anthropic_beta": ["x"], "top_k": 7}
    assert bedrock.dropped_fields(r, upstream_model=CLAUDE) == []


def test_build_refuses_a_config_without_region_or_key_id() -> None:
    ctx = ProviderContext(timeouts=Timeouts(), media=MediaFetcher(MediaPolicy()))
    with pytest.raises(ConfigError, match="region"):
        bedrock.build(ProviderConfig(name="b", kind="bedrock", credentials=(
            Credential(id="c", secret="s", extra={"access_key_id": "AK"}),)), ctx)
    with pytest.raises(ConfigError, match="access_key_id"):
        bedrock.build(ProviderConfig(name="b", kind="bedrock", options={"region": "eu-west-1"},
                                     credentials=(Credential(id="c", secret="s"),)), ctx)
    ok = bedrock.build(ProviderConfig(name="b", kind="bedrock", credentials=(
        Credential(id="c", secret="s", extra={"access_key_id": "AK", "region": "eu-west-1"}),)), ctx)
    assert ok.name == "b"


def test_env_credentials_and_options() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "sec", "AWS_REGION": "us-west-2"}
    assert bedrock.env_credentials(env) == (Credential(id="bedrock:env", secret="sec",
                                                       extra={"access_key_id": "AKIA1"}),)
    assert bedrock.env_credentials(env | {"AWS_SESSION_TOKEN": "tok"})[0].extra == {"access_key_id": "AKIA1",
                                                                                    "session_token": "tok"}
    assert bedrock.env_credentials({"AWS_SECRET_ACCESS_KEY": "sec"}) == ()
    assert bedrock.env_options(env) == {"region": "us-west-2"} and bedrock.env_options({}) == {}
    assert bedrock.SPEC.configured(env) and not bedrock.SPEC.configured({"AWS_ACCESS_KEY_ID": "a"})


# --- response mapping --------------------------------------------------------------------


def converse_response(content: list[dict[str, Any]], stop: str = "end_turn", **extra: Any) -> dict[str, Any]:
    resp = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 21, "cacheReadInputTokens": 5,
                      "cacheWriteInputTokens": 2},
            "metrics": {"latencyMs": 3}, **extra}
    assert shape_errors(bedrock_model().operation_model("Converse").output_shape, resp, "response") == []
    return resp


def test_decode_response_blocks_usage_and_finish() -> None:
    raw = json.dumps(converse_response([
        {"reasoningContent": {"redactedContent": "cmVk"}},
        {"reasoningContent": {"reasoningText": {"text": "so", "signature": "sig"}}},
        {"text": "Hi."},
        {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "a", "n": [1, 2]}}},
    ], "tool_use")).encode()
    resp = bedrock.decode_response(raw, model=CLAUDE, response_id="r1", created=7)
    assert resp.content == (ReasoningBlock(redacted_data="cmVk"), ReasoningBlock(text="so", signature="sig"),
                            TextBlock(text="Hi."),
                            ToolCallBlock(id="t1", name="lookup", arguments='{"q":"a","n":[1,2]}'))
    assert resp.finish_reason == "tool_calls" and resp.id == "r1" and resp.model == CLAUDE
    assert resp.usage == Usage(input_tokens=17, output_tokens=4, cached_tokens=5, cache_write_tokens=2)


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
    ("model_context_window_exceeded", "length"), ("malformed_tool_use", "error")])
def test_stop_reasons(stop: str, finish: str) -> None:
    raw = json.dumps(converse_response([{"text": "x"}], stop)).encode()
    assert bedrock.decode_response(raw, model="m", response_id="r", created=0).finish_reason == finish


def test_stop_sequence_comes_from_additional_fields() -> None:
    raw = json.dumps(converse_response([{"text": "x"}], "stop_sequence",
                                       additionalModelResponseFields={"stop_sequence": "END"})).encode()
    resp = bedrock.decode_response(raw, model="m", response_id="r", created=0)
    assert (resp.finish_reason, resp.stop_sequence) == ("stop", "END")


def test_parse_error() -> None:
    assert bedrock.parse_bedrock_error(b'{"message": "Too many requests"}') == "Too many requests"
    assert bedrock.parse_bedrock_error(b'{"Message": "Bad"}') == "Bad"
    assert bedrock.parse_bedrock_error(b"<html>gateway</html>") == "<html>gateway</html>"
    assert bedrock.parse_bedrock_error(b"") is None


# --- stream decoding ---------------------------------------------------------------------


def decoder() -> bedrock.StreamDecoder:
    return bedrock.StreamDecoder(provider="bedrock", response_id="rid", model=CLAUDE, created=5,
                                 secrets=("topsecret", "session-tok"))


def feed_all(d: bedrock.StreamDecoder, frames: list[bytes]) -> list[Any]:
    buf = EventStreamBuffer()
    buf.add_data(b"".join(frames))
    return [e for m in buf for e in d.feed(m.headers, m.payload)]


def test_stream_decoder_maps_every_event() -> None:
    frames = [
        event_frame("messageStart", {"role": "assistant", "p": "abc"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"reasoningContent":
                                                                           {"redactedContent": "cmVk"}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "Hi"}}),
        event_frame("contentBlockStart", {"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "t1",
                                                                                        "name": "a"}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": '{"q":'}}}),
        event_frame("contentBlockStart", {"contentBlockIndex": 4, "start": {"toolUse": {"toolUseId": "t2",
                                                                                        "name": "b"}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 4, "delta": {"toolUse": {"input": "{}"}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": '"x"}'}}}),
        event_frame("messageStop", {"stopReason": "tool_use"}),
        event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5},
                                 "metrics": {"latencyMs": 1}}),
    ]
    d = decoder()
    assert not d.ended
    assert feed_all(d, frames) == [
        StreamStart(id="rid", model=CLAUDE, created=5), ReasoningDelta(text="hm"), ReasoningDelta(signature="s"),
        ReasoningDelta(redacted_data="cmVk"), TextDelta(text="Hi"),
        ToolCallStart(index=0, id="t1", name="a"), ToolCallDelta(index=0, arguments='{"q":'),
        ToolCallStart(index=1, id="t2", name="b"), ToolCallDelta(index=1, arguments="{}"),
        ToolCallDelta(index=0, arguments='"x"}'), Finish(reason="tool_calls"),
        UsageReport(usage=Usage(input_tokens=3, output_tokens=2)),
    ]
    assert d.ended


def test_stream_decoder_stop_sequence_needs_both_stop_and_metadata() -> None:
    d = decoder()
    events = feed_all(d, [event_frame("messageStop", {"stopReason": "stop_sequence",
                                                      "additionalModelResponseFields": {"stop_sequence": "##"}})])
    assert events[-1] == Finish(reason="stop", stop_sequence="##")
    assert d.stopped and not d.ended


def test_reads_are_decoded_into_the_frames_they_complete_at_any_split() -> None:
    frames = [event_frame("messageStart", {"role": "assistant"}),
              event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
              event_frame("messageStop", {"stopReason": "end_turn"}),
              event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}})]
    stream = b"".join(frames)
    want = [StreamStart(id="rid", model=CLAUDE, created=5), TextDelta(text="Hi"), Finish(reason="stop"),
            UsageReport(usage=Usage(input_tokens=3, output_tokens=1))]
    for cut in range(len(stream) + 1):
        d = decoder()
        first = list(d.feed_read(stream[:cut]))
        assert d.ended == (cut == len(stream))
        assert first + list(d.feed_read(stream[cut:])) == want, f"split at byte {cut}"
        assert d.ended


def test_a_read_with_a_broken_frame_is_an_error() -> None:
    frame = event_frame("messageStart", {"role": "assistant"})
    with pytest.raises(UpstreamError, match="malformed event stream frame"):
        list(decoder().feed_read(frame[:-1] + bytes([frame[-1] ^ 1])))


@pytest.mark.parametrize(("name", "status", "http_status"), [
    ("throttlingException", 429, 429), ("validationException", 400, 400), ("modelStreamErrorException", 424, 502),
    ("internalServerException", 500, 502), ("serviceUnavailableException", 503, 502)])
def test_stream_exceptions_are_upstream_errors_without_secrets(name: str, status: int, http_status: int) -> None:
    d = decoder()
    with pytest.raises(UpstreamError) as info:
        feed_all(d, [event_frame("messageStart", {"role": "assistant"}),
                     exception_frame(name, "bad things; key topsecret token session-tok")])
    err = info.value
    assert err.upstream_status == status and err.http_status == http_status
    assert name in err.message and "topsecret" not in err.message and "session-tok" not in err.message


def test_stream_tool_input_for_an_unstarted_block_is_an_error() -> None:
    with pytest.raises(UpstreamError, match="never started"):
        feed_all(decoder(), [event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                               "delta": {"toolUse": {"input": "{}"}}})])


def test_stream_malformed_payload_is_an_error() -> None:
    with pytest.raises(UpstreamError, match="malformed"):
        feed_all(decoder(), [encode_frame({":message-type": "event", ":event-type": "messageStop"}, b"{nope")])


# --- the fake's event-stream encoder against botocore's decoder --------------------------


def test_encoder_round_trips_through_botocore_at_any_split() -> None:
    frames = [encode_frame({":event-type": "a", ":message-type": "event"}, b'{"x":1}'),
              encode_frame({":event-type": "bb", "ünï": "cödé"}, b""),
              encode_frame({}, b"z" * 5000)]
    stream = b"".join(frames)
    for cut in (1, 7, 12, 13, len(frames[0]) - 1, len(frames[0]), len(stream) - 3):
        buf = EventStreamBuffer()
        got = []
        for part in (stream[:cut], stream[cut:]):
            buf.add_data(part)
            got += [(m.headers, bytes(m.payload)) for m in buf]
        assert got == [({":event-type": "a", ":message-type": "event"}, b'{"x":1}'),
                       ({":event-type": "bb", "ünï": "cödé"}, b""), ({}, b"z" * 5000)]


def test_encoder_prelude_lengths_and_crcs() -> None:
    frame = encode_frame({"k": "v"}, b"payload")
    total, headers_len = struct.unpack(">II", frame[:8])
    # header: name length (1) + "k" + type 7 (1) + value length (2) + "v"
    assert total == len(frame) == 12 + 6 + len(b"payload") + 4 and headers_len == 6
    corrupt = frame[:-1] + bytes([frame[-1] ^ 1])
    buf = EventStreamBuffer()
    buf.add_data(corrupt)
    with pytest.raises(ChecksumMismatch):
        list(buf)


# --- the fake's validator can fail -------------------------------------------------------


def test_the_fake_validator_reports_what_bedrock_would_refuse() -> None:
    bad = {"messages": [{"role": "assistant", "content": [{"text": "a"}]},
                        {"role": "assistant", "content": [{"image": {"format": "bmp", "source": {"bytes": "@@"}}}]},
                        {"role": "user", "content": [{"toolResult": {"toolUseId": "nope", "content": []}},
                                                     {"document": {"name": "a.pdf", "format": "pdf",
                                                                   "source": {"bytes": "QQ=="}}}]}],
           "inferenceConfig": {"temperature": 1.5, "maxTokens": 0}, "seed": 3}
    errors = "\n".join(request_errors("Converse", CLAUDE, bad))
    for expected in ("first message must be a user", "same role", "'bmp' is not one of", "not valid base64",
                     "answers no toolUse", "document name 'a.pdf'", "toolConfig", "temperature: 1.5",
                     "maxTokens", "Unknown parameter", "seed"):
        assert expected in errors, expected
