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
- ``POST /v1/embeddings``: ``input`` a string, strings, a token array or token arrays; one vector per
  input, derived from its text (a hash: the same text always gives the same vector, ``embedding_for``),
  unit length, ``dimensions`` long (else 1536; 3072 for ``*-3-large``), float32 values; ``encoding_format``
  ``float`` (lists) or ``base64`` (little-endian float32, what the SDK asks for by default and decodes).
  ``prompt_tokens`` = ``total_tokens`` = per input its whitespace-separated words + 1, or its token count.
  ``dimensions`` with ``*-ada-002``, above the model's size, or an empty string are 400 as the API.
- ``POST /v1/images/generations``: ``n`` images, each ``TINY_PNG``: ``b64_json``, or a ``url`` on the fake
  itself (``/files/img-<n>.png``, served as ``image/png``, kept in ``files``). The GPT image models
  (``gpt-image-*``) always answer ``b64_json`` with ``usage`` (input = the prompt's words; output:
  ``completion_tokens``, else 272 / 1056 / 4160 per image by quality) and refuse ``response_format``;
  ``dall-e-3`` refuses ``n`` > 1 and adds ``revised_prompt``; each model's sizes are checked. No streaming.
- ``POST /v1/audio/speech``: audio bytes of ``response_format`` (mp3: an ID3 tag then MPEG frames; wav: a
  RIFF/WAVE header then 16-bit 24 kHz PCM; pcm: the raw samples; opus, aac, flac: their magic then
  filler), 0.1 s per word of ``input``, in ``SPEECH_CHUNKS`` chunked writes (at least 10 ms apart). With
  ``stream_format: "sse"`` (refused for ``tts-1*``): ``speech.audio.delta`` events (base64 ``audio``) then
  ``speech.audio.done`` with usage (input = the input's words; output: ``completion_tokens``, else the
  number of deltas x 10).
