"""Calls from the console into the gateway's own HTTP API, in process.

The console changes nothing itself: a form it receives becomes one request to the documented
API (``/admin/...``, ``/v1/{service}/{action}``, ``/user/...``, ``/v1/chat/completions``), with
the signed-in holder's own credential as its bearer, sent through the whole ASGI app (its
middleware, route guards, authentication, throttles, request log and error shapes) without a
socket. What the API refuses, the console shows; what it allows is what a ``curl`` with the same
credential could do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.types import Message, Scope

log = logging.getLogger("tollway.console")

_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()
MAX_ANSWER = 32 * 1024 * 1024  # an API answer the console reads whole


class ApiError(Exception):
    """The API refused a call: its HTTP status and the message it gave."""

    def __init__(self, status: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.data = status, message, data


class Answer(msgspec.Struct, frozen=True):
    """An API answer: status, headers (lower-case names) and the JSON body (None if not JSON)."""

    status: int
    headers: dict[str, str]
    data: Any
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The JSON body of a 2xx answer; ApiError with the API's message otherwise."""
        if not self.ok:
            raise ApiError(self.status, error_message(self.data, self.status), self.data)
        return self.data


def error_message(data: Any, status: int) -> str:
    """The message of an error body in any of the gateway's shapes: ``{"detail"}`` (admin),
    ``{"error": {"message"}}`` (OpenAI, City), ``{"error": "..."}``, ``{"message"}``."""
    if isinstance(data, dict):
        for found in (data.get("detail"), data.get("message"),
                      data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else None,
                      data.get("error") if isinstance(data.get("error"), str) else None):
            if isinstance(found, str) and found:
                return found
    return f"The gateway answered HTTP {status}."


def _scope(request: Request, method: str, path: str, query: Mapping[str, Any] | None,
           headers: list[tuple[bytes, bytes]]) -> Scope:
    outer = request.scope
    pairs = [(k, str(v)) for k, v in (query or {}).items() if v is not None and v != ""]
    host = request.headers.get("host", "localhost")
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": outer.get("scheme", "http"), "server": outer.get("server"), "client": outer.get("client"),
        "root_path": "", "path": path, "raw_path": path.encode(), "query_string": urlencode(pairs).encode(),
        "headers": [(b"host", host.encode("latin-1")), (b"user-agent", b"tollway-console"), *headers],
        "state": {},
    }


def _headers(bearer: str | None, body: bytes | None, extra: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    if bearer:
        out.append((b"authorization", b"Bearer " + bearer.encode()))
    if body is not None:
        out += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for k, v in (extra or {}).items():
        out.append((k.lower().encode("latin-1"), v.encode("latin-1")))
    return out


async def call(request: Request, method: str, path: str, *, bearer: str | None, json: Any = None,
               query: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None) -> Answer:
    """One whole API call (its answer read into memory)."""
    body = None if json is None else _encode.encode(json)
    scope = _scope(request, method, path, query, _headers(bearer, body, headers))
    sent = False
    status, size = 500, 0
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        await asyncio.Event().wait()  # a whole call never sees the client leave
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.update((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message["headers"])
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_ANSWER:
                raise ApiError(502, "The API's answer is too large to show.")
            chunks.append(chunk)

    await request.app(scope, receive, send)
    raw = b"".join(chunks)
    data: Any = None
    if raw and "json" in out_headers.get("content-type", ""):
        with contextlib.suppress(msgspec.DecodeError):
            data = _decode.decode(raw)
    return Answer(status, out_headers, data, raw)


class Stream:
    """A streamed API call: ``status`` and ``headers`` once the answer started, then ``chunks()``.
    Closing it (or leaving ``async with``) tells the API its client went away."""

    def __init__(self, request: Request, method: str, path: str, *, bearer: str | None, json: Any = None,
                 headers: Mapping[str, str] | None = None) -> None:
        body = None if json is None else _encode.encode(json)
        self._scope = _scope(request, method, path, None, _headers(bearer, body, headers))
        self._app = request.app
        self._body = body or b""
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.status = 500
        self.headers: dict[str, str] = {}

    async def __aenter__(self) -> Stream:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self._body, "more_body": False}
            await self._gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if self._gone.is_set():
                raise OSError("the console's client went away")
            await self._queue.put(message)

        async def run() -> None:
            try:
                await self._app(self._scope, receive, send)
            except Exception:
                if not self._gone.is_set():
                    log.exception("an in-process API stream failed")
            finally:
                await self._queue.put(None)

        self._task = asyncio.create_task(run())
        first = await self._queue.get()
        if first is None or first["type"] != "http.response.start":
            await self.aclose()
            raise ApiError(502, "The API gave no answer.")
        self.status = first["status"]
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in first["headers"]}
        return self

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            if message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

    async def aclose(self) -> None:
        self._gone.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
