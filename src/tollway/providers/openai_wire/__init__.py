"""The shared adapter for every OpenAI-compatible upstream (OpenAI, DeepSeek, Ollama, vLLM ...).

A provider that speaks OpenAI's chat-completions wire is this adapter plus a ``Quirks``
object: base URL, auth header, parameter renames and drops, and which of OpenAI's other wires
the server has (the Responses API, legacy completions, moderations). Requests of a wire the server has are
forwarded as bytes (``forward``) to its endpoint for that wire; requests from other dialects are
encoded from the canonical model (``complete``/``stream``). The upstream stream's decoding is in ``stream``,
the error bodies in ``errors``; both pure, their public names re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any
from urllib.parse import quote, urljoin

import msgspec

from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import Block, ChatRequest, ChatResponse, DocumentBlock, StreamEvent
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.media import (
    Embeddings,
    EmbedRequest,
    ImageRequest,
    Images,
    Speech,
    SpeechRequest,
    Transcript,
    TranscriptionRequest,
    VideoJob,
    VideoRequest,
)
from tollway.core.names import (
    DIALECT_COMPLETIONS,
    DIALECT_MODERATIONS,
    DIALECT_OPENAI,
    DIALECT_RESPONSES,
    WIRE_EMBEDDINGS,
    WIRE_IMAGES,
    WIRE_SPEECH,
    WIRE_TRANSCRIPTIONS,
    WIRE_VIDEOS,
)
from tollway.dialects.openai.codec import decode_response, encode_request, unencoded
from tollway.providers.http import Timeouts, Transport, UpstreamClient, UpstreamStream, tcp_transport
from tollway.providers.media import MediaFetcher
from tollway.providers.openai_wire import media
from tollway.providers.openai_wire.errors import parse_openai_error
from tollway.providers.openai_wire.stream import StreamDecoder
from tollway.providers.streaming import decode_stream

__all__ = [
    "OPENAI_WIRE_FEATURES",
    "OpenAICompatProvider",
    "Quirks",
    "StreamDecoder",
    "parse_openai_error",
]

_encoder = msgspec.json.Encoder()


class _ListedModel(msgspec.Struct):
    id: str


class _ModelList(msgspec.Struct):
    data: list[_ListedModel]


_model_list_decoder = msgspec.json.Decoder(_ModelList)


# everything the OpenAI chat wire carries, so every OpenAI-compatible adapter supports it
OPENAI_WIRE_FEATURES = frozenset({"chat", "stream", "tools", "reasoning", "usage", "errors", "images"})


class Quirks(msgspec.Struct, frozen=True, kw_only=True):
    chat_path: str = "/chat/completions"
    # the server's Responses API, legacy completions and moderations, where it has them (see
    # ``endpoint`` for how a path is read); None: Responses and completions requests are
    # translated to chat, a moderation is refused
    responses_path: str | None = None
    completions_path: str | None = None
    moderations_path: str | None = None
    # OpenAI's non-chat endpoints the server has (core.names.WIRE_*: embeddings, images, speech,
    # transcriptions, videos) -> their paths, read as the paths above; a wire not here is not served
    media_paths: dict[str, str] = msgspec.field(default_factory=dict)
    auth_header: str = "Authorization"
    auth_prefix: str = "Bearer "
    # canonical request field -> the name this upstream wants (chat requests only)
    renames: dict[str, str] = msgspec.field(default_factory=dict)
    # request fields this upstream rejects; dropped and named in the request log
    drops: frozenset[str] = frozenset()
    extra_headers: dict[str, str] = msgspec.field(default_factory=dict)
    # a wire whose endpoint serves some models only: the marks of their names (a prefix, or a part
    # after "-"); the provider's other models get that wire's requests translated to chat
    wire_models: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)


def endpoint(base: str, path: str) -> str:
    """The URL of ``path`` on a server whose base URL is ``base``: an absolute URL as it is; a
    path starting with ``../`` resolved against the base URL as a directory (RFC 3986), so that it
    replaces the base's last segment (``../beta/completions`` on ``https://api.deepseek.com/v1``
    is ``https://api.deepseek.com/beta/completions``, and follows a base URL moved elsewhere);
    any other path appended to the base URL."""
    if "://" in path:
        return path
    if path.startswith("../"):
        return urljoin(base.rstrip("/") + "/", path)
    return base.rstrip("/") + path


class OpenAICompatProvider:
    def __init__(self, config: ProviderConfig, *, quirks: Quirks, timeouts: Timeouts,
                 media: MediaFetcher | None = None, transport: Transport = tcp_transport) -> None:
        self.name = config.name
        self.media = media
        self.quirks = quirks
        self.urls = {DIALECT_OPENAI: endpoint(config.base_url, quirks.chat_path)}
        for wire, path in ((DIALECT_RESPONSES, quirks.responses_path), (DIALECT_COMPLETIONS, quirks.completions_path),
                           (DIALECT_MODERATIONS, quirks.moderations_path), *quirks.media_paths.items()):
            if path:
                self.urls[wire] = endpoint(config.base_url, path)
        self.wires = frozenset(self.urls)
        self.url = self.urls[DIALECT_OPENAI]
        self.models_url = config.base_url.rstrip("/") + "/models"
        self.client = UpstreamClient(provider=config.name, timeouts=timeouts, parse_error=parse_openai_error,
                                     transport=transport)

    def headers(self, credential: Credential) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json", **self.quirks.extra_headers}
        if credential.secret:
            h[self.quirks.auth_header] = self.quirks.auth_prefix + credential.secret
        return h

    def speaks(self, wire: str, upstream_model: str) -> bool:
        if wire not in self.urls:
            return False
        marks = self.quirks.wire_models.get(wire)
        return marks is None or any(upstream_model.startswith(m) or f"-{m}" in upstream_model for m in marks)

    def adapt(self, body: dict[str, Any], wire: str = DIALECT_OPENAI) -> list[str]:
        """Apply renames and drops to a chat body in place; return the dropped field names. The
        quirks describe the server's chat endpoint: a body of another wire goes as it is."""
        if wire != DIALECT_OPENAI:
            return []
        for src, dst in self.quirks.renames.items():
            if src in body:
                body[dst] = body.pop(src)
        dropped = [k for k in self.quirks.drops if k in body]
        for k in dropped:
            del body[k]
        return dropped

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        dropped = unencoded(req)
        dropped.extend(k for k in self.quirks.drops if getattr(req, k, None) not in (None, (), {}))
        return dropped

    # pass-through ------------------------------------------------------------------------

    async def forward(self, body: bytes, *, wire: str = DIALECT_OPENAI, credential: Credential,
                      headers: Mapping[str, str] | None = None) -> bytes:
        return await self.client.post(self.urls[wire], self.headers(credential), body, secret=credential.secret)

    async def forward_stream(self, body: bytes, *, wire: str = DIALECT_OPENAI, credential: Credential,
                             headers: Mapping[str, str] | None = None) -> UpstreamStream:
        return await self.client.open_stream(self.urls[wire], self.headers(credential), body,
                                             secret=credential.secret)

    # canonical ---------------------------------------------------------------------------

    async def _inline_documents(self, req: ChatRequest) -> ChatRequest:
        """OpenAI's ``file`` part takes bytes only: a document URL is fetched (SSRF-guarded)."""
        if not any(isinstance(b, DocumentBlock) and b.url for m in req.messages for b in m.content):
            return req
        if self.media is None:
            raise InvalidRequest(f"{self.name} takes documents as base64 data only, not by URL.")
        loaded = await self.media.load_many([b.url for m in req.messages for b in m.content
                                             if isinstance(b, DocumentBlock) and b.url])  # per-request bounds
        messages = []
        for m in req.messages:
            blocks: list[Block] = []
            for b in m.content:
                if isinstance(b, DocumentBlock) and b.url:
                    media = loaded[b.url]
                    b = DocumentBlock(data=media.b64(), media_type=media.media_type, name=b.name)
                blocks.append(b)
            messages.append(msgspec.structs.replace(m, content=tuple(blocks)))
        return msgspec.structs.replace(req, messages=tuple(messages))

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        req = await self._inline_documents(req)
        wire = encode_request(req, model=upstream_model)
        wire.pop("stream", None)
        wire.pop("stream_options", None)
        self.adapt(wire)
        raw = await self.forward(_encoder.encode(wire), credential=credential)
        try:
            return decode_response(raw)
        except (msgspec.DecodeError, AttributeError) as exc:
            raise UpstreamError(f"{self.name} upstream sent an unreadable completion: {exc}",
                                provider=self.name) from None

    def stream(self, req: ChatRequest, *, upstream_model: str,
               credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        return decode_stream(partial(self._open_stream, req, upstream_model, credential), UpstreamStream.batches,
                             provider=self.name)

    async def _open_stream(self, req: ChatRequest, upstream_model: str,
                           credential: Credential) -> tuple[UpstreamStream, StreamDecoder]:
        req = await self._inline_documents(req)
        wire = encode_request(req, model=upstream_model)
        wire["stream"] = True
        wire["stream_options"] = {"include_usage": True}
        self.adapt(wire)
        upstream = await self.forward_stream(_encoder.encode(wire), credential=credential)
        return upstream, StreamDecoder(provider=self.name, secret=credential.secret)

    # OpenAI's non-chat endpoints: as bytes (pass-through), and canonical (``media``) ------

    def _wire_url(self, wire: str) -> str:
        url = self.urls.get(wire)
        if url is None:
            raise InvalidRequest(f"Provider '{self.name}' has no {wire} endpoint.", code="model_not_supported")
        return url

    async def send(self, wire: str, body: bytes | None, *, credential: Credential,
                   content_type: str = "application/json", method: str = "POST", suffix: str = "") -> bytes:
        headers = self.headers(credential)
        headers["Content-Type"] = content_type
        headers["Accept"] = "*/*"
        return await self.client.fetch(method, self._wire_url(wire) + suffix, headers, body, secret=credential.secret)

    async def send_stream(self, wire: str, body: bytes, *, credential: Credential,
                          content_type: str = "application/json") -> UpstreamStream:
        headers = self.headers(credential)
        headers["Content-Type"] = content_type
        headers["Accept"] = "*/*"
        return await self.client.open_stream(self._wire_url(wire), headers, body, secret=credential.secret)

    async def embed(self, req: EmbedRequest, *, upstream_model: str, credential: Credential) -> Embeddings:
        raw = await self.send(WIRE_EMBEDDINGS, media.embed_body(req, upstream_model), credential=credential)
        return media.read_embeddings(self.name, raw)

    async def make_images(self, req: ImageRequest, *, upstream_model: str, credential: Credential) -> Images:
        raw = await self.send(WIRE_IMAGES, media.image_body(req, upstream_model), credential=credential)
        images, urls = media.read_images(self.name, raw)
        if urls:  # an answer by URL: fetched now (an upstream's URLs expire), SSRF-guarded
            if self.media is None:
                raise UpstreamError(f"{self.name} upstream answered with image URLs the gateway cannot fetch",
                                    provider=self.name)
            loaded = await self.media.load_many(urls)
            fetched = iter(urls)
            images = msgspec.structs.replace(images, images=[
                i if i.data else msgspec.structs.replace(i, data=(m := loaded[next(fetched)]).data,
                                                         media_type=m.media_type)
                for i in images.images])
        return images

    async def speak(self, req: SpeechRequest, *, upstream_model: str, credential: Credential) -> Speech:
        raw = await self.send(WIRE_SPEECH, media.speech_body(req, upstream_model), credential=credential)
        return Speech(data=raw, media_type=media.AUDIO_TYPES.get(req.response_format, "application/octet-stream"))

    async def transcribe(self, req: TranscriptionRequest, *, upstream_model: str,
                         credential: Credential) -> Transcript:
        body, content_type = media.transcription_form(req, upstream_model)
        raw = await self.send(WIRE_TRANSCRIPTIONS, body, credential=credential, content_type=content_type)
        return media.read_transcript(self.name, raw)

    async def start_video(self, req: VideoRequest, *, upstream_model: str, credential: Credential) -> VideoJob:
        body, content_type = media.video_form(req, upstream_model)
        raw = await self.send(WIRE_VIDEOS, body, credential=credential, content_type=content_type)
        return media.read_video(self.name, raw)

    async def poll_video(self, job_id: str, *, upstream_model: str, credential: Credential) -> VideoJob:
        raw = await self.send(WIRE_VIDEOS, None, credential=credential, method="GET", suffix=f"/{quote(job_id)}")
        return media.read_video(self.name, raw)

    async def video_content(self, job_id: str, *, upstream_model: str,
                            credential: Credential) -> tuple[bytes, str]:
        raw = await self.send(WIRE_VIDEOS, None, credential=credential, method="GET",
                              suffix=f"/{quote(job_id)}/content")
        return raw, "video/mp4"

    async def list_models(self, *, credential: Credential) -> list[str]:
        """Model ids from the server's OpenAI-style ``GET /models``."""
        raw = await self.client.fetch("GET", self.models_url, self.headers(credential), secret=credential.secret)
        try:
            listing = _model_list_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{self.name} upstream sent an unreadable model list", provider=self.name) from None
        return [m.id for m in listing.data]

    async def close(self) -> None:
        await self.client.close()