- ``POST /v1/audio/transcriptions`` (multipart): the transcript is the behaviour's ``text``. ``json``
  (``{"text", "usage"}``), ``text``, ``srt``, ``vtt``, ``verbose_json`` (language, duration, segments,
  ``words`` with ``timestamp_granularities[]=word``). Models named ``*transcribe*`` answer only ``json`` and
  ``text`` (the spec says ``json`` only; OpenAI's guide and the SDK allow ``text`` too), with token usage
  (input: ``prompt_tokens`` audio tokens + the prompt's words; output: ``completion_tokens`` or the
  text's words), ``include[]=logprobs`` and ``stream`` (``transcript.text.delta`` / ``.done`` events);
  the others (``whisper-1``) have duration usage (``audio_seconds``, else 0.5 s per word, rounded up) and
  ignore ``stream``. Granularities without ``verbose_json`` are 400. The file (name, type, bytes) is in
  ``seen(model)[-1].files["file"]``.
- Videos: ``POST /v1/videos`` (JSON or multipart, ``input_reference`` a file or ``{"image_url"}``) makes
  a ``queued`` video (kept in ``videos``); each ``GET /v1/videos/{id}`` moves it on: ``in_progress`` with
  ``progress`` k/``polls`` after k polls, then ``completed`` at the ``polls``-th (or ``failed`` with
  ``error`` {``video_error``, ``error_message``}). ``GET /v1/videos/{id}/content`` is an MP4 (an ``ftyp``
  box first; ``variant=thumbnail`` / ``spritesheet``: a WebP) once completed, 404 before (as the API);
  ``GET /v1/videos`` lists (``limit``, ``order``, ``after``); ``DELETE /v1/videos/{id}`` deletes. Unknown ids
  are 404. The model's scripted failures apply to the create call only.

On the new endpoints (all but chat and models), a request that breaks its schema, or has a top-level
key the schema does not declare, is answered 400 ``invalid_request_error`` as the API would (unless
``reject_invalid=False``), besides being recorded in ``spec_errors``; a non-JSON body (not multipart, for
transcriptions) is 400 too. A request the spec allows but the model refuses (``n`` = 2 for ``dall-e-3``)
is a 400 without a spec error. Every answer body is checked against its schema (a base64 embedding as
the floats it encodes: the spec types ``embedding`` as an array only).

The stream behaviours (``drop_after``, ``hang_after``, ``error_in_stream_after``, ``chunk_delay``) count
SSE frames on every endpoint: chunks for chat and completions, events for the Responses API (0 is
``response.created``), speech and transcription events; and the chunks of a speech body (an in-stream
error there just ends the audio early). A Responses stream fails with ``response.failed`` or ``error``
(``responses_stream_error``); chat and completions with a ``data: {"error": ...}`` frame.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import itertools
import json
import math
import random
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.spec import errors as spec_errors_of
from tests.fakes.spec import form_payload, request_errors, response_stream_errors, stream_event_errors

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
    # Videos: the GETs of a video before it is done (0: the first GET finds it done), and, when set, the
    # error code it then fails with (its message is error_message) instead of completing.
    polls: int = 2
    video_error: str | None = None
    # Transcriptions: the audio's duration (verbose_json, subtitles, whisper usage); default 0.5 s a word.
    audio_seconds: float | None = None


@dataclass
class Upload:
    """A file part of a multipart request."""
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Seen:
    body: dict[str, Any]
    authorization: str | None
    at: float
    path: str = "/v1/chat/completions"
    files: dict[str, Upload] = field(default_factory=dict)  # multipart requests: the file parts by name
    headers: dict[str, str] = field(default_factory=dict)  # chat completions: the request's headers (lowercased)


@dataclass
class FakeVideo:
    """A video job: ``resource`` is the ``VideoResource`` as last answered, ``polls`` the GETs it had."""
    resource: dict[str, Any]
    behavior: Behavior
    polls: int = 0
    reference: Upload | None = None  # a multipart input_reference


MODERATION_CATEGORIES = ("hate", "hate/threatening", "harassment", "harassment/threatening", "illicit",
                         "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
                         "sexual/minors", "violence", "violence/graphic")
IMAGE_MODERATED = ("self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence",
                   "violence/graphic")  # the categories whose applied input types may include "image"
_ARG_PIECE = 5  # tool-call arguments stream in pieces this long (chat and Responses)
SPEECH_CHUNKS = 4  # a speech body (or its SSE deltas) comes in this many writes
SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                "wav": "audio/wav", "pcm": "audio/pcm"}
SPEECH_RATE = 24000  # Hz, 16-bit mono: OpenAI's pcm and wav
TOKEN_TRANSCRIBE_FORMATS = ("json", "text")  # models named *transcribe* (gpt-4o-transcribe, ...)
WHISPER_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
IMAGE_SIZES = {"dall-e-2": ("256x256", "512x512", "1024x1024"),
               "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
               "gpt-image": ("auto", "1024x1024", "1536x1024", "1024x1536")}
IMAGE_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}  # per 1024x1024 image


