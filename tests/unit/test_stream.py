"""OpenAI chunk streams: StreamEncoder frames, the upstream StreamDecoder's replay of a recorded stream
(whole, and cut at every byte), re-encoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
from tollway.core.errors import TollwayError, UpstreamError
from tollway.dialects.openai.codec import encode_usage
from tollway.dialects.openai.stream import DONE, StreamEncoder
from tollway.providers.openai_wire import StreamDecoder
from tollway.providers.sse import SSEFramer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openai" / "stream_tools.sse"


def frames(data: bytes) -> list[Any]:
    """SSE bytes -> the JSON payloads in order, with ``[DONE]`` kept as the string."""
    framer = SSEFramer()
    events = framer.feed(data) + framer.close()
    return [e.data.decode() if e.data == b"[DONE]" else json.loads(e.data) for e in events]


def assemble(chunks: list[Any]) -> dict[str, Any]:
    """What a client builds from a chunk stream."""
    out: dict[str, Any] = {"ids": set(), "model": set(), "content": "", "reasoning": "", "tools": {},
                           "finish": [], "usage": None}
    for c in chunks:
        if c == "[DONE]":
            continue
        out["ids"].add(c["id"])
        out["model"].add(c["model"])
        for choice in c["choices"]:
            delta = choice["delta"]
            out["content"] += delta.get("content") or ""
            out["reasoning"] += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or ():
                slot = out["tools"].setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["name"] = fn.get("name") or slot["name"]
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                out["finish"].append(choice["finish_reason"])
        if c.get("usage"):
            out["usage"] = c["usage"]
    return out


def encode_all(events: list[StreamEvent], *, include_usage: bool, model: str = "m") -> bytes:
    enc = StreamEncoder(model=model, include_usage=include_usage)
    return b"".join(enc.feed(e) for e in events) + enc.close()


START = StreamStart(id="chatcmpl-1", model="m", created=1730000000)
USAGE = Usage(input_tokens=9, output_tokens=4, cached_tokens=2, reasoning_tokens=1)
TOOL_EVENTS: list[StreamEvent] = [
    START,
    TextDelta(text="Hi"),
    ToolCallStart(index=0, id="call_a", name="get_weather"),
    ToolCallDelta(index=0, arguments='{"city":'),
    ToolCallDelta(index=0, arguments='"Paris"}'),
    Finish(reason="tool_calls"),
    UsageReport(usage=USAGE),
]


# --- encoder -------------------------------------------------------------------------------


def test_every_frame_is_a_data_line_ending_in_a_blank_line() -> None:
    data = encode_all(TOOL_EVENTS, include_usage=True)
    pieces = data.split(b"\n\n")
    assert pieces[-1] == b""
    assert all(p.startswith(b"data: ") for p in pieces[:-1])


def test_first_chunk_carries_role_assistant_and_later_chunks_do_not() -> None:
    chunks = frames(encode_all(TOOL_EVENTS, include_usage=False))
    first = chunks[0]
    assert first["object"] == "chat.completion.chunk"
    assert (first["id"], first["created"], first["model"]) == ("chatcmpl-1", 1730000000, "m")
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:-1])
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hi"}


def test_role_goes_on_the_first_chunk_even_without_a_start_event() -> None:
    enc = StreamEncoder(model="m", include_usage=False)
    first = frames(enc.feed(TextDelta(text="x")))[0]
    second = frames(enc.feed(TextDelta(text="y")))[0]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "x"}
    assert second["choices"][0]["delta"] == {"content": "y"}


def test_tool_call_first_delta_has_id_type_and_name_and_argument_deltas_only_index_and_arguments() -> None:
    chunks = frames(encode_all(TOOL_EVENTS, include_usage=False))
    start, arg1, arg2 = (c["choices"][0]["delta"]["tool_calls"] for c in chunks[2:5])
    assert start == [{"index": 0, "id": "call_a", "type": "function",
                      "function": {"name": "get_weather", "arguments": ""}}]
    assert arg1 == [{"index": 0, "function": {"arguments": '{"city":'}}]
    assert arg2 == [{"index": 0, "function": {"arguments": '"Paris"}'}}]


def test_finish_chunk_has_empty_delta_and_the_reason() -> None:
    chunks = frames(encode_all(TOOL_EVENTS, include_usage=False))
    finish = chunks[5]["choices"][0]
    assert (finish["delta"], finish["finish_reason"]) == ({}, "tool_calls")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:5])


def test_with_include_usage_a_final_usage_chunk_with_no_choices_precedes_done() -> None:
    data = encode_all(TOOL_EVENTS, include_usage=True)
    chunks = frames(data)
    assert data.endswith(DONE) and chunks[-1] == "[DONE]"
    usage_chunk = chunks[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == encode_usage(USAGE)
    assert usage_chunk["id"] == "chatcmpl-1"
    assert sum(1 for c in chunks if isinstance(c, dict) and "usage" in c) == 1


def test_without_include_usage_there_is_no_usage_chunk() -> None:
    enc = StreamEncoder(model="m", include_usage=False)
    body = b"".join(enc.feed(e) for e in TOOL_EVENTS)
    assert enc.close() == DONE
    assert b"usage" not in body
    assert all(c["choices"] for c in frames(body))


def test_usage_chunk_reports_zeros_when_no_usage_arrived() -> None:
    chunks = frames(encode_all([START, Finish(reason="stop")], include_usage=True))
    assert chunks[-2]["usage"]["total_tokens"] == 0


def test_empty_reasoning_delta_emits_nothing() -> None:
    enc = StreamEncoder(model="m", include_usage=False)
    enc.feed(START)
    assert enc.feed(ReasoningDelta(text="", signature="sig")) == b""
    assert frames(enc.feed(ReasoningDelta(text="hmm")))[0]["choices"][0]["delta"] == {"reasoning_content": "hmm"}


# --- decoder: replay of a recorded stream ------------------------------------------------------


def replay(reads: list[bytes] | None = None) -> list[StreamEvent]:
    """The events the decoder makes of the recorded stream, read in ``reads`` (whole by default);
    it must end at ``[DONE]``."""
    dec = StreamDecoder()
    framer = SSEFramer()
    events: list[StreamEvent] = []
    for read in reads if reads is not None else [FIXTURE.read_bytes()]:
        assert not dec.ended
        events.extend(dec.feed_read(framer.feed(read)))
    events.extend(dec.feed_read(framer.close()))
    assert dec.ended
    return events


REPLAY = [
    StreamStart(id="chatcmpl-S1", model="deepseek-reasoner", created=1730000300),
    ReasoningDelta(text="The user wants "),
    ReasoningDelta(text="two cities."),
    TextDelta(text="Checking "),
    TextDelta(text="both."),
    ToolCallStart(index=0, id="call_paris", name="get_weather"),
    ToolCallDelta(index=0, arguments='{"ci'),
    ToolCallStart(index=1, id="call_tokyo", name="get_weather"),
    ToolCallDelta(index=1, arguments='{"city"'),
    ToolCallDelta(index=0, arguments='ty": "Par'),
    ToolCallDelta(index=1, arguments=': "Tokyo"}'),
    ToolCallDelta(index=0, arguments='is"}'),
    Finish(reason="tool_calls"),
    UsageReport(usage=Usage(input_tokens=57, output_tokens=31, cached_tokens=32, reasoning_tokens=6)),
]


def test_recorded_stream_decodes_to_the_canonical_events() -> None:
    assert replay() == REPLAY


def test_recorded_stream_cut_at_any_byte_decodes_to_the_same_events() -> None:
    data = FIXTURE.read_bytes()
    for cut in range(0, len(data) + 1, 7):
        assert replay([data[:cut], data[cut:]]) == REPLAY, f"cut at byte {cut}"


def test_a_read_stops_at_done() -> None:
    dec = StreamDecoder()
    batch = SSEFramer().feed(b'data: {"id": "x", "choices": [{"delta": {"content": "a"}}]}\n\n'
                             b"data: [DONE]\n\n"
                             b'data: {"choices": [{"delta": {"content": "after"}}]}\n\n')
    assert list(dec.feed_read(batch)) == [StreamStart(id="x", model="", created=0), TextDelta(text="a")]
    assert dec.ended


def test_re_encoding_the_replay_assembles_to_the_same_answer() -> None:
    original = assemble(frames(FIXTURE.read_bytes()))
    again = assemble(frames(encode_all(replay(), include_usage=True, model="deepseek-reasoner")))
    assert again == original
    # and the assembly is the one the recording holds
    assert original["content"] == "Checking both."
    assert original["reasoning"] == "The user wants two cities."
    assert {i: json.loads(t["arguments"]) for i, t in original["tools"].items()} == {
        0: {"city": "Paris"}, 1: {"city": "Tokyo"}}
    assert original["finish"] == ["tool_calls"]


def chunk(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_tool_call_without_an_id_gets_a_stable_one_and_one_start_per_index() -> None:
    dec = StreamDecoder()
    first = dec.feed(chunk({"choices": [{"delta": {"tool_calls": [{"index": 2, "function": {"name": "f",
                                                                                              "arguments": "{"}}]}}]}))
    more = dec.feed(chunk({"choices": [{"delta": {"tool_calls": [{"index": 2, "function": {"arguments": "}"}}]}}]}))
    assert first[1:] == [ToolCallStart(index=2, id="call_2", name="f"), ToolCallDelta(index=2, arguments="{")]
    assert more == [ToolCallDelta(index=2, arguments="}")]


def test_null_fields_are_read_as_absent() -> None:
    dec = StreamDecoder()
    events = dec.feed(chunk({"id": None, "model": None, "created": None, "usage": None, "error": None,
                             "choices": [{"delta": {"content": None, "reasoning_content": None,
                                                    "tool_calls": [{"index": None, "id": None, "function": None}]},
                                          "finish_reason": None}]}))
    assert events == [StreamStart(id="", model="", created=0), ToolCallStart(index=0, id="call_0", name="")]
    assert dec.feed(chunk({"choices": [{"delta": None, "finish_reason": "length"}]})) == [Finish(reason="length")]


@pytest.mark.parametrize("error", [{"message": "overloaded", "type": "server_error"}, "overloaded"])
def test_an_error_chunk_raises(error: Any) -> None:
    with pytest.raises(TollwayError, match="overloaded") as info:
        StreamDecoder().feed(chunk({"error": error}))
    assert info.value.status == 502
    assert isinstance(info.value, UpstreamError)  # the upstream's fault


def test_an_error_chunk_names_the_provider_and_hides_the_secret() -> None:
    dec = StreamDecoder(provider="deepseek", secret="sk-topsecret")
    with pytest.raises(TollwayError) as info:
        dec.feed(chunk({"error": {"message": "bad key sk-topsecret"}}))
    assert info.value.message == "deepseek upstream reported an error mid-stream: bad key ***"
    with pytest.raises(TollwayError, match="an error in the stream"):
        dec.feed(chunk({"error": {"code": 500}}))


@pytest.mark.parametrize("data", [b"{not json", b'["a", "list"]', b'{"choices": "text"}',
                                  b'{"choices": [{"delta": {"tool_calls": [{"index": "0"}]}}]}'])
def test_a_chunk_that_cannot_be_read_raises(data: bytes) -> None:
    with pytest.raises(TollwayError, match="^deepseek upstream sent a malformed stream chunk$") as info:
        StreamDecoder(provider="deepseek").feed(data)
    assert info.value.status == 502


def test_shapes_openai_compatible_servers_send_are_read_as_the_dict_decoder_read_them() -> None:
    """A numeric id, a string ``created``, content as a list of parts (Mistral), arguments as an
    object, an empty error object: each read, not a 502."""
    dec = StreamDecoder()
    events = dec.feed(chunk({"id": 7, "created": "1700000000", "error": {},
                             "choices": [{"delta": {"content": [{"type": "text", "text": "he"},
                                                                {"type": "text", "text": "llo"}]}}]}))
    assert events == [StreamStart(id="7", model="", created=1700000000), TextDelta(text="hello")]
    calls = dec.feed(chunk({"choices": [{"delta": {"tool_calls": [
        {"index": 0, "id": 42, "function": {"name": "f", "arguments": {"city": "Oslo"}}}]}}]}))
    assert calls == [ToolCallStart(index=0, id="42", name="f"), ToolCallDelta(index=0, arguments='{"city":"Oslo"}')]
    assert dec.feed(chunk({"created": "soon", "choices": []})) == []
