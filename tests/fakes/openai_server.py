"""A fake OpenAI-compatible upstream: a real aiohttp server on 127.0.0.1, in its own thread.

Each test scripts it per upstream model name (``fake.script("m-500", Behavior(status=500))``).
It checks every request it receives against the OpenAI spec's CreateChatCompletionRequest and
every body it sends against the response/chunk schemas; both lists of problems are kept in
``spec_errors`` for tests to assert empty. It records every request, the credential it came
with, and when a streaming client went away (``disconnects``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.spec import errors as spec_errors_of

UPSTREAM_SECRET = "sk-fake-upstream-secret-0123456789"


@dataclass
class Behavior:
    text: str = "Hello from the fake upstream, one word at a time."
    status: int = 200
    error_message: str = "fake upstream failure"
    retry_after: str | None = None
    headers_delay: float = 0.0  # before the response headers (first-byte timeout)
    chunk_delay: float = 0.0
    drop_after: int | None = None  # cut the TCP connection after N content chunks
    hang_after: int | None = None  # stop sending after N content chunks, keep the connection open
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    reasoning: str = ""
    prompt_tokens: int = 11
    cached_tokens: int = 3  # prompt_tokens_details.cached_tokens (part of prompt_tokens)
    finish_reason: str | None = None  # default: tool_calls with tool calls, else stop
    completion_tokens: int | None = None
    usage_in_final_chunk: bool = False  # vLLM style: usage on the finish chunk, not a separate one
    echo_secret_in_error: bool = False
    error_in_stream_after: int | None = None  # send an in-stream {"error": ...} frame after N chunks
    error_text: str | None = None  # a text/plain error body instead of OpenAI's JSON
    error_body_delay: float = 0.0  # error status and headers at once, the body this much later
    ok_but_error_body: bool = False  # HTTP 200 whose body is an error object, not a completion
    linger_after_done: float = 0.0  # keep the stream's body open this long after [DONE]


@dataclass
class Seen:
    body: dict[str, Any]
    authorization: str | None
    at: float


class FakeOpenAI:
    def __init__(self) -> None:
        self.behaviors: dict[str, Behavior] = {}
        self.by_secret: dict[str, Behavior] = {}  # consulted before the per-model behaviors
        self.requests: list[Seen] = []
        self.spec_errors: list[str] = []
        self.disconnects: dict[str, float] = {}  # model -> when the client went away
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, model: str, behavior: Behavior) -> None:
        self.behaviors[model] = behavior

    def script_secret(self, secret: str, behavior: Behavior) -> None:
        """Answer every request that comes with ``Authorization: Bearer <secret>`` like this."""
        self.by_secret[secret] = behavior

    def seen(self, model: str) -> list[Seen]:
        return [s for s in self.requests if s.body.get("model") == model]

    # server ------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_get("/v1/models", self._models)
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

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def _check(self, schema: str, payload: Any) -> None:
        self.spec_errors.extend(spec_errors_of(schema, payload))

    async def _models(self, request: web.Request) -> web.Response:
        body = {"object": "list", "data": [{"id": m, "object": "model", "created": 1, "owned_by": "fake"}
                                           for m in self.behaviors]}
        self._check("ListModelsResponse", body)
        return web.json_response(body)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Seen(body=body, authorization=request.headers.get("Authorization"), at=time.time()))
        self._check("CreateChatCompletionRequest", body)
        model = body.get("model", "")
        bearer = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        b = self.by_secret.get(bearer) or self.behaviors.get(model, Behavior())
        if b.headers_delay and await self._client_left_during(request, model, b.headers_delay):
            return web.Response(status=499)
        if b.ok_but_error_body:
            return web.json_response({"error": {"message": "quota exhausted", "type": "insufficient_quota",
                                                "param": None, "code": None}})
        if b.status != 200 and (b.error_text is not None or b.error_body_delay):
            resp = web.StreamResponse(status=b.status, headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            await asyncio.sleep(b.error_body_delay)
            await resp.write((b.error_text or "late error").encode())
            await resp.write_eof()
            return resp
        if b.status != 200:
            message = b.error_message + (f" (key {UPSTREAM_SECRET})" if b.echo_secret_in_error else "")
            err = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
            self._check("ErrorResponse", err)
            headers = {"Retry-After": b.retry_after} if b.retry_after else None
            return web.json_response(err, status=b.status, headers=headers)
        words = _words(b.text)
        completion = b.completion_tokens if b.completion_tokens is not None else len(words)
        usage = {"prompt_tokens": b.prompt_tokens, "completion_tokens": completion,
                 "total_tokens": b.prompt_tokens + completion,
                 "prompt_tokens_details": {"cached_tokens": b.cached_tokens},
                 "completion_tokens_details": {"reasoning_tokens": len(_words(b.reasoning))}}
        cid = f"chatcmpl-fake-{len(self.requests)}"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": b.text if not b.tool_calls else None,
                                       "refusal": None}
            if b.reasoning:
                message["reasoning_content"] = b.reasoning
            if b.tool_calls:
                message["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                          "function": {"name": n, "arguments": a}}
                                         for i, (n, a) in enumerate(b.tool_calls)]
            resp = {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": message, "logprobs": None,
                                 "finish_reason": b.finish_reason or ("tool_calls" if b.tool_calls else "stop")}],
                    "usage": usage}
            self._check("CreateChatCompletionResponse", {k: v for k, v in resp.items()} | {
                "choices": [{**resp["choices"][0], "message": {k: v for k, v in message.items()
                                                               if k != "reasoning_content"}}]})
            return web.json_response(resp)
        return await self._stream(request, body, b, model, cid, words, usage)

    async def _stream(self, request: web.Request, body: dict[str, Any], b: Behavior, model: str, cid: str,
                      words: list[str], usage: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
            self._check("CreateChatCompletionStreamResponse",
                        obj | {"choices": [{**obj["choices"][0], "delta": {k: v for k, v in delta.items()
                                                                            if k != "reasoning_content"}}]})
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        frames: list[bytes] = [chunk({"role": "assistant", "content": ""})]
        frames += [chunk({"reasoning_content": w}) for w in _words(b.reasoning)]
        frames += [chunk({"content": w}) for w in words]
        for i, (name, args) in enumerate(b.tool_calls):
            frames.append(chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            frames += [chunk({"tool_calls": [{"index": i, "function": {"arguments": args[j:j + 5]}}]})
                       for j in range(0, len(args), 5)]
        finish = b.finish_reason or ("tool_calls" if b.tool_calls else "stop")
        if b.usage_in_final_chunk:
            frames.append(chunk({}, finish, usage=usage))
        else:
            frames.append(chunk({}, finish))
            if include_usage:
                obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                       "choices": [], "usage": usage}
                self._check("CreateChatCompletionStreamResponse", obj)
                frames.append(b"data: " + json.dumps(obj).encode() + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
        try:
            for n, frame in enumerate(frames):
                if b.drop_after is not None and n > b.drop_after:
                    assert request.transport is not None
                    await asyncio.sleep(0.05)  # let what was written reach the peer; abort() discards buffers
                    request.transport.abort()
                    return resp
                if b.error_in_stream_after is not None and n > b.error_in_stream_after:
                    err = {"error": {"message": f"overloaded mid-stream (key {UPSTREAM_SECRET})",
                                     "type": "server_error", "param": None, "code": None}}
                    self._check("ErrorResponse", err)
                    await resp.write(b"data: " + json.dumps(err).encode() + b"\n\n")
                    await resp.write_eof()
                    return resp
                if b.hang_after is not None and n > b.hang_after:
                    await self._wait_for_disconnect(request, model)
                    return resp
                await resp.write(frame)
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
            if b.linger_after_done:
                await asyncio.sleep(b.linger_after_done)
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