class FakeOpenAI:
    """The fake (see the module docstring for what each endpoint does). Besides ``Behavior``'s general
    fields, the media endpoints read: ``text`` (a transcript), ``prompt_tokens`` / ``completion_tokens``
    (transcription, speech and image usage), ``polls`` and ``video_error`` (a video's progress and failure),
    ``audio_seconds`` (a transcription's duration). State: ``videos`` (id -> ``FakeVideo``, in creation
    order) and ``files`` (name -> bytes of the images served at ``/files/<name>``)."""

    def __init__(self, *, reject_invalid: bool = True) -> None:
        self.behaviors: dict[str, Behavior] = {}
        self.by_secret: dict[str, Behavior] = {}  # consulted before the per-model behaviors
        self.requests: list[Seen] = []
        self.spec_errors: list[str] = []
        self.disconnects: dict[str, float] = {}  # model -> when the client went away
        self.videos: dict[str, FakeVideo] = {}
        self.files: dict[str, bytes] = {}  # images answered as URLs: /files/<name>
        self._image_ids = itertools.count(1)
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
            app.router.add_post("/v1/embeddings", self._embeddings)
            app.router.add_post("/v1/images/generations", self._images)
            app.router.add_get("/files/{name}", self._file)
            app.router.add_post("/v1/audio/speech", self._speech)
            app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
            app.router.add_post("/v1/videos", self._create_video)
            app.router.add_get("/v1/videos", self._list_videos)
            app.router.add_get("/v1/videos/{id}", self._get_video)
            app.router.add_delete("/v1/videos/{id}", self._delete_video)
            app.router.add_get("/v1/videos/{id}/content", self._video_content)
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
        return body, self._refusal(problems)

    def _refusal(self, problems: list[str]) -> web.Response | None:
        """The 400 for a request with these spec problems (None when there are none, or not rejecting)."""
        if not problems or not self.reject_invalid:
            return None
        where, _, what = problems[0].partition(": ")[2].partition(": ")
        unknown = what == "unknown parameter"
        return self._error(400, f"Unknown parameter: '{where}'." if unknown else problems[0],
                           param=where.replace("/", ".") or None,
                           code="unknown_parameter" if unknown else "invalid_value")

    async def _read_form(self, request: web.Request, schema: str) -> tuple[dict[str, Any], dict[str, Upload],
                                                                            web.Response | None]:
        """A multipart/form-data request: its fields as the JSON object ``schema`` describes (a file part
        stands as ``"<file name: N bytes>"``) and its file parts, recorded and checked like ``_read``."""
        auth = request.headers.get("Authorization")
        fields: list[tuple[str, Any]] = []
        uploads: dict[str, Upload] = {}
        problem = None
        if not request.content_type.startswith("multipart/form-data"):
            problem = f"{schema}: {request.path}: the body is not multipart/form-data"
        else:
            try:
                reader = await request.multipart()
                while (part := await reader.next()) is not None:
                    if not isinstance(part, BodyPartReader) or not part.name:
                        raise ValueError("a nested or unnamed part")
                    data = await part.read(decode=False)
                    if part.filename is not None:
                        uploads[part.name] = Upload(part.filename, part.headers.get("Content-Type"), bytes(data))
                        fields.append((part.name, f"<file {part.filename}: {len(data)} bytes>"))
                    else:
                        fields.append((part.name, bytes(data).decode("utf-8", "replace")))
            except (ValueError, AssertionError) as exc:
                problem = f"{schema}: {request.path}: the multipart body does not parse: {exc}"
        body = form_payload(schema, fields) if problem is None else {}
        self.requests.append(Seen(body=body, authorization=auth, at=time.time(), path=request.path, files=uploads))
        if problem is not None:
            self.spec_errors.append(problem)
            return body, uploads, self._error(400, "Invalid Content-Type header or body: expected "
                                              "multipart/form-data.")
        problems = request_errors(schema, body)
        self.spec_errors.extend(problems)
        return body, uploads, self._refusal(problems)

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
        self.requests.append(Seen(body=body, authorization=request.headers.get("Authorization"), at=time.time(),
                                  headers={k.lower(): v for k, v in request.headers.items()}))
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
                            error_frame: Callable[[int], bytes], *, content_type: str = "text/event-stream",
                            min_delay: float = 0.0) -> web.StreamResponse:
        """Send ``frames`` as a chunked body (SSE unless ``content_type`` says otherwise), applying ``b``'s
        stream behaviours (drop / hang / in-stream error after N frames, delays, at least ``min_delay``
        between frames); ``error_frame(n)`` is the frame that replaces frame ``n`` on an error."""
        resp = web.StreamResponse(headers={"Content-Type": content_type})
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
                elif min_delay and n < len(frames) - 1:
                    await asyncio.sleep(min_delay)
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

    # embeddings -----------------------------------------------------------------------------

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request, "CreateEmbeddingRequest")
        if refused is not None:
            return refused
        model = body.get("model") or ""
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
        given = body.get("input")
        one = isinstance(given, str) or (isinstance(given, list) and bool(given) and isinstance(given[0], int))
        inputs: list[Any] = [given] if one else list(given or [])
        if any(i == "" for i in inputs):
            return self._error(400, "'$.input' is invalid. Please check the API reference: "
                               "https://platform.openai.com/docs/api-reference.", param="input")
        native = 3072 if "3-large" in model else 1536
        dims = body.get("dimensions")
        if dims is not None and "ada-002" in model:
            return self._error(400, "This model does not support specifying dimensions.", param="dimensions")
        if dims is not None and dims > native:
            return self._error(400, f"This model's maximum dimensions is {native}; {dims} were requested.",
                               param="dimensions")
        vectors = [embedding_for(i, dims or native) for i in inputs]
        tokens = sum(len(i) if isinstance(i, list) else len(i.split()) + 1 for i in inputs)
        answer: dict[str, Any] = {
            "object": "list", "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": n, "embedding": v} for n, v in enumerate(vectors)]}
        self._check("CreateEmbeddingResponse", answer)  # the floats, also when sent as base64
        if body.get("encoding_format") == "base64":
            answer["data"] = [{**d, "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()}
                              for d, v in zip(answer["data"], vectors, strict=True)]
        return web.json_response(answer)

    # images ---------------------------------------------------------------------------------

    async def _images(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request, "CreateImageRequest")
        if refused is not None:
            return refused
        model = body.get("model") or "dall-e-2"
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
        gpt = model.startswith("gpt-image")
        n = body.get("n") or 1
        if model.startswith("dall-e-3") and n != 1:
            return self._error(400, "You must provide n=1 for this model.", param="n")
        if gpt and body.get("response_format") is not None:
            return self._error(400, "Unknown parameter: 'response_format'.", param="response_format",
                               code="unknown_parameter")
        if body.get("stream"):
            return self._error(400, "The fake does not stream images." if gpt else
                               "Streaming is only supported for the GPT image models.", param="stream")
        size = body.get("size")
        family = "gpt-image" if gpt else "dall-e-3" if model.startswith("dall-e-3") else "dall-e-2" \
            if model.startswith("dall-e-2") else None
        free_size = model.startswith("gpt-image-2") and re.fullmatch(r"\d+x\d+", size or "") is not None
        if size is not None and family is not None and size not in IMAGE_SIZES[family] and not free_size:
            return self._error(400, f"Invalid value: '{size}'. Supported values are: "
                               + ", ".join(f"'{s}'" for s in IMAGE_SIZES[family]) + ".", param="size",
                               code="invalid_value")
        fmt = "b64_json" if gpt else body.get("response_format") or "url"
        data: list[dict[str, Any]] = []
        for _ in range(n):
            if fmt == "b64_json":
                image: dict[str, Any] = {"b64_json": base64.b64encode(TINY_PNG).decode()}
            else:
                name = f"img-{next(self._image_ids)}.png"
                self.files[name] = TINY_PNG
                image = {"url": f"http://127.0.0.1:{self.port}/files/{name}"}
            if model.startswith("dall-e-3"):
                image["revised_prompt"] = f"A detailed picture of: {body.get('prompt', '')}"
            data.append(image)
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if gpt:
            quality = str(body["quality"]) if body.get("quality") in IMAGE_OUTPUT_TOKENS else "medium"
            text_tokens = len(str(body.get("prompt", "")).split())
            output = b.completion_tokens if b.completion_tokens is not None else IMAGE_OUTPUT_TOKENS[quality] * n
            answer |= {
                "background": body["background"] if body.get("background") in ("transparent", "opaque") else "opaque",
                "output_format": body.get("output_format") or "png", "quality": quality,
                "usage": {"input_tokens": text_tokens, "output_tokens": output, "total_tokens": text_tokens + output,
                          "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
                          "output_tokens_details": {"image_tokens": output, "text_tokens": 0}}}
            if size in ("1024x1024", "1536x1024", "1024x1536") or size in (None, "auto"):
                answer["size"] = size if size not in (None, "auto") else "1024x1024"
        self._check("ImagesResponse", answer)
        return web.json_response(answer)

    async def _file(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="image/png")

    # speech ---------------------------------------------------------------------------------

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request, "CreateSpeechRequest")
        if refused is not None:
            return refused
        model = body.get("model") or ""
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
        fmt = body.get("response_format") or "mp3"
        sse = body.get("stream_format") == "sse"
        if sse and model.startswith("tts-1"):
            return self._error(400, f"stream_format 'sse' is not supported for model '{model}'.",
                               param="stream_format", code="unsupported_value")
        words = len(str(body.get("input", "")).split())
        audio = speech_audio(fmt, max(1, words))
        step = -(-len(audio) // SPEECH_CHUNKS)
        pieces = [audio[i:i + step] for i in range(0, len(audio), step)]
        if not sse:
            return await self._write_frames(request, b, model, pieces, lambda _n: b"",
                                            content_type=SPEECH_TYPES[fmt], min_delay=0.01)
        output = b.completion_tokens if b.completion_tokens is not None else 10 * len(pieces)
        events: list[dict[str, Any]] = [{"type": "speech.audio.delta", "audio": base64.b64encode(p).decode()}
                                        for p in pieces]
        events.append({"type": "speech.audio.done", "usage": {"input_tokens": words, "output_tokens": output,
                                                              "total_tokens": words + output}})
        for event in events:
            self._check("CreateSpeechResponseStreamEvent", event)
        return await self._write_frames(request, b, model, [_data_frame(e) for e in events],
                                        lambda _n: self._data_error_frame(), min_delay=0.01)

    # transcriptions -------------------------------------------------------------------------

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        body, files, refused = await self._read_form(request, "CreateTranscriptionRequest")
        if refused is not None:
            return refused
        model = body.get("model") or ""
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
        if "file" not in files:
            return self._error(400, "'file' must be a file upload.", param="file")
        fmt = body.get("response_format") or "json"
        tokens = "transcribe" in model
        allowed = TOKEN_TRANSCRIBE_FORMATS if tokens else WHISPER_FORMATS
        if fmt not in allowed:
            return self._error(400, f"response_format '{fmt}' is not compatible with model '{model}'. Use "
                               + " or ".join(f"'{f}'" for f in allowed) + ".", param="response_format",
                               code="unsupported_value")
        granularities = body.get("timestamp_granularities")
        if granularities and fmt != "verbose_json":
            return self._error(400, "timestamp_granularities is only supported with response_format "
                               "'verbose_json'.", param="timestamp_granularities")
        logprobs = "logprobs" in (body.get("include") or [])
        if logprobs and not (tokens and fmt == "json"):
            return self._error(400, "logprobs are only supported with response_format 'json' and the gpt-4o "
                               "transcribe models.", param="include")
        text = b.text
        words = text.split()
        duration = b.audio_seconds if b.audio_seconds is not None else 0.5 * max(1, len(words))
        if tokens:
            prompt_words = len(str(body.get("prompt", "")).split())
            out = b.completion_tokens if b.completion_tokens is not None else len(words)
            usage: dict[str, Any] = {"type": "tokens", "input_tokens": b.prompt_tokens + prompt_words,
                                     "input_token_details": {"text_tokens": prompt_words,
                                                             "audio_tokens": b.prompt_tokens},
                                     "output_tokens": out, "total_tokens": b.prompt_tokens + prompt_words + out}
        else:
            usage = {"type": "duration", "seconds": math.ceil(duration)}
        probs = [{"token": w, "logprob": -0.01, "bytes": list(w.encode())} for w in words]
        if tokens and body.get("stream") is True:
            events: list[dict[str, Any]] = []
            for piece in _words(text):
                events.append({"type": "transcript.text.delta", "delta": piece}
                              | ({"logprobs": [p for p in probs if p["token"] == piece.strip()][:1]}
                                 if logprobs else {}))
            events.append({"type": "transcript.text.done", "text": text, "usage": usage}
                          | ({"logprobs": probs} if logprobs else {}))
            for event in events:
                self._check("CreateTranscriptionResponseStreamEvent", event)
            return await self._write_frames(request, b, model, [_data_frame(e) for e in events],
                                            lambda _n: self._data_error_frame())
        segments = _segments(words, duration)
        if fmt == "json":
            answer: dict[str, Any] = {"text": text, "usage": usage} | ({"logprobs": probs} if logprobs else {})
            self._check("CreateTranscriptionResponseJson", answer)
            return web.json_response(answer)
        if fmt == "verbose_json":
            wanted = granularities or ["segment"]
            answer = {"task": "transcribe", "language": LANGUAGES.get(str(body.get("language")), "english"),
                      "duration": duration, "text": text, "usage": usage}
            if "word" in wanted:
                per = duration / max(1, len(words))
                answer["words"] = [{"word": w, "start": round(i * per, 3), "end": round((i + 1) * per, 3)}
                                   for i, w in enumerate(words)]
            if "segment" in wanted:
                answer["segments"] = [
                    {"id": i, "seek": 0, "start": start, "end": end, "text": " " + line,
                     "tokens": [50364 + len(w) for w in line.split()],
                     "temperature": float(body.get("temperature") or 0),
                     "avg_logprob": -0.25, "compression_ratio": 1.2, "no_speech_prob": 0.01}
                    for i, (start, end, line) in enumerate(segments)]
            self._check("CreateTranscriptionResponseVerboseJson", answer)
            return web.json_response(answer)
        if fmt == "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        return web.Response(text=_subtitles(fmt, segments), content_type="text/plain")

    # videos ---------------------------------------------------------------------------------

    async def _create_video(self, request: web.Request) -> web.StreamResponse:
        files: dict[str, Upload] = {}
        if request.content_type.startswith("multipart/"):
            body, files, refused = await self._read_form(request, "CreateVideoMultipartBody")
        else:
            body, refused = await self._read(request, "CreateVideoJsonBody")
        if refused is not None:
            return refused
        model = body.get("model") or "sora-2"
        b = self._behavior(request, model)
        failed = await self._scripted_failure(request, b, model)
        if failed is not None:
            return failed
        size = body.get("size") or "720x1280"
        if model.startswith("sora-2") and "pro" not in model and size in ("1024x1792", "1792x1024"):
            return self._error(400, f"Invalid value: '{size}'. Supported values for {model} are: '720x1280', "
                               "'1280x720'.", param="size", code="invalid_value")
        vid = self._new_id("video")
        resource = {"id": vid, "object": "video", "model": model, "status": "queued", "progress": 0,
                    "created_at": int(time.time()), "completed_at": None, "expires_at": None,
                    "prompt": body.get("prompt"), "size": size, "seconds": body.get("seconds") or "4",
                    "remixed_from_video_id": None, "error": None}
        self._check("VideoResource", resource)
        self.videos[vid] = FakeVideo(resource=resource, behavior=b, reference=files.get("input_reference"))
        return web.json_response(resource)

    def _video(self, request: web.Request) -> tuple[FakeVideo | None, web.Response | None]:
        self.requests.append(Seen(body={}, authorization=request.headers.get("Authorization"), at=time.time(),
                                  path=request.path))
        vid = request.match_info["id"]
        video = self.videos.get(vid)
        if video is None:
            return None, self._error(404, f"Video with id '{vid}' not found.", param="video_id", code="not_found")
        return video, None

    async def _get_video(self, request: web.Request) -> web.Response:
        video, missing = self._video(request)
        if video is None:
            return missing  # type: ignore[return-value]
        r, b = video.resource, video.behavior
        if r["status"] in ("queued", "in_progress"):
            video.polls += 1
            if video.polls >= b.polls and b.video_error is not None:
                r |= {"status": "failed", "error": {"code": b.video_error, "message": b.error_message}}
            elif video.polls >= b.polls:
                now = int(time.time())
                r |= {"status": "completed", "progress": 100, "completed_at": now, "expires_at": now + 3600}
            else:
                r |= {"status": "in_progress", "progress": 100 * video.polls // b.polls}
        self._check("VideoResource", r)
        return web.json_response(r)

    async def _video_content(self, request: web.Request) -> web.Response:
        video, missing = self._video(request)
        if video is None:
            return missing  # type: ignore[return-value]
        variant = request.query.get("variant", "video")
        if variant not in ("video", "thumbnail", "spritesheet"):
            self.spec_errors.append(f"VideoContentVariant: {variant!r} is not one of video, thumbnail, spritesheet")
            return self._error(400, f"Invalid value: '{variant}'. Supported values are: 'video', 'thumbnail' and "
                               "'spritesheet'.", param="variant", code="invalid_value")
        if video.resource["status"] != "completed":
            return self._error(404, f"Video is not ready yet, use GET /v1/videos/{video.resource['id']} to check "
                               "status.", param="video_id", code="not_found")
        if variant != "video":
            return web.Response(body=TINY_WEBP, content_type="image/webp")
        return web.Response(body=fake_mp4(video.resource["id"]), content_type="video/mp4")

    async def _list_videos(self, request: web.Request) -> web.Response:
        self.requests.append(Seen(body={}, authorization=request.headers.get("Authorization"), at=time.time(),
                                  path=request.path))
        limit_s, order, after = request.query.get("limit", "20"), request.query.get("order", "desc"), \
            request.query.get("after")
        if not re.fullmatch(r"\d+", limit_s) or int(limit_s) > 100 or order not in ("asc", "desc"):
            self.spec_errors.append(f"ListVideos: limit {limit_s!r} / order {order!r} break the spec")
            bad = "limit" if order in ("asc", "desc") else "order"
            return self._error(400, f"Invalid value for '{bad}'.", param=bad, code="invalid_value")
        videos = [v.resource for v in self.videos.values()]
        if order == "desc":
            videos.reverse()
        if after is not None:
            ids = [v["id"] for v in videos]
            videos = videos[ids.index(after) + 1:] if after in ids else []
        page = videos[:int(limit_s)]
        answer = {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                  "last_id": page[-1]["id"] if page else None, "has_more": len(videos) > len(page)}
        self._check("VideoListResource", answer)
        return web.json_response(answer)

    async def _delete_video(self, request: web.Request) -> web.Response:
        video, missing = self._video(request)
        if video is None:
            return missing  # type: ignore[return-value]
        del self.videos[video.resource["id"]]
        answer = {"id": video.resource["id"], "object": "video.deleted", "deleted": True}
        self._check("DeletedVideoResource", answer)
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


def _data_frame(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def embedding_for(item: str | list[int], dimensions: int) -> list[float]:
    """The fake's vector for one embeddings input (a string or a token array): derived from a hash of it,
    of unit length, each value a float32 (so the float and base64 encodings carry the same numbers)."""
    key = item if isinstance(item, str) else "tokens:" + ",".join(map(str, item))
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in raw))))


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


