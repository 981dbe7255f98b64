"""The codec half of issue 17's fuzz: whatever a client sends, each front door's decoder either
refuses it (InvalidRequest, a 400) or gives a canonical request that every provider's encoder,
the echo model and the token counter take without any other exception (which would be a 500).

In process and fast, so it runs many more examples than the fuzz through a gateway
(tests/e2e/test_fuzz.py), on the same inputs (tests/fuzz_inputs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given

from tests.fuzz_inputs import (
    ANTHROPIC_MESSAGES,
    CITY_TEXT,
    COMPLETIONS,
    MODERATIONS,
    OPENAI_CHAT,
    RESPONSES,
    bodies,
    fuzz_settings,
)
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import ChatRequest
from tollway.core.errors import InvalidRequest
from tollway.dialects.anthropic import encode as anthropic_encode
from tollway.dialects.anthropic.front import AnthropicCodec
from tollway.dialects.city.front import CityCodec
from tollway.dialects.completions.front import CompletionsCodec
from tollway.dialects.openai import codec as openai_codec
from tollway.dialects.openai import moderations
from tollway.dialects.openai.errors import openai_error_body
from tollway.dialects.openai.front import OpenAIPassThrough
from tollway.dialects.openai.front import decode as openai_decode
from tollway.dialects.responses.front import ResponsesCodec
from tollway.providers.bedrock import codec as bedrock_codec
from tollway.providers.echo import EchoProvider
from tollway.providers.gemini import codec as gemini_codec
from tollway.routing.tokens import count_tokens

FUZZ = fuzz_settings(300)
_encoder = msgspec.json.Encoder()
_echo = EchoProvider(ProviderConfig(name="echo", kind="echo"))
_credential = Credential(id="c", secret="s")
_BEDROCK_MODELS = ("anthropic.claude-3-7-sonnet-20250219-v1:0", "amazon.nova-pro-v1:0", "meta.llama3-70b")
_GEMINI_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro", "gemini-2.0-flash")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _encoders(req: ChatRequest) -> Iterator[Callable[[], Any]]:
    yield lambda: _encoder.encode(openai_codec.encode_request(req, model="up"))
    yield lambda: openai_codec.unencoded(req)
    yield lambda: _encoder.encode(anthropic_encode.encode_request(req, model="claude-sonnet-4-5"))
    yield lambda: anthropic_encode.unencoded(req)
    for model in _GEMINI_MODELS:
        yield lambda model=model: _encoder.encode(gemini_codec.encode_request(req, media={}, upstream_model=model))
        yield lambda model=model: gemini_codec.unsupported(req, upstream_model=model)
    yield lambda: gemini_codec.media_urls(req)
    for model in _BEDROCK_MODELS:
        yield lambda model=model: _encoder.encode(bedrock_codec.encode_request(req, upstream_model=model, media={}))
        yield lambda model=model: bedrock_codec.dropped_fields(req, upstream_model=model)
    yield lambda: bedrock_codec.media_urls(req)
    yield lambda: count_tokens(req)


def translate_everywhere(req: ChatRequest, loop: asyncio.AbstractEventLoop) -> None:
    """Each encoder may refuse the request (InvalidRequest); none may fail otherwise."""
    for encode in _encoders(req):
        with contextlib.suppress(InvalidRequest):
            encode()

    async def echo() -> None:
        await _echo.complete(req, upstream_model="echo", credential=_credential)
        async for _ in _echo.stream(req, upstream_model="echo", credential=_credential):
            pass

    loop.run_until_complete(echo())


@FUZZ
@given(bodies(OPENAI_CHAT))
def test_openai_requests(loop: asyncio.AbstractEventLoop, raw: bytes) -> None:
    try:
        wire = openai_decode(raw)
        _encoder.encode(OpenAIPassThrough().body(wire, "up"))  # the pass-through's body
        req = wire.canonical()
    except InvalidRequest:
        return
    translate_everywhere(req, loop)


@FUZZ
@given(bodies(ANTHROPIC_MESSAGES))
def test_anthropic_requests(loop: asyncio.AbstractEventLoop, raw: bytes) -> None:
    codec = AnthropicCodec()
    try:
        wire = codec.decode(raw)
        _encoder.encode(codec.passthrough.body(wire, "up"))
        req = wire.canonical()
    except InvalidRequest:
        return
    translate_everywhere(req, loop)


@FUZZ
@given(bodies(CITY_TEXT))
def test_city_requests(loop: asyncio.AbstractEventLoop, raw: bytes) -> None:
    try:
        req = CityCodec(stream=False).decode(raw).canonical()
    except InvalidRequest:
        return
    translate_everywhere(req, loop)


@FUZZ
@given(bodies(RESPONSES))
def test_responses_requests(loop: asyncio.AbstractEventLoop, raw: bytes) -> None:
    codec = ResponsesCodec(openai_error_body, new_id=lambda: "resp_1", now=lambda: 1)
    try:
        wire = codec.decode(raw)
        _encoder.encode(codec.passthrough.body(wire, "up"))
        req = wire.canonical()
    except InvalidRequest:
        return
    translate_everywhere(req, loop)


@FUZZ
@given(bodies(COMPLETIONS))
def test_completions_requests(loop: asyncio.AbstractEventLoop, raw: bytes) -> None:
    codec = CompletionsCodec("completions", openai_error_body)
    try:
        wire = codec.decode(raw)
        _encoder.encode(codec.passthrough.body(wire, "up"))
        req = wire.canonical()
    except InvalidRequest:
        return
    translate_everywhere(req, loop)


@FUZZ
@given(bodies(MODERATIONS))
def test_moderation_requests(raw: bytes) -> None:
    try:
        req = moderations.decode(raw)
    except InvalidRequest:
        return
    _encoder.encode({**req.body, "model": "up"})  # what the gateway forwards
