"""core.json_input: the bounded-depth JSON reader every surface decodes request bodies with."""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.core.errors import InvalidRequest
from tollway.core.json_input import MAX_DEPTH, loads, too_deep


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\ab\u00e9\u20ac/\n'), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=400, derandomize=True)
@given(json_values, st.integers(min_value=0, max_value=8), st.booleans())
def test_too_deep_agrees_with_the_decoded_depth(value: Any, limit: int, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert too_deep(raw, limit) == (depth(value) > limit)
    assert too_deep(raw.decode(), limit) == (depth(value) > limit)


@pytest.mark.parametrize("n", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_documents_are_refused_before_decoding(n: int) -> None:
    for raw in (b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n, b"[" * n):
        with pytest.raises(InvalidRequest) as info:
            loads(raw)
        assert info.value.status == 400 and f"deeper than {MAX_DEPTH}" in info.value.message


def test_documents_at_the_limit_decode() -> None:
    raw = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert depth(loads(raw)) == MAX_DEPTH
    assert loads(json.dumps({"s": "[" * 5000}).encode()) == {"s": "[" * 5000}  # brackets in strings: text


@pytest.mark.parametrize("raw", [b'{"a": "\xff"}', b'{"a": "\xed\xa0\x80"}', b"\xfe{}", b'{"a": 1', b"", b"nul"])
def test_every_decode_failure_is_an_invalid_request(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        loads(raw, invalid="Body is not JSON")
    assert info.value.message.startswith("Body is not JSON: ")


def test_a_lone_surrogate_in_text_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        loads('{"a": "\ud800"}')


def test_a_typed_decoder_names_the_field() -> None:
    class View(msgspec.Struct):
        model: str

    assert loads(b'{"model": "m"}', msgspec.json.Decoder(View)).model == "m"
    with pytest.raises(InvalidRequest, match=r"\$\.model"):
        loads(b'{"model": 5}', msgspec.json.Decoder(View))


def test_a_megabyte_of_brackets_is_checked_quickly() -> None:
    cases = [b"[" + b"[]," * 330_000 + b"[]]",  # many brackets, shallow
             b"[" + b",".join([b"[" * 127 + b"]" * 127] * 3900) + b"]",  # many, just within the limit
             json.dumps([{"role": "user", "content": "[x] {y} \\\" \\\\"}] * 20_000).encode()]  # many strings
    for raw in cases:
        started = time.perf_counter()
        assert not too_deep(raw)
        assert time.perf_counter() - started < 0.5
