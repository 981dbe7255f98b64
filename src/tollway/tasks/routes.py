"""Routes of the tasks: seed 003's asynchronous images and its task API, OpenAI's videos, and the
signed URLs of their results.

Seed 003 (platform error body):
  ``POST /api/v1/images/generations``  ->  ``{created, data: [], task_id, provider_task_id: null,
      status: "pending", model}`` at once (``prompt_required`` / ``model_required`` first); the
      images are made as a task. Credits: the model's ``credit_cost`` per image (times ``n``) and
      its token prices, held now, charged on success, released on failure or cancel.
  ``GET /api/v1/tasks/{id}``  ->  the task (``task_view``): ``status`` pending | running |
      succeeded | failed | cancelled, ``progress`` (percent, where known), ``data`` (the result's
      assets, each an expiring signed ``url``), ``error`` ({code, message}), ``cost`` (credits).
  ``GET /api/v1/tasks?limit=&after=``  ->  ``{object: "list", data: [task...], has_more}``.
  ``POST /api/v1/tasks/{id}/cancel``  ->  the task, cancelled (a final task is returned as it is).
OpenAI's videos (``/v1/videos``, and under ``/api/v1`` and ``/v1/ai``): create (JSON or multipart
with ``input_reference``), retrieve, list, delete, ``/content`` (the video's bytes): always a task.
A task another key owns is 404. ``GET /blobs/{name}?expires=&signature=`` serves a result to
whoever holds its signed URL, until it expires.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.billing.admission import Bound
from tollway.core.errors import InvalidRequest, NotFound, PermissionDenied, require
from tollway.core.json_input import body_loads
from tollway.core.media import IMAGES, VIDEO, VideoRequest
from tollway.core.money import MICRO
from tollway.core.names import DIALECT_OPENAI, DIALECT_PLATFORM
from tollway.dialects.media import images
from tollway.dialects.media.routes import read_form
from tollway.dialects.openai.errors import openai_error_body, platform_error_body
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse, Handler, JSONBytes, Render, dialect_endpoint, read_body
from tollway.store.blobs import media_type_of
from tollway.store.tasks import CANCELLED, FAILED, PENDING, RUNNING, SUCCEEDED, Task
from tollway.tasks.engine import IMAGE, TaskEngine
from tollway.tasks.engine import VIDEO as VIDEO_KIND

MAX_LIST: Final = 100
VIDEO_STATUS: Final = {PENDING: "queued", RUNNING: "in_progress", SUCCEEDED: "completed", FAILED: "failed",
                       CANCELLED: "failed"}
DEFAULT_VIDEO_MODEL: Final = "sora-2"
_SIZE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
MAX_REFERENCE: Final = 10 * 1024 * 1024


def engine_of(request: Request) -> TaskEngine:
    """The app's task engine (``app.state.tasks``)."""
    engine: TaskEngine = request.app.state.tasks
    return engine


async def _owner(request: Request, call: Call) -> str | None:
    """The caller's tasks: a key's own; the admin's view is every task (None)."""
    pipeline: ChatPipeline = request.app.state.pipeline
    identity = await pipeline.identify(request, call, direct=False)
    if identity.key is None and identity.is_admin:
        return None
    return identity.owner


def _assets(engine: TaskEngine, request: Request, task: Task) -> list[dict[str, Any]]:
    if task.status != SUCCEEDED or task.result is None:
        return []
    out = []
    for asset in task.result.get("assets") or ():
        item: dict[str, Any] = {"url": engine.url(request, asset["blob"]), "media_type": asset["media_type"],
                                "bytes": asset.get("bytes")}
        if asset.get("revised_prompt"):
            item["revised_prompt"] = asset["revised_prompt"]
        out.append(item)
    return out


def task_view(engine: TaskEngine, request: Request, task: Task) -> dict[str, Any]:
    """A task as seed 003's task API shows it."""
    error = {"code": task.error_code, "message": task.error} if task.error_code else None
    return {
        "id": task.id, "task_id": task.id, "object": "task", "kind": task.kind, "status": task.status,
        "progress": task.progress, "model": task.model, "provider_task_id": task.provider_task_id,
        "created": int(task.created_at), "updated": int(task.updated_at),
        "finished": int(task.finished_at) if task.finished_at is not None else None,
        "data": _assets(engine, request, task), "error": error,
        "cost": task.cost_micro / MICRO, "cost_micro": task.cost_micro,
        "usage": task.result.get("usage") if task.result else None,
    }


def video_view(task: Task) -> dict[str, Any]:
    """A video task as OpenAI's ``Video`` object."""
    spec = task.request.get("video") or {}
    error = None
    if task.status in (FAILED, CANCELLED):
        error = {"code": task.error_code or "failed", "message": task.error or "The video failed."}
    progress = 100 if task.status == SUCCEEDED else (task.progress or 0)
    return {
        "id": task.id, "object": "video", "model": task.model, "status": VIDEO_STATUS[task.status],
        "progress": progress, "created_at": int(task.created_at),
        "completed_at": int(task.finished_at) if task.status == SUCCEEDED and task.finished_at else None,
        "expires_at": None, "prompt": spec.get("prompt"), "seconds": str(spec.get("seconds", 4)),
        "size": spec.get("size") or "720x1280", "remixed_from_video_id": None, "error": error,
    }


