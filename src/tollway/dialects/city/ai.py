"""The ``ai`` service: models by identity, text, stream, and the media actions.

``POST /v1/ai/chat/completions`` is OpenAI's route mounted under ``/v1/ai`` (see app.py), so an
OpenAI SDK with ``base_url=<host>/v1/ai`` works; the actions here are City's own shapes. Text and
stream go through the request pipeline with ``CityCodec`` (``chat.py``, where their wire shapes
are written down). The media actions are the OpenAI-shaped surfaces' code in City's JSON shapes:

- ``POST /v1/ai/image {model, prompt, n?, size?, quality?}`` and ``POST /v1/ai/video {model,
  prompt, seconds?, size?}`` make a task and answer ``{task_id, status: "pending", model,
  created}``; ``GET /v1/ai/task?id=`` answers the task (seed 003's task shape: status, progress,
  ``data`` with signed URLs, error, cost), ``POST /v1/ai/cancel {id}`` cancels it;
- ``POST /v1/ai/tts {model, input (or text), voice?, format?, speed?, instructions?}`` answers
  ``{model, format, media_type, audio (base64), characters}``;
- ``POST /v1/ai/asr {model, audio (base64), filename? or format?, language?, prompt?}`` answers
  ``{model, text, language, duration, segments}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tollway.billing.admission import Bound
from tollway.core.catalog import Credential, EnvRequirement, ModelInfo
from tollway.core.chat import Usage
from tollway.core.errors import InvalidRequest, NotFound
from tollway.core.media import IMAGES, SPEECH, TRANSCRIPTION, VIDEO, Speech, Transcript
from tollway.dialects.city.front import CityCodec
from tollway.dialects.city.services import Caller, Service
from tollway.dialects.media import audio, images
from tollway.dialects.media.routes import cannot
from tollway.providers.base import ChatProvider, Speaker, Transcriber
from tollway.providers.kinds import SPECS
from tollway.routing.call import Call
from tollway.routing.catalog import Route
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse
from tollway.store.tasks import Task
from tollway.tasks.engine import IMAGE
from tollway.tasks.engine import VIDEO as VIDEO_KIND
from tollway.tasks.routes import decode_video, engine_of, task_view

_encoder = msgspec.json.Encoder()
Answer = Response | EventStreamResponse
TEXT, STREAM = CityCodec(stream=False), CityCodec(stream=True)


def _json(body: dict[str, Any]) -> bytes:
    """A City body (its ``studio_id`` checked already) as the OpenAI-shaped decoders read it."""
    return _encoder.encode({k: v for k, v in body.items() if k != "studio_id"})


def _owner(caller: Caller) -> str | None:
    identity = caller.identity
    if identity is None or (identity.key is None and identity.is_admin):
        return None
    return identity.owner


def _task_meta(task: Task) -> dict[str, Any]:
    return {"task_id": task.id, "status": task.status, "model": task.model, "created": int(task.created_at)}


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
                    "default_modes": list(m.modalities), "callable": gw.catalog.callable(m),
                    # what routes it (the web console's models page shows the admin this)
                    "provider": m.provider, "upstream_id": m.upstream_id, "aliases": list(m.aliases),
                    "fallbacks": list(m.fallbacks)})
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

    @service.action("image", summary="Image generation, as a task (poll GET /v1/ai/task?id=)")
    async def image(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        req = images.decode(_json(body), default_model=None)
        task = await engine_of(request).submit(
            request, call, kind=IMAGE, shape="city", model=req.model, capability=IMAGES,
            payload={"image": msgspec.structs.asdict(req.canonical)},
            bound=Bound(len(req.canonical.prompt) // 3 + 8, 0, count=req.canonical.n))
        return _task_meta(task)

    @service.action("video", summary="Video generation, as a task (poll GET /v1/ai/task?id=)")
    async def video(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        body = {k: v for k, v in body.items() if k != "studio_id"}
        if isinstance(body.get("seconds"), int):
            body["seconds"] = str(body["seconds"])
        req, model = decode_video(body, None, None)
        task = await engine_of(request).submit(
            request, call, kind=VIDEO_KIND, shape="city", model=model, capability=VIDEO,
            payload={"video": msgspec.structs.asdict(req)}, bound=Bound(len(req.prompt) // 3 + 8, 0, units=req.seconds))
        return _task_meta(task)

    @service.action("task", methods=("GET",), summary="One task of the caller (?id=)")
    async def task(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        engine = engine_of(request)
        found = await engine.repo.get(str(body.get("id") or ""), _owner(caller))
        if found is None:
            raise NotFound(f"No task with id '{body.get('id')}'.", code="task_not_found")
        return task_view(engine, request, found)

    @service.action("cancel", summary="Cancel a task of the caller ({id})")
    async def cancel(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        engine = engine_of(request)
        return task_view(engine, request, await engine.cancel(str(body.get("id") or ""), _owner(caller)))

    @service.action("tts", summary="Text-to-speech: {model, input, voice, format?} -> {audio (base64), ...}")
    async def tts(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        pipeline: ChatPipeline = request.app.state.pipeline
        fields = {"model": body.get("model"), "input": body.get("input", body.get("text")),
                  "voice": body.get("voice", "alloy"), "response_format": body.get("format", "mp3"),
                  "speed": body.get("speed"), "instructions": body.get("instructions")}
        req = audio.decode_speech(_json({k: v for k, v in fields.items() if v is not None}))
        chars = len(req.canonical.input)

        async def work(route: Route, provider: ChatProvider, credential: Credential) -> Speech:
            if not isinstance(provider, Speaker):
                raise cannot(route, "speech")
            return await provider.speak(req.canonical, upstream_model=route.model.upstream_id, credential=credential)

        result = await pipeline.media(request, call, req.model, SPEECH, work,
                                      bound=Bound(chars // 3 + 8, 0, units=chars))
        call.made(units=chars)
        call.usage(result.usage or Usage(input_tokens=chars // 4 + 1))
        return {"model": req.model, "format": req.canonical.response_format, "media_type": result.media_type,
                "audio": base64.b64encode(result.data).decode(), "characters": chars}

    @service.action("asr", summary="Speech recognition: {model, audio (base64), filename?, language?} -> {text, ...}")
    async def asr(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        pipeline: ChatPipeline = request.app.state.pipeline
        data = body.get("audio")
        if not isinstance(data, str) or not data:
            raise InvalidRequest("'audio' is required: the recording, base64-encoded.", param="audio")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("'audio' is not valid base64.", param="audio") from None
        filename = body.get("filename") or f"audio.{body.get('format') or 'wav'}"
        fields = [(k, str(body[k])) for k in ("model", "language", "prompt") if body.get(k) is not None]
        req = audio.decode_transcription(fields, str(filename), raw)
        seconds = req.seconds_bound

        async def work(route: Route, provider: ChatProvider, credential: Credential) -> Transcript:
            if not isinstance(provider, Transcriber):
                raise cannot(route, "transcriptions")
            return await provider.transcribe(req.canonical, upstream_model=route.model.upstream_id,
                                             credential=credential)

        result = await pipeline.media(request, call, req.model, TRANSCRIPTION, work,
                                      bound=Bound(seconds * 25 + 8, 4096, units=seconds))
        heard = round(result.duration) if result.duration is not None else seconds
        call.made(units=heard)
        call.usage(result.usage or Usage(input_tokens=heard * 25, output_tokens=len(result.text) // 4 + 1))
        return {"model": req.model, "text": result.text, "language": result.language, "duration": result.duration,
                "segments": [{"start": g.start, "end": g.end, "text": g.text} for g in result.segments]}

    return service
