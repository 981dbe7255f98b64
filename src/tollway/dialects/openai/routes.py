"""Routes of the OpenAI dialect: ``/v1/models`` and ``/v1/chat/completions``, and the same
under ``/api/v1`` with the platform error body (seed 003).

When the resolved provider speaks OpenAI's wire too, the request is a pass-through: the body
is forwarded with the model name (and stream options) rewritten and only ``usage`` is read
back. Otherwise it is decoded to the canonical model, served by the provider's adapter and
encoded back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.core.catalog import Credential, ModelInfo
from tollway.core.chat import ChatRequest, StreamEvent, Usage, UsageReport
from tollway.core.errors import InvalidRequest, TollwayError, UpstreamError
from tollway.core.money import MICRO
from tollway.core.names import DIALECT_OPENAI, DIALECT_PLATFORM
from tollway.dialects.openai.codec import decode_request, encode_response
from tollway.dialects.openai.errors import openai_error_body, platform_error_body
from tollway.dialects.openai.stream import DONE, StreamEncoder, error_frame
from tollway.dialects.openai.wire import (
    Body,
    body_decoder,
    encoder,
    error_view_decoder,
    request_view_decoder,
    response_view_decoder,
)
from tollway.providers.base import ChatProvider, PassThroughProvider
from tollway.providers.http import UpstreamStream, redact
from tollway.routing.admission import Bound, estimate_tokens
from tollway.routing.catalog import Route as ModelRoute
from tollway.routing.gateway import Call, Gateway
from tollway.routing.responses import (
    EventStreamResponse,
    Handler,
    JSONBytes,
    Render,
    Respond,
    completed,
    dialect_endpoint,
    first_event,
    guarded_stream,
    read_body,
    unless_disconnected,
)

log = logging.getLogger("tollway")

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')


def _completion_usage(provider: str, raw: bytes, secret: str | None) -> Usage | None:
    """The usage of a forwarded completion; an UpstreamError (retryable) if it is not one."""
    try:
        view = response_view_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamError(f"{provider} upstream sent an unreadable completion", provider=provider) from None
    if view.choices is None:  # a 200 that is not a completion: an error body, or nothing we know
        _raise_reported_error(provider, raw, secret, "instead of a completion")
        raise UpstreamError(f"{provider} upstream sent a 200 without choices", provider=provider)
    return view.usage.to_usage() if view.usage is not None else None


def _raise_reported_error(provider: str, data: bytes, secret: str | None, where: str) -> None:
    """An upstream that reports an error in a body it sent with 200 (inside its stream, or as
    the whole completion): re-raise it as ours, redacted. Returns if ``data`` holds no error."""
    try:
        view = error_view_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    err = view.error
    if err is None:
        return
    message = err if isinstance(err, str) else (err.message or "error")
    raise UpstreamError(f"{provider} upstream reported an error {where}: {redact(message, secret)}",
                        provider=provider)


class OpenAIRoutes:
    """The handlers, bound to one error envelope (OpenAI's or the platform's)."""

    def __init__(self, dialect: str, render: Render, *, platform: bool) -> None:
        self.dialect = dialect
        self.render = render
        self.platform = platform

    def _guard(self, handler: Handler) -> Callable[[Request], Awaitable[Response | EventStreamResponse]]:
        return dialect_endpoint(self.dialect, self.render, handler)

    # GET /models -------------------------------------------------------------------------

    async def models(self, request: Request, call: Call) -> Response:
        gw: Gateway = request.app.state.gateway
        identity = await gw.identify(request.headers)
        call.identify(identity)
        models = gw.catalog.listed()
        if identity.key is not None and gw.billing is not None:  # a key sees what it is authorized for
            access, key = gw.billing.access, identity.key
            models = [m for m in models if access.allowed(key, (m.id,))]
        data = [self._model_entry(m) for m in models]
        call.finish(200)
        return JSONBytes({"object": "list", "data": data})

    def _model_entry(self, m: ModelInfo) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": m.id, "object": "model", "created": m.created, "owned_by": m.provider}
        if self.platform:
            entry.update(display_name=m.display_name or m.id, category=m.category,
                         capabilities=list(m.capabilities), credit_cost=m.credit_cost / MICRO,
                         pricing={"input_per_million": m.price_in / MICRO, "output_per_million": m.price_out / MICRO})
        entry["meta"] = m.meta
        return entry

    # POST /chat/completions --------------------------------------------------------------

    async def chat(self, request: Request, call: Call) -> Response | EventStreamResponse:
        gw: Gateway = request.app.state.gateway
        call.identify(await gw.identify(request.headers))
        raw = await read_body(request, gw.max_body_bytes)
        try:
            raw.decode("utf-8")  # the pass-through forwards bytes it does not decode: check them once
            view = request_view_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"Invalid request body: {exc}") from None
        if not view.model:
            raise InvalidRequest("The 'model' field is required.", code="model_required", param="model")
        messages = bytes(view.messages).strip()
        if not messages.startswith(b"[") or messages.replace(b" ", b"") == b"[]":
            raise InvalidRequest("The 'messages' field must be a non-empty array.", code="messages_required",
                                 param="messages")
        if view.n not in (None, 1):
            raise InvalidRequest("Only n=1 is supported.", param="n")
        stream = bool(view.stream)
        call.row.stream = stream
        client_usage = bool(view.stream_options and view.stream_options.include_usage)
        parsed: dict[str, Any] = {}  # the body as raw fields, and as a canonical request: each decoded once

        async def work(route: ModelRoute, provider: ChatProvider, credential: Credential) -> Respond:
            """Up to the upstream's first answer: a failure here may be retried elsewhere."""
            if isinstance(provider, PassThroughProvider) and provider.dialect == DIALECT_OPENAI:
                if "body" not in parsed:
                    parsed["body"] = body_decoder.decode(raw)
                body: Body = dict(parsed["body"])
                body["model"] = msgspec.Raw(encoder.encode(route.model.upstream_id))
                if stream:
                    body["stream_options"] = _INCLUDE_USAGE
                call.dropped(provider.adapt(body))
                if stream:
                    upstream = await provider.forward_stream(encoder.encode(body), credential=credential)
                    return lambda: self._forward_stream(provider, upstream, credential, call, client_usage)
                out = await provider.forward(encoder.encode(body), credential=credential)
                usage = _completion_usage(provider.name, out, credential.secret)
                return lambda: completed(call, JSONBytes(out), usage)
            if "req" not in parsed:
                parsed["req"] = decode_request(raw)
            req: ChatRequest = parsed["req"]
            call.dropped([*provider.unsupported(req), *req.lossy])
            upstream_model = route.model.upstream_id
            if stream:
                events = provider.stream(req, upstream_model=upstream_model, credential=credential)
                first = await first_event(events)  # errors before any byte: a plain error, or another attempt
                return lambda: self._canonical_stream(req, events, first, call)
            resp = await provider.complete(req, upstream_model=upstream_model, credential=credential)
            return lambda: completed(call, JSONBytes(encode_response(msgspec.structs.replace(resp, model=req.model))),
                                      resp.usage)

        # the larger cap, if both are sent (an upstream may take either); the whole body: tools,
        # schemas and images count as input too
        caps = [c for c in (view.max_completion_tokens, view.max_tokens) if c is not None]
        bound = Bound(estimate_tokens(raw), max(caps) if caps else None)
        respond = await unless_disconnected(request, call.run(view.model, work, bound=bound))
        return respond()

    def _forward_stream(self, provider: PassThroughProvider, upstream: UpstreamStream, credential: Credential,
                        call: Call, client_usage: bool) -> EventStreamResponse:
        finished = False

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal finished
            done = False
            async for batch in upstream.batches():
                parts = []
                for event in batch:
                    data = event.data
                    if data == b"[DONE]":
                        done = True
                        parts.append(DONE)
                        break
                    if b'"error"' in data:  # an "error" key: quotes inside string values are escaped
                        if parts:  # what came before the error still reaches the client
                            yield b"".join(parts)
                            parts = []
                        _raise_reported_error(provider.name, data, credential.secret, "mid-stream")
                    if _USAGE_OBJECT.search(data):
                        try:
                            view = response_view_decoder.decode(data)
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            raise UpstreamError(f"{provider.name} upstream sent a malformed stream chunk",
                                                provider=provider.name) from None
                        if view.usage is not None:
                            call.usage(view.usage.to_usage())
                        if not client_usage and not view.choices:
                            continue
                    parts.append(b"data: " + data + b"\n\n")
                if parts:
                    call.first_token(len(parts))
                    yield b"".join(parts)
                if done:
                    break
            if not done:
                raise UpstreamError(f"{provider.name} upstream closed the stream before it finished",
                                    provider=provider.name)
            finished = True

        async def close() -> None:
            if finished:
                upstream.finish()  # read the body's end in the background, keep the connection
            else:
                upstream.close()

        return guarded_stream(chunks(), call, self._error_frame, close)

    def _canonical_stream(self, req: ChatRequest, events: AsyncIterator[StreamEvent], first: StreamEvent,
                          call: Call) -> EventStreamResponse:
        stream = StreamEncoder(model=req.model, include_usage=req.include_usage)

        async def chunks() -> AsyncIterator[bytes]:
            yield stream.feed(first)
            call.first_token()
            async for event in events:
                if isinstance(event, UsageReport):
                    call.usage(event.usage)
                else:
                    call.produced += 1  # what a client that cuts the stream pays for, without usage
                yield stream.feed(event)
            yield stream.close()

        async def close() -> None:
            await events.aclose()  # type: ignore[attr-defined]

        return guarded_stream(chunks(), call, self._error_frame, close)

    def _error_frame(self, err: TollwayError) -> bytes:
        return error_frame(self.render(err))

    def routes(self, prefix: str) -> list[BaseRoute]:
        return [
            Route(f"{prefix}/models", self._guard(self.models), methods=["GET"]),
            Route(f"{prefix}/chat/completions", self._guard(self.chat), methods=["POST"]),
        ]


def openai_routes() -> list[BaseRoute]:
    openai = OpenAIRoutes(DIALECT_OPENAI, openai_error_body, platform=False)
    return (openai.routes("/v1")
            + OpenAIRoutes(DIALECT_PLATFORM, platform_error_body, platform=True).routes("/api/v1")
            # seed 000: an OpenAI SDK with base_url <host>/v1/ai (its /v1/ai/models is City's own)
            + [Route("/v1/ai/chat/completions", openai._guard(openai.chat), methods=["POST"])])