TINY_PNG = _png(2, 2, (255, 128, 0))  # every generated image: a valid 2x2 orange PNG
# a 1x1 lossless WebP (the video thumbnail / spritesheet variants)
TINY_WEBP = bytes.fromhex("524946461a000000574542505650384c0d0000002f00000010071011118888fe0700")
LANGUAGES = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "it": "italian", "ja": "japanese"}


def fake_mp4(video_id: str) -> bytes:
    """A few bytes of an MP4: an ``ftyp`` box, then an ``mdat`` box naming the video."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41"
    mdat = b"mdat" + f"fake video {video_id}".encode()
    return struct.pack(">I", 4 + len(ftyp)) + ftyp + struct.pack(">I", 4 + len(mdat)) + mdat


def speech_audio(fmt: str, words: int) -> bytes:
    """The fake's speech for ``words`` words of input: 0.1 s each, as ``fmt`` (see the module docstring)."""
    samples = SPEECH_RATE * words // 10
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / SPEECH_RATE)))
                   for i in range(samples))
    if fmt == "pcm":
        return pcm
    if fmt == "wav":
        return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE" + b"fmt "
                + struct.pack("<IHHIIHH", 16, 1, 1, SPEECH_RATE, SPEECH_RATE * 2, 2, 16)
                + b"data" + struct.pack("<I", len(pcm)) + pcm)
    frames = max(4, 4 * words)
    if fmt == "mp3":  # an empty ID3v2.4 tag, then MPEG-1 layer III frames (128 kbit/s, 44.1 kHz: 417 bytes)
        return b"ID3\x04\x00\x00\x00\x00\x00\x00" + (b"\xff\xfb\x90\x64" + bytes(413)) * frames
    if fmt == "aac":  # ADTS frames
        return (b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(9)) * frames
    if fmt == "flac":
        return b"fLaC" + b"\x80\x00\x00\x22" + bytes(34) + bytes(64 * frames)
    return b"OggS\x00\x02" + bytes(22) + b"OpusHead\x01\x01" + bytes(64 * frames)  # opus


def _segments(words: list[str], duration: float) -> list[tuple[float, float, str]]:
    """The transcript in segments of up to 8 words, timed evenly over ``duration``."""
    per = duration / max(1, len(words))
    return [(round(i * per, 3), round(min(len(words), i + 8) * per, 3), " ".join(words[i:i + 8]))
            for i in range(0, len(words), 8)]


def _subtitles(fmt: str, segments: list[tuple[float, float, str]]) -> str:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        clock = f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}"
        return f"{clock},{ms % 1000:03d}" if fmt == "srt" else f"{clock}.{ms % 1000:03d}"

    if fmt == "srt":
        return "".join(f"{i}\n{stamp(s)} --> {stamp(e)}\n{line}\n\n" for i, (s, e, line) in enumerate(segments, 1))
    return "WEBVTT\n\n" + "".join(f"{stamp(s)} --> {stamp(e)}\n{line}\n\n" for s, e, line in segments)


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
