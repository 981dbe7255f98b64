"""The Responses API codec: golden round trips of requests, answers and streams, each answer and
stream event validated against the spec's schemas (tests/fixtures/specs)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import pytest

from tests.fakes.spec import errors as spec_errors
from tests.fakes.spec import parse_sse, response_stream_errors, stream_event_errors
from tollway.core.chat import (
    ChatResponse,
    DocumentBlock,
    Finish,
    ImageBlock,
    ReasoningBlock,
    ReasoningDelta,
    StreamStart,
    TextBlock,
    TextDelta,
    ToolCallBlock,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResultBlock,
    Usage,
    UsageReport,
)
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.dialects.openai.errors import openai_error_body
from tollway.dialects.responses.front import ResponsesCodec, ResponsesRequest, forwarded_history
from tollway.providers.sse import SSEEvent

NOW = 1_760_000_000


def codec() -> ResponsesCodec:
    ids = itertools.count()
    return ResponsesCodec(openai_error_body, new_id=lambda: f"resp_{next(ids):04d}", now=lambda: NOW)


def decode(body: dict[str, Any]) -> ResponsesRequest:
    return codec().decode(json.dumps(body).encode())


def frames(data: bytes) -> list[dict[str, Any]]:
    """The events of an SSE body, each checked: its ``event:`` line names its ``type``."""
    out = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        event = json.loads(lines["data"])
        assert lines["event"] == event["type"]
        out.append(event)
    return out


# --- requests ------------------------------------------------------------------------------


def test_a_string_input_with_instructions_is_a_system_and_a_user_message() -> None:
    req = decode({"model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 50,
                  "temperature": 0.2, "top_p": 0.9, "user": "u-1", "stream": True})
    c = req.canonical()
    assert [(m.role, m.content) for m in c.messages] == [("system", (TextBlock(text="be brief"),)),
                                                         ("user", (TextBlock(text="hi"),))]
    assert (c.max_tokens, c.temperature, c.top_p, c.user, c.stream) == (50, 0.2, 0.9, "u-1", True)
    assert (req.model, req.stream, req.max_tokens, req.store) == ("m", True, 50, True)


def test_items_round_trip_into_messages_with_tool_calls_results_reasoning_and_media() -> None:
    req = decode({"model": "m", "input": [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
            {"type": "input_file", "file_url": "https://example.com/b.pdf"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}],
         "encrypted_content": "sig"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{\"x\":1}"},
        {"type": "function_call", "call_id": "call_2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "one"},
        {"type": "function_call_output", "call_id": "call_2",
         "output": [{"type": "input_text", "text": "two"}]},
    ]})
    messages = req.canonical().messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[1].content == (
        TextBlock(text="look"), ImageBlock(url="data:image/png;base64,AAAA", detail="high"),
        DocumentBlock(data="JVBE", media_type="application/pdf", name="a.pdf"),
        DocumentBlock(url="https://example.com/b.pdf"))
    assert messages[2].content == (
        ReasoningBlock(text="think", signature="sig"), TextBlock(text="calling"),
        ToolCallBlock(id="call_1", name="f", arguments="{\"x\":1}"), ToolCallBlock(id="call_2", name="g",
                                                                                   arguments="{}"))
    assert messages[3].content == (ToolResultBlock(tool_call_id="call_1", content=(TextBlock(text="one"),)),)
    assert messages[4].content == (ToolResultBlock(tool_call_id="call_2", content=(TextBlock(text="two"),)),)


def test_tools_tool_choice_and_text_format_map_to_their_canonical_slots() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    c = decode({"model": "m", "input": "x", "parallel_tool_calls": False,
                "tools": [{"type": "function", "name": "f", "description": "d", "parameters": schema,
                           "strict": True}],
                "tool_choice": {"type": "function", "name": "f"},
                "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
                "reasoning": {"effort": "high", "summary": "auto"}}).canonical()
    assert c.tools[0].name == "f" and c.tools[0].parameters == schema and c.tools[0].strict is True
    assert c.tool_choice == ToolChoice(mode="required", name="f") and c.parallel_tool_calls is False
    assert c.response_format == {"type": "json_schema", "json_schema": {"name": "out", "schema": schema,
                                                                        "strict": True}}
    assert c.reasoning_effort == "high" and c.lossy == ()
    assert decode({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}).canonical() \
        .response_format == {"type": "json_object"}


def test_built_in_tools_are_refused_by_name_unless_drop_params_says_drop() -> None:
    body = {"model": "m", "input": "x", "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}]}
    with pytest.raises(InvalidRequest, match="web_search") as err:
        decode(body).canonical()
    assert err.value.param == "tools[0]"
    c = decode({**body, "drop_params": True, "input": [
        {"role": "user", "content": "x"}, {"type": "web_search_call", "id": "ws", "status": "completed"}]}).canonical()
    assert [t.name for t in c.tools] == ["f"]
    assert c.lossy == ("input[1].web_search_call", "tools[0].web_search")


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": 3}, "input"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "x", "temperature": "hot"}, "temperature"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
    ({"model": "m", "input": "x", "background": True, "store": False}, "background"),
    ({"model": "m", "input": "x", "metadata": {"k": 1}}, "metadata"),
])
def test_a_bad_request_is_a_400_naming_its_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        decode(body)
    assert err.value.param == param


@pytest.mark.parametrize(("item", "param"), [
    ({"type": "item_reference", "id": "msg_1"}, "input[0]"),
    ({"type": "function_call", "call_id": "c", "name": "f"}, "input[0].arguments"),
    ({"type": "message", "role": "robot", "content": "x"}, "input[0].role"),
    ({"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}, "input[0].content[0].file_id"),
    ({"role": "user", "content": [{"type": "input_audio"}]}, "input[0].content[0]"),
])
def test_a_bad_item_is_a_400_naming_its_path(item: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        decode({"model": "m", "input": [item]}).canonical()
    assert err.value.param == param


def test_history_comes_before_the_input_and_instructions_are_not_carried() -> None:
    req = decode({"model": "m", "input": "again", "previous_response_id": "resp_x"})
    req.history = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first"}]},
                   {"id": "msg_9", "type": "message", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "one", "annotations": []}]}]
    assert [(m.role, m.content[0]) for m in req.canonical().messages] == [
        ("user", TextBlock(text="first")), ("assistant", TextBlock(text="one")), ("user", TextBlock(text="again"))]


# --- answers -------------------------------------------------------------------------------


def answer(finish: str = "tool_calls") -> ChatResponse:
    return ChatResponse(id="up-1", model="upstream-model", created=1, finish_reason=finish,  # type: ignore[arg-type]
                        usage=Usage(input_tokens=10, output_tokens=7, cached_tokens=2, reasoning_tokens=3),
                        content=(ReasoningBlock(text="hmm", signature="sig"), TextBlock(text="Hi "),
                                 TextBlock(text="there"), ToolCallBlock(id="call_1", name="f", arguments="{}")))


def test_an_answer_is_a_response_object_with_its_output_items() -> None:
    c = codec()
    req = c.decode(b'{"model":"alias","input":"x","metadata":{"k":"v"},"tools":[{"type":"function","name":"f"}]}')
    obj = json.loads(c.encode_response(req, answer()))
    assert spec_errors("Response", obj) == []
    assert (obj["id"], obj["model"], obj["status"], obj["metadata"], obj["store"]) == (
        "resp_0000", "alias", "completed", {"k": "v"}, True)
    assert [i["type"] for i in obj["output"]] == ["reasoning", "message", "function_call"]
    assert obj["output"][0]["summary"] == [{"type": "summary_text", "text": "hmm"}]
    assert obj["output"][0]["encrypted_content"] == "sig"
    assert obj["output"][1]["content"][0]["text"] == "Hi there"
    assert obj["output"][2]["call_id"] == "call_1"
    assert obj["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
                            "output_tokens": 7,
                            "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 17}
    assert c.final() == obj
    # the output, sent back as input, is the same assistant turn
    again = decode({"model": "m", "input": [{"role": "user", "content": "x"}, *obj["output"]]}).canonical()
    assert again.messages[1].content == answer().content[:1] + (TextBlock(text="Hi there"),) + answer().content[3:]


def test_an_answer_cut_by_the_output_cap_is_incomplete() -> None:
    c = codec()
    req = c.decode(b'{"model":"m","input":"x","max_output_tokens":5}')
    obj = json.loads(c.encode_response(req, answer("length")))
    assert obj["status"] == "incomplete" and obj["incomplete_details"] == {"reason": "max_output_tokens"}
    assert spec_errors("Response", obj) == []


# --- streams -------------------------------------------------------------------------------


STREAM = [StreamStart(id="up", model="up", created=1), ReasoningDelta(text="thin"), ReasoningDelta(text="king"),
          ReasoningDelta(signature="sig"), TextDelta(text="Hel"), TextDelta(text="lo"),
          ToolCallStart(index=0, id="call_a", name="f"), ToolCallDelta(index=0, arguments="{\"a\":"),
          ToolCallDelta(index=0, arguments="1}"), ToolCallStart(index=1, id="call_b", name="g"),
          ToolCallDelta(index=1, arguments="{}"), Finish(reason="tool_calls"),
          UsageReport(usage=Usage(input_tokens=4, output_tokens=9))]


def test_a_stream_is_the_documented_event_sequence() -> None:
    c = codec()
    req = c.decode(b'{"model":"alias","input":"x","stream":true}')
    writer = c.stream_writer(req)
    text = b"".join(writer.feed(e) for e in STREAM) + writer.close()
    events = frames(text)
    for event in events:
        assert stream_event_errors(event) == []
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    assert response_stream_errors(parse_sse(text.decode())) == []
    final = events[-1]["response"]
    assert final["model"] == "alias" and final["usage"]["total_tokens"] == 13
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert final["output"][0]["encrypted_content"] == "sig"
    assert [i.get("arguments") for i in final["output"][2:]] == ["{\"a\":1}", "{}"]
    assert c.final() == final


def test_an_error_in_a_stream_is_the_error_event_then_response_failed() -> None:
    c = codec()
    req = c.decode(b'{"model":"m","input":"x","stream":true}')
    writer = c.stream_writer(req)
    head = b"".join(writer.feed(e) for e in STREAM[:5])
    tail = frames(c.error_frame(UpstreamError("upstream broke", provider="p")))
    assert [e["type"] for e in tail] == ["error", "response.failed"]
    for event in tail:
        assert stream_event_errors(event) == []
    assert tail[0]["sequence_number"] == len(frames(head))
    failed = tail[1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert [i["type"] for i in failed["output"]] == ["reasoning", "message"]


# --- pass-through ----------------------------------------------------------------------------


def upstream_events(model: str) -> list[SSEEvent]:
    response = {"id": "resp_up", "object": "response", "created_at": 1, "status": "in_progress", "model": model,
                "output": [], "store": False, "previous_response_id": None, "error": None,
                "incomplete_details": None, "instructions": None, "metadata": {}, "parallel_tool_calls": True,
                "temperature": 1, "tool_choice": "auto", "tools": [], "top_p": 1}
    done = dict(response, status="completed", usage={
        "input_tokens": 5, "input_tokens_details": {"cached_tokens": 1}, "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7})
    events = [{"type": "response.created", "response": response},
              {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
               "delta": "hi", "logprobs": []},
              {"type": "response.completed", "response": done}]
    return [SSEEvent(event=e["type"], data=msgspec.json.encode({**e, "sequence_number": i}))
            for i, e in enumerate(events)]


def test_the_pass_through_body_keeps_the_state_in_the_gateway() -> None:
    c = codec()
    req = c.decode(b'{"model":"alias","input":"next","previous_response_id":"resp_a","store":true,'
                   b'"background":false,"include":["reasoning.encrypted_content"]}')
    req.history = [{"id": "msg_1", "type": "message", "role": "user", "status": "completed",
                    "content": [{"type": "input_text", "text": "first"}]},
                   {"id": "rs_1", "type": "reasoning", "summary": []},
                   {"id": "rs_2", "type": "reasoning", "summary": [], "encrypted_content": "enc"}]
    body = c.passthrough.body(req, "gpt-up")
    assert body["model"] == "gpt-up" and body["store"] is False
    assert "previous_response_id" not in body and "background" not in body
    assert body["input"] == forwarded_history(req.history) + [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "next"}]}]
    assert [i.get("id") for i in body["input"]] == [None, "rs_2", None]


def test_the_pass_through_stream_names_the_asked_model_and_reads_the_usage() -> None:
    c = codec()
    req = c.decode(b'{"model":"alias","input":"x","stream":true,"previous_response_id":"resp_a"}')
    reader = c.passthrough.reader(req, "openai", "sk-secret")
    out = frames(b"".join(reader.feed(upstream_events("gpt-up"))))
    assert [e["type"] for e in out] == ["response.created", "response.output_text.delta", "response.completed"]
    assert {out[0]["response"]["model"], out[2]["response"]["model"]} == {"alias"}
    assert out[2]["response"]["id"] == req.id and out[2]["response"]["previous_response_id"] == "resp_a"
    assert out[2]["response"]["store"] is True
    assert reader.ended and reader.usage == Usage(input_tokens=5, output_tokens=2, cached_tokens=1)
    assert c.final() == out[2]["response"]


def test_an_upstream_failure_in_a_pass_through_stream_is_told_in_sequence() -> None:
    c = codec()
    req = c.decode(b'{"model":"m","input":"x","stream":true}')
    reader = c.passthrough.reader(req, "openai", "sk-secret")
    events = upstream_events("m")[:2] + [SSEEvent(event="error", data=b'{"type":"error","code":"server_error",'
                                                  b'"message":"boom sk-secret","param":null,"sequence_number":2}')]
    assert len(reader.feed(events)) == 2
    assert reader.error is not None and "sk-secret" not in reader.error.message
    tail = frames(c.error_frame(reader.error))
    assert [(e["type"], e["sequence_number"]) for e in tail] == [("error", 2), ("response.failed", 3)]
    assert tail[1]["response"]["status"] == "failed"


@pytest.mark.parametrize("event", [
    SSEEvent(event="response.created", data=b"{not json"),
    SSEEvent(event="response.completed", data=b'{"type":"response.completed","response":"no"}'),
    SSEEvent(event="error", data=b"[1]"),
    SSEEvent(event=None, data=b"nonsense"),
])
def test_a_malformed_upstream_event_is_the_upstreams_error(event: SSEEvent) -> None:
    c = codec()
    req = c.decode(b'{"model":"m","input":"x","stream":true}')
    reader = c.passthrough.reader(req, "openai", None)
    try:
        reader.feed([event])
    except UpstreamError:
        return
    assert reader.error is not None


CUSTOM = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
          "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}


def test_a_custom_tool_is_a_function_of_one_string_and_its_calls_come_back_as_custom_tool_calls() -> None:
    c = codec()
    req = c.decode(json.dumps({"model": "m", "tools": [CUSTOM], "tool_choice": {"type": "custom",
                                                                             "name": "apply_patch"}, "input": [
        {"role": "user", "content": "fix it"},
        {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "done"}]}).encode())
    canonical = req.canonical()
    tool = canonical.tools[0]
    assert tool.name == "apply_patch" and "start: /.+/" in (tool.description or "")
    assert tool.parameters["properties"] == {"input": {"type": "string"}}
    assert canonical.tool_choice == ToolChoice(mode="required", name="apply_patch")
    assert canonical.messages[1].content == (ToolCallBlock(id="call_1", name="apply_patch",
                                                           arguments='{"input":"*** Begin Patch"}'),)
    assert canonical.messages[2].content[0] == ToolResultBlock(tool_call_id="call_1", content=(TextBlock(text="done"),))
    patch = "*** Begin Patch\n*** End Patch"
    call = ToolCallBlock(id="call_2", name="apply_patch", arguments=json.dumps({"input": patch}))
    obj = json.loads(c.encode_response(req, ChatResponse(id="u", model="u", created=1, content=(call,),
                                                         finish_reason="tool_calls", usage=Usage())))
    assert spec_errors("Response", obj) == []
    assert obj["output"][0] == {"id": obj["output"][0]["id"], "type": "custom_tool_call", "call_id": "call_2",
                                "name": "apply_patch", "input": patch}
    # streamed: the input goes out whole when the call ends
    writer = c.stream_writer(req)
    args = json.dumps({"input": patch})
    events = frames(b"".join(writer.feed(e) for e in [
        StreamStart(id="u", model="u", created=1), ToolCallStart(index=0, id="call_2", name="apply_patch"),
        ToolCallDelta(index=0, arguments=args[:10]), ToolCallDelta(index=0, arguments=args[10:]),
        Finish(reason="tool_calls")]) + writer.close())
    for event in events:
        assert stream_event_errors(event) == []
    assert [e["type"] for e in events[2:]] == [
        "response.output_item.added", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.output_item.done", "response.completed"]
    assert events[3]["delta"] == patch and events[-1]["response"]["output"][0]["input"] == patch


def test_a_namespace_is_flattened_for_the_upstream_and_its_calls_come_back_namespaced() -> None:
    c = codec()
    namespace = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
        {"type": "function", "name": "spawn_agent", "description": "Spawn one.", "parameters": {"type": "object"}}]}
    req = c.decode(json.dumps({"model": "m", "tools": [namespace], "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c1", "namespace": "multi_agent_v1", "name": "spawn_agent",
         "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "spawned"}]}).encode())
    canonical = req.canonical()
    assert [(t.name, t.description) for t in canonical.tools] == [("multi_agent_v1__spawn_agent",
                                                                  "Sub-agents. Spawn one.")]
    assert canonical.messages[1].content[0].name == "multi_agent_v1__spawn_agent"  # type: ignore[union-attr]
    call = ToolCallBlock(id="c2", name="multi_agent_v1__spawn_agent", arguments="{}")
    obj = json.loads(c.encode_response(req, ChatResponse(id="u", model="u", created=1, content=(call,),
                                                         finish_reason="tool_calls", usage=Usage())))
    assert spec_errors("Response", obj) == []
    item = obj["output"][0]
    assert (item["type"], item["name"], item["namespace"]) == ("function_call", "spawn_agent", "multi_agent_v1")


def test_a_flat_name_stays_within_what_every_provider_takes() -> None:
    from tollway.dialects.responses.codec import flat_name

    assert flat_name("ns", "a.b c") == "ns__a_b_c"
    long = flat_name("n" * 40, "t" * 40)
    assert len(long) == 64 and long != flat_name("n" * 40, "t" * 39 + "u")


def test_an_upstream_interleaving_its_calls_keeps_every_piece_in_the_final_response() -> None:
    c = codec()
    writer = c.stream_writer(c.decode(b'{"model":"m","input":"x","stream":true}'))
    text = b"".join(writer.feed(e) for e in [
        StreamStart(id="u", model="u", created=1), ToolCallStart(index=0, id="a", name="f"),
        ToolCallStart(index=1, id="b", name="g"), ToolCallDelta(index=0, arguments="{}"),
        ToolCallDelta(index=1, arguments="[]"), Finish(reason="tool_calls")]) + writer.close()
    final = frames(text)[-1]["response"]
    assert [i["arguments"] for i in final["output"]] == ["{}", "[]"]
