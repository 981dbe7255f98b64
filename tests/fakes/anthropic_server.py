"""A fake Anthropic Messages API upstream: a real aiohttp server on 127.0.0.1, in its own thread.

Usage::

    fake = FakeAnthropic()              # secret=ANTHROPIC_SECRET, accept_bearer=True, reject_invalid=False
    fake.start()
    fake.script("claude-test", Behavior(text="Hi there", tool_uses=[("get_weather", '{"city": "Paris"}')]))
    client = anthropic.Anthropic(base_url=fake.base_url, api_key=ANTHROPIC_SECRET, max_retries=0)
    ...
    assert fake.spec_errors == []
    fake.stop()

``base_url`` is ``http://127.0.0.1:<port>`` with no ``/v1`` and no trailing slash, like Anthropic's own
``https://api.anthropic.com``: clients append ``/v1/messages``, ``/v1/messages/count_tokens``, ``/v1/models``.

Endpoints: POST /v1/messages (JSON, or SSE when ``"stream": true``), POST /v1/messages/count_tokens,
GET /v1/models (paged with ``limit`` / ``after_id`` / ``before_id``) and GET /v1/models/{id}. With
``count_tokens=False`` it is an Anthropic-compatible server that has no count_tokens (DeepSeek's, Kimi's
Anthropic endpoints): that path is aiohttp's plain 404.

Every request must carry the secret, in ``x-api-key`` (the header the spec documents), or, unless
``accept_bearer=False``, as ``Authorization: Bearer <secret>`` (what the ``anthropic`` SDK 2.x sends for an
``api_key``); otherwise 401 ``authentication_error``. It must carry an ``anthropic-version`` header (any
value); otherwise 400 ``invalid_request_error``. When both credentials are present, ``x-api-key`` decides.

Each model is scripted with a ``Behavior`` (unscripted models get ``Behavior()``). Every request is
recorded in ``requests`` (exact raw bytes, parsed body, the auth / version / beta headers) and checked
against the spec (``CreateMessageParams`` / ``CountMessageTokensParams``); every body and every stream
event the fake sends is checked against the schemas, and a planned stream against the documented event
order. Problems go to ``spec_errors``. With ``reject_invalid=True`` a request that breaks the spec is
also answered 400 ``invalid_request_error``, as the real API would. ``disconnects`` maps a model to the
time its client went away mid-response.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import anthropic_spec

ANTHROPIC_SECRET = "sk-ant-fake-upstream-secret-0123456789"

# status -> the error type Anthropic sends with it (https://docs.anthropic.com/en/api/errors)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",  # "request_too_large" is documented but missing from the spec's ErrorResponse
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
REASONS = {529: "Overloaded"}  # aiohttp knows no reason phrase for 529


@dataclass
class Behavior:
    """What the fake answers for one upstream model name. Content blocks come in this order: thinking,
    redacted_thinking, text, then one tool_use per ``tool_uses`` entry; empty ones are left out."""

    text: str = "Hello from the fake Anthropic upstream, one word at a time."  # one text_delta per word
    thinking: str = ""  # a thinking block: one thinking_delta per word, then a signature_delta
    signature: str = "EqQBCkYIARgCIkDfakeSignature0123456789abcdef=="
    redacted_thinking: str | None = None  # data of a redacted_thinking block (streamed whole in its start)
    tool_uses: list[tuple[str, str]] = field(default_factory=list)  # (name, JSON object text) -> tool_use
    json_piece: int = 7  # input_json_delta pieces are this long; the first one is "" (as the API sends)
    stop_reason: str | None = None  # default: "tool_use" if tool_uses else "end_turn"
    stop_sequence: str | None = None  # sent with stop_reason="stop_sequence"
    input_tokens: int = 11  # also the count_tokens answer
    output_tokens: int | None = None  # default: one per word / tool-argument piece
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None  # also reported as cache_creation.ephemeral_5m_input_tokens
    status: int = 200  # != 200: an Anthropic error body instead (for messages and count_tokens)
    error_type: str | None = None  # default: by status (ERROR_TYPES), else api_error
    error_message: str = "fake upstream failure"
    echo_secret_in_error: bool = False  # append the key it was called with to every error message
    retry_after: str | None = None  # a retry-after header on the error response
    headers_delay: float = 0.0  # before the response headers (first-byte timeout)
    chunk_delay: float = 0.0  # after each stream event
    ping_every: int | None = None  # an extra ping after every N deltas (one ping before message_delta always)
    # The three stream faults below strike once N content_block_delta events have been sent (N=0: before the
    # first delta), and at the latest just before message_delta, so a too-large N still cuts the stream.
    error_in_stream_after: int | None = None  # an `event: error` (an ErrorResponse), then the stream ends
    stream_error_type: str = "overloaded_error"  # that error's error.type
    drop_after: int | None = None  # cut the TCP connection
    hang_after: int | None = None  # stop sending, keep the connection open (recorded in disconnects)


@dataclass
class Seen:
    path: str
    raw: bytes  # the exact request body
    body: Any  # parsed JSON (None for a GET or a body that is not JSON)
    x_api_key: str | None
    authorization: str | None
    anthropic_version: str | None
    anthropic_beta: str | None
    headers: dict[str, str]
    at: float


SEEN = web.RequestKey("seen", Seen)


class FakeAnthropic:
    def __init__(self, secret: str = ANTHROPIC_SECRET, *, accept_bearer: bool = True,
                 reject_invalid: bool = False, count_tokens: bool = True) -> None:
        self.secret = secret
        self.count_tokens = count_tokens
        self.accept_bearer = accept_bearer
        self.reject_invalid = reject_invalid
        self.behaviors: dict[str, Behavior] = {}
        self.requests: list[Seen] = []
        self.spec_errors: list[str] = []
        self.disconnects: dict[str, float] = {}  # model -> when the client went away
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: no ``/v1``, no trailing slash (the SDK adds ``/v1/messages``)."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, model: str, behavior: Behavior) -> None:
        self.behaviors[model] = behavior

    def seen(self, model: str) -> list[Seen]:
        return [s for s in self.requests if isinstance(s.body, dict) and s.body.get("model") == model]

    # server ------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = web.Application(middlewares=[self._gate])
            app.router.add_post("/v1/messages", self._messages)
            if self.count_tokens:
                app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
            app.router.add_get("/v1/models", self._models)
            app.router.add_get("/v1/models/{model_id}", self._model)
            self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-anthropic", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Anthropic server did not start")

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeAnthropic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # helpers -----------------------------------------------------------------------------

    def _check(self, problems: list[str]) -> None:
        self.spec_errors.extend(problems)

    def _error(self, status: int, message: str, error_type: str | None = None,
               retry_after: str | None = None) -> web.Response:
        body = {"type": "error",
                "error": {"type": error_type or ERROR_TYPES.get(status, "api_error"), "message": message},
                "request_id": f"req_fake_{len(self.requests)}"}
        self._check(anthropic_spec.error_body_errors(body))
        headers = {"request-id": body["request_id"]}
        if retry_after is not None:
            headers["retry-after"] = retry_after
        return web.json_response(body, status=status, reason=REASONS.get(status), headers=headers)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Record the request, then check its credential and anthropic-version header."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        h = request.headers
        request[SEEN] = seen = Seen(path=request.path, raw=raw, body=body, x_api_key=h.get("x-api-key"),
                                      authorization=h.get("Authorization"),
                                      anthropic_version=h.get("anthropic-version"),
                                      anthropic_beta=h.get("anthropic-beta"), headers=dict(h), at=time.time())
        self.requests.append(seen)
        key = h.get("x-api-key")
        if key is None and self.accept_bearer and h.get("Authorization", "").startswith("Bearer "):
            key = h["Authorization"].removeprefix("Bearer ")
        if key != self.secret:
            return self._error(401, "invalid x-api-key")
        if not h.get("anthropic-version"):
            return self._error(400, "anthropic-version: header is required")
        if request.method == "POST" and not isinstance(body, dict):
            return self._error(400, "the request body is not a JSON object")
        return await handler(request)

    def _error_text(self, b: Behavior) -> str:
        return b.error_message + (f" (key {self.secret})" if b.echo_secret_in_error else "")

    def _behavior(self, body: dict[str, Any]) -> Behavior:
        return self.behaviors.get(str(body.get("model", "")), Behavior())

    def _rejected(self, problems: list[str]) -> web.Response | None:
        self._check(problems)
        if problems and self.reject_invalid:
            return self._error(400, problems[0])
        return None

    # endpoints ---------------------------------------------------------------------------

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = request[SEEN].body
        if (rejected := self._rejected(anthropic_spec.count_tokens_request_errors(body))) is not None:
            return rejected
        b = self._behavior(body)
        if b.status != 200:
            return self._error(b.status, self._error_text(b), b.error_type, b.retry_after)
        out = {"input_tokens": b.input_tokens}
        self._check(anthropic_spec.errors("CountMessageTokensResponse", out))
        return web.json_response(out)

    def _model_info(self, model: str) -> dict[str, Any]:
        yes = {"supported": True}
        info = {"type": "model", "id": model, "display_name": f"Fake {model}", "created_at": "2026-01-01T00:00:00Z",
                "max_input_tokens": 200000, "max_tokens": 64000,
                "capabilities": {
                    "batch": yes, "citations": yes, "code_execution": yes, "image_input": yes, "pdf_input": yes,
                    "structured_outputs": yes,
                    "context_management": {"supported": False, "clear_thinking_20251015": None,
                                           "clear_tool_uses_20250919": None, "compact_20260112": None},
                    "effort": {"supported": True, "low": yes, "medium": yes, "high": yes, "max": yes, "xhigh": None},
                    "thinking": {"supported": True, "types": {"enabled": yes, "adaptive": yes}}}}
        self._check(anthropic_spec.errors("ModelInfo", info))
        return info

    async def _models(self, request: web.Request) -> web.Response:
        ids = list(self.behaviors)
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return self._error(400, "limit: must be an integer from 1 to 1000")
        if "after_id" in request.query and request.query["after_id"] in ids:
            ids = ids[ids.index(request.query["after_id"]) + 1:]
        page = ids[:limit]
        if "before_id" in request.query and request.query["before_id"] in ids:
            ids = ids[:ids.index(request.query["before_id"])]
            page = ids[-limit:]
        body = {"data": [self._model_info(m) for m in page], "has_more": len(page) < len(ids),
                "first_id": page[0] if page else None, "last_id": page[-1] if page else None}
        self._check(anthropic_spec.errors("ListResponse_ModelInfo_", body))
        return web.json_response(body)

    async def _model(self, request: web.Request) -> web.Response:
        model = request.match_info["model_id"]
        if model not in self.behaviors:
            return self._error(404, f"model: {model}")
        return web.json_response(self._model_info(model))

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = request[SEEN].body
        if (rejected := self._rejected(anthropic_spec.request_errors(body))) is not None:
            return rejected
        model = str(body.get("model", ""))
        b = self._behavior(body)
        if b.headers_delay and await self._client_left_during(request, model, b.headers_delay):
            return web.Response(status=499)
        if b.status != 200:
            return self._error(b.status, self._error_text(b), b.error_type, b.retry_after)
        mid = f"msg_fake_{len(self.requests)}"
        if body.get("stream"):
            return await self._stream(request, b, model, mid)
        message = self._message(b, model, mid)
        self._check(anthropic_spec.message_errors(message))
        return web.json_response(message, headers={"request-id": f"req_fake_{len(self.requests)}"})

    # message content ---------------------------------------------------------------------

    def _blocks(self, b: Behavior) -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
        """Per content block: (the block in a Message, its content_block_start form, its deltas)."""
        out = []
        if b.thinking:
            out.append(({"type": "thinking", "thinking": b.thinking, "signature": b.signature},
                        {"type": "thinking", "thinking": "", "signature": ""},
                        [{"type": "thinking_delta", "thinking": w} for w in _words(b.thinking)]
                        + [{"type": "signature_delta", "signature": b.signature}]))
        if b.redacted_thinking is not None:
            block = {"type": "redacted_thinking", "data": b.redacted_thinking}
            out.append((block, dict(block), []))
        if b.text:
            out.append(({"type": "text", "text": b.text, "citations": None},
                        {"type": "text", "text": "", "citations": None},
                        [{"type": "text_delta", "text": w} for w in _words(b.text)]))
        for i, (name, args) in enumerate(b.tool_uses):
            tool_id = f"toolu_fake_{i}"  # stable, so a stream and a non-stream answer are equal
            pieces = [""] + [args[j:j + b.json_piece] for j in range(0, len(args), max(1, b.json_piece))]
            out.append(({"type": "tool_use", "id": tool_id, "name": name, "input": json.loads(args or "{}"),
                         "caller": {"type": "direct"}},
                        {"type": "tool_use", "id": tool_id, "name": name, "input": {}, "caller": {"type": "direct"}},
                        [{"type": "input_json_delta", "partial_json": p} for p in pieces]))
        return out

    @staticmethod
    def _stop(b: Behavior) -> tuple[str, str | None]:
        reason = b.stop_reason or ("tool_use" if b.tool_uses else "end_turn")
        return reason, (b.stop_sequence if reason == "stop_sequence" else None)

    @staticmethod
    def _usage(b: Behavior, output_tokens: int) -> dict[str, Any]:
        """A full Usage: the spec requires every key, null where there is no value."""
        return {"input_tokens": b.input_tokens, "output_tokens": output_tokens,
                "cache_read_input_tokens": b.cache_read_input_tokens,
                "cache_creation_input_tokens": b.cache_creation_input_tokens,
                "cache_creation": (None if b.cache_creation_input_tokens is None else
                                   {"ephemeral_5m_input_tokens": b.cache_creation_input_tokens,
                                    "ephemeral_1h_input_tokens": 0}),
                "output_tokens_details": {"thinking_tokens": len(_words(b.thinking))} if b.thinking else None,
                "server_tool_use": None, "service_tier": "standard", "inference_geo": None}

    def _output_tokens(self, b: Behavior, blocks: list[Any]) -> int:
        if b.output_tokens is not None:
            return b.output_tokens
        return max(1, sum(len(deltas) for _, _, deltas in blocks))

    def _message(self, b: Behavior, model: str, mid: str) -> dict[str, Any]:
        blocks = self._blocks(b)
        reason, sequence = self._stop(b)
        return {"id": mid, "type": "message", "role": "assistant", "model": model,
                "content": [full for full, _, _ in blocks], "stop_reason": reason, "stop_sequence": sequence,
                "stop_details": None, "container": None, "usage": self._usage(b, self._output_tokens(b, blocks))}

    def _events(self, b: Behavior, model: str, mid: str) -> list[tuple[str, dict[str, Any]]]:
        """The whole stream, in the documented order."""
        blocks = self._blocks(b)
        reason, sequence = self._stop(b)
        start = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                 "stop_reason": None, "stop_sequence": None, "stop_details": None, "container": None,
                 "usage": self._usage(b, 1)}
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
        deltas = 0
        for index, (_, first, block_deltas) in enumerate(blocks):
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": first}))
            for delta in block_deltas:
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": delta}))
                deltas += 1
                if b.ping_every and deltas % b.ping_every == 0:
                    events.append(("ping", {"type": "ping"}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        usage = self._usage(b, self._output_tokens(b, blocks))
        delta_usage = {k: usage[k] for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                             "cache_creation_input_tokens", "output_tokens_details",
                                             "server_tool_use")}
        events += [("ping", {"type": "ping"}),
                   ("message_delta", {"type": "message_delta", "usage": delta_usage,
                                      "delta": {"stop_reason": reason, "stop_sequence": sequence,
                                                "stop_details": None, "container": None}}),
                   ("message_stop", {"type": "message_stop"})]
        return events

    async def _stream(self, request: web.Request, b: Behavior, model: str, mid: str) -> web.StreamResponse:
        events = self._events(b, model, mid)
        self._check(anthropic_spec.stream_errors(events))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", "request-id": f"req_fake_{len(self.requests)}"})
        await resp.prepare(request)
        deltas = 0
        previous = ""
        try:
            for name, data in events:
                due = (name == "message_delta" or name == "content_block_delta" or previous == "content_block_delta")
                if due and b.drop_after is not None and (deltas >= b.drop_after or name == "message_delta"):
                    assert request.transport is not None
                    await asyncio.sleep(0.05)  # let what was written reach the peer; abort() discards buffers
                    request.transport.abort()
                    return resp
                if due and b.error_in_stream_after is not None and (deltas >= b.error_in_stream_after
                                                                    or name == "message_delta"):
                    err = {"type": "error", "error": {"type": b.stream_error_type, "message": self._error_text(b)},
                           "request_id": f"req_fake_{len(self.requests)}"}
                    self._check(anthropic_spec.event_errors("error", err))
                    await resp.write(_frame("error", err))
                    await resp.write_eof()
                    return resp
                if due and b.hang_after is not None and (deltas >= b.hang_after or name == "message_delta"):
                    await self._wait_for_disconnect(request, model)
                    return resp
                await resp.write(_frame(name, data))
                deltas += name == "content_block_delta"
                previous = name
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.setdefault(model, time.time())
            raise
        return resp

    async def _client_left_during(self, request: web.Request, model: str, seconds: float) -> bool:
        """Sleep ``seconds``; True (and recorded) if the client went away meanwhile."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnects[model] = time.time()
                return True
            await asyncio.sleep(0.02)
        return False

    async def _wait_for_disconnect(self, request: web.Request, model: str) -> None:
        for _ in range(3000):  # at most 60 s
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnects[model] = time.time()
                return
            await asyncio.sleep(0.02)


def _frame(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _words(text: str) -> list[str]:
    out, word = [], ""
    for ch in text:
        word += ch
        if ch == " ":
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out
