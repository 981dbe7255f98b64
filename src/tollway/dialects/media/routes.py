"""Routes of OpenAI's non-chat surfaces: ``/v1/embeddings``, ``/v1/images/generations``,
``/v1/audio/speech``, ``/v1/audio/transcriptions`` (and the same under ``/api/v1`` with the
platform error body, and under ``/v1/ai`` for an OpenAI SDK whose base URL is City's).

Each request goes through ``ChatPipeline.media``: identity, the model's surface checked, the
key's authorization and limits, the credit hold, the model's pool with retries and fallbacks,
the request log. On each attempt an upstream that has OpenAI's endpoint for the surface gets the
request's own bytes (model rewritten) and its answer is forwarded; any other gets the canonical
request (``providers.base``: ``Embedder``, ``ImageMaker``, ``Speaker``, ``Transcriber``) and its
answer is encoded in OpenAI's shape here. Seed 003's asynchronous images (``/api/v1/images/
generations``) and the videos are tasks: ``tasks.routes``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.billing.admission import Bound
from tollway.core.catalog import Credential
from tollway.core.chat import Usage
from tollway.core.errors import InvalidRequest, PayloadTooLarge
from tollway.core.media import EMBEDDINGS, IMAGES, SPEECH, TRANSCRIPTION, Images
from tollway.core.names import (
    DIALECT_OPENAI,
    DIALECT_PLATFORM,
    WIRE_EMBEDDINGS,
    WIRE_IMAGES,
    WIRE_SPEECH,
    WIRE_TRANSCRIPTIONS,
)
from tollway.dialects.media import audio, embeddings, images
from tollway.dialects.openai.errors import openai_error_body, platform_error_body
from tollway.providers.base import ChatProvider, Embedder, ImageMaker, Speaker, Transcriber, WireSender, is_wire_sender
from tollway.providers.http import UpstreamStream
from tollway.providers.openai_wire.media import multipart
from tollway.routing.call import Call
from tollway.routing.catalog import Route as ModelRoute
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse, Handler, Render, dialect_endpoint, read_body
from tollway.store.blobs import extension
from tollway.tasks.engine import TaskEngine

_encoder = msgspec.json.Encoder()


def cannot(route: ModelRoute, surface: str) -> InvalidRequest:
    return InvalidRequest(f"Model '{route.model.id}' cannot serve {surface}: its provider '{route.provider}' has "
                          f"no {surface} API.", code="model_not_supported", param="model")


def _wire(provider: ChatProvider, wire: str) -> WireSender | None:
    """The provider, if it has OpenAI's endpoint for ``wire`` (its requests go as bytes)."""
    return provider if is_wire_sender(provider) and wire in provider.wires else None


async def stored_urls(engine: TaskEngine, request: Request, prefix: str, result: Images) -> list[str]:
    """Each image kept in the blob store, as an expiring signed URL on this gateway."""
    urls = []
    for i, image in enumerate(result.images):
        name = f"{prefix}-{i}.{extension(image.media_type)}"
        await engine.blobs.put(name, image.data)
        urls.append(engine.url(request, name))
    return urls


