"""Fuzz inputs for the JSON surfaces (issue 17): a valid body of each surface and hypothesis'
variations of it, shared by the codec fuzz (tests/unit/test_fuzz_codecs.py) and the fuzz of every
surface through a real gateway (tests/e2e/test_fuzz.py).

A variation replaces up to three values of a valid body (nested ones as often as top-level ones)
by values of other types and sizes (huge integers, long strings, JSON nested to about the depth
limit, JSON text nested far past it), removes some or adds siblings; a damaged body has invalid
UTF-8 inside a string, is cut short, or nests far past the depth limit.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(examples: int) -> settings:
    """Derandomized (the same examples on every run) and bounded. ``TOLLWAY_FUZZ_EXAMPLES=500
    TOLLWAY_FUZZ_RANDOM=1`` explores further, locally."""
    return settings(max_examples=int(os.environ.get("TOLLWAY_FUZZ_EXAMPLES", examples)),
                    derandomize="TOLLWAY_FUZZ_RANDOM" not in os.environ, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


# --- variations --------------------------------------------------------------------------------

_WORDS = ["", "text", "image", "image_url", "file", "doc", "tool_use", "tool_result", "thinking", "enabled",
          "function", "auto", "none", "required", "any", "tool", "json_schema", "json_object", "user", "assistant",
          "system", "developer", "base64", "url", "data:image/png;base64,xx", "http://127.0.0.1:1/x.png", "{}", "[",
          "\ud800", "\x00", "a" * 70_000, "github", "google", "application/pdf", "image/png", "1e999", "NaN",
          "[" * 3000 + "]" * 3000, '{"a": ' * 120 + "1" + "}" * 120]  # JSON text (tool arguments): deep, and less
_KEYS = ["type", "text", "id", "name", "arguments", "function", "source", "data", "media_type", "url", "content",
         "role", "input", "schema", "json_schema", "parameters", "bytes", "file_data", "tool_calls", "signature",
         "budget_tokens", "max_tokens", "stream", "model", "cache_control", "user_id", "call_id", "output",
         "summary", "encrypted_content", "instructions", "previous_response_id", "background", "input_image",
         "input_text", "function_call_output", "item_reference"]
_NUMBERS = [0, -1, 1, 1023, 1024, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**40]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=24), st.sampled_from(_WORDS),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), inner, max_size=3),
                      max_leaves=8)


def nested(depth: int, leaf: Any = 1) -> Any:
    out = leaf
    for i in range(depth):
        out = [out] if i % 2 else {"a": out}
    return out


any_value = st.one_of(values, values, values, st.integers(100, 135).map(nested))


@st.composite
def a_place(draw: st.DrawFn, body: Any) -> tuple[Any, Any]:
    """A container in ``body`` and one of its keys (or indexes): a walk down from the top that
    goes deeper more often than not, so nested fields (a message's parts, a tool's schema) are
    reached as often as top-level ones."""
    parent, key = None, None
    node = body
    while isinstance(node, dict | list) and node:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, draw(st.sampled_from(keys))
        node = node[key]
        if draw(st.sampled_from(["deeper", "deeper", "here"])) == "here":
            break
    return parent, key


@st.composite
def variations(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with up to three of its values replaced, removed, or given a sibling (none: the
    valid body itself, hypothesis' first example)."""
    body = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 3))):
        parent, key = draw(a_place(body))
        if parent is None:
            break
        op = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
        if op == "replace":
            parent[key] = draw(any_value)
        elif op == "remove":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(_KEYS))] = draw(any_value)
        else:
            parent.append(draw(any_value))
    return body


@st.composite
def damaged(draw: st.DrawFn, raw: bytes) -> bytes:
    """``raw`` with invalid UTF-8 inside a string, cut short, or wrapped far past the depth limit."""
    how = draw(st.sampled_from(["utf8", "utf8", "cut", "deep"]))
    if how == "deep":
        n = draw(st.sampled_from([129, 1000, 5000]))
        return b'{"model": "echo", "messages": ' + b"[" * n + b"]" * n + b"}"
    quotes = [i for i, c in enumerate(raw) if c == 0x22]
    at = draw(st.sampled_from(quotes)) + 1 if how == "utf8" and quotes else draw(st.integers(0, len(raw)))
    if how == "cut":
        return raw[:at]
    return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])) + raw[at:]


