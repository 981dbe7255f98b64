"""ASGI response pieces shared by every dialect's routes: JSON bodies, bounded body reads,
and a streaming response that notices a client disconnect at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tollway.core.errors import (
    ClientGone,
    InternalError,
    PayloadTooLarge,
    QuotaExceeded,
    ServerShuttingDown,
    TollwayError,
)
from tollway.core.names import DIALECT_ANTHROPIC
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.telemetry import tracing as _tracing

_encoder = msgspec.json.Encoder()
log = logging.getLogger("tollway")


class JSONBytes(Response):
    """A JSON response from already-encoded bytes or any msgspec-encodable object."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        body = content if isinstance(content, bytes) else _encoder.encode(content)
        super().__init__(body, status_code=status_code, headers=headers)


Render = Callable[[TollwayError], dict[str, Any]]
Handler = Callable[[Request, Call], Awaitable["Response | EventStreamResponse"]]


def error_response(err: TollwayError, render: Render, *, request_id: str | None = None) -> Response:
    """An error in a dialect's envelope, with Retry-After when the error carries one.

    ``x-should-retry`` (read by the OpenAI and Anthropic SDKs, and by Claude Code) says whether
    the same request may succeed later: not a refusal of the request or of its caller (a 4xx
    other than 408/409/429, or a spent monthly quota); a 5xx is left to the client's own rule.
    With a ``request_id`` (Anthropic's dialect), the id goes in the ``request-id`` header the
    SDK reads and in the envelope's ``request_id``."""
    headers = {}
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))  # up: a client that waits is let in
    status = err.http_status
    if status < 500:
        retry = status in (408, 409, 429) and not isinstance(err, QuotaExceeded)
        headers["x-should-retry"] = "true" if retry else "false"
    body = render(err)
    if request_id is not None:
        headers["request-id"] = request_id
        if body.get("request_id", "") is None:
            body["request_id"] = request_id
    return JSONBytes(body, status_code=status, headers=headers)


def dialect_endpoint(dialect: str, render: Render,
                     handler: Handler) -> Callable[[Request], Awaitable[Response | EventStreamResponse]]:
    """A route handler of one dialect, guarded: its request-log row is begun first and always
    finished (a plain response the handler returns finishes it as a 200, a stream when it ends);
    a tollway error becomes that dialect's error body; anything else a 500. Anthropic's dialect
    names the request in a ``request-id`` header on every answer, as Anthropic does (the SDK's
    ``_request_id``), and in its error body."""
    names_request = dialect == DIALECT_ANTHROPIC

    async def endpoint(request: Request) -> Response | EventStreamResponse:
        gw: Gateway = request.app.state.gateway
        request_id: str = request.scope["state"]["request_id"]
        await gw.room()  # backpressure while a write-behind is far behind (store.log_buffer)
        call = gw.begin(request_id, request.scope["path"], dialect)
        if _tracing.TRACER is not None:  # tracing (telemetry/tracing.py): the request's span rides on the call
            call.trace = _tracing.begin(dialect, request.scope, request.headers, request_id)
        rid = request_id if names_request else None
        headers = request.headers
        call.pin = headers.get("x-tollway-credential") or headers.get("x-ds2-target-account") or None
        try:
            response = await handler(request, call)
        except TollwayError as err:
            call.finish(err.http_status, err)
            return error_response(err, render, request_id=rid)
        except asyncio.CancelledError:  # the server is shutting down past its grace period
            call.finish(ServerShuttingDown.status, _shutdown(), note="cut by the server's shutdown before the response")
            raise
        except Exception:
            log.exception("unhandled error in %s", request.url.path)
            internal = InternalError("The gateway failed to process this request.")
            call.finish(500, internal)
            return error_response(internal, render, request_id=rid)
        if isinstance(response, Response):
            call.finish(response.status_code)  # no-op when the pipeline finished it already
            if rid is not None:
                response.headers["request-id"] = rid
        elif rid is not None:
            response.headers.append((b"request-id", rid.encode()))
        return response

    return endpoint


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all.

    A client gone before its body's end is a ``ClientGone`` (499), not an error of the gateway:
    that includes a client too slow with its body, whose connection ``tollway serve`` closes
    (TOLLWAY_CLIENT_BODY_TIMEOUT / _READ_TIMEOUT, ``server.GuardedHttpToolsProtocol``)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"Request body exceeds the {limit} byte limit.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body exceeds the {limit} byte limit.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone(f"The client went away (or was cut off, too slow) after {size} bytes of its "
                         "request body.") from None
    return b"".join(chunks)


