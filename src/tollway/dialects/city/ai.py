"""The ``ai`` service: models by identity, text, stream, and the media actions' placeholders.

``POST /v1/ai/chat/completions`` is OpenAI's route mounted under ``/v1/ai`` (see app.py), so an
OpenAI SDK with ``base_url=<host>/v1/ai`` works; the actions here are City's own shapes.

``POST /v1/ai/stream`` answers Server-Sent Events, one JSON object per ``data:`` line:

    event: start    data: {"id": "msg_...", "model": "..."}
    event: delta    data: {"type": "text", "text": "..."}        (or "type": "reasoning")
    event: done     data: {"id": "msg_...", "finish_reason": "stop", "usage": {"input_tokens": n, "output_tokens": n}}
    event: error    data: {"error": {"code": "...", "message": "..."}}   (after the headers, instead of done)
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request

from tollway.core.catalog import Credential, EnvRequirement, ModelInfo
from tollway.core.chat import (
    ChatRequest,
    Finish,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextBlock,
    TextDelta,
    Usage,
    UsageReport,
)
from tollway.core.errors import InvalidRequest, NotImplementedYet, TollwayError
from tollway.core.names import DIALECT_CITY
from tollway.dialects.city.errors import city_error_body
from tollway.dialects.city.registry import Caller, Service
from tollway.providers.base import ChatProvider
from tollway.providers.registry import SPECS
from tollway.routing.admission import Bound, estimate_tokens
from tollway.routing.catalog import Route
from tollway.routing.gateway import Call, Gateway
from tollway.routing.responses import EventStreamResponse, first_event, guarded_stream, unless_disconnected

_encoder = msgspec.json.Encoder()
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


def _request(body: dict[str, Any], *, stream: bool) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required", param="model")
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise InvalidRequest("system must be a string", param="system")
        messages.append(Message(role="system", content=(TextBlock(text=system),)))
    prompt, history = body.get("prompt"), body.get("messages")
    if isinstance(history, list) and history:
        for i, m in enumerate(history):
            if not (isinstance(m, dict) and m.get("role") in ("user", "assistant", "system")
                    and isinstance(m.get("content"), str)):
                raise InvalidRequest(f"messages[{i}] must be {{role: user|assistant|system, content: string}}",
                                     param="messages")
            messages.append(Message(role=m["role"], content=(TextBlock(text=m["content"]),)))
    elif isinstance(prompt, str) and prompt:
        messages.append(Message(role="user", content=(TextBlock(text=prompt),)))
    else:
        raise InvalidRequest("prompt (a non-empty string) or messages is required", param="prompt")
    max_tokens, temperature = body.get("max_tokens"), body.get("temperature")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise InvalidRequest("max_tokens must be a positive integer", param="max_tokens")
    if temperature is not None and (not isinstance(temperature, int | float) or isinstance(temperature, bool)):
        raise InvalidRequest("temperature must be a number", param="temperature")
    return ChatRequest(model=model, messages=tuple(messages), stream=stream, include_usage=True,
                       max_tokens=max_tokens, temperature=temperature, dialect=DIALECT_CITY)


def _usage(u: Usage) -> dict[str, int]:
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}


def _sse(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(obj) + b"\n\n"


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
    async def text(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        req = _request(body, stream=False)
        call.row.stream = False

        async def work(route: Route, provider: ChatProvider, credential: Credential) -> dict[str, Any]:
            call.dropped([*provider.unsupported(req), *req.lossy])
            resp = await provider.complete(req, upstream_model=route.model.upstream_id, credential=credential)
            call.usage(resp.usage)
            answer = "".join(b.text for b in resp.content if isinstance(b, TextBlock))
            return {"id": "msg_" + (resp.id or secrets.token_hex(8)).replace("-", ""), "role": "assistant",
                    "model": req.model, "parts": [{"type": "text", "text": answer}],
                    "finish_reason": resp.finish_reason, "usage": _usage(resp.usage)}

        del gw
        bound = Bound(estimate_tokens(msgspec.json.encode(body)), req.max_tokens)
        return await unless_disconnected(request, call.run(req.model, work, bound=bound))

    @service.action("stream", summary="Streaming generation (SSE; see the module doc for the events)")
    async def stream(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> EventStreamResponse:
        req = _request(body, stream=True)
        call.row.stream = True
        mid = "msg_" + secrets.token_hex(12)

        async def work(route: Route, provider: ChatProvider, credential: Credential
                       ) -> tuple[AsyncIterator[StreamEvent], StreamEvent]:
            call.dropped([*provider.unsupported(req), *req.lossy])
            events = provider.stream(req, upstream_model=route.model.upstream_id, credential=credential)
            return events, await first_event(events)

        bound = Bound(estimate_tokens(msgspec.json.encode(body)), req.max_tokens)
        events, first = await unless_disconnected(request, call.run(req.model, work, bound=bound))

        async def chunks() -> AsyncIterator[bytes]:
            usage, finish = Usage(), "stop"
            yield _sse("start", {"id": mid, "model": req.model})
            call.first_token()
            pending = [first]
            async for ev in _chain(pending, events):
                if isinstance(ev, TextDelta) and ev.text:
                    call.produced += 1  # what a client that cuts the stream pays for, without usage
                    yield _sse("delta", {"type": "text", "text": ev.text})
                elif isinstance(ev, ReasoningDelta) and ev.text:
                    call.produced += 1
                    yield _sse("delta", {"type": "reasoning", "text": ev.text})
                elif isinstance(ev, Finish):
                    finish = ev.reason
                elif isinstance(ev, UsageReport):
                    usage = ev.usage
                    call.usage(usage)
            yield _sse("done", {"id": mid, "finish_reason": finish, "usage": _usage(usage)})

        async def close() -> None:
            await events.aclose()  # type: ignore[attr-defined]

        def error_frame(err: TollwayError) -> bytes:
            return _sse("error", city_error_body(err))

        return guarded_stream(chunks(), call, error_frame, close)

    for name, capability in MEDIA.items():
        def make(capability: str = capability) -> Any:
            async def media(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
                raise NotImplementedYet(f"{capability} is not available yet: the media pipeline (async tasks) "
                                        "is not built. Text, stream and chat/completions work.")
            return media
        service.action(name, summary=f"{capability} (not available yet: 501)")(make())

    return service


async def _chain(first: list[StreamEvent], rest: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    for ev in first:
        yield ev
    async for ev in rest:
        yield ev
