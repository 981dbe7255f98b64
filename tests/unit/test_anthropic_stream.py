"""Anthropic streams: the encoder's output is what the anthropic SDK's own accumulator builds
a message from, and the decoder turns an upstream's events back into canonical ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from tollway.core.chat import (
    Finish,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageReport,
)
from tollway.core.errors import UpstreamError
from tollway.dialects.anthropic.stream import StreamEncoder
from tollway.providers.anthropic.stream import StreamDecoder
from tollway.providers.sse import SSEEvent

_events = TypeAdapter(RawMessageStreamEvent)


def frames(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def encode(events: list[StreamEvent], model: str = "m") -> list[tuple[str, dict[str, Any]]]:
    enc = StreamEncoder(model=model)
    raw = b"".join(enc.feed(e) for e in events) + enc.close()
    return frames(raw)


def accumulate(pairs: list[tuple[str, dict[str, Any]]]) -> Any:
    snapshot, bufs = None, {}
    for name, data in pairs:
        assert name == data["type"]  # the event line names the JSON's type, as Anthropic's do
        if name == "ping":
            continue
        snapshot = accumulate_event(event=_events.validate_python(data), current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


STREAM: list[StreamEvent] = [
    StreamStart(id="chatcmpl-9", model="up", created=1),
    ReasoningDelta(text="let me "), ReasoningDelta(text="think"), ReasoningDelta(signature="sig-1"),
    TextDelta(text="Hello"), TextDelta(text=" world"),
    ToolCallStart(index=0, id="call_a", name="get"), ToolCallDelta(index=0, arguments='{"city": '),
    ToolCallDelta(index=0, arguments='"Paris"}'),
    ToolCallStart(index=1, id="call_b", name="get"), ToolCallDelta(index=1, arguments='{"city": "Rome"}'),
    Finish(reason="tool_calls"),
    UsageReport(usage=Usage(input_tokens=40, output_tokens=12, cached_tokens=30)),
]


def test_the_sdk_accumulates_the_encoded_stream_into_the_right_message() -> None:
    pairs = encode(STREAM, model="claude-x")
    names = [n for n, _ in pairs]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 4
    msg = accumulate(pairs)
    assert msg.id.startswith("msg_") and msg.model == "claude-x"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].thinking == "let me think" and msg.content[0].signature == "sig-1"
    assert msg.content[1].text == "Hello world"
    assert (msg.content[2].name, msg.content[2].input) == ("get", {"city": "Paris"})
    assert msg.content[3].input == {"city": "Rome"}
    assert msg.stop_reason == "tool_use"
    assert msg.usage.input_tokens == 10 and msg.usage.cache_read_input_tokens == 30 and msg.usage.output_tokens == 12


def test_an_empty_stream_still_opens_and_closes_a_message() -> None:
    pairs = encode([Finish(reason="length")])
    assert [n for n, _ in pairs] == ["message_start", "ping", "message_delta", "message_stop"]
    assert accumulate(pairs).stop_reason == "max_tokens"


def test_redacted_thinking_is_its_own_block() -> None:
    pairs = encode([StreamStart(id="x", model="m", created=0), ReasoningDelta(redacted_data="opaque"),
                    TextDelta(text="ok"), Finish(reason="stop", stop_sequence="END")])
    msg = accumulate(pairs)
    assert [b.type for b in msg.content] == ["redacted_thinking", "text"]
    assert msg.content[0].data == "opaque" and msg.stop_reason == "stop_sequence" and msg.stop_sequence == "END"


def upstream_events() -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-up", "usage": {
            "input_tokens": 5, "cache_read_input_tokens": 20, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "S"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "ping"},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ": 1}"}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]


def test_decoder_turns_upstream_events_into_canonical_ones() -> None:
    dec = StreamDecoder("anthropic")
    out: list[StreamEvent] = []
    for data in upstream_events():
        out.extend(dec.feed(json.dumps(data).encode()))
    assert dec.ended
    assert out == [
        StreamStart(id="msg_1", model="claude-up", created=0),
        ReasoningDelta(text="hm"), ReasoningDelta(signature="S"),
        TextDelta(text="Hi"),
        ToolCallStart(index=0, id="toolu_1", name="f"),
        ToolCallDelta(index=0, arguments='{"a"'), ToolCallDelta(index=0, arguments=": 1}"),
        Finish(reason="tool_calls", stop_sequence=None),
        UsageReport(usage=Usage(input_tokens=25, output_tokens=9, cached_tokens=20)),
    ]


def test_decoder_then_encoder_gives_back_the_same_message() -> None:
    dec = StreamDecoder("anthropic")
    events = [e for data in upstream_events() for e in dec.feed(json.dumps(data).encode())]
    msg = accumulate(encode(events, model="claude-up"))
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].signature == "S" and msg.content[2].input == {"a": 1}
    assert msg.usage.input_tokens == 5 and msg.usage.cache_read_input_tokens == 20 and msg.usage.output_tokens == 9


@pytest.mark.parametrize("etype, status", [("overloaded_error", 529), ("rate_limit_error", 429),
                                           ("api_error", 500)])
def test_an_error_event_raises_with_its_status(etype: str, status: int) -> None:
    dec = StreamDecoder("anthropic")
    with pytest.raises(UpstreamError) as exc:
        dec.feed(json.dumps({"type": "error", "error": {"type": etype, "message": "busy"}}).encode())
    assert exc.value.upstream_status == status and "busy" in exc.value.message


def sse(*events: dict[str, Any] | bytes) -> list[SSEEvent]:
    return [SSEEvent(None, e if isinstance(e, bytes) else json.dumps(e).encode()) for e in events]


def test_a_read_is_decoded_up_to_message_stop() -> None:
    dec = StreamDecoder("anthropic", created=7)
    late = {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "late"}}
    events = list(dec.feed_read(sse(*upstream_events(), late)))
    assert dec.ended
    assert events[0] == StreamStart(id="msg_1", model="claude-up", created=7) and TextDelta(text="late") not in events


def test_what_the_upstream_got_wrong_is_an_upstream_error() -> None:
    dec = StreamDecoder("a2", secret="sk-ant-secret")
    with pytest.raises(UpstreamError) as caught:
        list(dec.feed_read(sse({"type": "error", "error": {"type": "overloaded_error",
                                                           "message": "busy for sk-ant-secret"}})))
    assert caught.value.message == "a2 upstream reported an error mid-stream: busy for ***"
    assert caught.value.upstream_status == 529
    for raw, message in ((b"{not json", "a2 upstream sent a malformed stream event"),
                         (b'{"type": "content_block_delta", "index": 0, "delta": 5}',
                          "a2 upstream sent a malformed 'content_block_delta' event")):
        with pytest.raises(UpstreamError) as caught:
            dec.feed(raw)
        assert caught.value.message == message
    # JSON that is no object, and event or delta types added later, are skipped
    assert dec.feed(b"[1]") == dec.feed(b'{"type": "later_event"}') == []
    assert dec.feed(b'{"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta"}}') == []


def test_tool_headers_first_then_arguments_still_give_whole_blocks() -> None:
    """vLLM-style: every call's header, then the arguments of each; no delta may follow its block's stop."""
    pairs = encode([StreamStart(id="x", model="m", created=0),
                    ToolCallStart(index=0, id="", name="a"), ToolCallStart(index=1, id="", name="b"),
                    ToolCallDelta(index=0, arguments='{"x": 1}'), ToolCallDelta(index=1, arguments='{"y": '),
                    ToolCallDelta(index=1, arguments="2}"), Finish(reason="tool_calls")])
    stopped: set[int] = set()
    for name, data in pairs:
        if name == "content_block_stop":
            stopped.add(data["index"])
        if name == "content_block_delta":
            assert data["index"] not in stopped
    msg = accumulate(pairs)
    assert [(b.name, b.input) for b in msg.content] == [("a", {"x": 1}), ("b", {"y": 2})]
    assert msg.content[0].id != msg.content[1].id  # ids made up for id-less calls are distinct


def test_sequential_tool_calls_stream_as_they_come() -> None:
    """OpenAI order (header, arguments, next header ...): each call's block is written at once."""
    enc = StreamEncoder(model="m")
    enc.feed(StreamStart(id="x", model="m", created=0))
    enc.feed(ToolCallStart(index=0, id="a", name="f"))
    enc.feed(ToolCallDelta(index=0, arguments='{"q": 1}'))
    second = enc.feed(ToolCallStart(index=1, id="b", name="g")) + enc.feed(ToolCallDelta(index=1, arguments="{}"))
    names = [n for n, _ in frames(second)]
    assert names == ["content_block_stop", "content_block_start", "content_block_delta"]


def test_an_event_of_a_type_added_later_is_skipped_whatever_its_fields_hold() -> None:
    from tollway.providers.anthropic import StreamDecoder as Decoder

    dec = Decoder("anthropic")
    assert dec.feed(b'{"type": "citations_delta_v9", "index": "zero", "delta": [1, 2], "usage": "many"}') == []
    assert dec.feed(b'{"type": 5}') == []
    assert not dec.ended