T = TypeVar("T")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` (an upstream call) unless the client goes away first; then cancel it at
    once and raise ``ClientGone``. Call only once the request body has been read."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request is being cancelled itself: take the upstream call along
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task in done:
        try:
            return task.result()
        finally:  # an error's traceback holds this frame: drop the task (and the request body it holds)
            del task, watcher, done
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGone("The client closed the connection before the upstream answered.")


class EventStreamResponse:  # an ASGI app, like starlette's Response
    """Streams ``chunks`` as text/event-stream while watching for ``http.disconnect``.

    When the client goes away, the task draining ``chunks`` is cancelled at once, so the
    generator's ``finally`` closes the upstream connection (the upstream call is cancelled
    within the event loop's next turn, not at the next chunk). If the client is gone before
    the generator even started, ``on_abandon`` does that clean-up instead.

    When the server cancels the response (its shutdown grace is over) while the client is still
    there, ``cut`` is set before the generator is cancelled, and the stream ends with
    ``cut_frame()`` (the dialect's error frame) instead of stopping mid-way.
    """

    def __init__(self, chunks: AsyncIterator[bytes], *, headers: dict[str, str] | None = None,
                 on_abandon: Callable[[], Awaitable[None]] | None = None,
                 cut_frame: Callable[[], bytes] | None = None) -> None:
        self.cut = False
        self.cut_frame = cut_frame
        self.chunks = chunks
        self.headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no")]
        for k, v in (headers or {}).items():
            self.headers.append((k.lower().encode("latin-1"), v.encode("latin-1")))
        self.on_abandon = on_abandon

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def pump() -> None:
            nonlocal started
            started = True
            async for chunk in self.chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            pumping = asyncio.ensure_future(pump())
            watching = asyncio.ensure_future(watch())
            try:
                done, _ = await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # the server's, not the client's: tell the client why it ends
                self.cut = True
                await self._end_cut(pumping, send)
                raise
            finally:
                if not pumping.done():
                    pumping.cancel()
                watching.cancel()
            if pumping in done:
                with contextlib.suppress(OSError):
                    pumping.result()
                return
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pumping
        finally:
            if started:
                with contextlib.suppress(Exception):
                    await self.chunks.aclose()  # type: ignore[attr-defined]
            elif self.on_abandon is not None:
                await self.on_abandon()


    async def _end_cut(self, pumping: asyncio.Future[None], send: Send) -> None:
        """The generator stopped (its log row says why), then the dialect's error frame sent."""
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping
        if self.cut_frame is not None:
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": self.cut_frame(), "more_body": False})


def _shutdown() -> ServerShuttingDown:
    return ServerShuttingDown("The gateway is shutting down and cut this response short: retry it.")


def guarded_stream(chunks: AsyncIterator[bytes], call: Call, error_frame: Callable[[TollwayError], bytes],
                   close: Callable[[], Awaitable[None]], *,
                   headers: dict[str, str] | None = None) -> EventStreamResponse:
    """A dialect's stream body, guarded: a tollway error after the headers becomes the dialect's
    in-stream error frame; an unexpected one, an internal-error frame; a client that goes away is
    logged as 499; a stream the server's shutdown cuts ends with the error frame and is logged as
    503 ``server_shutdown``; both pay only for what was delivered. Whatever happens (even a client
    gone before the first byte), the upstream is closed and the call's log row written, which
    releases its credential."""
    response: EventStreamResponse

    async def guard() -> AsyncIterator[bytes]:
        status, error = 200, None
        try:
            async for chunk in chunks:
                yield chunk
        except TollwayError as err:
            status, error = err.http_status, err
            yield error_frame(err)
        except (asyncio.CancelledError, GeneratorExit):
            if response.cut:
                error = _shutdown()
                status = error.http_status
            else:
                status = 499
            raise
        except Exception:
            log.exception("stream failed")
            status, error = 500, InternalError("The gateway failed while streaming this response.")
            yield error_frame(error)
        finally:
            try:
                await close()
            finally:
                note = "client disconnected" if status == 499 else None
                if response.cut:
                    note = "cut by the server's shutdown"
                call.finish(status, error, note=note, delivered_only=response.cut)

    async def abandon() -> None:
        try:
            await close()
        finally:
            call.finish(499, note="client disconnected before the stream started")

    response = EventStreamResponse(guard(), headers=headers, on_abandon=abandon,
                                   cut_frame=lambda: error_frame(_shutdown()))
    return response
