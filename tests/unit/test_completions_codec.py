"""OpenAI's legacy completions front door: golden round trips (completions wire -> canonical ->
the chat wire an upstream gets; a canonical answer and stream -> text_completion), the
pass-through body and stream reader, the bound, and every 400."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tollway.core.catalog import ProviderConfig
from tollway.core.chat import (
    ChatResponse,
    Finish,
    ReasoningDelta,
    StreamStart,
    TextBlock,
    TextDelta,
    Usage,
    UsageReport,
)
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.names import DIALECT_COMPLETIONS, DIALECT_MODERATIONS, DIALECT_OPENAI
from tollway.dialects.completions.codec import decode_request, encode_response
from tollway.dialects.completions.front import CompletionsCodec, decode
from tollway.dialects.openai import moderations
from tollway.dialects.openai.codec import encode_request
from tollway.dialects.openai.errors import openai_error_body
from tollway.providers import deepseek, openai
from tollway.providers.http import Timeouts
from tollway.providers.openai_wire import OpenAICompatProvider, Quirks, endpoint
from tollway.providers.sse import SSEFramer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "completions"
CODEC = CompletionsCodec(DIALECT_COMPLETIONS, openai_error_body)
_encoder = msgspec.json.Encoder()


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load(name: str) -> Any:
    return json.loads(raw(name))


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "prompt": "hi", **fields}).encode()


# --- golden round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["req_plain", "req_stream_defaults"])
def test_a_completion_reaches_a_chat_upstream_as_one_user_message(name: str) -> None:
    """completions wire -> canonical -> the chat wire: every shared field kept, the completions-only
    neutral values gone, max_tokens 16 when absent (OpenAI's default)."""
    req = decode(raw(f"{name}.json"))
    assert encode_request(req.canonical()) == load(f"{name}.chat.json")


def test_the_canonical_form_is_stable_through_the_chat_wire() -> None:
    from tollway.dialects.openai.codec import decode_request as decode_chat

    once = decode(raw("req_plain.json")).canonical()
    assert decode_chat(encode_request(once)) == once


def test_a_canonical_answer_is_a_text_completion() -> None:
    resp = ChatResponse(id="chatcmpl-AbC123", model="upstream-id", created=1730000000,
                        content=(TextBlock(text="Bonjour !"),), finish_reason="stop",
                        usage=Usage(input_tokens=12, output_tokens=3))
    req = decode(body(model="gpt-3.5-turbo-instruct"))
    assert json.loads(CODEC.encode_response(req, resp)) == load("resp_text.json")


@pytest.mark.parametrize(("reason", "wire"), [("stop", "stop"), ("length", "length"),
                                              ("content_filter", "content_filter"), ("tool_calls", "stop"),
                                              ("error", "stop")])
def test_finish_reasons_are_the_completions_wire_s(reason: Any, wire: str) -> None:
    resp = ChatResponse(id="x", model="m", created=1, content=(), finish_reason=reason, usage=Usage())
    assert encode_response(resp, "m")["choices"][0]["finish_reason"] == wire


def test_a_canonical_stream_is_text_completion_chunks_ending_in_done() -> None:
    writer = CODEC.stream_writer(decode(body(model="my-model", stream=True, stream_options={"include_usage": True})))
    events = [StreamStart(id="msg_1", model="up", created=1730000000), ReasoningDelta(text="hmm"),
              TextDelta(text="Hello"), TextDelta(text=""), TextDelta(text=" world"), Finish(reason="length"),
              UsageReport(usage=Usage(input_tokens=5, output_tokens=2, cached_tokens=1))]
    out = b"".join(writer.feed(e) for e in events) + writer.close()
    assert out == raw("stream_text.sse")


def test_without_include_usage_the_stream_has_no_usage_chunk() -> None:
    writer = CODEC.stream_writer(decode(body(stream=True)))
    for e in (StreamStart(id="a", model="m", created=1), TextDelta(text="x"), Finish(reason="stop"),
              UsageReport(usage=Usage(input_tokens=1, output_tokens=1))):
        writer.feed(e)
    assert writer.close() == b"data: [DONE]\n\n"


def test_an_error_in_a_stream_is_an_openai_error_frame() -> None:
    frame = CODEC.error_frame(InvalidRequest("no", param="suffix"))
    assert frame.startswith(b"data: ") and json.loads(frame[6:])["error"]["param"] == "suffix"


# --- pass-through ---------------------------------------------------------------------------------


def test_the_pass_through_body_keeps_everything_but_the_model_and_asks_for_stream_usage() -> None:
    req = decode(body(model="mine", prompt=["a", "b"], suffix="}", n=2, best_of=3, echo=True, logprobs=2,
                      stream=True))
    passthrough = CODEC.passthrough
    assert passthrough.wire == DIALECT_COMPLETIONS
    sent = json.loads(_encoder.encode(passthrough.body(req, "upstream-instruct")))
    assert sent == {"model": "upstream-instruct", "prompt": ["a", "b"], "suffix": "}", "n": 2, "best_of": 3,
                    "echo": True, "logprobs": 2, "stream": True, "stream_options": {"include_usage": True}}


def test_the_pass_through_stream_is_renamed_and_drops_the_usage_chunk_not_asked_for() -> None:
    framer = SSEFramer()
    events = framer.feed(raw("upstream_stream.sse")) + framer.close()
    for asked, frames_expected in ((False, 3), (True, 4)):
        req = decode(body(model="mine", stream=True, stream_options={"include_usage": asked}))
        reader = CODEC.passthrough.reader(req, "openai", None)
        frames = reader.feed(events)
        assert len(frames) == frames_expected and reader.ended
        assert reader.usage == Usage(input_tokens=4, output_tokens=1)
        assert all(b'"model":"mine"' in f for f in frames[:-1]) and frames[-1] == b"data: [DONE]\n\n"


def test_the_pass_through_reads_a_whole_answer_s_usage_and_refuses_a_200_error() -> None:
    answer = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "up",
              "choices": [{"text": "x", "index": 0, "logprobs": None, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    assert CODEC.passthrough.usage("openai", json.dumps(answer).encode(), None) == Usage(input_tokens=3,
                                                                                        output_tokens=1)
    named = CODEC.passthrough.named(decode(body(model="mine")), json.dumps(answer).encode())
    assert json.loads(named)["model"] == "mine"
    with pytest.raises(UpstreamError, match="quota"):
        CODEC.passthrough.usage("openai", b'{"error": {"message": "quota"}}', None)


# --- the billing bound ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "bound"), [
    ({}, 16), ({"max_tokens": 50}, 50), ({"max_tokens": 10, "n": 3}, 30),
    ({"max_tokens": 10, "best_of": 4, "n": 2}, 40),
    ({"prompt": ["a", "b", "c"], "max_tokens": 5}, 15), ({"prompt": [1, 2, 3], "max_tokens": 5}, 5),
    ({"prompt": [[1, 2], [3]], "max_tokens": 5}, 10),
])
def test_the_bound_covers_every_prompt_and_choice(fields: dict[str, Any], bound: int) -> None:
    assert decode(body(**fields)).max_tokens == bound


# --- 400s ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "param"), [
    ({"prompt": "x"}, "model"),
    ({"model": "m"}, "prompt"),
    ({"model": "m", "prompt": None}, "prompt"),
    ({"model": "m", "prompt": []}, "prompt"),
    ({"model": "m", "prompt": 3}, "prompt"),
    ({"model": "m", "prompt": ["a", 1]}, "prompt"),
    ({"model": "m", "prompt": [{"a": 1}]}, "prompt"),
])
def test_a_body_without_a_model_or_a_prompt_is_refused_at_decode(data: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        decode(json.dumps(data).encode())
    assert err.value.param == param


@pytest.mark.parametrize("data", [b"{not json", b"[1]", b'{"model": "m", "prompt": "x", "n": 0}',
                                  b'{"model": "m", "prompt": "x", "stream": "yes"}',
                                  b'{"model": "m", "prompt": "x", "max_tokens": -1}',
                                  b'{"model": "m", "prompt": "x", "echo": 1}', b'\xff\xfe'])
def test_a_malformed_body_is_a_400(data: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode(data)


@pytest.mark.parametrize(("fields", "param"), [
    ({"suffix": "}\n"}, "suffix"), ({"n": 2}, "n"), ({"best_of": 2}, "best_of"), ({"echo": True}, "echo"),
    ({"logprobs": 0}, "logprobs"), ({"prompt": ["a", "b"]}, "prompt"), ({"prompt": [1, 2]}, "prompt"),
    ({"prompt": [[1], [2]]}, "prompt"), ({"max_tokens": 0}, "max_tokens"), ({"temperature": "hot"}, "temperature"),
])
def test_what_a_chat_cannot_do_is_a_400_naming_the_field_when_translated(fields: dict[str, Any], param: str) -> None:
    req = decode(body(**fields))  # a completions upstream would take it
    with pytest.raises(InvalidRequest) as err:
        req.canonical()
    assert err.value.param == param
    if param in ("suffix", "n", "echo", "prompt"):
        assert "legacy completions endpoint" in err.value.message


def test_decode_request_takes_a_json_object_only() -> None:
    with pytest.raises(InvalidRequest):
        decode_request(["x"])


# --- the upstream endpoints -------------------------------------------------------------------


@pytest.mark.parametrize(("base", "path", "url"), [
    ("https://api.deepseek.com/v1", "../beta/completions", "https://api.deepseek.com/beta/completions"),
    ("https://api.deepseek.com/v1/", "../beta/completions", "https://api.deepseek.com/beta/completions"),
    ("http://127.0.0.1:9/proxy/deepseek/v1", "../beta/completions", "http://127.0.0.1:9/proxy/deepseek/beta/completions"),
    ("https://api.openai.com/v1", "/completions", "https://api.openai.com/v1/completions"),
    ("https://api.openai.com/v1/", "/completions", "https://api.openai.com/v1/completions"),
    ("https://x/v1", "https://elsewhere/fim", "https://elsewhere/fim"),
])
def test_an_endpoint_path_is_appended_replaces_the_last_segment_or_is_absolute(base: str, path: str,
                                                                               url: str) -> None:
    assert endpoint(base, path) == url


def _provider(spec: Any, quirks: Quirks) -> OpenAICompatProvider:
    config = ProviderConfig(name=spec.name, kind=spec.kind, base_url=spec.default_base_url)
    return OpenAICompatProvider(config, quirks=quirks, timeouts=Timeouts())


def test_deepseek_completions_are_its_fim_beta_and_openai_has_completions_and_moderations() -> None:
    ds = _provider(deepseek.SPEC, deepseek.QUIRKS)
    assert ds.urls[DIALECT_COMPLETIONS] == "https://api.deepseek.com/beta/completions"
    assert DIALECT_MODERATIONS not in ds.wires
    oa = _provider(openai.SPEC, openai.QUIRKS)
    assert oa.urls[DIALECT_COMPLETIONS] == "https://api.openai.com/v1/completions"
    assert oa.urls[DIALECT_MODERATIONS] == "https://api.openai.com/v1/moderations"
    assert DIALECT_OPENAI in oa.wires


# --- moderations ----------------------------------------------------------------------------------


def test_a_moderation_without_a_model_is_omni_moderation_latest() -> None:
    req = moderations.decode(b'{"input": "hello"}')
    assert req.model == "omni-moderation-latest" and "model" not in req.body
    assert moderations.decode(b'{"input": ["a"], "model": "text-moderation-latest"}').model == "text-moderation-latest"


@pytest.mark.parametrize("data", [b"{}", b'{"input": null}', b'{"input": "x", "model": ""}',
                                  b'{"input": "x", "model": 3}', b"nope"])
def test_a_moderation_needs_an_input(data: bytes) -> None:
    with pytest.raises(InvalidRequest):
        moderations.decode(data)


def test_a_moderation_answer_is_renamed_and_a_200_error_refused() -> None:
    answer = b'{"id":"modr-1","model":"omni-moderation-2024-09-26","results":[{"flagged":false}]}'
    assert json.loads(moderations.read_answer("openai", answer, None, "omni-moderation-latest"))["model"] == \
        "omni-moderation-latest"
    with pytest.raises(UpstreamError, match="boom") as err:
        moderations.read_answer("openai", b'{"error": {"message": "boom sk-123"}}', "sk-123", "m")
    assert "sk-123" not in err.value.message  # the credential is redacted
    with pytest.raises(UpstreamError, match="without results"):
        moderations.read_answer("openai", b'{"id": "x"}', None, "m")
    with pytest.raises(UpstreamError, match="unreadable"):
        moderations.read_answer("openai", b"<html>", None, "m")
