"""The ``ai`` service: models by identity, text, stream, and the media actions' placeholders.

``POST /v1/ai/chat/completions`` is OpenAI's route mounted under ``/v1/ai`` (see app.py), so an
OpenAI SDK with ``base_url=<host>/v1/ai`` works; the actions here are City's own shapes. Text and
stream go through the request pipeline with ``CityCodec`` (``chat.py``, where their wire shapes
are written down).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tollway.core.catalog import EnvRequirement, ModelInfo
from tollway.core.errors import NotImplementedYet
from tollway.dialects.city.front import CityCodec
from tollway.dialects.city.services import Caller, Service
from tollway.providers.kinds import SPECS
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse

_encoder = msgspec.json.Encoder()
Answer = Response | EventStreamResponse
TEXT, STREAM = CityCodec(stream=False), CityCodec(stream=True)
MEDIA = {"image": "image generation", "video": "video generation", "tts": "text-to-speech",
         "asr": "speech recognition"}


def _entry(m: ModelInfo) -> dict[str, Any]:
    return {"id": m.id, "name": m.display_name or m.id, "description": m.description,
            "modalities": list(m.modalities), "tags": list(m.tags), "meta": m.meta}


def models_for(gw: Gateway, caller: Caller) -> list[dict[str, Any]]:
    """A user sees the models callable now; the admin every registered one with what it needs."""
    if caller.kind != "admin":
        key = caller.identity.key if caller.identity is not None else None
        models = gw.catalog.listed()
        if key is not None and gw.billing is not None:  # a key sees what it is authorized for
            models = [m for m in models if gw.billing.access.allowed(key, (m.id,))]
        return [_entry(m) for m in models]
    out = []
    for m in [*gw.catalog.known.values(), *(d for d in gw.catalog.listed() if d.id not in gw.catalog.known)]:
        spec = gw.catalog.specs.get(m.provider)
        env = spec.env_requirements if spec is not None else ()
        out.append({**_entry(m), "env_requirements": [{"key": e.key, "description": e.description,
                                                       "required": e.required} for e in env],
                    "default_modes": list(m.modalities), "callable": gw.catalog.callable(m)})
    return out


def _env() -> list[EnvRequirement]:
    """What the ai service can use: every code-registered provider's variables, once each."""
    seen: dict[str, EnvRequirement] = {}
    for spec in SPECS:
        for req in spec.env_requirements:
            seen.setdefault(req.key, req)
    return list(seen.values())


def ai_service() -> Service:
    service = Service(id="ai", name="AI", env=_env)

    @service.action("models", methods=("GET",), summary="Model catalog (by identity)")
    async def models(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        return {"items": models_for(request.app.state.gateway, caller)}

    @service.action("text", summary="Text generation")
    async def text(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> Answer:
        pipeline: ChatPipeline = request.app.state.pipeline
        return await pipeline.serve(request, call, TEXT, raw=_encoder.encode(body))

    @service.action("stream", summary="Streaming generation (SSE; see dialects/city/front.py for the events)")
    async def stream(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> Answer:
        pipeline: ChatPipeline = request.app.state.pipeline
        return await pipeline.serve(request, call, STREAM, raw=_encoder.encode(body))

    for name, capability in MEDIA.items():
        def make(capability: str = capability) -> Any:
            async def media(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
                raise NotImplementedYet(f"{capability} is not available yet: the media pipeline (async tasks) "
                                        "is not built. Text, stream and chat/completions work.")
            return media
        service.action(name, summary=f"{capability} (not available yet: 501)")(make())

    return service
