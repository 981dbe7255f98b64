"""``/ui/playground``: chat with a model as the key, streamed through the gateway's own
``POST /v1/chat/completions``.

**Whose call.** A key holder's calls go out with its own credential (``Viewer.stream``): the
browser posts the conversation to ``POST /ui/playground/chat`` (same origin, the session cookie
and the CSRF header), and the console calls the chat API in process with the key as bearer. The
secret stays in the sealed session cookie; it is never in the page. The admin secret has no key
(nothing to bill, no models of its own), so an operator pastes the secret of the key to try (one
made on the Keys page, say) into a password field: it is sent with each call and used as that
call's bearer, checked by the API like any other (``/ui/playground/key`` shows whose it is and its
models), and kept nowhere.

**What comes back.** The chat API's SSE bytes as it writes them (``stream: true`` with
``stream_options.include_usage``), then one more event, ``event: tollway.usage``, with the
request's row from ``GET /user/log/list?request_id=<x-request-id>``: tokens and the cost charged
(or the list-price estimate of an unpriced model). An API refusal before the stream (401 revoked
key, 402, 403, 404, 429) is a JSON ``{"error", "status", "code"}`` with the API's status; a
signed-out session is the console's 401. ``static/playground.js`` draws it. Without JavaScript the
form posts as a form and the page comes back with the whole answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute

from tollway.console.dispatch import Answer, Stream, call, error_message
from tollway.console.forms import Form
from tollway.console.pages import SECURITY_HEADERS, page_route, render
from tollway.console.session import Viewer

CHAT = "/v1/chat/completions"
MAX_BODY = 1024 * 1024
MAX_MESSAGES = 200
MAX_TEXT = 200_000
ROLES = ("system", "user", "assistant")
USAGE_WAIT = 5.0  # seconds to wait for the request-log row (written behind the answer)
_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()


class Refused(Exception):
    """A playground request the console will not send (bad JSON, no model...)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class Caller:
    """The credential a playground call goes out with: the holder's own, or a pasted key's."""

    def __init__(self, request: Request, viewer: Viewer, pasted: str | None) -> None:
        self.request, self.viewer, self.pasted = request, viewer, pasted

    async def answer(self, method: str, path: str, query: dict[str, Any] | None = None) -> Answer:
        if self.pasted is None:
            return await self.viewer.answer(method, path, query=query)
        return await call(self.request, method, path, bearer=self.pasted, query=query)

    def stream(self, payload: dict[str, Any]) -> Stream:
        if self.pasted is None:
            return self.viewer.stream("POST", CHAT, json=payload)
        return Stream(self.request, "POST", CHAT, bearer=self.pasted, json=payload)


def caller_for(request: Request, viewer: Viewer, pasted: str) -> Caller:
    """A pasted key for an operator; the holder's own key otherwise. The admin secret without
    a pasted key has nothing to call with."""
    pasted = pasted.strip()
    if pasted and viewer.is_operator:
        if len(pasted) > 512 or not pasted.isascii() or not pasted.isprintable():
            raise Refused("That is not a key's secret.")
        return Caller(request, viewer, pasted)
    if viewer.key_id is None:
        raise Refused("You are signed in with the admin key, which has no balance or models of its own: paste "
                      "the secret of the API key to try (create one on the Keys page).")
    return Caller(request, viewer, None)


def conversation(data: Any) -> tuple[str, list[dict[str, str]], str]:
    """The model, the messages and the conversation id of a playground request."""
    if not isinstance(data, dict):
        raise Refused("The playground sends a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise Refused("Choose a model.")
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_MESSAGES:
        raise Refused("Write a message first.")
    messages = []
    for m in raw:
        if (not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str)
                or len(m["content"]) > MAX_TEXT):
            raise Refused("Each message is a role (system, user or assistant) and its text.")
        messages.append({"role": m["role"], "content": m["content"]})
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise Refused("Write a message first.")
    conv = data.get("conversation")
    conv = conv if isinstance(conv, str) and 0 < len(conv) <= 64 and conv.isascii() else "pg-" + secrets.token_hex(8)
    return model.strip(), messages, conv


def payload(model: str, messages: list[dict[str, str]], conv: str) -> dict[str, Any]:
    # metadata.session_id: a recorded conversation is one session in the key's records
    return {"model": model, "messages": messages, "stream": True, "stream_options": {"include_usage": True},
            "metadata": {"session_id": conv}}


async def usage_of(caller: Caller, request_id: str) -> dict[str, Any]:
    """The request's log row as the key sees it (``/user/log/list``), waiting for it to be
    written; ``{"request_id", "pending": true}`` if it is not there in time."""
    deadline = time.monotonic() + USAGE_WAIT
    while True:
        answer = await caller.answer("GET", "/user/log/list", {"request_id": request_id, "limit": 1})
        items = answer.data.get("items") if answer.ok and isinstance(answer.data, dict) else None
        if items:
            row = items[0]
            fields = ("model", "provider", "status", "prompt_tokens", "completion_tokens", "cached_tokens",
                      "reasoning_tokens", "cost", "cost_micro", "estimated_cost", "estimated_cost_micro",
                      "latency_ms", "ttft_ms")
            return {"request_id": request_id, **{k: row.get(k) for k in fields}}
        if not answer.ok or time.monotonic() > deadline:
            return {"request_id": request_id, "pending": True}
        await asyncio.sleep(0.1)