class TaskRoutes:
    def __init__(self, dialect: str, render: Render) -> None:
        self.dialect = dialect
        self.render = render

    def _guard(self, handler: Handler) -> Callable[[Request], Awaitable[Response | EventStreamResponse]]:
        return dialect_endpoint(self.dialect, self.render, handler)

    # seed 003 ----------------------------------------------------------------------------------

    async def image_task(self, request: Request, call: Call) -> Response:
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        await pipeline.identify(request, call)
        req = images.decode(await read_body(request, gw.options.max_body_bytes), default_model=None)
        spec = msgspec.structs.asdict(req.canonical)
        task = await engine_of(request).submit(request, call, kind=IMAGE, shape="platform", model=req.model,
                                             capability=IMAGES, payload={"image": spec},
                                             bound=Bound(len(req.canonical.prompt) // 3 + 8, 0, count=req.canonical.n))
        return JSONBytes({"created": int(task.created_at), "data": [], "task_id": task.id,
                          "provider_task_id": task.provider_task_id, "status": task.status, "model": task.model},
                         headers={"location": f"/api/v1/tasks/{task.id}"})

    async def get_task(self, request: Request, call: Call) -> Response:
        owner = await _owner(request, call)
        engine = engine_of(request)
        task = await engine.repo.get(request.path_params["id"], owner)
        if task is None:
            raise NotFound(f"No task with id '{request.path_params['id']}'.", code="task_not_found")
        return JSONBytes(task_view(engine, request, task))

    async def list_tasks(self, request: Request, call: Call) -> Response:
        owner = await _owner(request, call)
        engine = engine_of(request)
        limit = _limit(request)
        tasks = await engine.repo.page(owner=owner, limit=limit + 1, after=request.query_params.get("after"))
        return JSONBytes({"object": "list", "data": [task_view(engine, request, t) for t in tasks[:limit]],
                          "has_more": len(tasks) > limit})

    async def cancel_task(self, request: Request, call: Call) -> Response:
        owner = await _owner(request, call)
        engine = engine_of(request)
        task = await engine.cancel(request.path_params["id"], owner)
        return JSONBytes(task_view(engine, request, task))

    # OpenAI's videos -----------------------------------------------------------------------------

    async def create_video(self, request: Request, call: Call) -> Response:
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        await pipeline.identify(request, call)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            fields, filename, data = await read_form(request, gw.options.max_upload_bytes, field="input_reference")
            body: dict[str, Any] = dict(fields)
            reference = data
            reference_type = media_type_of(filename or "") if data is not None else None
        else:
            body = body_loads(await read_body(request, gw.options.max_body_bytes), _object)
            reference, reference_type = None, None
        req, model = decode_video(body, reference, reference_type)
        spec = msgspec.structs.asdict(req)
        if req.reference is not None:
            spec["reference"] = base64.b64encode(req.reference).decode()
        task = await engine_of(request).submit(request, call, kind=VIDEO_KIND, shape="openai", model=model,
                                             capability=VIDEO, payload={"video": spec},
                                             bound=Bound(len(req.prompt) // 3 + 8, 0, units=req.seconds))
        return JSONBytes(video_view(task))

    async def _video(self, request: Request, call: Call) -> Task:
        owner = await _owner(request, call)
        task = await engine_of(request).repo.get(request.path_params["id"], owner)
        if task is None or task.kind != VIDEO_KIND:
            raise NotFound(f"No video with id '{request.path_params['id']}'.", code="video_not_found")
        return task

    async def get_video(self, request: Request, call: Call) -> Response:
        return JSONBytes(video_view(await self._video(request, call)))

    async def video_content(self, request: Request, call: Call) -> Response:
        task = await self._video(request, call)
        if task.status != SUCCEEDED or not task.result or not task.result.get("assets"):
            raise InvalidRequest(f"Video '{task.id}' is {VIDEO_STATUS[task.status]}: its content is not ready.",
                                 code="video_not_ready")
        variant = request.query_params.get("variant", "video")
        if variant != "video":
            raise InvalidRequest(f"Variant {variant!r} is not kept: only 'video' is.", param="variant")
        asset = task.result["assets"][0]
        data = await engine_of(request).blobs.get(asset["blob"])
        if data is None:
            raise NotFound(f"The content of video '{task.id}' has expired.", code="video_expired")
        return Response(data, media_type=asset["media_type"])

    async def list_videos(self, request: Request, call: Call) -> Response:
        owner = await _owner(request, call)
        limit = _limit(request)
        order = request.query_params.get("order", "desc")
        require(order in ("asc", "desc"), "order must be 'asc' or 'desc'.", "order")
        tasks = await engine_of(request).repo.page(owner=owner, kind=VIDEO_KIND, limit=limit + 1,
                                                 after=request.query_params.get("after"),
                                                 newest_first=order == "desc")
        data = [video_view(t) for t in tasks[:limit]]
        return JSONBytes({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": len(tasks) > limit})

    async def delete_video(self, request: Request, call: Call) -> Response:
        task = await self._video(request, call)
        engine = engine_of(request)
        if not task.final:
            await engine.cancel(task.id, task.owner)
        await engine.repo.delete(task.id, task.owner)
        if task.result is not None:
            for asset in task.result.get("assets") or ():
                await engine.blobs.delete(asset["blob"])
        return JSONBytes({"id": task.id, "object": "video.deleted", "deleted": True})

    def platform_routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/images/generations", self._guard(self.image_task), methods=["POST"]),
            Route("/api/v1/tasks", self._guard(self.list_tasks), methods=["GET"]),
            Route("/api/v1/tasks/{id}", self._guard(self.get_task), methods=["GET"]),
            Route("/api/v1/tasks/{id}/cancel", self._guard(self.cancel_task), methods=["POST"]),
        ]

    def video_routes(self, prefix: str) -> list[BaseRoute]:
        return [
            Route(f"{prefix}/videos", self._guard(self.create_video), methods=["POST"]),
            Route(f"{prefix}/videos", self._guard(self.list_videos), methods=["GET"]),
            Route(f"{prefix}/videos/{{id}}", self._guard(self.get_video), methods=["GET"]),
            Route(f"{prefix}/videos/{{id}}", self._guard(self.delete_video), methods=["DELETE"]),
            Route(f"{prefix}/videos/{{id}}/content", self._guard(self.video_content), methods=["GET"]),
        ]


_object = msgspec.json.Decoder(dict[str, Any])


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "20")
    require(raw.isdigit() and 1 <= int(raw) <= MAX_LIST, f"limit must be an integer from 1 to {MAX_LIST}.", "limit")
    return int(raw)


def decode_video(body: dict[str, Any], reference: bytes | None,
                 reference_type: str | None) -> tuple[VideoRequest, str]:
    """OpenAI's ``CreateVideoBody`` (its form fields are strings): the request and its model."""
    model = body.get("model") or DEFAULT_VIDEO_MODEL
    require(isinstance(model, str), "'model' must be a string.", "model")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("The 'prompt' field is required.", code="prompt_required", param="prompt")
    seconds = body.get("seconds", "4")
    require(isinstance(seconds, (str, int)) and str(seconds).isdigit() and 1 <= int(seconds) <= 60,
            "'seconds' must be a whole number of seconds from 1 to 60 (Sora takes 4, 8 or 12).", "seconds")
    size = body.get("size")
    if size is not None and not (isinstance(size, str) and _SIZE.match(size)):
        raise InvalidRequest(f"Size {size!r} is not supported: give WIDTHxHEIGHT, e.g. 1280x720.", param="size")
    unknown = sorted(set(body) - {"model", "prompt", "seconds", "size", "input_reference"})
    require(not unknown, f"Unknown parameter: '{unknown[0] if unknown else ''}'.", unknown[0] if unknown else None)
    if reference is not None:
        require(len(reference) <= MAX_REFERENCE, f"input_reference is larger than {MAX_REFERENCE} bytes.",
                "input_reference")
        require((reference_type or "").startswith("image/"),
                "input_reference must be an image (png, jpeg or webp).", "input_reference")
    return VideoRequest(prompt=prompt, seconds=int(seconds), size=size, reference=reference,
                        reference_type=reference_type), model


async def blob(request: Request) -> Response:
    """``GET /blobs/{name}?expires=&signature=``: a task's result, to the holder of its signed URL."""
    engine = engine_of(request)
    name = request.path_params["name"]
    q = request.query_params
    if not engine.signer.valid(name, q.get("expires", ""), q.get("signature", "")):
        err = PermissionDenied("This link is invalid or has expired: ask the task again for a fresh one.",
                               code="link_expired")
        return JSONBytes(openai_error_body(err), status_code=403)
    data = await engine.blobs.get(name)
    if data is None:
        return JSONBytes(openai_error_body(NotFound("This file no longer exists.")), status_code=404)
    return Response(data, media_type=media_type_of(name), headers={"cache-control": "private, max-age=300"})


def task_routes() -> list[BaseRoute]:
    platform = TaskRoutes(DIALECT_PLATFORM, platform_error_body)
    openai = TaskRoutes(DIALECT_OPENAI, openai_error_body)
    return [*platform.platform_routes(), *openai.video_routes("/v1"), *openai.video_routes("/v1/ai"),
            *platform.video_routes("/api/v1"), Route("/blobs/{name}", blob, methods=["GET"])]