class MediaRoutes:
    """The handlers, bound to one error envelope (OpenAI's or the platform's)."""

    def __init__(self, dialect: str, render: Render) -> None:
        self.dialect = dialect
        self.render = render

    def _guard(self, handler: Handler) -> Callable[[Request], Awaitable[Response | EventStreamResponse]]:
        return dialect_endpoint(self.dialect, self.render, handler)

    # POST /embeddings ----------------------------------------------------------------------

    async def embeddings(self, request: Request, call: Call) -> Response:
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        await pipeline.identify(request, call)
        req = embeddings.decode(await read_body(request, gw.options.max_body_bytes))

        async def work(route: ModelRoute, provider: ChatProvider, credential: Credential) -> tuple[bytes, Usage]:
            upstream = route.model.upstream_id
            if (sender := _wire(provider, WIRE_EMBEDDINGS)) is not None:
                raw = await sender.send(WIRE_EMBEDDINGS, _encoder.encode({**req.body, "model": upstream}),
                                        credential=credential)
                body, usage = embeddings.read_answer(route.provider, raw, req.model)
                return body, usage or Usage(input_tokens=req.tokens)
            if isinstance(provider, Embedder):
                result = await provider.embed(req.canonical, upstream_model=upstream, credential=credential)
                return embeddings.encode(result, req.model, req.encoding_format), result.usage
            raise cannot(route, "embeddings")

        body, usage = await pipeline.media(request, call, req.model, EMBEDDINGS, work, bound=Bound(req.tokens, 0))
        return pipeline.whole(call, body, usage)

    # POST /images/generations (synchronous) ------------------------------------------------

    async def images(self, request: Request, call: Call) -> Response:
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        engine: TaskEngine = request.app.state.tasks
        await pipeline.identify(request, call)
        raw = await read_body(request, gw.options.max_body_bytes)
        req = images.decode(raw)
        n = req.canonical.n

        async def work(route: ModelRoute, provider: ChatProvider,
                       credential: Credential) -> tuple[bytes, Usage | None, int]:
            upstream = route.model.upstream_id
            if (sender := _wire(provider, WIRE_IMAGES)) is not None:
                out = await sender.send(WIRE_IMAGES, _encoder.encode({**req.body, "model": upstream}),
                                        credential=credential)
                return images.read_answer(route.provider, out, req.model)
            if isinstance(provider, ImageMaker):
                result = await provider.make_images(req.canonical, upstream_model=upstream, credential=credential)
                urls = None
                if req.response_format == "url":
                    urls = await stored_urls(engine, request, call.row.id, result)
                return images.encode(result, int(time.time()), urls), result.usage, len(result.images)
            raise cannot(route, "images")

        body, usage, made = await pipeline.media(request, call, req.model, IMAGES, work,
                                                 bound=Bound(len(req.canonical.prompt) // 3 + 8, 0, count=n))
        call.made(count=made)
        return pipeline.whole(call, body, usage)

    # POST /audio/speech ----------------------------------------------------------------------

    async def speech(self, request: Request, call: Call) -> Response | EventStreamResponse:
        """Bytes streamed through from an upstream with OpenAI's endpoint (audio, or its SSE
        events with ``stream_format: sse``); from any other, the whole audio at once (SSE is
        refused there). Billed per character of input where the model prices characters."""
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        await pipeline.identify(request, call)
        req = audio.decode_speech(await read_body(request, gw.options.max_body_bytes))
        chars = len(req.canonical.input)

        async def work(route: ModelRoute, provider: ChatProvider,
                       credential: Credential) -> UpstreamStream | tuple[bytes, str, Usage | None]:
            upstream = route.model.upstream_id
            if (sender := _wire(provider, WIRE_SPEECH)) is not None:
                return await sender.send_stream(WIRE_SPEECH, _encoder.encode({**req.body, "model": upstream}),
                                                credential=credential)
            if isinstance(provider, Speaker):
                if req.sse:
                    raise InvalidRequest(f"Model '{route.model.id}' cannot stream speech as events "
                                         "(stream_format 'sse'): ask for 'audio'.", param="stream_format")
                result = await provider.speak(req.canonical, upstream_model=upstream, credential=credential)
                return result.data, result.media_type, result.usage
            raise cannot(route, "speech")

        answer = await pipeline.media(request, call, req.model, SPEECH, work,
                                      bound=Bound(chars // 3 + 8, 0, units=chars))
        call.made(units=chars)
        if isinstance(answer, UpstreamStream):
            call.usage(Usage(input_tokens=chars // 4 + 1))
            return pipeline.relay_stream(call, answer, req.media_type)
        data, media_type, usage = answer
        return pipeline.whole(call, data, usage or Usage(input_tokens=chars // 4 + 1), media_type)

    # POST /audio/transcriptions ------------------------------------------------------------

    async def transcriptions(self, request: Request, call: Call) -> Response | EventStreamResponse:
        """A multipart upload (at most TOLLWAY_MAX_UPLOAD_BYTES: 413 beyond). Asked of the upstream
        in its fullest form and rendered in the format asked for; ``stream: true`` is forwarded
        to an upstream with OpenAI's endpoint (its events as they come). Billed per second of
        audio where the model prices seconds (from the answer's duration, else the file's size),
        and per token where the answer reports tokens."""
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        await pipeline.identify(request, call)
        fields, filename, data = await read_form(request, gw.options.max_upload_bytes)
        req = audio.decode_transcription(fields, filename, data)

        async def work(route: ModelRoute, provider: ChatProvider, credential: Credential) -> Any:
            upstream = route.model.upstream_id
            sender = _wire(provider, WIRE_TRANSCRIPTIONS)
            if req.stream:
                if sender is None:
                    raise InvalidRequest(f"Model '{route.model.id}' cannot stream a transcription.", param="stream")
                form = [(k, upstream if k == "model" else v) for k, v in req.fields]
                body, content_type = multipart(form, [("file", req.canonical.filename, req.canonical.media_type,
                                                       req.canonical.audio)])
                return await sender.send_stream(WIRE_TRANSCRIPTIONS, body, credential=credential,
                                                content_type=content_type)
            if isinstance(provider, Transcriber):
                return await provider.transcribe(req.canonical, upstream_model=upstream, credential=credential)
            raise cannot(route, "transcriptions")

        seconds = req.seconds_bound
        answer = await pipeline.media(request, call, req.model, TRANSCRIPTION, work,
                                      bound=Bound(seconds * 25 + 8, 4096, units=seconds))
        if isinstance(answer, UpstreamStream):
            call.made(units=seconds)
            return pipeline.relay_stream(call, answer, "text/event-stream")
        heard = round(answer.duration) if answer.duration is not None else seconds
        call.made(units=heard)
        body, media_type = audio.render_transcript(answer, req.response_format)
        usage = answer.usage or Usage(input_tokens=heard * 25, output_tokens=len(answer.text) // 4 + 1)
        return pipeline.whole(call, body, usage, media_type)

    def routes(self, prefix: str, *, images_sync: bool = True) -> list[BaseRoute]:
        out: list[BaseRoute] = [
            Route(f"{prefix}/embeddings", self._guard(self.embeddings), methods=["POST"]),
            Route(f"{prefix}/audio/speech", self._guard(self.speech), methods=["POST"]),
            Route(f"{prefix}/audio/transcriptions", self._guard(self.transcriptions), methods=["POST"]),
        ]
        if images_sync:
            out.append(Route(f"{prefix}/images/generations", self._guard(self.images), methods=["POST"]))
        return out


async def read_form(request: Request, limit: int, *,
                    field: str = "file") -> tuple[list[tuple[str, str]], str | None, bytes | None]:
    """A multipart form of at most ``limit`` bytes (413 beyond, before the rest is read): its text
    fields, and its one file in ``field`` (name and bytes; None when absent)."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise InvalidRequest(f"Send the request as multipart/form-data, with the file in the '{field}' field.")
    try:
        raw = await read_body(request, limit)
    except PayloadTooLarge:
        raise PayloadTooLarge(f"The upload exceeds the {limit} byte limit.") from None

    async def body() -> AsyncGenerator[bytes, None]:
        yield raw

    parser = MultiPartParser(request.headers, body(), max_files=1, max_fields=32, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"Unreadable multipart form: {exc.message}") from None
    fields: list[tuple[str, str]] = []
    filename, data = None, None
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name == field:
                    filename, data = value.filename or "", await value.read()
            else:
                fields.append((name, value))
    finally:
        await form.close()
    return fields, filename, data


def media_routes() -> list[BaseRoute]:
    openai = MediaRoutes(DIALECT_OPENAI, openai_error_body)
    platform = MediaRoutes(DIALECT_PLATFORM, platform_error_body)
    return (openai.routes("/v1") + openai.routes("/v1/ai")
            # seed 003's /api/v1/images/generations is a task (tasks.routes)
            + platform.routes("/api/v1", images_sync=False))
