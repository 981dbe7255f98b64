"""A fake Google Gemini API (v1beta REST): a real aiohttp server on 127.0.0.1, in its own thread.

Routes: ``POST /v1beta/models/{model}:generateContent`` and
``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (SSE ``data:`` frames ending in
CRLF CRLF, no ``[DONE]``: the body ends the stream). Each test scripts it per model name
(``fake.script("g-429", Behavior(status=429, retry_after="7"))``); it records every request.

There is no official JSON schema for Gemini in shared/specs, so ``request_problems`` checks
bodies against Google's published REST reference for the Gemini API, v1beta:
- "Generating content" (ai.google.dev/api/generate-content): GenerateContentRequest,
  GenerationConfig, ThinkingConfig, GenerateContentResponse, FinishReason, UsageMetadata;
- "Caching" (ai.google.dev/api/caching), where Content, Part, Blob, FunctionCall,
  FunctionResponse, Tool, FunctionDeclaration, ToolConfig and FunctionCallingConfig are defined;
- the "Thought signatures" and "Function calling" guides (ai.google.dev/gemini-api/docs/...):
  signatures come back unchanged on the part they arrived on; the function-response turn
  answers every call of the function-call turn before it;
- "API keys" / troubleshooting: the key goes in the ``x-goog-api-key`` header; errors are
  ``{"error": {"code", "message", "status"}}``.
Problems land in ``spec_errors``, which tests assert empty.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

GEMINI_KEY = "AIzaFakeGeminiKey-0123456789abcdefXYZ"

_REQUEST_KEYS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig",
                 "cachedContent"}
_PART_DATA = ("text", "inlineData", "functionCall", "functionResponse", "fileData", "executableCode",
              "codeExecutionResult")
_PART_OTHER = {"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"}
_GENERATION_KEYS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
                    "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
                    "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
                    "thinkingConfig", "imageConfig", "mediaResolution"}
_THINKING_KEYS = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
_TOOL_KEYS = {"functionDeclarations", "googleSearchRetrieval", "codeExecution", "googleSearch", "urlContext",
              "computerUse", "fileSearch", "googleMaps"}
_DECLARATION_KEYS = {"name", "description", "behavior", "parameters", "parametersJsonSchema", "response",
                     "responseJsonSchema"}
_MODES = {"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass
class Behavior:
    text: str = "Hello from the fake Gemini, one word at a time."
    thoughts: str = ""  # thought-summary text, sent as {text, thought: true} parts
    signature: str | None = None  # a thoughtSignature: on the first functionCall, else on the last text part
    signature_on_empty_part: bool = False  # stream: the signature alone, on a last {text: ""} part
    function_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    call_ids: bool = False  # send functionCall.id (Gemini 3 style); 2.5 sends none
    finish_reason: str = "STOP"
    block_reason: str | None = None  # promptFeedback.blockReason and no candidates
    status: int = 200
    error_message: str = "fake Gemini failure"
    retry_after: str | None = None  # Retry-After header on an error response
    retry_delay: str | None = None  # a 429's RetryInfo.retryDelay in error.details ("7s"); default retry_after or 30
    echo_key_in_error: bool = False
    cut_after: int | None = None  # stream: end the body cleanly after N chunks, before any finishReason
    abort_after: int | None = None  # stream: abort the TCP connection after N chunks
    error_in_stream_after: int | None = None  # stream: an {"error": ...} frame after N chunks
    chunk_delay: float = 0.0
    raw_body: bytes | None = None  # an HTTP 200 whose body (or, streaming, whose one frame's data) is this
    prompt_tokens: int = 12
    cached_tokens: int = 0
    thoughts_tokens: int | None = None  # default: one per word of ``thoughts``


@dataclass
class Seen:
    model: str
    method: str  # generateContent | streamGenerateContent
    body: dict[str, Any]
    api_key: str | None
    query: dict[str, str]
    at: float


def _b64ok(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            base64.urlsafe_b64decode(value)
        except (binascii.Error, ValueError):
            return False
    return True


def _unknown(obj: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}: unknown field {k!r}" for k in obj if k not in allowed]


def request_problems(body: Any, issued: dict[str, str] | None = None,
                     signatures: set[str] | None = None) -> list[str]:
    """What is wrong with a GenerateContentRequest body. ``issued`` maps a call key (name + args)
    to the signature the fake sent on that functionCall: it must come back on that part;
    ``signatures`` are all it ever sent (with None, any base64 signature passes)."""
    if not isinstance(body, dict):
        return ["body: not a JSON object"]
    errs = _unknown(body, _REQUEST_KEYS, "request")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        errs.append("contents: required, a non-empty list")
        contents = []
    for i, c in enumerate(contents):
        errs += _content_problems(c, f"contents[{i}]", issued or {}, signatures)
    errs += _turn_problems(contents)
    si = body.get("systemInstruction")
    if si is not None:
        if not isinstance(si, dict) or not isinstance(si.get("parts"), list) or not si["parts"]:
            errs.append("systemInstruction: a Content with non-empty parts")
        else:
            errs += _unknown(si, {"parts", "role"}, "systemInstruction")
            errs += [f"systemInstruction.parts[{j}]: only text" for j, p in enumerate(si["parts"])
                     if not isinstance(p, dict) or set(p) != {"text"} or not isinstance(p["text"], str)]
    errs += _generation_problems(body.get("generationConfig"))
    errs += _tool_problems(body.get("tools"), body.get("toolConfig"))
    return errs


def _content_problems(c: Any, where: str, issued: dict[str, str], known: set[str] | None) -> list[str]:
    if not isinstance(c, dict):
        return [f"{where}: not an object"]
    errs = _unknown(c, {"role", "parts"}, where)
    if c.get("role") not in ("user", "model"):
        errs.append(f"{where}.role: must be user or model, got {c.get('role')!r}")
    parts = c.get("parts")
    if not isinstance(parts, list) or not parts:
        return [*errs, f"{where}.parts: required, a non-empty list"]
    for j, p in enumerate(parts):
        errs += _part_problems(p, f"{where}.parts[{j}]", c.get("role"), issued, known)
    return errs


def _part_problems(p: Any, where: str, role: Any, issued: dict[str, str], known: set[str] | None) -> list[str]:
    if not isinstance(p, dict):
        return [f"{where}: not an object"]
    errs = _unknown(p, set(_PART_DATA) | _PART_OTHER, where)
    data = [k for k in _PART_DATA if k in p]
    if len(data) != 1:
        errs.append(f"{where}: exactly one data field of {_PART_DATA} is required, got {data}")
    if "text" in p and not isinstance(p["text"], str):
        errs.append(f"{where}.text: a string")
    if "text" in p and p["text"] == "" and "thoughtSignature" not in p:
        errs.append(f"{where}.text: empty")
    if "thought" in p and not isinstance(p["thought"], bool):
        errs.append(f"{where}.thought: a boolean")
    sig = p.get("thoughtSignature")
    if sig is not None:
        if not _b64ok(sig):
            errs.append(f"{where}.thoughtSignature: bytes, base64-encoded")
        elif known is not None and sig not in known:
            errs.append(f"{where}.thoughtSignature: not a signature this server issued")
        if role != "model":
            errs.append(f"{where}.thoughtSignature: only on model parts")
    blob = p.get("inlineData")
    if blob is not None:
        if not isinstance(blob, dict) or not isinstance(blob.get("mimeType"), str) or not blob["mimeType"]:
            errs.append(f"{where}.inlineData.mimeType: required")
        elif not _b64ok(blob.get("data")):
            errs.append(f"{where}.inlineData.data: required, base64")
        else:
            errs += _unknown(blob, {"mimeType", "data"}, f"{where}.inlineData")
    call = p.get("functionCall")
    if call is not None:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            errs.append(f"{where}.functionCall.name: required")
        else:
            errs += _unknown(call, {"id", "name", "args"}, f"{where}.functionCall")
            if "args" in call and not isinstance(call["args"], dict):
                errs.append(f"{where}.functionCall.args: an object")
            if role != "model":
                errs.append(f"{where}.functionCall: only in model turns")
            want = issued.get(call_key(call["name"], call.get("args") or {}))
            if want is not None and sig != want:
                errs.append(f"{where}: the functionCall lost the thoughtSignature it was issued with")
    resp = p.get("functionResponse")
    if resp is not None:
        if not isinstance(resp, dict) or not isinstance(resp.get("name"), str) or not resp["name"]:
            errs.append(f"{where}.functionResponse.name: required")
        elif not isinstance(resp.get("response"), dict):
            errs.append(f"{where}.functionResponse.response: required, an object")
        else:
            errs += _unknown(resp, {"id", "name", "response", "parts", "willContinue", "scheduling"},
                             f"{where}.functionResponse")
            if role != "user":
                errs.append(f"{where}.functionResponse: only in user turns")
    return errs


def _turn_problems(contents: list[Any]) -> list[str]:
    """A turn with function responses answers every call of the model turn just before it."""
    errs = []
    for i, c in enumerate(contents):
        parts = c.get("parts") if isinstance(c, dict) else None
        if not isinstance(parts, list):
            continue
        responses = [p["functionResponse"].get("name") for p in parts
                     if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict)]
        if not responses:
            continue
        prev = contents[i - 1] if i > 0 and isinstance(contents[i - 1], dict) else {}
        calls = [p["functionCall"].get("name") for p in prev.get("parts") or ()
                 if isinstance(p, dict) and isinstance(p.get("functionCall"), dict)]
        if prev.get("role") != "model" or sorted(calls) != sorted(responses):
            errs.append(f"contents[{i}]: function responses {responses} do not answer the calls {calls} "
                        "of the model turn before")
    return errs


def _generation_problems(gc: Any) -> list[str]:
    if gc is None:
        return []
    if not isinstance(gc, dict):
        return ["generationConfig: an object"]
    errs = _unknown(gc, _GENERATION_KEYS, "generationConfig")
    for key in ("maxOutputTokens", "topK", "seed", "candidateCount"):
        if key in gc and (not isinstance(gc[key], int) or isinstance(gc[key], bool)):
            errs.append(f"generationConfig.{key}: an integer")
    for key in ("temperature", "topP"):
        if key in gc and not isinstance(gc[key], int | float):
            errs.append(f"generationConfig.{key}: a number")
    stops = gc.get("stopSequences")
    if stops is not None and (not isinstance(stops, list) or len(stops) > 5
                              or not all(isinstance(s, str) for s in stops)):
        errs.append("generationConfig.stopSequences: up to 5 strings")
    if "responseSchema" in gc and "responseJsonSchema" in gc:
        errs.append("generationConfig: responseSchema and responseJsonSchema are exclusive")
    if "responseJsonSchema" in gc and gc.get("responseMimeType") != "application/json":
        errs.append("generationConfig.responseJsonSchema: needs responseMimeType application/json")
    tc = gc.get("thinkingConfig")
    if tc is not None:
        if not isinstance(tc, dict):
            errs.append("generationConfig.thinkingConfig: an object")
        else:
            errs += _unknown(tc, _THINKING_KEYS, "generationConfig.thinkingConfig")
            if "thinkingBudget" in tc and not isinstance(tc["thinkingBudget"], int):
                errs.append("generationConfig.thinkingConfig.thinkingBudget: an integer")
            if "includeThoughts" in tc and not isinstance(tc["includeThoughts"], bool):
                errs.append("generationConfig.thinkingConfig.includeThoughts: a boolean")
    return errs


def _tool_problems(tools: Any, config: Any) -> list[str]:
    errs: list[str] = []
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            return ["tools: a list"]
        for i, t in enumerate(tools):
            if not isinstance(t, dict):
                errs.append(f"tools[{i}]: an object")
                continue
            errs += _unknown(t, _TOOL_KEYS, f"tools[{i}]")
            for j, d in enumerate(t.get("functionDeclarations") or ()):
                where = f"tools[{i}].functionDeclarations[{j}]"
                if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
                    errs.append(f"{where}.name: required")
                    continue
                names.add(d["name"])
                errs += _unknown(d, _DECLARATION_KEYS, where)
                if "parameters" in d and "parametersJsonSchema" in d:
                    errs.append(f"{where}: parameters and parametersJsonSchema are exclusive")
                schema = d.get("parametersJsonSchema")
                if schema is not None and (not isinstance(schema, dict) or schema.get("type") != "object"):
                    errs.append(f"{where}.parametersJsonSchema: must describe an object")
    if config is not None:
        fcc = config.get("functionCallingConfig") if isinstance(config, dict) else None
        if not isinstance(fcc, dict):
            return [*errs, "toolConfig.functionCallingConfig: an object"]
        errs += _unknown(fcc, {"mode", "allowedFunctionNames"}, "toolConfig.functionCallingConfig")
        if fcc.get("mode", "AUTO") not in _MODES:
            errs.append(f"toolConfig.functionCallingConfig.mode: unknown {fcc.get('mode')!r}")
        allowed = fcc.get("allowedFunctionNames")
        if allowed is not None:
            if fcc.get("mode") not in ("ANY", "VALIDATED"):
                errs.append("toolConfig.functionCallingConfig.allowedFunctionNames: only with mode ANY")
            if not isinstance(allowed, list) or not set(allowed) <= names:
                errs.append("toolConfig.functionCallingConfig.allowedFunctionNames: names of declared functions")
    return errs


# thinkingBudget per model family ("Gemini thinking" guide, the budgets table): (lowest budget that
# thinks, highest, whether 0 turns thinking off); None: the model takes no thinkingConfig at all.
# -1 (dynamic) is valid for every model that thinks. Families not listed are not checked.
_THINKING_BUDGETS: tuple[tuple[str, tuple[int, int, bool] | None], ...] = (
    ("gemini-2.5-flash-lite", (512, 24576, True)),
    ("gemini-2.5-flash", (1, 24576, True)),
    ("gemini-2.5-pro", (128, 32768, False)),
    ("gemini-2.0-flash-thinking", (0, 10**9, True)),
    ("gemini-2.0-", None),
    ("gemini-1.", None),
)


def thinking_problems(model: str, body: Any) -> list[str]:
    """What Gemini would refuse in the thinkingConfig of a request to ``model``."""
    gc = body.get("generationConfig") if isinstance(body, dict) else None
    tc = gc.get("thinkingConfig") if isinstance(gc, dict) else None
    if tc is None:
        return []
    rule = next((r for prefix, r in _THINKING_BUDGETS if model.lower().startswith(prefix)), (0, 10**9, True))
    if rule is None:
        return [f"generationConfig.thinkingConfig: {model} does not support thinking"]
    low, high, can_disable = rule
    budget = tc.get("thinkingBudget") if isinstance(tc, dict) else None
    if not isinstance(budget, int) or budget == -1 or (budget == 0 and can_disable) or low <= budget <= high:
        return []
    return [f"generationConfig.thinkingConfig.thinkingBudget: {budget} is outside {low}..{high} for {model}"
            + ("" if can_disable else " (thinking cannot be turned off)")]


def call_key(name: str, args: dict[str, Any]) -> str:
    return name + json.dumps(args, sort_keys=True)


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


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}


class FakeGemini:
    def __init__(self) -> None:
        self.behaviors: dict[str, Behavior] = {}
        self.requests: list[Seen] = []
        self.spec_errors: list[str] = []
        self.errors: list[str] = []  # requests refused before any behavior ran (bad key, bad route)
        self.issued: dict[str, str] = {}  # call key -> the signature sent with that functionCall
        self._signatures: set[str] = set()
        self.files: dict[str, tuple[str, bytes]] = {}  # name -> (media type, bytes) served at /media/{name}
        self.file_hits: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, model: str, behavior: Behavior) -> None:
        self.behaviors[model] = behavior

    def seen(self, model: str) -> list[Seen]:
        return [s for s in self.requests if s.model == model]

    def serve(self, name: str, media_type: str, data: bytes) -> str:
        """Serve bytes over plain HTTP (an image URL for the gateway's media fetcher); returns the URL."""
        self.files[name] = (media_type, data)
        return f"{self.base_url}/media/{name}"

    def signature(self, label: str) -> str:
        """A base64 signature the server will accept back (as if it had sent it)."""
        sig = base64.b64encode(f"fake-thought-{label}".encode()).decode()
        self._signatures.add(sig)
        return sig

    # server ------------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1beta/models/{target}", self._generate)
            app.router.add_get("/media/{name}", self._file)
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

        self._thread = threading.Thread(target=run, name="fake-gemini", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.file_hits.append(name)
        if name not in self.files:
            return web.Response(status=404)
        media_type, data = self.files[name]
        return web.Response(body=data, content_type=media_type)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            self.errors.append(f"unknown method {method!r}")
            return web.json_response(error_body(404, f"Method {method} not found"), status=404)
        if "key" in request.query:
            self.spec_errors.append("the API key was sent in the URL")
        if method == "streamGenerateContent" and request.query.get("alt") != "sse":
            self.spec_errors.append("streamGenerateContent without alt=sse")
        if request.content_type != "application/json":
            self.spec_errors.append(f"Content-Type {request.content_type!r}, not application/json")
        try:
            body = await request.json()
        except ValueError:
            self.spec_errors.append("body is not JSON")
            return web.json_response(error_body(400, "Invalid JSON payload received."), status=400)
        key = request.headers.get("x-goog-api-key")
        self.requests.append(Seen(model=model, method=method, body=body, api_key=key, query=dict(request.query),
                                  at=time.time()))
        self.spec_errors.extend(request_problems(body, self.issued, self._signatures))
        self.spec_errors.extend(thinking_problems(model, body))
        if key is None:
            self.errors.append("no API key")
            return web.json_response(error_body(403, "Method doesn't allow unregistered callers (callers without "
                                                     "established identity). Please use API Key or other form of "
                                                     "API consumer identity to call this API."), status=403)
        if key != GEMINI_KEY:
            self.errors.append("wrong API key")
            return web.json_response(error_body(400, "API key not valid. Please pass a valid API key."), status=400)
        b = self.behaviors.get(model, Behavior())
        if b.status != 200:
            message = b.error_message + (f" (key {GEMINI_KEY})" if b.echo_key_in_error else "")
            err = error_body(b.status, message)
            if b.status == 429:
                err["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                            "retryDelay": b.retry_delay or f"{b.retry_after or 30}s"}]
            headers = {"Retry-After": b.retry_after} if b.retry_after else None
            return web.json_response(err, status=b.status, headers=headers)
        rid = f"fake-resp-{len(self.requests)}"
        if b.raw_body is not None and method == "generateContent":
            return web.Response(body=b.raw_body, content_type="application/json")
        if method == "generateContent":
            return web.json_response(self._whole(b, model, rid))
        return await self._stream(request, b, model, rid)

    # answers -----------------------------------------------------------------------------------

    def _usage(self, b: Behavior, *, final: bool = True) -> dict[str, Any]:
        out = len(_words(b.text)) + len(b.function_calls) if final else 0
        thoughts = b.thoughts_tokens if b.thoughts_tokens is not None else len(_words(b.thoughts))
        usage: dict[str, Any] = {"promptTokenCount": b.prompt_tokens, "candidatesTokenCount": out,
                                 "totalTokenCount": b.prompt_tokens + out + thoughts,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": b.prompt_tokens}]}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if b.cached_tokens:
            usage["cachedContentTokenCount"] = b.cached_tokens
        return usage

    def _call_parts(self, b: Behavior, first: int) -> list[dict[str, Any]]:
        parts = []
        for n, (name, args) in enumerate(b.function_calls):
            call: dict[str, Any] = {"name": name, "args": args}
            if b.call_ids:
                call["id"] = f"fc-{first + n}"
            part: dict[str, Any] = {"functionCall": call}
            if n == 0 and b.signature:
                part["thoughtSignature"] = b.signature
                self.issued[call_key(name, args)] = b.signature
            parts.append(part)
        return parts

    def _envelope(self, model: str, rid: str, parts: list[dict[str, Any]], finish: str | None,
                  usage: dict[str, Any]) -> dict[str, Any]:
        cand: dict[str, Any] = {"index": 0}
        if parts:
            cand["content"] = {"role": "model", "parts": parts}
        if finish:
            cand["finishReason"] = finish
        return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": rid}

    def _blocked(self, b: Behavior, model: str, rid: str) -> dict[str, Any]:
        return {"promptFeedback": {"blockReason": b.block_reason, "safetyRatings": []},
                "usageMetadata": {"promptTokenCount": b.prompt_tokens, "totalTokenCount": b.prompt_tokens},
                "modelVersion": model, "responseId": rid}

    def _whole(self, b: Behavior, model: str, rid: str) -> dict[str, Any]:
        if b.block_reason:
            return self._blocked(b, model, rid)
        if b.signature:
            self._signatures.add(b.signature)
        parts: list[dict[str, Any]] = []
        if b.thoughts:
            parts.append({"text": b.thoughts, "thought": True})
        if b.text:
            parts.append({"text": b.text})
            if b.signature and not b.function_calls:
                parts[-1]["thoughtSignature"] = b.signature
        parts += self._call_parts(b, len(self.requests) * 10)
        return self._envelope(model, rid, parts, b.finish_reason, self._usage(b))

    def _frames(self, b: Behavior, model: str, rid: str) -> list[dict[str, Any]]:
        if b.block_reason:
            return [self._blocked(b, model, rid)]
        if b.signature:
            self._signatures.add(b.signature)
        chunks: list[list[dict[str, Any]]] = [[{"text": w, "thought": True}] for w in _words(b.thoughts)]
        chunks += [[{"text": w}] for w in _words(b.text)]
        if b.signature and not b.function_calls:
            if b.signature_on_empty_part or not b.text:
                chunks.append([{"text": "", "thoughtSignature": b.signature}])
            else:
                chunks[-1][0]["thoughtSignature"] = b.signature
        if b.function_calls:
            chunks.append(self._call_parts(b, len(self.requests) * 10))
        if not chunks:
            chunks.append([])
        last = len(chunks) - 1
        return [self._envelope(model, rid, parts, b.finish_reason if n == last else None,
                               self._usage(b, final=n == last)) for n, parts in enumerate(chunks)]

    async def _stream(self, request: web.Request, b: Behavior, model: str, rid: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if b.raw_body is not None:
            await resp.write(b"data: " + b.raw_body + b"\r\n\r\n")
            await resp.write_eof()
            return resp
        try:
            for n, frame in enumerate(self._frames(b, model, rid)):
                if b.cut_after is not None and n >= b.cut_after:
                    break
                if b.abort_after is not None and n >= b.abort_after:
                    assert request.transport is not None
                    await asyncio.sleep(0.05)  # let what was written reach the peer
                    request.transport.abort()
                    return resp
                if b.error_in_stream_after is not None and n >= b.error_in_stream_after:
                    err = error_body(503, f"The model is overloaded. (key {GEMINI_KEY})")
                    await resp.write(b"data: " + json.dumps(err).encode() + b"\r\n\r\n")
                    break
                await resp.write(b"data: " + json.dumps(frame).encode() + b"\r\n\r\n")
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp
