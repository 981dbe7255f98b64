"""The OpenAI chat front door as the request pipeline sees it: ``OpenAICodec``.

A request is validated from a small view of its body (model, stream flags, caps, that
``messages`` is a non-empty array) and decoded to the canonical model only when an upstream with
another wire needs it. When the upstream speaks OpenAI's wire too, ``OpenAIPassThrough`` forwards
the body with the model name (and stream options) rewritten and reads back only ``usage``; seed
004's ``doc`` parts, which no OpenAI-wire upstream knows, go as ``file`` parts (as a translated
request's documents do), and messages without one as the bytes that came.
Pure: no I/O, no clock, no settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from tollway.core.chat import ChatRequest, ChatResponse, Usage
from tollway.core.errors import InvalidRequest, TollwayError, UpstreamError
from tollway.core.json_input import body_loads, loads
from tollway.core.names import DIALECT_OPENAI
from tollway.core.redaction import redact
from tollway.dialects.openai.codec import decode_request, doc_as_file_part, encode_response
from tollway.dialects.openai.stream import DONE, StreamEncoder, error_frame
from tollway.dialects.openai.wire import (
    Body,
    body_decoder,
    encoder,
    error_view_decoder,
    request_view_decoder,
    response_view_decoder,
)
from tollway.dialects.passthrough import UpstreamEvent, model_field, renamed

Render = Callable[[TollwayError], dict[str, Any]]
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')
_DOC = b'"doc"'
_plain = msgspec.json.Decoder()


class OpenAIRequest:
    """A chat-completion request: its view, and its body and canonical form once asked for."""

    __slots__ = ("raw", "model", "stream", "max_tokens", "client_usage", "docs", "_body", "_canonical")

    def __init__(self, raw: bytes, model: str, stream: bool, max_tokens: int | None, client_usage: bool,
                 docs: bool = False) -> None:
        self.raw = raw
        self.model = model
        self.stream = stream
        self.max_tokens = max_tokens
        self.client_usage = client_usage  # stream_options.include_usage: the client wants the usage chunk
        self.docs = docs  # the messages may hold seed 004's doc parts
        self._body: Body | None = None
        self._canonical: ChatRequest | None = None

    def canonical(self) -> ChatRequest:
        if self._canonical is None:  # ``decode`` checked the body's depth and encoding already
            self._canonical = decode_request(_plain.decode(self.raw))
        return self._canonical

    def body(self) -> Body:
        """The body's top-level values as they came, but for ``doc`` parts (see the module doc)."""
        if self._body is None:
            body = body_decoder.decode(self.raw)
            if self.docs and "messages" in body:
                body["messages"] = _with_file_parts(body["messages"])
            self._body = body
        return self._body


def _with_file_parts(messages: msgspec.Raw) -> msgspec.Raw:
    """``messages`` with each ``doc`` part as a ``file`` part; as they came when none is one."""
    data = loads(bytes(messages))
    changed = False
    for i, m in enumerate(data if isinstance(data, list) else ()):
        content: Any = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "doc":
                content[j] = doc_as_file_part(part, f"messages[{i}].content[{j}]")
                changed = True
    return msgspec.Raw(encoder.encode(data)) if changed else messages


def decode(raw: bytes) -> OpenAIRequest:
    view = body_loads(raw, request_view_decoder)
    if not view.model:
        raise InvalidRequest("The 'model' field is required.", code="model_required", param="model")
    messages = bytes(view.messages).strip()
    if not messages.startswith(b"[") or messages.replace(b" ", b"") == b"[]":
        raise InvalidRequest("The 'messages' field must be a non-empty array.", code="messages_required",
                             param="messages")
    if view.n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported.", param="n")
    # the larger cap, if both are sent (an upstream may take either)
    caps = [c for c in (view.max_completion_tokens, view.max_tokens) if c is not None]
    req = OpenAIRequest(raw, view.model, bool(view.stream), max(caps) if caps else None,
                        bool(view.stream_options and view.stream_options.include_usage), _DOC in messages)
    if req.docs:
        req.body()  # a broken doc part is a 400 now, before admission, not at the first attempt
    return req


def raise_reported_error(provider: str, data: bytes, secret: str | None, where: str) -> None:
    """An upstream that reports an error in a body it sent with 200 (inside its stream, or as
    the whole completion): re-raise it as ours, redacted. Returns if ``data`` holds no error."""
    err = reported_error(provider, data, secret, where)
    if err is not None:
        raise err


def reported_error(provider: str, data: bytes, secret: str | None, where: str) -> UpstreamError | None:
    try:
        view = error_view_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    err = view.error
    if err is None:
        return None
    message = err if isinstance(err, str) else (err.message or "error")
    return UpstreamError(f"{provider} upstream reported an error {where}: {redact(message, secret)}",
                         provider=provider)


