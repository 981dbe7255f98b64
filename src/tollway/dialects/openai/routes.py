"""Routes of the OpenAI dialect: ``/v1/models`` and ``/v1/chat/completions``, and the same
under ``/api/v1`` with the platform error body (seed 003).

A completion goes through the request pipeline (``routing.pipeline``) with ``OpenAICodec``
(``front.py``): a pass-through to an OpenAI-wire upstream, a translation to any other.
``/v1/ai/chat/completions`` (seed 000) is the same chat, with City's studio check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.core.catalog import ModelInfo
from tollway.core.json_input import loads
from tollway.core.money import MICRO
from tollway.core.names import DIALECT_OPENAI, DIALECT_PLATFORM
from tollway.dialects.city.routes import studio_matches
from tollway.dialects.openai.errors import openai_error_body, platform_error_body
from tollway.dialects.openai.front import OpenAICodec
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse, Handler, JSONBytes, Render, dialect_endpoint, read_body


class _StudioView(msgspec.Struct):
    studio_id: Any = None


_studio_view = msgspec.json.Decoder(_StudioView)


class OpenAIRoutes:
    """The handlers, bound to one error envelope (OpenAI's or the platform's)."""

    def __init__(self, dialect: str, render: Render, *, platform: bool) -> None:
        self.dialect = dialect
        self.render = render
        self.platform = platform
        self.codec = OpenAICodec(dialect, render)

    def _guard(self, handler: Handler) -> Callable[[Request], Awaitable[Response | EventStreamResponse]]:
        return dialect_endpoint(self.dialect, self.render, handler)

    # GET /models -------------------------------------------------------------------------

    async def models(self, request: Request, call: Call) -> Response:
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        identity = await pipeline.identify(request, call)
        models = gw.catalog.listed()
        if identity.key is not None and gw.billing is not None:  # a key sees what it is authorized for
            access, key = gw.billing.access, identity.key
            models = [m for m in models if access.allowed(key, (m.id,))]
        return JSONBytes({"object": "list", "data": [self._model_entry(m) for m in models]})

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
        pipeline: ChatPipeline = request.app.state.pipeline
        return await pipeline.serve(request, call, self.codec)

    async def city_chat(self, request: Request, call: Call) -> Response | EventStreamResponse:
        """Seed 000's ``/v1/ai/chat/completions``: the chat, whose body may name the caller's
        studio like City's other ai actions (``studio_id`` of another studio: 403
        ``studio_mismatch``). The field is City's, taken out before the body goes upstream."""
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        identity = await pipeline.identify(request, call)
        raw = await read_body(request, gw.options.max_body_bytes)
        try:
            wanted = _studio_view.decode(raw).studio_id
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            wanted = None  # not a body the codec takes: it says what is wrong with it
        if wanted is not None:
            studio_matches(identity, wanted)
            body = loads(raw, invalid="Invalid request body")
            del body["studio_id"]  # an OpenAI upstream refuses a field it does not know
            raw = msgspec.json.encode(body)
        return await pipeline.serve(request, call, self.codec, raw=raw)

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
            + [Route("/v1/ai/chat/completions", openai._guard(openai.city_chat), methods=["POST"])])
