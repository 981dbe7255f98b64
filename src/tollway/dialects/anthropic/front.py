"""The Anthropic Messages front door as the request pipeline sees it: ``AnthropicCodec``.

A request is checked as Anthropic checks it and decoded to the canonical model only when an
upstream with another wire needs it. When the upstream speaks Anthropic's wire too,
``AnthropicPassThrough`` forwards the body with only ``model`` rewritten (thinking signatures,
cache_control and server tools reach Anthropic untouched) and reads back only usage.
Pure: no I/O, no clock, no settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from tollway.core.chat import ChatRequest, ChatResponse, Usage
from tollway.core.errors import TollwayError, UpstreamError
from tollway.core.names import DIALECT_ANTHROPIC
from tollway.core.redaction import redact
from tollway.dialects.anthropic.decode import check_request, decode_request, loads
from tollway.dialects.anthropic.encode import encode_response
from tollway.dialects.anthropic.errors import anthropic_error_body
from tollway.dialects.anthropic.stream import ERROR_STATUS, StreamEncoder, error_event
from tollway.dialects.anthropic.wire import Body, UsageView, body_decoder, encoder, event_view_decoder
from tollway.dialects.passthrough import UpstreamEvent, model_field, renamed

_USAGE = b'"usage"'


class AnthropicRequest:
    """A Messages request: its checked JSON, and its body and canonical form once asked for."""

    __slots__ = ("raw", "data", "model", "stream", "max_tokens", "_body", "_canonical")

    def __init__(self, raw: bytes, data: dict[str, Any]) -> None:
        self.raw = raw
        self.data = data
        self.model: str = data["model"]
        self.stream = bool(data.get("stream"))
        max_tokens = data.get("max_tokens")
        self.max_tokens = max_tokens if isinstance(max_tokens, int) else None
        self._body: Body | None = None
        self._canonical: ChatRequest | None = None

    def canonical(self) -> ChatRequest:
        if self._canonical is None:
            self._canonical = decode_request(self.data)
        return self._canonical

    def body(self) -> Body:
        if self._body is None:
            self._body = body_decoder.decode(self.raw)
        return self._body


def reported_error(provider: str, data: bytes, secret: str | None, where: str) -> UpstreamError | None:
    """An Anthropic error object inside a 200 (a stream's ``error`` event, or the whole body)."""
    try:
        view = event_view_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if view.type != "error" and view.error is None:
        return None
    err = view.error
    etype = (err.type if err else None) or "api_error"
    message = redact((err.message if err else None) or etype, secret)
    return UpstreamError(f"{provider} upstream reported an error {where}: {message}", provider=provider,
                         upstream_status=ERROR_STATUS.get(etype, 500))


class AnthropicPassReader:
    """An Anthropic upstream's event stream, forwarded event by event; usage merged from
    ``message_start`` and ``message_delta``; ``message_stop`` ends it."""

    __slots__ = ("provider", "secret", "model", "_usage", "usage", "ended", "error")

    def __init__(self, provider: str, secret: str | None, model: str) -> None:
        self.provider = provider
        self.secret = secret
        self.model = model_field(model)  # message_start names the model the client asked for
        self._usage = UsageView()
        self.usage: Usage | None = None
        self.ended = False
        self.error: UpstreamError | None = None

    def feed(self, batch: Sequence[UpstreamEvent]) -> list[bytes]:
        frames = []
        for event in batch:
            name, data = event.event or "message", event.data
            if name == "error" or b'"error"' in data:
                self.error = reported_error(self.provider, data, self.secret, "mid-stream")
                if self.error is not None:
                    break
            if _USAGE in data:
                self._read_usage(data)
            if name == "message_start":
                data = renamed(data, self.model)
            # one data: line per line of the event's data, as SSE frames multi-line data
            frames.append(b"event: " + name.encode() + b"\ndata: " + data.replace(b"\n", b"\ndata: ") + b"\n\n")
            if name == "message_stop":
                self.ended = True
                break
        return frames

    def _read_usage(self, data: bytes) -> None:
        try:
            view = event_view_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{self.provider} upstream sent a malformed stream event",
                                provider=self.provider) from None
        found = view.usage or (view.message.usage if view.message else None)
        if found is not None:
            self._usage = self._usage.merge(found)
            self.usage = self._usage.to_usage()


class AnthropicPassThrough:
    wire = DIALECT_ANTHROPIC

    def body(self, req: AnthropicRequest, upstream_model: str) -> dict[str, Any]:
        body: dict[str, Any] = dict(req.body())
        body["model"] = msgspec.Raw(encoder.encode(upstream_model))
        return body

    def usage(self, provider: str, raw: bytes, secret: str | None) -> Usage | None:
        """The usage of a forwarded message; an UpstreamError (retryable) if it is not a message."""
        try:
            view = event_view_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{provider} upstream sent an unreadable message", provider=provider) from None
        if view.type != "message":
            err = reported_error(provider, raw, secret, "instead of a message")
            raise err or UpstreamError(f"{provider} upstream sent a 200 that is not a message", provider=provider)
        return view.usage.to_usage() if view.usage is not None else None

    def named(self, req: AnthropicRequest, raw: bytes) -> bytes:
        """The message, naming the model the client asked for."""
        return renamed(raw, model_field(req.model))

    def reader(self, req: AnthropicRequest, provider: str, secret: str | None) -> AnthropicPassReader:
        return AnthropicPassReader(provider, secret, req.model)


class AnthropicCodec:
    dialect = DIALECT_ANTHROPIC
    passthrough = AnthropicPassThrough()

    def decode(self, raw: bytes) -> AnthropicRequest:
        data = loads(raw)
        check_request(data)
        return AnthropicRequest(raw, data)

    def encode_response(self, req: AnthropicRequest, resp: ChatResponse) -> bytes:
        return encoder.encode(encode_response(msgspec.structs.replace(resp, model=req.canonical().model)))

    def stream_writer(self, req: AnthropicRequest) -> StreamEncoder:
        return StreamEncoder(model=req.canonical().model)

    def error_body(self, err: TollwayError) -> dict[str, Any]:
        return anthropic_error_body(err)

    def error_frame(self, err: TollwayError, request_id: str | None = None) -> bytes:
        return error_event(anthropic_error_body(err, request_id))
