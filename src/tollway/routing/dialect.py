"""What a dialect gives the request pipeline: a small typed codec, no bookkeeping.

A front door (OpenAI, the platform alias, Anthropic, City's ``ai``) is a ``ChatCodec``: it
decodes its wire request into a ``WireRequest`` (the model asked for, whether to stream, the
output cap, the canonical request on demand), encodes answers, stream events and errors in its
own shape, and, where an upstream speaks its wire too, a ``PassThrough`` gives the body to
forward and reads usage out of the upstream's bytes. ``routing.pipeline.ChatPipeline`` does
everything else, once, for all of them.

These are protocols: a dialect's codec modules satisfy them structurally, without importing
this module (they stay pure, below routing). A new dialect is its codec modules plus its routes,
which hand a codec to the pipeline.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from tollway.core.chat import ChatRequest, ChatResponse, StreamEvent, Usage
from tollway.core.errors import TollwayError, UpstreamError
from tollway.providers.sse import SSEEvent


class WireRequest(Protocol):
    """One decoded request of a dialect. ``canonical`` decodes on first use (an attempt on
    another upstream reuses what an earlier one decoded)."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def max_tokens(self) -> int | None:
        """The output cap the request asks for (the larger one, where a wire has two), if any."""
        ...

    def canonical(self) -> ChatRequest:
        """The request in the canonical model (for an upstream with another wire)."""
        ...


R = TypeVar("R", bound=WireRequest)
R_contra = TypeVar("R_contra", bound=WireRequest, contravariant=True)


class StreamWriter(Protocol):
    """Canonical events -> the dialect's stream frames, for one answer."""

    def feed(self, event: StreamEvent) -> bytes: ...

    def close(self) -> bytes:
        """The tail of a stream that finished."""
        ...


class PassReader(Protocol):
    """A same-dialect upstream's stream, read for the client: each SSE event becomes the frame
    the client gets; usage is picked up on the way; the terminal event ends it.

    ``feed`` returns the frames of one upstream read. An error the upstream reported inside its
    stream stops the read: the frames before it are returned and ``error`` is set."""

    usage: Usage | None
    ended: bool
    error: UpstreamError | None

    def feed(self, batch: list[SSEEvent]) -> list[bytes]: ...


class PassThrough(Protocol[R_contra]):
    """How a dialect forwards its requests as bytes to an upstream that speaks its wire."""

    @property
    def wire(self) -> str:
        """The upstream dialect (one of a ``PassThroughProvider``'s ``wires``) this applies to."""
        ...

    def body(self, req: R_contra, upstream_model: str) -> dict[str, Any]:
        """A fresh copy of the wire body, its model set to ``upstream_model`` (and stream options
        as the pass-through needs them); the provider's quirks are applied to it after."""
        ...

    def usage(self, provider: str, raw: bytes, secret: str | None) -> Usage | None:
        """The usage of the upstream's whole answer; ``UpstreamError`` (retryable) when it is not
        an answer (an error object sent with a 200, an unreadable body)."""
        ...

    def named(self, req: R_contra, raw: bytes) -> bytes:
        """The upstream's whole answer naming the model the client asked for (``req.model``)."""
        ...

    def reader(self, req: R_contra, provider: str, secret: str | None) -> PassReader:
        """Reads the stream for the client; its frames name the model the client asked for."""
        ...


class ChatCodec(Protocol[R]):
    """A front door of the chat pipeline."""

    @property
    def dialect(self) -> str:
        """The request log's dialect name."""
        ...

    @property
    def passthrough(self) -> PassThrough[R] | None: ...

    def decode(self, raw: bytes) -> R:
        """Validate and decode a request body; ``InvalidRequest`` in this dialect's words."""
        ...

    def encode_response(self, req: R, resp: ChatResponse) -> bytes: ...

    def stream_writer(self, req: R) -> StreamWriter: ...

    def error_body(self, err: TollwayError) -> dict[str, Any]: ...

    def error_frame(self, err: TollwayError, request_id: str | None = None) -> bytes:
        """An error once the stream's headers went out (``request_id``: the gateway's, for a
        dialect whose error names it)."""
        ...
