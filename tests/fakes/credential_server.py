"""A fake OpenAI-compatible upstream scripted per credential, for the pool tests.

Each credential (the bearer it is called with) can be told to be slow, to fail with a status
(and Retry-After), to reject auth (401/403), or to cut a stream after its first chunk. The
server counts, per credential, the calls in flight now and the most it ever saw at once, and
keeps the arrival order of every call (its credential and the caller's ``user`` field, which
tests use as a tag). Bodies are checked against the OpenAI spec subset like FakeOpenAI's.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.spec import errors as spec_errors_of


@dataclass
class Behavior:
    delay: float = 0.0  # before the response headers
    status: int = 200
    retry_after: str | None = None
    text: str = "ok"
    chunks: int = 3  # stream: content chunks
    chunk_delay: float = 0.0
    cut_after_first_chunk: bool = False  # stream: drop the connection after one content chunk


@dataclass
class Arrival:
    credential: str
    model: str
    tag: str | None
    at: float


class CredentialFake:
    def __init__(self) -> None:
        self.behaviors: dict[str, Behavior] = {}
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self.arrivals: list[Arrival] = []
        self.spec_errors: list[str] = []
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, credential: str, behavior: Behavior) -> None:
        self.behaviors[credential] = behavior

    def reset(self) -> None:
        with self._lock:
            self.behaviors.clear()
            self.in_flight.clear()
            self.max_in_flight.clear()
            self.arrivals.clear()

    def calls(self, credential: str | None = None) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if credential is None or a.credential == credential]

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            self._runner = web.AppRunner(app, access_log=None)
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

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        credential = auth.removeprefix("Bearer ")
        body = await request.json()
        self.spec_errors.extend(spec_errors_of("CreateChatCompletionRequest", body))
        b = self.behaviors.get(credential, Behavior())
        with self._lock:
            self.arrivals.append(Arrival(credential=credential, model=body.get("model", ""), tag=body.get("user"),
                                         at=time.time()))
            self.in_flight[credential] += 1
            self.max_in_flight[credential] = max(self.max_in_flight[credential], self.in_flight[credential])
        try:
            if b.delay:
                await asyncio.sleep(b.delay)
            if b.status != 200:
                err = {"error": {"message": f"scripted {b.status} for this credential", "type": "server_error",
                                 "param": None, "code": None}}
                headers = {"Retry-After": b.retry_after} if b.retry_after else None
                return web.json_response(err, status=b.status, headers=headers)
            cid = f"chatcmpl-cred-{len(self.arrivals)}"
            usage = {"prompt_tokens": 3, "completion_tokens": b.chunks, "total_tokens": 3 + b.chunks}
            if not body.get("stream"):
                return web.json_response({
                    "id": cid, "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": b.text, "refusal": None},
                                 "finish_reason": "stop", "logprobs": None}], "usage": usage})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)

            def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
                obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                       "model": body["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                       **extra}
                return b"data: " + json.dumps(obj).encode() + b"\n\n"

            await resp.write(chunk({"role": "assistant", "content": ""}))
            for i in range(b.chunks):
                await resp.write(chunk({"content": f"{b.text}{i} "}))
                if b.cut_after_first_chunk:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
            await resp.write(chunk({}, "stop"))
            await resp.write(b"data: [DONE]\n\n")
            return resp
        finally:
            with self._lock:
                self.in_flight[credential] -= 1
