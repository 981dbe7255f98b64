"""Routes of the OpenAI dialect: ``/v1/models``, ``/v1/models/{id}``, ``/v1/chat/completions`` and
``/v1/moderations``, and the same under ``/api/v1`` with the platform error body (seed 003).

A completion goes through the request pipeline (``routing.pipeline``) with ``OpenAICodec``
(``front.py``): a pass-through to an OpenAI-wire upstream, a translation to any other.
``/v1/ai/chat/completions`` (seed 000) is the same chat, with City's studio check. A moderation
has no translation: it is forwarded (``ChatPipeline.relay``) to a provider that has the endpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.billing.admission import Bound, estimate_tokens
from tollway.core.catalog import ModelInfo
from tollway.core.chat import Usage
from tollway.core.errors import InvalidRequest, ModelNotFound, ProviderNotConfigured
from tollway.core.json_input import loads
from tollway.core.keys import ApiKey
from tollway.core.money import MICRO
from tollway.core.names import DIALECT_MODERATIONS, DIALECT_OPENAI, DIALECT_PLATFORM
from tollway.dialects.city.routes import studio_matches
from tollway.dialects.openai import moderations
from tollway.dialects.openai.errors import openai_error_body, platform_error_body
from tollway.dialects.openai.front import OpenAICodec
from tollway.providers.base import PassThroughProvider
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline, Whole
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

    # GET /models/{id} ---------------------------------------------------------------------

    async def model(self, request: Request, call: Call) -> Response:
        """One model in OpenAI's ``Model`` shape, under the name asked for (an alias stays one),
        if the key may call it (as the list filters); 404 ``model_not_found`` otherwise."""
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        identity = await pipeline.identify(request, call)
        name = request.path_params["id"]
        m = gw.model_for(name, identity.key)
        if m is None:
            raise ModelNotFound(f"The model '{name}' does not exist or you do not have access to it.",
                                code="model_not_found")
        return JSONBytes(self._model_entry(msgspec.structs.replace(m, id=name)))

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

    # POST /moderations --------------------------------------------------------------------

    async def moderate(self, request: Request, call: Call) -> Response:
        """Forwarded, model rewritten, to the model's provider when it has a moderation endpoint
        (``omni-moderation-latest`` when the body names none, as OpenAI does); a 400 naming the
        models that can moderate otherwise. Admitted like a generation (the key's limits, a hold
        for the input and one output token, settled to a model's per-request price); logged as a
        0-token request when the answer carries no usage (OpenAI's does not)."""
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        identity = await pipeline.identify(request, call)
        raw = await read_body(request, gw.options.max_body_bytes)
        req = moderations.decode(raw)
        asked = req.model

        def read(provider: str, answer: bytes, secret: str | None) -> Whole:
            return Whole(moderations.read_answer(provider, answer, secret, asked), Usage())

        why = f"Model '{asked}' cannot moderate: its provider has no moderation endpoint."
        try:
            response = await pipeline.relay(request, call, DIALECT_MODERATIONS, asked, dict(req.body), read,
                                            bound=Bound(estimate_tokens(raw), 1))
        except (ModelNotFound, ProviderNotConfigured):
            if "model" in req.body:
                raise
            response = None  # the default model is not served here: say which are
            why = f"No model was named, and the default '{asked}' is not served here."
        if response is None:
            raise InvalidRequest(f"{why} {_moderators(gw, identity.key)}", code="model_cannot_moderate",
                                 param="model")
        return response

    def routes(self, prefix: str) -> list[BaseRoute]:
        return [
            Route(f"{prefix}/models", self._guard(self.models), methods=["GET"]),
            # ids may hold a "/" (ollama/llama3)
            Route(f"{prefix}/models/{{id:path}}", self._guard(self.model), methods=["GET"]),
            Route(f"{prefix}/chat/completions", self._guard(self.chat), methods=["POST"]),
            Route(f"{prefix}/moderations", self._guard(self.moderate), methods=["POST"]),
        ]


def _moderators(gw: Gateway, key: ApiKey | None) -> str:
    """The models that can moderate (a moderation model of a provider with the endpoint), of
    those ``key`` may call, as a sentence."""
    topo = gw.topology
    providers = topo.providers
    able = [m.id for m in topo.catalog.listed()
            if moderations.CAPABILITY in m.capabilities
            and isinstance(p := providers.get(m.provider), PassThroughProvider) and DIALECT_MODERATIONS in p.wires
            and (key is None or gw.billing is None or gw.billing.access.allowed(key, (m.id,)))]
    return f"Models that can: {', '.join(able)}." if able else "No model of this gateway can moderate."


def openai_routes() -> list[BaseRoute]:
    openai = OpenAIRoutes(DIALECT_OPENAI, openai_error_body, platform=False)
    return (openai.routes("/v1")
            + OpenAIRoutes(DIALECT_PLATFORM, platform_error_body, platform=True).routes("/api/v1")
            # seed 000: an OpenAI SDK with base_url <host>/v1/ai (its /v1/ai/models is City's own)
            + [Route("/v1/ai/chat/completions", openai._guard(openai.city_chat), methods=["POST"])])
