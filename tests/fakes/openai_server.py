"""A fake OpenAI-compatible upstream: a real aiohttp server on 127.0.0.1, in its own thread.

Each test scripts it per upstream model name (``fake.script("m-500", Behavior(status=500))``).
It checks every request it receives against the OpenAI spec and every body it sends against the
response/chunk/event schemas; both lists of problems are kept in ``spec_errors`` for tests to assert
empty. It records every request (``requests``, ``seen(model)``), the credential it came with, and when a
streaming client went away (``disconnects``).

Endpoints, each driven by the same ``Behavior`` of the request's model:

- ``POST /v1/chat/completions`` (JSON, or SSE chunks ending ``data: [DONE]``). A request that breaks
  ``CreateChatCompletionRequest`` is recorded in ``spec_errors`` and still answered.
- ``POST /v1/responses`` (the Responses API: a ``Response``, or with ``"stream": true`` SSE ``event: <type>``
  / ``data: <json>`` events in the documented order, no ``[DONE]``). ``reasoning`` becomes a reasoning item
  (its summary only when the request asks for one in ``reasoning.summary``, its ``encrypted_content`` only
  with ``include: ["reasoning.encrypted_content"]``, as the API does), ``text`` a message, each tool call a
  ``function_call`` item. The request's ``max_output_tokens`` is a cap on the words (reasoning first, then
  text): when it hits, the answer is ``incomplete`` (``response.incomplete`` in a stream), cut there and
  without tool calls. ``finish_reason="length"`` / ``"content_filter"`` also make it incomplete.
  The fake stores nothing: a ``previous_response_id`` is answered 400 ``previous_response_not_found``
  (the gateway keeps the history and must expand it into ``input`` itself, never forward the field),
  and ``GET``/``DELETE /v1/responses/{id}``, ``/input_items`` and ``/cancel`` are 404.
- ``POST /v1/responses/input_tokens``: ``input_tokens`` is the behaviour's ``prompt_tokens``.
- ``POST /v1/completions`` (legacy: ``prompt`` a string or a list, ``echo``, ``suffix``, ``n``,
  ``max_tokens`` (16 when absent, as the API), SSE ``text_completion`` chunks ending ``data: [DONE]``).
- ``POST /v1/moderations``: one result per input (a string, each string of a list, or one for a list of
  text / image parts), flagged (``violence``) when the text has the word "kill".
- ``GET /v1/models``.

On the new endpoints (all but chat and models), a request that breaks its schema, or has a top-level
key the schema does not declare, is answered 400 ``invalid_request_error`` as the API would (unless
``reject_invalid=False``), besides being recorded in ``spec_errors``; a non-JSON body is 400 too.

The stream behaviours (``drop_after``, ``hang_after``, ``error_in_stream_after``, ``chunk_delay``) count
SSE frames on every endpoint: chunks for chat and completions, events for the Responses API (0 is
``response.created``). A Responses stream fails with ``response.failed`` or ``error``
(``responses_stream_error``); chat and completions with a ``data: {"error": ...}`` frame.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.spec import errors as spec_errors_of
from tests.fakes.spec import request_errors, response_stream_errors, stream_event_errors

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
    completion_tokens: int | None = None  # Responses: output_tokens (default: reasoning + text words)
    usage_in_final_chunk: bool = False  # vLLM style: usage on the finish chunk, not a separate one
    echo_secret_in_error: bool = False
    error_in_stream_after: int | None = None  # send an in-stream {"error": ...} frame after N chunks
    error_text: str | None = None  # a text/plain error body instead of OpenAI's JSON
    error_body_delay: float = 0.0  # error status and headers at once, the body this much later
    ok_but_error_body: bool = False  # HTTP 200 whose body is an error object, not a completion
    linger_after_done: float = 0.0  # keep the stream's body open this long after [DONE]
    # Responses stream, error_in_stream_after: "response.failed" (the response, status failed, with its
    # error) or "error" (a bare ResponseErrorEvent); either ends the stream.
    responses_stream_error: str = "response.failed"


@dataclass
class Seen:
    body: dict[str, Any]
    authorization: str | None
    at: float
    path: str = "/v1/chat/completions"


MODERATION_CATEGORIES = ("hate", "hate/threatening", "harassment", "harassment/threatening", "illicit",
                         "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
                         "sexual/minors", "violence", "violence/graphic")
IMAGE_MODERATED = ("self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence",
                   "violence/graphic")  # the categories whose applied input types may include "image"
_ARG_PIECE = 5  # tool-call arguments stream in pieces this long (chat and Responses)


class FakeOpenAI:
    def __init__(self, *, reject_invalid: bool = True) -> None:
        self.behaviors: dict[str, Behavior] = {}
        self.by_secret: dict[str, Behavior] = {}  # consulted before the per-model behaviors
        self.requests: list[Seen] = []
        self.spec_errors: list[str] = []
        self.disconnects: dict[str, float] = {}  # model -> when the client went away
        self.reject_invalid = reject_invalid  # the new endpoints: 400 for a request that breaks the spec
        self.port = 0
        self._ids = itertools.count(1)
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

    def seen(self, model: str, path: str | None = None) -> list[Seen]:
        """The requests for ``model`` (on ``path`` only, e.g. ``"/v1/responses"``, when given)."""
        return [s for s in self.requests if s.body.get("model") == model and (path is None or s.path == path)]

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
            app.router.add_post("/v1/responses", self._responses)
            app.router.add_post("/v1/responses/input_tokens", self._input_tokens)
            app.router.add_route("GET", "/v1/responses/{id}", self._no_stored_response)
            app.router.add_route("DELETE", "/v1/responses/{id}", self._no_stored_response)
            app.router.add_get("/v1/responses/{id}/input_items", self._no_stored_response)
            app.router.add_post("/v1/responses/{id}/cancel", self._no_stored_response)
            app.router.add_post("/v1/completions", self._completions)
            app.router.add_post("/v1/moderations", self._moderations)
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

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _check(self, schema: str, payload: Any) -> None:
        self.spec_errors.extend(spec_errors_of(schema, payload))

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}{int(time.time() * 1000) % 10**8:08d}"

    def _behavior(self, request: web.Request, model: str) -> Behavior:
        bearer = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        return self.by_secret.get(bearer) or self.behaviors.get(model, Behavior())

    def _error(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
        err = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self._check("ErrorResponse", err)
        return web.json_response(err, status=status, headers=headers)

    async def _read(self, request: web.Request, schema: str) -> tuple[dict[str, Any], web.Response | None]:
        """The request's JSON body, recorded and checked against ``schema``; with an answer when the fake
        refuses it (not JSON, not an object, or against the spec with ``reject_invalid``)."""
        raw = await request.read()
        auth = request.headers.get("Authorization")
        try:
            body = json.loads(raw)
        except ValueError:
            self.requests.append(Seen(body={}, authorization=auth, at=time.time(), path=request.path))
            self.spec_errors.append(f"{schema}: {request.path}: the body is not JSON")
            return {}, self._error(400, "We could not parse the JSON body of your request. (HINT: This likely "
                                   "means you aren't using your HTTP library correctly.)")
        self.requests.append(Seen(body=body if isinstance(body, dict) else {}, authorization=auth, at=time.time(),
                                  path=request.path))
        problems = request_errors(schema, body)
        self.spec_errors.extend(problems)
        if not isinstance(body, dict):
            return {}, self._error(400, f"Invalid body: expected an object, got {type(body).__name__}.")
        if problems and self.reject_invalid:
            where, _, what = problems[0].partition(": ")[2].partition(": ")
            unknown = what == "unknown parameter"
            return body, self._error(400, f"Unknown parameter: '{where}'." if unknown else problems[0],
                                     param=where.replace("/", ".") or None,
                                     code="unknown_parameter" if unknown else "invalid_value")
        return body, None

    async def _scripted_failure(self, request: web.Request, b: Behavior, model: str) -> web.StreamResponse | None:
        """What ``b`` answers instead of a result (a delay the client left during, an error status or
        body), or None."""
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
            headers = {"Retry-After": b.retry_after} if b.retry_after else None
            return self._error(b.status, message, type_="server_error", headers=headers)
        return None

    async def _models(self, request: web.Request) -> web.Response:
        body = {"object": "list", "data": [{"id": m, "object": "model", "created": 1, "owned_by": "fake"}
                                           for m in self.behaviors]}
        self._check("ListModelsResponse", body)
        return web.json_response(body)

    # chat completions -----------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Seen(body=body, authorization=request.headers.get("Authorization"), at=time.time()))
        self._check("CreateChatCompletionRequest", body)
        model = body.get("model", "")
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
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
            frames += [chunk({"tool_calls": [{"index": i, "function": {"arguments": args[j:j + _ARG_PIECE]}}]})
                       for j in range(0, len(args), _ARG_PIECE)]
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
        return await self._write_frames(request, b, model, frames, lambda _n: self._data_error_frame())

    def _data_error_frame(self) -> bytes:
        err = {"error": {"message": f"overloaded mid-stream (key {UPSTREAM_SECRET})",
                         "type": "server_error", "param": None, "code": None}}
        self._check("ErrorResponse", err)
        return b"data: " + json.dumps(err).encode() + b"\n\n"

    async def _write_frames(self, request: web.Request, b: Behavior, model: str, frames: list[bytes],
                            error_frame: Callable[[int], bytes]) -> web.StreamResponse:
        """Send ``frames`` as an SSE body, applying ``b``'s stream behaviours (drop / hang / in-stream error
        after N frames, delays); ``error_frame(n)`` is the frame that replaces frame ``n`` on an error."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for n, frame in enumerate(frames):
                if b.drop_after is not None and n > b.drop_after:
                    assert request.transport is not None
                    await asyncio.sleep(0.05)  # let what was written reach the peer; abort() discards buffers
                    request.transport.abort()
                    return resp
                if b.error_in_stream_after is not None and n > b.error_in_stream_after:
                    await resp.write(error_frame(n))
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

    # the Responses API ----------------------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request, "CreateResponse")
        if refused is not None:
            return refused
        if body.get("previous_response_id"):
            # Deliberate: this fake keeps no responses. Tollway stores the conversation and expands a
            # client's previous_response_id into `input` itself; forwarding the field upstream is a bug
            # that this answer (the API's own for an id it does not know) makes visible.
            return self._error(400, f"Previous response with id '{body['previous_response_id']}' not found.",
                               param="previous_response_id", code="previous_response_not_found")
        model = body.get("model") or ""
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
        final, events = self._plan_response(body, b, model)
        if not body.get("stream"):
            self._check("Response", final)
            return web.json_response(final)
        self.spec_errors.extend(f"fake's own stream: {p}" for p in response_stream_errors(
            [(e["type"], e) for e in events]))
        frames = [_event_frame(e) for e in events]
        return await self._write_frames(request, b, model, frames,
                                        lambda n: _event_frame(self._failure_event(b, final, events, n)))

    def _response_object(self, body: dict[str, Any], model: str, rid: str, created: int) -> dict[str, Any]:
        """The Response as it stands when created: the request's settings echoed, with the API's defaults."""
        reasoning = body.get("reasoning") or {}
        tools = []
        for tool in body.get("tools") or []:
            tool = dict(tool)
            if tool.get("type") == "function":  # the API echoes these filled in
                tool.setdefault("strict", True)
                tool.setdefault("parameters", None)
                tool.setdefault("description", None)
            tools.append(tool)
        resp: dict[str, Any] = {
            "id": rid, "object": "response", "created_at": created, "status": "in_progress",
            "background": bool(body.get("background")), "completed_at": None, "error": None,
            "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"), "max_tool_calls": body.get("max_tool_calls"),
            "model": model, "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": None, "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default" if body.get("service_tier") in (None, "auto") else body["service_tier"],
            "store": body.get("store") is not False,
            "temperature": body["temperature"] if body.get("temperature") is not None else 1.0,
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body["tool_choice"] if body.get("tool_choice") is not None else "auto",
            "tools": tools,
            "top_logprobs": body["top_logprobs"] if body.get("top_logprobs") is not None else 0,
            "top_p": body["top_p"] if body.get("top_p") is not None else 1.0,
            "truncation": body.get("truncation") or "disabled",
            "metadata": body.get("metadata") or {},
        }
        if body.get("user") is not None:  # a plain string in the spec, not nullable: absent when not given
            resp["user"] = body["user"]
        return resp

    def _plan_response(self, body: dict[str, Any], b: Behavior, model: str) -> tuple[dict[str, Any],
                                                                                       list[dict[str, Any]]]:
        """The final Response and the stream events that build it (without sequence numbers' gaps)."""
        rid, created = self._new_id("resp"), int(time.time())
        reasoning_words, words = _words(b.reasoning), _words(b.text)
        cap = body.get("max_output_tokens")
        incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(b.finish_reason or "")
        tool_calls = list(b.tool_calls)
        if isinstance(cap, int) and len(reasoning_words) + len(words) > cap:
            incomplete = "max_output_tokens"
            reasoning_words = reasoning_words[:cap]
            words = words[:cap - len(reasoning_words)]
            tool_calls = []
        summary_mode = (body.get("reasoning") or {}).get("summary") or (body.get("reasoning") or {}).get(
            "generate_summary")
        output_tokens = b.completion_tokens if b.completion_tokens is not None else \
            len(reasoning_words) + len(words)
        usage = {"input_tokens": b.prompt_tokens,
                 "input_tokens_details": {"cached_tokens": b.cached_tokens, "cache_write_tokens": 0},
                 "output_tokens": output_tokens,
                 "output_tokens_details": {"reasoning_tokens": len(reasoning_words)},
                 "total_tokens": b.prompt_tokens + output_tokens}
        status = "incomplete" if incomplete else "completed"

        snapshot = self._response_object(body, model, rid, created)
        events: list[dict[str, Any]] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append({"type": kind, "sequence_number": len(events), **fields})

        emit("response.created", response=copy.deepcopy(snapshot))
        emit("response.in_progress", response=copy.deepcopy(snapshot))
        output: list[dict[str, Any]] = []
        if b.reasoning:
            item: dict[str, Any] = {"id": self._new_id("rs"), "type": "reasoning", "summary": []}
            if "reasoning.encrypted_content" in (body.get("include") or []):
                item["encrypted_content"] = "gAAAAfake-encrypted-reasoning=="
            emit("response.output_item.added", output_index=len(output), item=copy.deepcopy(item))
            if summary_mode:
                text = "".join(reasoning_words)
                where = {"item_id": item["id"], "output_index": len(output), "summary_index": 0}
                emit("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
                for w in reasoning_words:
                    emit("response.reasoning_summary_text.delta", **where, delta=w)
                emit("response.reasoning_summary_text.done", **where, text=text)
                emit("response.reasoning_summary_part.done", **where, part={"type": "summary_text", "text": text})
                item["summary"] = [{"type": "summary_text", "text": text}]
            emit("response.output_item.done", output_index=len(output), item=copy.deepcopy(item))
            output.append(item)
        if words or not (tool_calls or incomplete == "max_output_tokens"):
            mid, text = self._new_id("msg"), "".join(words)
            item = {"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
            emit("response.output_item.added", output_index=len(output), item=copy.deepcopy(item))
            where = {"item_id": mid, "output_index": len(output), "content_index": 0}
            emit("response.content_part.added", **where,
                 part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
            for w in words:
                emit("response.output_text.delta", **where, delta=w, logprobs=[])
            emit("response.output_text.done", **where, text=text, logprobs=[])
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            emit("response.content_part.done", **where, part=part)
            item = {**item, "status": status, "content": [part]}
            emit("response.output_item.done", output_index=len(output), item=copy.deepcopy(item))
            output.append(item)
        for name, args in tool_calls:
            fid = self._new_id("fc")
            item = {"id": fid, "type": "function_call", "status": "in_progress", "arguments": "",
                    "call_id": self._new_id("call"), "name": name}
            emit("response.output_item.added", output_index=len(output), item=copy.deepcopy(item))
            where = {"item_id": fid, "output_index": len(output)}
            for j in range(0, len(args), _ARG_PIECE):
                emit("response.function_call_arguments.delta", **where, delta=args[j:j + _ARG_PIECE])
            emit("response.function_call_arguments.done", **where, name=name, arguments=args)
            item = {**item, "status": "completed", "arguments": args}
            emit("response.output_item.done", output_index=len(output), item=copy.deepcopy(item))
            output.append(item)
        final = {**snapshot, "status": status, "output": output, "usage": usage,
                 "completed_at": int(time.time()) if status == "completed" else None,
                 "incomplete_details": {"reason": incomplete} if incomplete else None}
        emit("response.completed" if status == "completed" else "response.incomplete", response=final)
        for event in events:
            self.spec_errors.extend(stream_event_errors(event))
        return final, events

    def _failure_event(self, b: Behavior, final: dict[str, Any], events: list[dict[str, Any]],
                       n: int) -> dict[str, Any]:
        """The event that replaces event ``n`` when ``b`` fails the stream there."""
        message = f"overloaded mid-stream (key {UPSTREAM_SECRET})"
        if b.responses_stream_error == "error":
            event: dict[str, Any] = {"type": "error", "code": "server_error", "message": message, "param": None,
                                     "sequence_number": n}
        else:
            done = [e["item"] for e in events[:n] if e["type"] == "response.output_item.done"]
            event = {"type": "response.failed", "sequence_number": n,
                     "response": {**final, "status": "failed", "output": done, "completed_at": None,
                                  "error": {"code": "server_error", "message": message}}}
            event["response"].pop("usage", None)
            event["response"]["incomplete_details"] = None
        self.spec_errors.extend(stream_event_errors(event))
        return event

    async def _input_tokens(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request, "TokenCountsBody")
        if refused is not None:
            return refused
        b = self._behavior(request, body.get("model") or "")
        failed = await self._scripted_failure(request, b, body.get("model") or "")
        if failed is not None:
            return failed
        answer = {"object": "response.input_tokens", "input_tokens": b.prompt_tokens}
        self._check("TokenCountsResource", answer)
        return web.json_response(answer)

    async def _no_stored_response(self, request: web.Request) -> web.Response:
        self.requests.append(Seen(body={}, authorization=request.headers.get("Authorization"), at=time.time(),
                                  path=request.path))
        return self._error(404, f"Response with id '{request.match_info['id']}' not found.")

    # legacy completions ---------------------------------------------------------------------

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request, "CreateCompletionRequest")
        if refused is not None:
            return refused
        model = body.get("model") or ""
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
            prompts = prompt  # several prompts: strings, or token lists
        else:
            prompts = [prompt]  # one: a string, a token list, or absent
        n = body.get("n") or 1
        cap = body["max_tokens"] if body.get("max_tokens") is not None else 16
        words = _words(b.text)
        cut = words[:cap]
        finish = "length" if len(cut) < len(words) else (b.finish_reason or "stop")
        choices: list[dict[str, Any]] = []
        for i, p in enumerate(prompts):
            head = p if body.get("echo") and isinstance(p, str) else ""
            for j in range(n):
                choices.append({"index": i * n + j, "head": head})
        completion = (b.completion_tokens if b.completion_tokens is not None else len(cut)) * len(choices)
        usage = {"prompt_tokens": b.prompt_tokens, "completion_tokens": completion,
                 "total_tokens": b.prompt_tokens + completion}
        cid, created = self._new_id("cmpl").replace("_", "-"), int(time.time())

        def obj(parts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": parts,
                    **extra}

        if not body.get("stream"):
            answer = obj([{"index": c["index"], "text": c["head"] + "".join(cut), "logprobs": None,
                           "finish_reason": finish} for c in choices], usage=usage)
            self._check("CreateCompletionResponse", answer)
            return web.json_response(answer)

        def chunk(payload: dict[str, Any]) -> bytes:
            # The spec has no chunk schema: a chunk is a CreateCompletionResponse whose finish_reason is null
            # until the last one (which the spec's non-nullable finish_reason does not allow): checked as if
            # each were the last.
            self._check("CreateCompletionResponse", {**payload, "choices": [
                {**c, "finish_reason": c["finish_reason"] or finish} for c in payload["choices"]]})
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        frames = []
        for c in choices:
            pieces = ([c["head"]] if c["head"] else []) + cut
            frames += [chunk(obj([{"index": c["index"], "text": w, "logprobs": None, "finish_reason": None}]))
                       for w in pieces]
            frames.append(chunk(obj([{"index": c["index"], "text": "", "logprobs": None, "finish_reason": finish}])))
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append(chunk(obj([], usage=usage)))
        frames.append(b"data: [DONE]\n\n")
        return await self._write_frames(request, b, model, frames, lambda _n: self._data_error_frame())

    # moderations ----------------------------------------------------------------------------

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request, "CreateModerationRequest")
        if refused is not None:
            return refused
        model = body.get("model") or "omni-moderation-latest"
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
        given = body.get("input")
        if isinstance(given, str):
            inputs: list[tuple[str, bool]] = [(given, False)]
        elif isinstance(given, list) and all(isinstance(x, str) for x in given):
            inputs = [(x, False) for x in given]
        else:  # text and image parts: one result for them all
            parts = given if isinstance(given, list) else []
            inputs = [(" ".join(p.get("text", "") for p in parts if isinstance(p, dict)),
                       any(isinstance(p, dict) and p.get("type") == "image_url" for p in parts))]
        answer = {"id": self._new_id("modr").replace("_", "-"), "model": model,
                  "results": [_moderation(text, image) for text, image in inputs]}
        self._check("CreateModerationResponse", answer)
        return web.json_response(answer)

    # --------------------------------------------------------------------------------------

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


def _event_frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _moderation(text: str, image: bool) -> dict[str, Any]:
    flagged = re.search(r"\bkill\b", text, re.IGNORECASE) is not None
    violent = {"violence", "illicit/violent", "harassment/threatening"}
    return {
        "flagged": flagged,
        "categories": {c: flagged and c in violent for c in MODERATION_CATEGORIES},
        "category_scores": {c: (0.91 if flagged and c in violent else 0.0012) for c in MODERATION_CATEGORIES},
        "category_applied_input_types": {c: ["text"] + (["image"] if image and c in IMAGE_MODERATED else [])
                                         for c in MODERATION_CATEGORIES},
    }


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
