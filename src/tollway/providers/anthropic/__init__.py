"""Anthropic: the Messages API, callable once ANTHROPIC_API_KEY is set.

Requests from the Anthropic front door are forwarded as bytes (``forward``), so thinking
blocks with their signatures, cache_control and server tools reach Anthropic unchanged;
requests from other dialects are encoded from the canonical model (``complete``/``stream``)
with the dialect's own codec (``dialects.anthropic.encode``/``decode``). The upstream's stream
is read by ``stream.StreamDecoder`` (through ``providers.streaming``), its error bodies by
``errors``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

import msgspec

from tollway.core.catalog import Credential, EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.chat import ChatRequest, ChatResponse, StreamEvent
from tollway.core.errors import UpstreamError
from tollway.core.names import DIALECT_ANTHROPIC, PROVIDER_ANTHROPIC
from tollway.dialects.anthropic.decode import decode_response
from tollway.dialects.anthropic.encode import encode_request, unencoded
from tollway.providers.anthropic.errors import parse_anthropic_error
from tollway.providers.anthropic.stream import StreamDecoder
from tollway.providers.base import ProviderContext
from tollway.providers.http import UpstreamClient, UpstreamStream
from tollway.providers.streaming import decode_stream

__all__ = [
    "API_VERSION",
    "FORWARDED_HEADERS",
    "SPEC",
    "AnthropicProvider",
    "StreamDecoder",
    "build",
    "parse_anthropic_error",
]

API_VERSION = "2023-06-01"
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


class AnthropicProvider:
    wires = frozenset({DIALECT_ANTHROPIC})

    def __init__(self, config: ProviderConfig, ctx: ProviderContext) -> None:
        self.name = config.name
        base = config.base_url.rstrip("/")
        if base.endswith("/v1"):  # accept either spelling of the base URL
            base = base[:-3]
        self.url = base + "/v1/messages"
        self.count_url = base + "/v1/messages/count_tokens"
        self.client = UpstreamClient(provider=config.name, timeouts=ctx.timeouts, parse_error=parse_anthropic_error,
                                     transport=ctx.transport)

    def headers(self, credential: Credential, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json", "anthropic-version": API_VERSION}
        if extra:
            h.update({k: v for k, v in extra.items() if k in FORWARDED_HEADERS})
        if credential.secret:
            h["x-api-key"] = credential.secret
        return h

    def speaks(self, wire: str, upstream_model: str) -> bool:
        return wire in self.wires

    def adapt(self, body: dict[str, Any], wire: str) -> list[str]:
        return []  # Anthropic to Anthropic: nothing to rename or drop

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        return unencoded(req)  # the same for every Claude model

    # pass-through ------------------------------------------------------------------------

    async def forward(self, body: bytes, *, wire: str = DIALECT_ANTHROPIC, credential: Credential,
                      headers: Mapping[str, str] | None = None) -> bytes:
        return await self.client.post(self.url, self.headers(credential, headers), body, secret=credential.secret)

    async def forward_stream(self, body: bytes, *, wire: str = DIALECT_ANTHROPIC, credential: Credential,
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
        except msgspec.DecodeError as exc:  # ValidationError too: JSON that is no message
            raise UpstreamError(f"{self.name} upstream sent an unreadable message: {exc}",
                                provider=self.name) from None
        return msgspec.structs.replace(resp, created=int(time.time()))

    def stream(self, req: ChatRequest, *, upstream_model: str,
               credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        return decode_stream(partial(self._open_stream, req, upstream_model, credential), UpstreamStream.batches,
                             provider=self.name)

    async def _open_stream(self, req: ChatRequest, upstream_model: str,
                           credential: Credential) -> tuple[UpstreamStream, StreamDecoder]:
        wire = encode_request(msgspec.structs.replace(req, stream=True), model=upstream_model)
        upstream = await self.forward_stream(_encoder.encode(wire), credential=credential)
        return upstream, StreamDecoder(self.name, created=int(time.time()), secret=credential.secret)

    async def close(self) -> None:
        await self.client.close()


def build(config: ProviderConfig, ctx: ProviderContext) -> AnthropicProvider:
    return AnthropicProvider(config, ctx)