def bodies(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    encoded = variations(base).map(lambda b: json.dumps(b).encode())
    return st.one_of(encoded, encoded, encoded, damaged(json.dumps(base).encode()))


# --- valid bodies, one per surface --------------------------------------------------------------

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()
TOOL = {"type": "function", "function": {"name": "lookup", "description": "look up",
                                         "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
OPENAI_CHAT = {
    "model": "echo", "max_tokens": 64, "temperature": 0.5, "top_p": 1, "stop": ["zzz"], "seed": 7, "user": "u-1",
    "tools": [TOOL], "tool_choice": "auto", "response_format": {"type": "text"},
    "stream_options": {"include_usage": True},
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look this up."},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
            {"type": "doc", "doc": {"name": "d.txt", "format": "txt", "source": {"bytes": {"0": 104, "1": 105}}}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"x\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
        {"role": "user", "content": "Thanks, and now?"},
    ],
}
ANTHROPIC_MESSAGES = {
    "model": "echo", "max_tokens": 2048, "system": [{"type": "text", "text": "Be brief."}],
    "metadata": {"user_id": "u-1"}, "stop_sequences": ["zzz"], "top_k": 5,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "tools": [{"name": "lookup", "description": "look up",
               "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
    "tool_choice": {"type": "auto"},
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Look this up."},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"},
             "title": "d"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "found"}]},
            {"type": "text", "text": "Thanks, and now?"}]},
    ],
}
RESPONSES = {
    "model": "echo", "instructions": "Be brief.", "max_output_tokens": 64, "temperature": 0.5, "top_p": 1,
    "user": "u-1", "store": True, "metadata": {"k": "v"}, "parallel_tool_calls": True,
    "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}, "strict": False}],
    "tool_choice": "auto", "text": {"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}},
    "reasoning": {"effort": "low", "summary": "auto"},
    "input": [
        {"role": "user", "content": [
            {"type": "input_text", "text": "Look this up."},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"},
            {"type": "input_file", "filename": "d.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}],
         "encrypted_content": "sig"},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{\"q\": \"x\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "found"},
        {"type": "message", "role": "user", "content": "Thanks, and now?"},
    ],
}
COMPLETIONS = {
    "model": "echo", "prompt": ["Once upon a time"], "suffix": None, "max_tokens": 16, "temperature": 0.5, "top_p": 1,
    "n": 1, "best_of": 1, "echo": False, "logprobs": None, "stop": ["\n"], "seed": 7, "user": "u-1",
    "presence_penalty": 0.1, "frequency_penalty": 0.1, "logit_bias": {"50256": -100},
    "stream_options": {"include_usage": True},
}
MODERATIONS = {"model": "omni-moderation-latest", "input": [
    {"type": "text", "text": "a sentence to moderate"},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}
CITY_TEXT = {"model": "echo", "prompt": "hi there", "system": "Be brief.", "max_tokens": 16, "temperature": 0.2,
             "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                          {"role": "user", "content": "again"}]}

CHAT_MODELS = ["openai/gpt-4o", "echo", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash",
               "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0"]

EMBEDDINGS = {"model": "text-embedding-3-small", "input": ["first text", "second text"], "encoding_format": "float",
              "dimensions": 64, "user": "u-1"}
IMAGES = {"model": "dall-e-2", "prompt": "a lighthouse", "n": 2, "size": "1024x1024", "response_format": "b64_json",
          "quality": "standard", "user": "u-1"}
SPEECH = {"model": "tts-1", "input": "Hello there", "voice": "alloy", "response_format": "wav", "speed": 1.0}
VIDEOS = {"model": "sora-2", "prompt": "waves at dusk", "seconds": "4", "size": "1280x720"}
CITY_MEDIA = {"model": "dall-e-2", "prompt": "a fox", "n": 1, "input": "Hello", "voice": "alloy", "format": "wav",
              "audio": PNG, "filename": "a.wav", "seconds": 4}
