"""Routes of the Responses API: ``POST /v1/responses`` and the stored responses around it,
under ``/v1`` (OpenAI's error body), ``/api/v1`` (the platform's) and ``/v1/ai`` (City's base URL
for OpenAI SDKs).

A response goes through the request pipeline with a ``ResponsesCodec`` made for it. The gateway
keeps the conversation state (``store``, default true as OpenAI's): the answer and its input
items are stored, owned by the caller (a key, the admin, a direct token), and
``previous_response_id`` is expanded into the items before the input. ``background: true`` runs
the response as a task of this process (its own request-log row and billing): the answer is its
``queued`` state, ``GET /v1/responses/{id}`` polls it, ``POST .../cancel`` cancels it. A stored
response costs nothing when read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from tollway.core.errors import InvalidRequest, NotFound, RateLimited, TollwayError
from tollway.core.names import DIALECT_PLATFORM, DIALECT_RESPONSES
from tollway.dialects.openai.errors import openai_error_body, platform_error_body
from tollway.dialects.responses.codec import failure
from tollway.dialects.responses.front import ResponsesCodec, ResponsesRequest
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse, JSONBytes, Render, dialect_endpoint, read_body
from tollway.routing.tokens import count_tokens
from tollway.store.responses import ResponseRepository, StoredResponse

log = logging.getLogger("tollway")
_UNFINISHED = ("queued", "in_progress")
DROP_HEADER = "x-tollway-drop-params"  # as drop_params: true in the body, for a client that cannot add a field
MAX_REFERENCES = 100  # item_reference items resolved in one request
_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def _new_id() -> str:
    return "resp_" + secrets.token_hex(24)


def _now() -> int:
    return int(time.time())


def stored_inputs(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's input items as ``input_items`` lists them: each with an id, a message's
    text as content parts."""
    out = []
    for i, item in enumerate(req.inputs()):
        item = dict(item)
        kind = item.get("type", "message")
        if kind == "message" and isinstance(item.get("content"), str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": part, "text": item["content"]}]
        if kind == "message":
            item.setdefault("status", "completed")
        item.setdefault("id", f"{_ID_PREFIX.get(kind, 'item')}_{req.ids}in{i}")
        out.append(item)
    return out


async def _never(disconnect: asyncio.Event) -> Message:
    """A background response's request: its client is gone by design; only the server's
    shutdown (``disconnect``) stops it."""
    await disconnect.wait()
    return {"type": "http.disconnect"}


class ResponsesRoutes:
    def __init__(self, dialect: str, render: Render, work: Background) -> None:
        self.dialect = dialect
        self.render = render
        self.work = work
        self.background = work.tasks  # response id -> its task, shared by every prefix

    def _guard(self, handler: Callable[[Request, Call], Awaitable[Response | EventStreamResponse]]) -> Callable[
            [Request], Awaitable[Response | EventStreamResponse]]:
        return dialect_endpoint(self.dialect, self.render, handler)

    # POST /responses ---------------------------------------------------------------------

    async def create(self, request: Request, call: Call) -> Response | EventStreamResponse:
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        identity = await pipeline.identify(request, call)
        raw = await read_body(request, gw.options.max_body_bytes)
        codec = ResponsesCodec(self.render, new_id=_new_id, now=_now)
        req = codec.decode(raw)
        req.drop = request.headers.get(DROP_HEADER, "").lower() in ("1", "true", "yes")
        owner = identity.owner
        await self._continue(gw.responses, owner, req)
        if req.data.get("background"):
            return await self._background(request, call, codec, req, owner, raw)
        response = await pipeline.serve(request, call, codec, raw=raw, context=req.context_size())
        if not req.store:
            return response
        if isinstance(response, EventStreamResponse):
            response.chunks = self._keeping(response.chunks, gw, owner, codec, req)
        else:
            await self._keep(gw, owner, codec, req)
        return response

    async def _continue(self, store: ResponseRepository, owner: str, req: ResponsesRequest) -> None:
        """The state a request builds on: the items its ``item_reference``s name, and the
        conversation before ``previous_response_id``."""
        items = req.data.get("input")
        if not isinstance(items, list):
            items = []
        references = sum(1 for item in items if item.get("type") == "item_reference")
        if references > MAX_REFERENCES:  # each one is a lookup in the store
            raise InvalidRequest(f"input holds {references} item references; at most {MAX_REFERENCES} are resolved "
                                 "per request (send the items, or continue with previous_response_id).",
                                 param="input")
        if references:
            req.raw_size = len(msgspec.json.encode(items))
        for i, item in enumerate(items):
            if item.get("type") == "item_reference":
                ref = item.get("id")
                found = await store.find_item(owner, ref) if isinstance(ref, str) else None
                if found is None:
                    raise NotFound(f"Item with id '{ref}' not found.", code="item_not_found", param=f"input[{i}]")
                items[i] = found
        previous = req.data.get("previous_response_id")
        if previous is None:
            return
        history = await store.conversation(owner, previous)
        if history is None:  # made by another process a moment ago, perhaps: its write lands within the interval
            await asyncio.sleep(store.interval * 2)
            history = await store.conversation(owner, previous)
        if history is None:
            raise NotFound(f"Previous response with id '{previous}' not found.", code="previous_response_not_found",
                           param="previous_response_id")
        req.history = history

    async def _keep(self, gw: Gateway, owner: str, codec: ResponsesCodec, req: ResponsesRequest) -> None:
        final = codec.final()
        if final is None:
            return
        retention = gw.options.response_retention
        gw.responses.keep(owner, final, stored_inputs(req), previous_id=req.data.get("previous_response_id"),
                          expires_at=time.time() + retention if retention else None,
                          encoded=req.encoded if final is req.final else None)
        self.work.purge_now_and_then(gw.responses)

    def _keeping(self, chunks: AsyncIterator[bytes], gw: Gateway, owner: str, codec: ResponsesCodec,
                 req: ResponsesRequest) -> AsyncIterator[bytes]:
        """The stream, its answer stored before the event that ends it goes out (a client that
        continues from it at once finds it)."""

        async def kept() -> AsyncIterator[bytes]:
            stored = False
            try:
                async for chunk in chunks:
                    if not stored and codec.final() is not None:
                        stored = True
                        try:
                            await self._keep(gw, owner, codec, req)
                        except Exception:  # the answer still goes out; the log says it was not kept
                            log.exception("could not store response %s", req.id)
                    yield chunk
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]

        return kept()

    # background --------------------------------------------------------------------------

    async def _background(self, request: Request, call: Call, codec: ResponsesCodec, req: ResponsesRequest,
                          owner: str, raw: bytes) -> Response:
        if req.stream:
            raise InvalidRequest("A background response cannot be streamed here: create it without stream, then "
                                 "poll GET /v1/responses/{id}.", param="stream")
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        if len(self.background) >= gw.options.max_background:
            raise RateLimited(f"This gateway process runs {len(self.background)} background responses, its most: "
                              "retry later, or without background.", retry_after=5, code="background_busy")
        queued = req.snapshot(status="queued", output=[])
        retention = gw.options.response_retention
        expires = time.time() + retention if retention else None
        previous = req.data.get("previous_response_id")
        await gw.responses.save(owner, queued, stored_inputs(req), previous_id=previous, expires_at=expires)
        work = gw.begin(f"{call.row.id}-bg", request.url.path, self.dialect)
        work.pin = call.pin
        assert call.identity is not None
        work.identify(call.identity)
        stop = asyncio.Event()
        detached = Request(request.scope, receive=lambda: _never(stop))

        async def run() -> None:
            final: dict[str, Any] | None = None
            try:
                try:
                    await asyncio.wait_for(pipeline.serve(detached, work, codec, raw=raw, context=req.context_size()),
                                           gw.options.background_timeout)
                    final = codec.final()
                except TollwayError as err:
                    work.finish(err.http_status, err)
                    final = req.snapshot(status="failed", output=[],
                                         error=failure(err.code, err.message, err.http_status))
                except TimeoutError:
                    work.finish(504, note="background response timed out")
                    final = req.snapshot(status="failed", output=[], error=failure(
                        "server_error", f"The response ran past {gw.options.background_timeout:g} s.", 504))
                except asyncio.CancelledError:  # cancelled by its owner (already stored), or the server stops
                    work.finish(499, note="background response cancelled")
                    final = req.snapshot(status="failed", output=[], error=failure(
                        "server_error", "The gateway stopped before this response finished.", 503))
                    raise
                except Exception:
                    log.exception("background response %s failed", req.id)
                    work.finish(500, note="background response failed")
                    final = req.snapshot(status="failed", output=[], error=failure(
                        "server_error", "The gateway failed while making this response.", 500))
            finally:
                self.background.pop(req.id, None)
                if final is not None:
                    with contextlib.suppress(Exception):
                        await gw.responses.update_if(owner, req.id, _UNFINISHED, final)

        self.background[req.id] = asyncio.get_running_loop().create_task(run(), name=f"response {req.id}")
        return JSONBytes(queued)

    # stored responses --------------------------------------------------------------------

    async def _stored(self, request: Request, call: Call) -> tuple[Gateway, str, StoredResponse]:
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        identity = await pipeline.identify(request, call)
        rid = request.path_params["response_id"]
        owner = identity.owner
        stored = await gw.responses.get(owner, rid)
        if stored is None:
            raise NotFound(f"Response with id '{rid}' not found.", code="response_not_found")
        return gw, owner, stored

    async def retrieve(self, request: Request, call: Call) -> Response:
        gw, _owner, stored = await self._stored(request, call)
        response = stored.response
        if stored.status in _UNFINISHED and stored.id not in self.background:
            started = float(response.get("created_at") or 0)
            if time.time() - started > gw.options.background_timeout + 60:  # its process is gone
                response = dict(response, status="failed", error=failure(
                    "server_error", "The gateway stopped before this response finished.", 503))
        return JSONBytes(response)

    async def delete(self, request: Request, call: Call) -> Response:
        gw, owner, stored = await self._stored(request, call)
        task = self.background.get(stored.id)
        if task is not None:
            task.cancel()
        await gw.responses.delete(owner, stored.id)
        return JSONBytes({"id": stored.id, "object": "response", "deleted": True})

    async def cancel(self, request: Request, call: Call) -> Response:
        gw, owner, stored = await self._stored(request, call)
        if not stored.response.get("background"):
            raise InvalidRequest("Only responses created with background: true can be cancelled.",
                                 param="response_id")
        if stored.status not in _UNFINISHED:
            return JSONBytes(stored.response)
        cancelled = dict(stored.response, status="cancelled")
        if await gw.responses.update_if(owner, stored.id, _UNFINISHED, cancelled):
            task = self.background.get(stored.id)
            if task is not None:  # on another process's, it runs on; its answer is not kept
                task.cancel()
            return JSONBytes(cancelled)
        again = await gw.responses.get(owner, stored.id)  # it finished meanwhile
        return JSONBytes(again.response if again is not None else cancelled)

    async def input_items(self, request: Request, call: Call) -> Response:
        _gw, _owner, stored = await self._stored(request, call)
        query = request.query_params
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            raise InvalidRequest("limit must be an integer", param="limit") from None
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100", param="limit")
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be asc or desc", param="order")
        items = stored.input if order == "asc" else list(reversed(stored.input))
        after = query.get("after")
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise InvalidRequest(f"No item with id '{after}' in this response's input.", param="after")
            items = items[ids.index(after) + 1:]
        page = items[:limit]
        return JSONBytes({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                          "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})

    # POST /responses/input_tokens ------------------------------------------------------------

    async def input_tokens(self, request: Request, call: Call) -> Response:
        gw: Gateway = request.app.state.gateway
        pipeline: ChatPipeline = request.app.state.pipeline
        identity = await pipeline.identify(request, call)
        raw = await read_body(request, gw.options.max_body_bytes)
        codec = ResponsesCodec(self.render, new_id=_new_id, now=_now)
        req = codec.decode(raw)
        await self._continue(gw.responses, identity.owner, req)
        canonical = req.canonical()
        gw.topology.resolve(canonical.model)  # a model the gateway does not have is a 404
        call.row.model = canonical.model
        return JSONBytes({"object": "response.input_tokens", "input_tokens": count_tokens(canonical)})

    def routes(self, prefix: str) -> list[BaseRoute]:
        base = f"{prefix}/responses"
        return [
            Route(base, self._guard(self.create), methods=["POST"]),
            Route(f"{base}/input_tokens", self._guard(self.input_tokens), methods=["POST"]),
            Route(base + "/{response_id}", self._guard(self.retrieve), methods=["GET"]),
            Route(base + "/{response_id}", self._guard(self.delete), methods=["DELETE"]),
            Route(base + "/{response_id}/cancel", self._guard(self.cancel), methods=["POST"]),
            Route(base + "/{response_id}/input_items", self._guard(self.input_items), methods=["GET"]),
        ]


class Background:
    """What the Responses API runs beside its requests: background responses (cancelled when
    the app stops), and the purge of expired responses (at most every ``PURGE_EVERY`` seconds,
    after a response was stored; an expired one is not found even before it is purged)."""

    PURGE_EVERY = 600.0

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.purged_at = time.monotonic()
        self.purging: asyncio.Task[int] | None = None

    def purge_now_and_then(self, store: ResponseRepository) -> None:
        if time.monotonic() - self.purged_at < self.PURGE_EVERY:
            return
        self.purged_at = time.monotonic()
        self.purging = asyncio.get_running_loop().create_task(store.purge(), name="purge stored responses")
        self.purging.add_done_callback(_log_purge)

    async def stop(self) -> None:
        if self.purging is not None:
            self.purging.cancel()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def _log_purge(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not purge expired responses: %s", task.exception())


def responses_routes(background: Background) -> list[BaseRoute]:
    openai = ResponsesRoutes(DIALECT_RESPONSES, openai_error_body, background)
    platform = ResponsesRoutes(DIALECT_PLATFORM, platform_error_body, background)
    return openai.routes("/v1") + platform.routes("/api/v1") + openai.routes("/v1/ai")
