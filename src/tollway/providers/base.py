"""The narrow protocols every upstream adapter implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, TypeGuard, runtime_checkable

from tollway.core.catalog import Credential
from tollway.core.chat import ChatRequest, ChatResponse, StreamEvent
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
from tollway.providers.http import Timeouts, Transport, UpstreamStream, tcp_transport
from tollway.providers.media import MediaFetcher


class ProviderContext:
    """What the gateway hands every adapter it builds: timeouts, the shared media fetcher, and
    the transport its ``UpstreamClient`` sends through (the seam tests replace)."""

    def __init__(self, *, timeouts: Timeouts, media: MediaFetcher, transport: Transport = tcp_transport) -> None:
        self.timeouts = timeouts
        self.media = media
        self.transport = transport


class ChatProvider(Protocol):
    """Canonical chat: every provider implements it."""

    name: str

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        """The request parameters this upstream will not receive for ``upstream_model`` (the
        routed model's upstream id): dropped, and named in the request log."""
        ...

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse: ...

    def stream(self, req: ChatRequest, *, upstream_model: str,
               credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        """The answer's canonical events, one list per upstream read (never an empty list), so
        that a front door writes once per read. The iterator's ``aclose`` closes the upstream
        connection; an error before the first list is an attempt's failure (another credential
        or a fallback may be tried), after it an in-stream error."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class PassThroughProvider(Protocol):
    """A provider whose API speaks one or more front doors' wires (``wires``: OpenAI's chat,
    its Responses API, its legacy completions, Anthropic's messages): a request of such a wire
    is forwarded as bytes to the upstream's endpoint for it."""

    name: str
    wires: frozenset[str]

    def speaks(self, wire: str, upstream_model: str) -> bool:
        """Whether ``upstream_model``'s requests of ``wire`` go to the upstream's endpoint for it
        (an endpoint may serve some of a provider's models only: OpenAI's legacy completions);
        the others are translated."""
        ...

    def adapt(self, body: dict[str, Any], wire: str) -> list[str]:
        """Apply the upstream's quirks to a wire body in place; return the fields dropped."""
        ...

    async def forward(self, body: bytes, *, wire: str, credential: Credential,
                      headers: Mapping[str, str] | None = None) -> bytes:
        """``headers``: the caller's request headers; an adapter hands on those its API defines."""
        ...

    async def forward_stream(self, body: bytes, *, wire: str, credential: Credential,
                             headers: Mapping[str, str] | None = None) -> UpstreamStream: ...


@runtime_checkable
class TokenCounter(Protocol):
    """A pass-through provider whose API counts tokens itself (Anthropic's count_tokens)."""

    async def count_tokens(self, body: bytes, *, credential: Credential,
                           headers: Mapping[str, str] | None = None) -> bytes: ...


@runtime_checkable
class ModelLister(Protocol):
    """A provider that can say which models its server has (Ollama, vLLM ...)."""

    name: str

    async def list_models(self, *, credential: Credential) -> list[str]: ...


# the non-chat surfaces, canonical: what an upstream without OpenAI's endpoint for a surface
# implements (Gemini, Bedrock), and what the task runner calls on every provider. Each method
# raises ``UpstreamError`` like ``complete`` does (retryable or not), ``InvalidRequest`` for a
# request the upstream cannot take (a size, a voice, a format it does not have).


@runtime_checkable
class Embedder(Protocol):
    async def embed(self, req: EmbedRequest, *, upstream_model: str, credential: Credential) -> Embeddings: ...


@runtime_checkable
class ImageMaker(Protocol):
    async def make_images(self, req: ImageRequest, *, upstream_model: str, credential: Credential) -> Images: ...


@runtime_checkable
class Speaker(Protocol):
    async def speak(self, req: SpeechRequest, *, upstream_model: str, credential: Credential) -> Speech: ...


@runtime_checkable
class Transcriber(Protocol):
    async def transcribe(self, req: TranscriptionRequest, *, upstream_model: str,
                         credential: Credential) -> Transcript: ...


@runtime_checkable
class VideoMaker(Protocol):
    """A long-running generation: started once, then polled (by the task runner) until it ends."""

    async def start_video(self, req: VideoRequest, *, upstream_model: str, credential: Credential) -> VideoJob: ...

    async def poll_video(self, job_id: str, *, upstream_model: str, credential: Credential) -> VideoJob: ...

    async def video_content(self, job_id: str, *, upstream_model: str,
                            credential: Credential) -> tuple[bytes, str]:
        """The finished video's bytes and media type."""
        ...


@runtime_checkable
class WireSender(Protocol):
    """An OpenAI-wire provider's non-chat endpoints (``wires`` names those it has): a request's
    own bytes sent as they are (JSON, or multipart with its ``content_type``), ``suffix``
    appended to the wire's path (``/{id}/content``)."""

    wires: frozenset[str]

    async def send(self, wire: str, body: bytes | None, *, credential: Credential,
                   content_type: str = "application/json", method: str = "POST", suffix: str = "") -> bytes: ...

    async def send_stream(self, wire: str, body: bytes, *, credential: Credential,
                          content_type: str = "application/json") -> UpstreamStream: ...


# the hot path's checks: ``isinstance`` with a runtime-checkable protocol looks up every member
# each time (about 10 µs on Python 3.11); a provider's class decides what it implements (its
# instances all set the same attributes), so the answer is kept per class
_IMPLEMENTS: dict[tuple[type, type], bool] = {}


def _implements(obj: object, protocol: type) -> bool:
    key = (type(obj), protocol)
    found = _IMPLEMENTS.get(key)
    if found is None:
        found = _IMPLEMENTS[key] = isinstance(obj, protocol)
    return found


def is_passthrough(provider: object) -> TypeGuard[PassThroughProvider]:
    return _implements(provider, PassThroughProvider)


def is_wire_sender(provider: object) -> TypeGuard[WireSender]:
    return _implements(provider, WireSender)
