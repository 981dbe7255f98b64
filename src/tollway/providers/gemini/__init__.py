"""Google Gemini upstream: canonical chat <-> the Gemini API's v1beta REST ``generateContent``.

``POST {base}/v1beta/models/{model}:generateContent`` and ``...:streamGenerateContent?alt=sse``
(SSE ``data: {GenerateContentResponse}`` chunks, no ``[DONE]``: the body ends the stream). The
API key goes in the ``x-goog-api-key`` header, never in the URL, so it never reaches a log.

The request and response mapping (and what it drops) is in ``codec``, the stream decoding in
``stream``, Google's error bodies in ``errors``; all pure, their public names re-exported here.
This module fetches the request's media (``MediaFetcher.loaded``: Gemini takes images and
documents only inline; their bytes stay in the process's media budget until the upstream has the
body) and makes the calls; ``providers.streaming`` reads the stream. A body with large media is
made in steps with the event loop running between them (``inline.encode_with_media``: its
data: URLs decoded and its base64 coded piece by piece), and an error drops the frames' hold
on it at once.

- Whatever the upstream sends, a body or chunk that cannot be read (not JSON, an error object
  in a 200, a part or count of the wrong type) is an UpstreamError (502) naming what was wrong,
  never an internal error.
- ``unsupported(req, upstream_model=...)`` names what is dropped for the routed upstream model,
  which also decides the thinking budget the body carries.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from functools import partial
from urllib.parse import quote

import msgspec

from tollway.core.catalog import Credential, EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.chat import ChatRequest, ChatResponse, StreamEvent
from tollway.core.names import PROVIDER_GEMINI
from tollway.providers.base import ProviderContext
from tollway.providers.gemini.codec import (
    EFFORT_BUDGETS,
    GenerateContentResponse,
    ThinkingRange,
    clean_schema,
    decode_response,
    encode_request,
    finish_reason_of,
    fit_budget,
    media_urls,
    new_id,
    response_decoder,
    thinking_budget,
    thinking_range,
    unsupported,
    usage_of,
)
from tollway.providers.gemini.errors import (
    RETRY_INFO,
    duration_seconds,
    parse_gemini_error,
    parse_gemini_retry_after,
    upstream_fault,
)
from tollway.providers.gemini.stream import StreamDecoder
from tollway.providers.http import Timeouts, Transport, UpstreamClient, UpstreamStream, tcp_transport
from tollway.providers.inline import data_urls, drop_locals, encode_with_media
from tollway.providers.media import Media, MediaFetcher
from tollway.providers.streaming import decode_stream

__all__ = [
    "EFFORT_BUDGETS",
    "RETRY_INFO",
    "SPEC",
    "GeminiProvider",
    "GenerateContentResponse",
    "StreamDecoder",
    "ThinkingRange",
    "build",
    "clean_schema",
    "decode_response",
    "duration_seconds",
    "encode_request",
    "finish_reason_of",
    "fit_budget",
    "media_urls",
    "new_id",
    "parse_gemini_error",
    "parse_gemini_retry_after",
    "thinking_budget",
    "thinking_range",
    "unsupported",
    "upstream_fault",
    "usage_of",
]

_CAPS = ("chat", "tools", "vision", "reasoning")


def _model(model_id: str, display: str) -> ModelInfo:
    return ModelInfo(id=model_id, provider=PROVIDER_GEMINI, upstream_id=model_id, display_name=display,
                     capabilities=_CAPS, tags=("gemini",))


SPEC = ProviderSpec(
    name=PROVIDER_GEMINI,
    kind=PROVIDER_GEMINI,
    env_requirements=(
        EnvRequirement(key="GEMINI_API_KEY", description="Google Gemini API key"),
        EnvRequirement(key="GEMINI_BASE_URL", description="Gemini API base URL", required=False),
    ),
    api_key_env="GEMINI_API_KEY",
    base_url_env="GEMINI_BASE_URL",
    default_base_url="https://generativelanguage.googleapis.com",
    models=(
        _model("gemini-2.5-flash", "Gemini 2.5 Flash"),
        _model("gemini-2.5-pro", "Gemini 2.5 Pro"),
        _model("gemini-2.0-flash", "Gemini 2.0 Flash"),
    ),
    open_catalog=True,
    model_prefixes=("gemini-",),
    features=frozenset({"chat", "stream", "tools", "reasoning", "usage", "errors", "images"}),
)

_encoder = msgspec.json.Encoder()


class GeminiProvider:
    def __init__(self, config: ProviderConfig, *, timeouts: Timeouts, media: MediaFetcher,
                 transport: Transport = tcp_transport) -> None:
        self.name = config.name
        base = (config.base_url or SPEC.default_base_url).rstrip("/")
        base = base.removesuffix("/v1beta")
        self.models_url = base + "/v1beta/models/"
        self.media = media
        self.client = UpstreamClient(provider=config.name, timeouts=timeouts, parse_error=parse_gemini_error,
                                     parse_retry_after=parse_gemini_retry_after, transport=transport)

    def url(self, model: str, *, stream: bool) -> str:
        name = quote(model.removeprefix("models/"), safe="-._~")
        if stream:
            return f"{self.models_url}{name}:streamGenerateContent?alt=sse"
        return f"{self.models_url}{name}:generateContent"

    def headers(self, credential: Credential, *, stream: bool) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        if credential.secret:
            h["x-goog-api-key"] = credential.secret
        return h

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        return unsupported(req, upstream_model=upstream_model)

    async def body(self, req: ChatRequest, upstream_model: str, media: dict[str, Media]) -> bytes:
        """The request's JSON body, its media's base64 coded in steps (``encode_with_media``);
        ``media`` (what ``loaded`` gave for ``_media_of``) is emptied once the body holds them."""
        body = await encode_with_media(
            lambda m: encode_request(req, media=m, upstream_model=upstream_model), media, _encoder.encode)
        media.clear()
        return body

    def _loaded(self, req: ChatRequest) -> AbstractAsyncContextManager[dict[str, Media]]:
        """The request's media: URLs fetched, data: URLs decoded in steps (not in the codec at once)."""
        return self.media.loaded(media_urls(req) + data_urls(req))

    async def _post(self, req: ChatRequest, upstream_model: str, credential: Credential) -> bytes:
        async with self._loaded(req) as media:  # held until the upstream answered
            return await self.client.post(self.url(upstream_model, stream=False),
                                          self.headers(credential, stream=False),
                                          await self.body(req, upstream_model, media), secret=credential.secret)

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        try:
            raw = await self._post(req, upstream_model, credential)
        except BaseException as exc:
            drop_locals(exc)  # the body and media in the frames below: not until the cycle collector runs
            raise
        try:
            return decode_response(response_decoder.decode(raw), model=upstream_model, created=int(time.time()))
        except Exception as exc:  # whatever reading the body raises, it is the upstream's fault: a 502
            raise upstream_fault(self.name, "sent an unreadable completion", exc, credential.secret) from None

    def stream(self, req: ChatRequest, *, upstream_model: str,
               credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        return decode_stream(partial(self._open_stream, req, upstream_model, credential), UpstreamStream.batches,
                             provider=self.name)

    async def _open(self, req: ChatRequest, upstream_model: str, credential: Credential) -> UpstreamStream:
        async with self._loaded(req) as media:  # held until the upstream took the body
            return await self.client.open_stream(self.url(upstream_model, stream=True),
                                                 self.headers(credential, stream=True),
                                                 await self.body(req, upstream_model, media), secret=credential.secret)

    async def _open_stream(self, req: ChatRequest, upstream_model: str,
                           credential: Credential) -> tuple[UpstreamStream, StreamDecoder]:
        try:
            upstream = await self._open(req, upstream_model, credential)
        except BaseException as exc:
            drop_locals(exc)
            raise
        return upstream, StreamDecoder(model=upstream_model, created=int(time.time()), provider=self.name,
                                       secret=credential.secret)

    async def close(self) -> None:
        await self.client.close()


def build(config: ProviderConfig, ctx: ProviderContext) -> GeminiProvider:
    return GeminiProvider(config, timeouts=ctx.timeouts, media=ctx.media, transport=ctx.transport)