class OpenAIPassReader:
    """An OpenAI-wire upstream's chunk stream, forwarded chunk by chunk; usage read on the way
    (its chunk dropped when the client did not ask for it); ``[DONE]`` ends it."""

    __slots__ = ("provider", "secret", "client_usage", "model", "usage", "ended", "error")

    def __init__(self, provider: str, secret: str | None, client_usage: bool, model: str) -> None:
        self.provider = provider
        self.secret = secret
        self.client_usage = client_usage
        self.model = model_field(model)  # each chunk names the model the client asked for
        self.usage: Usage | None = None
        self.ended = False
        self.error: UpstreamError | None = None

    def feed(self, batch: Sequence[UpstreamEvent]) -> list[bytes]:
        frames = []
        for event in batch:
            data = event.data
            if data == b"[DONE]":
                self.ended = True
                frames.append(DONE)
                break
            if b'"error"' in data:  # an "error" key: quotes inside string values are escaped
                self.error = reported_error(self.provider, data, self.secret, "mid-stream")
                if self.error is not None:
                    break
            if _USAGE_OBJECT.search(data) and not self._usage_of(data):
                continue  # a usage-only chunk the client did not ask for
            frames.append(b"data: " + renamed(data, self.model) + b"\n\n")
        return frames

    def _usage_of(self, data: bytes) -> bool:
        """Read a chunk's usage; whether the chunk goes on to the client."""
        try:
            view = response_view_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{self.provider} upstream sent a malformed stream chunk",
                                provider=self.provider) from None
        if view.usage is not None:
            self.usage = view.usage.to_usage()
        return self.client_usage or bool(view.choices)


class Forwardable(Protocol):
    """What ``OpenAIPassThrough`` reads of a request: ``OpenAIRequest``, and a request of OpenAI's
    other wires that answer in the same shape (legacy completions, ``dialects.completions``)."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def client_usage(self) -> bool: ...

    def body(self) -> Body: ...


class OpenAIPassThrough:
    """Forwards a request to the upstream's endpoint for ``wire`` (chat completions by default;
    legacy completions, whose answers and chunks carry ``usage`` and ``choices`` alike)."""

    def __init__(self, wire: str = DIALECT_OPENAI) -> None:
        self.wire = wire

    def body(self, req: Forwardable, upstream_model: str) -> dict[str, Any]:
        body: dict[str, Any] = dict(req.body())
        body["model"] = msgspec.Raw(encoder.encode(upstream_model))
        if req.stream:
            body["stream_options"] = _INCLUDE_USAGE  # usage for billing; dropped on the way if not asked for
        return body

    def usage(self, provider: str, raw: bytes, secret: str | None) -> Usage | None:
        """The usage of a forwarded completion; an UpstreamError (retryable) if it is not one."""
        try:
            view = response_view_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{provider} upstream sent an unreadable completion", provider=provider) from None
        if view.choices is None:  # a 200 that is not a completion: an error body, or nothing we know
            raise_reported_error(provider, raw, secret, "instead of a completion")
            raise UpstreamError(f"{provider} upstream sent a 200 without choices", provider=provider)
        return view.usage.to_usage() if view.usage is not None else None

    def named(self, req: Forwardable, raw: bytes) -> bytes:
        """The completion, naming the model the client asked for."""
        return renamed(raw, model_field(req.model))

    def reader(self, req: Forwardable, provider: str, secret: str | None) -> OpenAIPassReader:
        return OpenAIPassReader(provider, secret, req.client_usage, req.model)


class OpenAICodec:
    """``/v1/chat/completions`` in OpenAI's error envelope, or the platform's (``/api/v1``)."""

    passthrough = OpenAIPassThrough()

    def __init__(self, dialect: str, render: Render) -> None:
        self.dialect = dialect
        self.render = render

    def decode(self, raw: bytes) -> OpenAIRequest:
        return decode(raw)

    def encode_response(self, req: OpenAIRequest, resp: ChatResponse) -> bytes:
        return encoder.encode(encode_response(msgspec.structs.replace(resp, model=req.canonical().model)))

    def stream_writer(self, req: OpenAIRequest) -> StreamEncoder:
        canonical = req.canonical()
        return StreamEncoder(model=canonical.model, include_usage=canonical.include_usage)

    def error_body(self, err: TollwayError) -> dict[str, Any]:
        return self.render(err)

    def error_frame(self, err: TollwayError, request_id: str | None = None) -> bytes:
        return error_frame(self.render(err))
