"""Anthropic: the Messages API, callable once ANTHROPIC_API_KEY is set.

Requests from the Anthropic front door are forwarded as bytes (``forward``), so thinking
blocks with their signatures, cache_control and server tools reach Anthropic unchanged;
requests from other dialects are encoded from the canonical model (``complete``/``stream``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from tollway.core.catalog import Credential, EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.chat import ChatRequest, ChatResponse, StreamEvent, StreamStart
from tollway.core.errors import UpstreamError
from tollway.core.names import DIALECT_ANTHROPIC, PROVIDER_ANTHROPIC
from tollway.dialects.anthropic.codec import decode_response, encode_request, unencoded
from tollway.dialects.anthropic.stream import StreamDecoder
from tollway.providers.base import ProviderContext
from tollway.providers.http import UpstreamClient, UpstreamStream, redact

API_VERSION = "2023-06-01"
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
# request headers of an Anthropic caller that the pass-through hands on
FORWARDED_HEADERS = ("anthropic-beta",)


def _model(mid: str, name: str, aliases: tuple[str, ...] = (), reasoning: bool = True) -> ModelInfo:
    caps = ("chat", "tools", "vision", "reasoning") if reasoning else ("chat", "tools", "vision")
    return ModelInfo(id=mid, provider=PROVIDER_ANTHROPIC, upstream_id=mid, display_name=name, capabilities=caps,
                     modalities=("text", "image", "stream", "anthropic", "openai"), tags=("anthropic",),
                     aliases=aliases)


SPEC = ProviderSpec(
    name=PROVIDER_ANTHROPIC,
    kind=PROVIDER_ANTHROPIC,
    env_requirements=(
        EnvRequirement(key="ANTHROPIC_API_KEY", description="Anthropic API key"),
        EnvRequirement(key="ANTHROPIC_BASE_URL", description="Anthropic base URL (without /v1)", required=False),
    ),
    api_key_env="ANTHROPIC_API_KEY",
    base_url_env="ANTHROPIC_BASE_URL",
    default_base_url="https://api.anthropic.com",
    models=(
        _model("claude-sonnet-4-5", "Claude Sonnet 4.5",
               ("claude-sonnet-4-5-20250929", "claude-3-5-sonnet-latest", "claude-3-7-sonnet-latest",
                "claude-sonnet-4-0", "claude-sonnet-4-20250514")),
        _model("claude-haiku-4-5", "Claude Haiku 4.5",
               ("claude-haiku-4-5-20251001", "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022",
                "claude-3-haiku-20240307")),
        _model("claude-opus-4-6", "Claude Opus 4.6",
               ("claude-opus-4-5", "claude-opus-4-1", "claude-opus-4-0", "claude-3-opus-latest")),
    ),
    open_catalog=True,
    model_prefixes=("claude-",),
    features=frozenset({"chat", "stream", "tools", "reasoning", "usage", "errors", "images"}),
)


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    type: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def parse_anthropic_error(body: bytes) -> str | None:
    """The message of an Anthropic error body (``error.message``), or the text's start."""
    try:
        err = _error_decoder.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:300].decode("utf-8", "replace").strip()
        return text or None
    if err is None:
        return None
    return f"{err.type}: {err.message}" if err.type and err.message else (err.message or err.type)


class AnthropicProvider:
    dialect = DIALECT_ANTHROPIC

    def __init__(self, config: ProviderConfig, ctx: ProviderContext) -> None:
        self.name = config.name
        base = config.base_url.rstrip("/")
        if base.endswith("/v1"):  # accept either spelling of the base URL
            base = base[:-3]
        self.url = base + "/v1/messages"
        self.count_url = base + "/v1/messages/count_tokens"
        self.client = UpstreamClient(provider=config.name, timeouts=ctx.timeouts, parse_error=parse_anthropic_error)

    def headers(self, credential: Credential, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json", "anthropic-version": API_VERSION}
        if extra:
            h.update({k: v for k, v in extra.items() if k in FORWARDED_HEADERS})
        if credential.secret:
            h["x-api-key"] = credential.secret
        return h

    def adapt(self, body: dict[str, Any]) -> list[str]:
        return []  # Anthropic to Anthropic: nothing to rename or drop

    def unsupported(self, req: ChatRequest) -> list[str]:
        return unencoded(req)

    # pass-through ------------------------------------------------------------------------

    async def forward(self, body: bytes, *, credential: Credential,
                      headers: Mapping[str, str] | None = None) -> bytes:
        return await self.client.post(self.url, self.headers(credential, headers), body, secret=credential.secret)

    async def forward_stream(self, body: bytes, *, credential: Credential,
                             headers: Mapping[str, str] | None = None) -> UpstreamStream:
        return await self.client.open_stream(self.url, self.headers(credential, headers), body,
                                             secret=credential.secret)

    async def count_tokens(self, body: bytes, *, credential: Credential,
                           headers: Mapping[str, str] | None = None) -> bytes:
        """Anthropic's own count (exact for its models, server tools and files included)."""
        return await self.client.post(self.count_url, self.headers(credential, headers), body,
                                      secret=credential.secret)

    # canonical ---------------------------------------------------------------------------

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        wire = encode_request(msgspec.structs.replace(req, stream=False), model=upstream_model)
        raw = await self.forward(_encoder.encode(wire), credential=credential)
        try:
            resp = decode_response(raw)
        except (msgspec.DecodeError, AttributeError, TypeError) as exc:
            raise UpstreamError(f"{self.name} upstream sent an unreadable message: {exc}",
                                provider=self.name) from None
        return msgspec.structs.replace(resp, created=int(time.time()))

    async def stream(self, req: ChatRequest, *, upstream_model: str,
                     credential: Credential) -> AsyncIterator[StreamEvent]:
        wire = encode_request(msgspec.structs.replace(req, stream=True), model=upstream_model)
        upstream = await self.forward_stream(_encoder.encode(wire), credential=credential)
        decoder = StreamDecoder(self.name)
        created = int(time.time())
        try:
            async for event in upstream.events():
                try:
                    data = _decoder.decode(event.data)
                except msgspec.DecodeError:
                    raise UpstreamError(f"{self.name} upstream sent a malformed stream event",
                                        provider=self.name) from None
                if not isinstance(data, dict):
                    continue
                try:
                    events = decoder.feed(data)
                except UpstreamError as err:
                    raise UpstreamError(redact(err.message, credential.secret), provider=self.name,
                                        upstream_status=err.upstream_status) from None
                except (AttributeError, TypeError, KeyError, ValueError):  # an event of the wrong shape
                    raise UpstreamError(f"{self.name} upstream sent a malformed {data.get('type')!r} event",
                                        provider=self.name) from None
                for ev in events:
                    yield msgspec.structs.replace(ev, created=created) if isinstance(ev, StreamStart) else ev
                if decoder.done:
                    break
            if not decoder.done:
                raise UpstreamError(f"{self.name} upstream closed the stream before it finished",
                                    provider=self.name)
        finally:
            if decoder.done:
                upstream.finish()
            else:
                upstream.close()

    async def close(self) -> None:
        await self.client.close()


def build(config: ProviderConfig, ctx: ProviderContext) -> AnthropicProvider:
    return AnthropicProvider(config, ctx)
