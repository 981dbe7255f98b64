"""Routes of the Anthropic dialect: ``/v1/messages``, ``/v1/messages/count_tokens`` and the
same under ``/anthropic``, plus ``/anthropic/v1/models`` (and ``/v1/models`` for a caller that
sends ``anthropic-version``).

When the resolved provider speaks Anthropic's wire too, a message is a pass-through: the body
is forwarded with only ``model`` rewritten and only usage is read back, so thinking
signatures, cache_control and server tools reach Anthropic untouched. Otherwise it is decoded
to the canonical model, served by the provider's adapter and encoded back.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.core.catalog import Credential, ModelInfo
from tollway.core.chat import ChatRequest, StreamEvent, Usage, UsageReport
from tollway.core.errors import InvalidRequest, TollwayError, UpstreamError
from tollway.core.keys import ApiKey
from tollway.core.names import DIALECT_ANTHROPIC
from tollway.dialects.anthropic.codec import check_request, decode_request, encode_response, loads
from tollway.dialects.anthropic.errors import anthropic_error_body
from tollway.dialects.anthropic.stream import ERROR_STATUS, StreamEncoder, error_event
from tollway.dialects.anthropic.wire import Body, UsageView, body_decoder, encoder, event_view_decoder
from tollway.providers.base import ChatProvider, PassThroughProvider, TokenCounter
from tollway.providers.http import UpstreamStream, redact
from tollway.routing.admission import Bound, estimate_tokens
from tollway.routing.catalog import Route as ModelRoute
from tollway.routing.gateway import Call, Gateway
from tollway.routing.responses import (
    EventStreamResponse,
    Handler,
    JSONBytes,
    Respond,
    completed,
    dialect_endpoint,
    first_event,
    guarded_stream,
    read_body,
    unless_disconnected,
)
from tollway.routing.tokens import count_tokens

_USAGE = b'"usage"'
_COUNT_INLINE_BYTES = 64 * 1024
_MODELS_PAGE_MAX = 1000


def _render(err: TollwayError) -> dict[str, Any]:
    return anthropic_error_body(err)


def _guard(handler: Handler) -> Callable[[Request], Awaitable[Response | EventStreamResponse]]:
    return dialect_endpoint(DIALECT_ANTHROPIC, _render, handler)


def _error_frame(err: TollwayError) -> bytes:
    return error_event(anthropic_error_body(err))


def _is_anthropic(provider: ChatProvider) -> bool:
    return isinstance(provider, PassThroughProvider) and provider.dialect == DIALECT_ANTHROPIC


def _raise_reported_error(provider: str, data: bytes, secret: str | None, where: str) -> None:
    """An Anthropic error object inside a 200 (a stream's ``error`` event): re-raise as ours."""
    try:
        view = event_view_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    if view.type != "error" and view.error is None:
        return
    err = view.error
    etype = (err.type if err else None) or "api_error"
    message = redact((err.message if err else None) or etype, secret)
    raise UpstreamError(f"{provider} upstream reported an error {where}: {message}", provider=provider,
                        upstream_status=ERROR_STATUS.get(etype, 500))


# POST /v1/messages -------------------------------------------------------------------------


async def messages(request: Request, call: Call) -> Response | EventStreamResponse:
    gw: Gateway = request.app.state.gateway
    call.identify(await gw.identify(request.headers))
    raw = await read_body(request, gw.max_body_bytes)
    data = loads(raw)
    check_request(data)
    stream = bool(data.get("stream"))
    call.row.stream = stream
    parsed: dict[str, Any] = {}  # the body as raw fields, and as a canonical request: each decoded once

    async def work(route: ModelRoute, provider: ChatProvider, credential: Credential) -> Respond:
        """Up to the upstream's first answer: a failure here may be retried elsewhere."""
        if _is_anthropic(provider):
            assert isinstance(provider, PassThroughProvider)
            if "body" not in parsed:
                parsed["body"] = body_decoder.decode(raw)
            body: Body = dict(parsed["body"])
            body["model"] = msgspec.Raw(encoder.encode(route.model.upstream_id))
            if stream:
                upstream = await provider.forward_stream(encoder.encode(body), credential=credential,
                                                         headers=request.headers)
                return lambda: _forward_stream(provider, upstream, credential, call)
            out = await provider.forward(encoder.encode(body), credential=credential, headers=request.headers)
            usage = _message_usage(provider.name, out, credential.secret)
            return lambda: completed(call, JSONBytes(out), usage)
        if "req" not in parsed:
            parsed["req"] = decode_request(data)
        req: ChatRequest = parsed["req"]
        call.dropped([*provider.unsupported(req), *req.lossy])
        if stream:
            events = provider.stream(req, upstream_model=route.model.upstream_id, credential=credential)
            first = await first_event(events)  # errors before any byte: a plain error, or another attempt
            return lambda: _canonical_stream(req, events, first, call)
        resp = await provider.complete(req, upstream_model=route.model.upstream_id, credential=credential)
        return lambda: completed(call, JSONBytes(encode_response(msgspec.structs.replace(resp, model=req.model))),
                                  resp.usage)

    max_tokens = data.get("max_tokens")
    bound = Bound(estimate_tokens(raw), max_tokens if isinstance(max_tokens, int) else None)
    respond = await unless_disconnected(request, call.run(data["model"], work, bound=bound))
    return respond()


def _message_usage(provider: str, raw: bytes, secret: str | None) -> Usage | None:
    """The usage of a forwarded message; an UpstreamError (retryable) if it is not a message."""
    try:
        view = event_view_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamError(f"{provider} upstream sent an unreadable message", provider=provider) from None
    if view.type != "message":
        _raise_reported_error(provider, raw, secret, "instead of a message")
        raise UpstreamError(f"{provider} upstream sent a 200 that is not a message", provider=provider)
    return view.usage.to_usage() if view.usage is not None else None


def _forward_stream(provider: PassThroughProvider, upstream: UpstreamStream, credential: Credential,
                    call: Call) -> EventStreamResponse:
    finished = False

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal finished
        usage = UsageView()
        done = False
        async for batch in upstream.batches():
            parts: list[bytes] = []
            for event in batch:
                name, data = event.event or "message", event.data
                if name == "error" or b'"error"' in data:
                    if parts:  # what came before the error still reaches the client
                        yield b"".join(parts)
                        parts = []
                    _raise_reported_error(provider.name, data, credential.secret, "mid-stream")
                if _USAGE in data:
                    try:
                        view = event_view_decoder.decode(data)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        raise UpstreamError(f"{provider.name} upstream sent a malformed stream event",
                                            provider=provider.name) from None
                    found = view.usage or (view.message.usage if view.message else None)
                    if found is not None:
                        usage = usage.merge(found)
                        call.usage(usage.to_usage())
                # one data: line per line of the event's data, as SSE frames multi-line data
                parts.append(b"event: " + name.encode() + b"\ndata: " + data.replace(b"\n", b"\ndata: ") + b"\n\n")
                if name == "message_stop":
                    done = True
                    break
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
            upstream.finish()
        else:
            upstream.close()

    return guarded_stream(chunks(), call, _error_frame, close)


def _canonical_stream(req: ChatRequest, events: AsyncIterator[StreamEvent], first: StreamEvent,
                      call: Call) -> EventStreamResponse:
    encoder_ = StreamEncoder(model=req.model)

    async def chunks() -> AsyncIterator[bytes]:
        yield encoder_.feed(first)
        call.first_token()
        async for event in events:
            if isinstance(event, UsageReport):
                call.usage(event.usage)
            else:
                call.produced += 1  # what a client that cuts the stream pays for, without usage
            out = encoder_.feed(event)
            if out:
                yield out
        yield encoder_.close()

    async def close() -> None:
        await events.aclose()  # type: ignore[attr-defined]

    return guarded_stream(chunks(), call, _error_frame, close)


# POST /v1/messages/count_tokens -----------------------------------------------------------


async def count(request: Request, call: Call) -> Response:
    """On an Anthropic upstream, Anthropic's own count (forwarded like a message); elsewhere
    ``routing.tokens.count_tokens`` (OpenAI's o200k_base when installed, else an estimate)."""
    gw: Gateway = request.app.state.gateway
    call.identify(await gw.identify(request.headers))
    raw = await read_body(request, gw.max_body_bytes)
    data = loads(raw)
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    data = {**data, "max_tokens": 1, "stream": False}  # not part of a count request
    check_request(data)
    route, provider, _pool = gw.resolve(data["model"])  # an unknown model is a 404, as upstream
    call.row.model = route.model.id
    if _is_anthropic(provider) and isinstance(provider, TokenCounter):
        body = body_decoder.decode(raw)
        for field in ("max_tokens", "stream"):  # not part of a count request: Anthropic refuses them
            body.pop(field, None)

        async def work(route: ModelRoute, provider: ChatProvider, credential: Credential) -> int:
            assert isinstance(provider, TokenCounter)
            body["model"] = msgspec.Raw(encoder.encode(route.model.upstream_id))
            answer = await provider.count_tokens(encoder.encode(body), credential=credential,
                                                 headers=request.headers)
            try:
                return msgspec.json.decode(answer, type=_Counted).input_tokens
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise UpstreamError(f"{route.provider} upstream sent an unreadable token count",
                                    provider=route.provider) from None

        counted = await unless_disconnected(request, call.run(data["model"], work, fallbacks=False))
        call.finish(200)
        return JSONBytes({"input_tokens": counted})
    req = decode_request(data)
    # a big body takes a while to count (about 0.5 s per MB): off the event loop
    total = count_tokens(req) if len(raw) < _COUNT_INLINE_BYTES else await asyncio.to_thread(count_tokens, req)
    call.finish(200)
    return JSONBytes({"input_tokens": total})


class _Counted(msgspec.Struct):
    input_tokens: int


# GET /anthropic/v1/models ------------------------------------------------------------------


def _created_at(m: ModelInfo) -> str:
    return datetime.datetime.fromtimestamp(m.created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _model_entry(m: ModelInfo) -> dict[str, Any]:
    """Anthropic's ModelInfo, plus the OpenAI-style fields seed 002 lists (object, created, owned_by)."""
    return {"type": "model", "id": m.id, "display_name": m.display_name or m.id, "created_at": _created_at(m),
            "capabilities": None, "max_input_tokens": None, "max_tokens": None,
            "object": "model", "created": m.created, "owned_by": m.provider}


def models_page(gw: Gateway, request: Request, key: ApiKey | None = None) -> dict[str, Any]:
    """Anthropic's page (``data``, ``first_id``, ``last_id``, ``has_more``; ``limit``,
    ``after_id``, ``before_id``), which also carries seed 002's ``object: list``. With a ``key``,
    only the models it is authorized for."""
    listed = gw.catalog.listed()
    names = {m.id for m in listed}
    if gw.catalog.claude_mapping:  # Claude names answer through the mapping: list them too
        listed += [m for m in gw.catalog.known.values() if m.id.startswith("claude") and m.id not in names]
    if key is not None and gw.billing is not None:
        listed = [m for m in listed if gw.billing.access.allowed(key, (m.id,))]
    q = request.query_params
    try:
        limit = int(q.get("limit") or 20)
    except ValueError:
        raise InvalidRequest("limit: must be an integer") from None
    if not 1 <= limit <= _MODELS_PAGE_MAX:
        raise InvalidRequest(f"limit: must be between 1 and {_MODELS_PAGE_MAX}")
    ids = [m.id for m in listed]
    start, end = 0, len(listed)
    if q.get("after_id"):
        if q["after_id"] not in ids:
            raise InvalidRequest(f"after_id: unknown model {q['after_id']!r}")
        start = ids.index(q["after_id"]) + 1
    if q.get("before_id"):
        if q["before_id"] not in ids:
            raise InvalidRequest(f"before_id: unknown model {q['before_id']!r}")
        end = ids.index(q["before_id"])
        start = max(start, end - limit)
    page = listed[start:end][:limit]
    has_more = start + len(page) < end if not q.get("before_id") else start > 0
    return {"object": "list", "data": [_model_entry(m) for m in page],
            "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
            "has_more": has_more}


async def models(request: Request, call: Call) -> Response:
    """Seed 002: no key needed on /anthropic/v1/models."""
    gw: Gateway = request.app.state.gateway
    page = models_page(gw, request)
    call.finish(200)
    return JSONBytes(page)


async def models_with_key(request: Request, call: Call) -> Response:
    """``GET /v1/models`` from an Anthropic SDK: the same page, behind a key like every /v1 route."""
    gw: Gateway = request.app.state.gateway
    identity = await gw.identify(request.headers)
    call.identify(identity)
    page = models_page(gw, request, identity.key)
    call.finish(200)
    return JSONBytes(page)


v1_models = _guard(models_with_key)


def anthropic_routes() -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for prefix in ("/v1", "/anthropic/v1"):
        out.append(Route(f"{prefix}/messages", _guard(messages), methods=["POST"]))
        out.append(Route(f"{prefix}/messages/count_tokens", _guard(count), methods=["POST"]))
    out.append(Route("/anthropic/v1/models", _guard(models), methods=["GET"]))
    return out