def refusal(status: int, data: Any, fallback: str = "") -> JSONResponse:
    code = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code = data["error"].get("code") or data["error"].get("type")
    message = error_message(data, status) if data is not None else (fallback or f"HTTP {status}")
    return JSONResponse({"error": message, "status": status, "code": code}, status_code=status,
                        headers=SECURITY_HEADERS)


async def _read_json(request: Request) -> Any:
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > MAX_BODY:
        raise Refused("The conversation is too long for the playground.", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Refused("The conversation is too long for the playground.", 413)
    try:
        return _decode.decode(body)
    except msgspec.DecodeError:
        raise Refused("The playground sends a JSON object.") from None


async def chat(request: Request, viewer: Viewer) -> Response:
    """``POST /ui/playground/chat``: JSON from playground.js (streamed back), or the plain form."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return await chat_stream(request, viewer)
    return await chat_form(request, viewer)


async def chat_stream(request: Request, viewer: Viewer) -> Response:
    try:
        data = await _read_json(request)
        pasted = data.get("key") if isinstance(data, dict) else None
        caller = caller_for(request, viewer, pasted if isinstance(pasted, str) else "")
        model, messages, conv = conversation(data)
    except Refused as err:
        return JSONResponse({"error": err.message, "status": err.status}, status_code=err.status,
                            headers=SECURITY_HEADERS)
    stream = caller.stream(payload(model, messages, conv))
    await stream.__aenter__()
    if stream.status >= 400:
        body = b"".join([chunk async for chunk in stream.chunks()])
        await stream.aclose()
        with contextlib.suppress(msgspec.DecodeError):
            return refusal(stream.status, _decode.decode(body) if body else None)
        return refusal(stream.status, None, body.decode(errors="replace")[:300])
    request_id = stream.headers.get("x-request-id", "")

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream.chunks():
                yield chunk
        finally:
            await stream.aclose()
        usage = await usage_of(caller, request_id) if request_id else {"pending": True}
        yield b"event: tollway.usage\ndata: " + _encode.encode(usage) + b"\n\n"

    return StreamingResponse(relay(), media_type="text/event-stream", headers={
        **SECURITY_HEADERS, "x-request-id": request_id, "x-accel-buffering": "no",
        "x-tollway-conversation": conv})


def answer_text(body: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    """The text, the usage and an in-stream error of a whole chat-completions SSE body."""
    text, usage, error = [], None, None
    for line in body.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        raw = line[5:].strip()
        if raw == b"[DONE]" or not raw:
            continue
        try:
            chunk = _decode.decode(raw)
        except msgspec.DecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error") is not None:
            error = error_message(chunk, 502)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
            if isinstance(delta.get("content"), str):
                text.append(delta["content"])
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
    return "".join(text), usage, error


async def chat_form(request: Request, viewer: Viewer) -> Response:
    """Without JavaScript: one question, the whole answer on the page that comes back."""
    form = await Form.read(request)
    context: dict[str, Any] = {"asked": form.raw("message"), "chosen": form.text("model")}
    try:
        caller = caller_for(request, viewer, form.raw("key"))
        messages = [{"role": "user", "content": form.raw("message")}]
        if form.raw("system").strip():
            messages.insert(0, {"role": "system", "content": form.raw("system")})
        model, messages, conv = conversation({"model": form.text("model"), "messages": messages})
        async with caller.stream(payload(model, messages, conv)) as stream:
            body = b"".join([chunk async for chunk in stream.chunks()])
        if stream.status >= 400:
            data = None
            with contextlib.suppress(msgspec.DecodeError):
                data = _decode.decode(body)
            raise Refused(error_message(data, stream.status), stream.status)
        text, _, error = answer_text(body)
        request_id = stream.headers.get("x-request-id", "")
        usage = await usage_of(caller, request_id) if request_id else None
        context.update(answer=text, error=error, usage=usage)
    except Refused as err:
        context.update(error=err.message, status=err.status)
    return await page(request, viewer, context)


async def models_of(caller: Caller) -> tuple[dict[str, Any] | None, str | None]:
    """``/user/me`` of the calling key (its name, balance and models), or why it was refused."""
    answer = await caller.answer("GET", "/user/me")
    if not answer.ok:
        return None, error_message(answer.data, answer.status)
    me: dict[str, Any] = answer.data
    return me, None


async def page(request: Request, viewer: Viewer, context: dict[str, Any] | None = None) -> Response:
    me, refused = None, None
    if viewer.key_id is not None:
        me, refused = await models_of(Caller(request, viewer, None))
    return await render(request, viewer, "me/playground.html", {
        "me": me, "refused": refused, "pasting": viewer.key_id is None and viewer.is_operator, **(context or {})},
        active="playground", title="Playground")


async def playground(request: Request, viewer: Viewer) -> Response:
    return await page(request, viewer)


async def check_key(request: Request, viewer: Viewer) -> Response:
    """``POST /ui/playground/key`` (htmx): whose the pasted key is, and the model picker for it."""
    form = await Form.read(request)
    try:
        caller = caller_for(request, viewer, form.raw("key"))
        me, refused = await models_of(caller)
    except Refused as err:
        me, refused = None, err.message
    return await render(request, viewer, "me/playground_models.html", {"me": me, "refused": refused,
                                                                        "checked": True})


def playground_routes() -> list[BaseRoute]:
    return [
        page_route("/playground", playground, operator=False),
        page_route("/playground/chat", chat, operator=False, methods=("POST",)),
        page_route("/playground/key", check_key, operator=False, methods=("POST",)),
    ]

