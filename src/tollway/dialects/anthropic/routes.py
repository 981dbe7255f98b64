"""Routes of the Anthropic dialect: ``/v1/messages``, ``/v1/messages/count_tokens`` and the
same under ``/anthropic``, plus ``/anthropic/v1/models`` and ``/anthropic/v1/models/{id}`` (and
``/v1/models``, ``/v1/models/{id}`` for a caller that sends ``anthropic-version``).

A message goes through the request pipeline (``routing.pipeline``) with ``AnthropicCodec``
(``front.py``): a pass-through to an Anthropic upstream, a translation to any other.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.core.catalog import ModelInfo
from tollway.core.errors import AllUpstreamsFailed, InvalidRequest, ModelNotFound, TollwayError, UpstreamError
from tollway.core.keys import ApiKey
from tollway.core.names import DIALECT_ANTHROPIC
from tollway.dialects.anthropic.decode import check_request, decode_request, loads
from tollway.dialects.anthropic.errors import anthropic_error_body
from tollway.dialects.anthropic.front import AnthropicCodec
from tollway.dialects.anthropic.wire import body_decoder
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse, Handler, JSONBytes, dialect_endpoint, read_body
from tollway.routing.tokens import count_tokens

_COUNT_INLINE_BYTES = 64 * 1024
# what an Anthropic-compatible upstream that has no count_tokens (DeepSeek's, Kimi's ...) answers there
_NO_COUNT_ENDPOINT = frozenset({404, 405})
_MODELS_PAGE_MAX = 1000
CODEC = AnthropicCodec()


def _render(err: TollwayError) -> dict[str, Any]:
    return anthropic_error_body(err)


def _guard(handler: Handler) -> Callable[[Request], Awaitable[Response | EventStreamResponse]]:
    return dialect_endpoint(DIALECT_ANTHROPIC, _render, handler)


# POST /v1/messages -------------------------------------------------------------------------


async def messages(request: Request, call: Call) -> Response | EventStreamResponse:
    pipeline: ChatPipeline = request.app.state.pipeline
    return await pipeline.serve(request, call, CODEC)


# POST /v1/messages/count_tokens -----------------------------------------------------------


async def count(request: Request, call: Call) -> Response:
    """On an Anthropic upstream, Anthropic's own count (forwarded like a message); elsewhere, or
    when that upstream has no count_tokens (an Anthropic-compatible server answering 404 there),
    ``routing.tokens.count_tokens`` (OpenAI's o200k_base when installed, else an estimate)."""
    gw: Gateway = request.app.state.gateway
    pipeline: ChatPipeline = request.app.state.pipeline
    await pipeline.identify(request, call)
    raw = await read_body(request, gw.options.max_body_bytes)
    data = loads(raw)
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    data = {**data, "max_tokens": 1, "stream": False}  # not part of a count request
    check_request(data)
    body: dict[str, Any] = dict(body_decoder.decode(raw))
    for field in ("max_tokens", "stream"):  # not part of a count request: Anthropic refuses them
        body.pop(field, None)
    body["model"] = data["model"]
    try:
        counted = await pipeline.upstream_count(request, call, DIALECT_ANTHROPIC, body, _read_count)
    except (UpstreamError, AllUpstreamsFailed) as err:
        if err.upstream_status not in _NO_COUNT_ENDPOINT:
            raise
        counted = None  # the failed attempt stays in the call's log row
    if counted is not None:
        return JSONBytes({"input_tokens": counted})
    req = decode_request(data)
    # a big body takes a while to count (about 0.5 s per MB): off the event loop
    total = count_tokens(req) if len(raw) < _COUNT_INLINE_BYTES else await asyncio.to_thread(count_tokens, req)
    return JSONBytes({"input_tokens": total})


class _Counted(msgspec.Struct):
    input_tokens: int


def _read_count(provider: str, answer: bytes) -> int:
    try:
        return msgspec.json.decode(answer, type=_Counted).input_tokens
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamError(f"{provider} upstream sent an unreadable token count", provider=provider) from None


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
    return JSONBytes(models_page(request.app.state.gateway, request))


async def models_with_key(request: Request, call: Call) -> Response:
    """``GET /v1/models`` from an Anthropic SDK: the same page, behind a key like every /v1 route."""
    pipeline: ChatPipeline = request.app.state.pipeline
    identity = await pipeline.identify(request, call)
    return JSONBytes(models_page(request.app.state.gateway, request, identity.key))


v1_models = _guard(models_with_key)


# GET /anthropic/v1/models/{id} -------------------------------------------------------------


def model_info(gw: Gateway, name: str, key: ApiKey | None) -> dict[str, Any]:
    """Anthropic's ModelInfo of the model a caller knows as ``name`` (``Gateway.model_for``);
    ``not_found_error`` when there is none it may call."""
    m = gw.model_for(name, key)
    if m is None:
        raise ModelNotFound(f"model: {name} does not exist or you do not have access to it.", code="model_not_found")
    return _model_entry(msgspec.structs.replace(m, id=name))


async def model(request: Request, call: Call) -> Response:
    """No key needed, as on /anthropic/v1/models."""
    return JSONBytes(model_info(request.app.state.gateway, request.path_params["id"], None))


async def model_with_key(request: Request, call: Call) -> Response:
    """``GET /v1/models/{id}`` from an Anthropic SDK, behind a key like every /v1 route."""
    pipeline: ChatPipeline = request.app.state.pipeline
    identity = await pipeline.identify(request, call)
    return JSONBytes(model_info(request.app.state.gateway, request.path_params["id"], identity.key))


v1_model = _guard(model_with_key)


def anthropic_routes() -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for prefix in ("/v1", "/anthropic/v1"):
        out.append(Route(f"{prefix}/messages", _guard(messages), methods=["POST"]))
        out.append(Route(f"{prefix}/messages/count_tokens", _guard(count), methods=["POST"]))
    out.append(Route("/anthropic/v1/models", _guard(models), methods=["GET"]))
    out.append(Route("/anthropic/v1/models/{id:path}", _guard(model), methods=["GET"]))  # ids may hold a "/"
    return out
