"""Google Gemini upstream: canonical chat <-> the Gemini API's v1beta REST ``generateContent``.

``POST {base}/v1beta/models/{model}:generateContent`` and ``...:streamGenerateContent?alt=sse``
(SSE ``data: {GenerateContentResponse}`` chunks, no ``[DONE]``: the body ends the stream). The
API key goes in the ``x-goog-api-key`` header, never in the URL, so it never reaches a log.

The codec functions here are pure (no I/O, no clock): ``encode_request`` takes media already
fetched, ``decode_response`` and ``StreamDecoder`` take the time as an argument.

Choices:
- A prompt Gemini blocks (``promptFeedback.blockReason``, no candidates) is a normal answer with
  no content and finish reason ``content_filter``, not an error: the caller caused it, and an
  UpstreamError would make routing retry it on other credentials.
- Thought signatures: a part's ``thoughtSignature`` decodes to a ``ReasoningBlock(signature=...)``
  just before that part's block (stream: a ``ReasoningDelta(signature=...)`` before its events).
  Encoding attaches a ReasoningBlock's signature to the next part of the same message; a
  ReasoningBlock with text becomes a ``{text, thought: true}`` part (Gemini takes whole model
  turns back, thought parts included), so a signature that closes a thought block (Anthropic's
  order) lands on the part after the thought, as Gemini sent it. A signature with no part after
  it rides on the message's last unsigned part.
- Tool results: a ``functionResponse`` with ``{"output": text}`` or ``{"error": text}`` (the keys
  Google documents), named after the assistant tool call with the same id; consecutive ones share
  one user turn. Images in a tool result follow as inline parts in that turn.
- Tool parameters go as ``parametersJsonSchema`` and json_schema response formats as
  ``responseJsonSchema`` (v1beta's JSON Schema fields), so ``additionalProperties``, ``anyOf``
  and ``$ref`` pass; only ``$schema`` is removed (``clean_schema``).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

import msgspec

from tollway.core.catalog import Credential, EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.chat import (
    Block,
    ChatRequest,
    ChatResponse,
    DocumentBlock,
    Finish,
    FinishReason,
    ImageBlock,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextBlock,
    TextDelta,
    ToolCallBlock,
    ToolCallDelta,
    ToolCallStart,
    ToolResultBlock,
    Usage,
    UsageReport,
)
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.names import DIALECT_GEMINI, PROVIDER_GEMINI
from tollway.providers.base import ProviderContext
from tollway.providers.http import Timeouts, UpstreamClient, redact
from tollway.providers.media import Media, MediaFetcher, decode_data_url

_CAPS = ("chat", "tools", "vision", "reasoning")


def _model(model_id: str, display: str) -> ModelInfo:
    return ModelInfo(id=model_id, provider=PROVIDER_GEMINI, upstream_id=model_id, display_name=display,
                     capabilities=_CAPS, tags=("gemini",))


SPEC = ProviderSpec(
    name=PROVIDER_GEMINI,
    kind=PROVIDER_GEMINI,
    env_requirements=(
        EnvRequirement(key="GEMINI_API_KEY", description="Google Gemini API key"),
        EnvRequirement(key="GEMINI_BASE_URL", description="Gemini API base URL", required=False),
    ),
    api_key_env="GEMINI_API_KEY",
    base_url_env="GEMINI_BASE_URL",
    default_base_url="https://generativelanguage.googleapis.com",
    models=(
        _model("gemini-2.5-flash", "Gemini 2.5 Flash"),
        _model("gemini-2.5-pro", "Gemini 2.5 Pro"),
        _model("gemini-2.0-flash", "Gemini 2.0 Flash"),
    ),
    open_catalog=True,
    features=frozenset({"chat", "stream", "tools", "reasoning", "usage", "errors", "images"}),
)

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

# reasoning_effort -> thinkingBudget (the budgets Google's OpenAI-compatible endpoint uses)
EFFORT_BUDGETS: Final[Mapping[str, int]] = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
_SCHEMA_DROP = frozenset({"$schema"})
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                       "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


IdFactory = Callable[[str], str]

# --- request: canonical -> GenerateContentRequest -----------------------------------------------


def media_urls(req: ChatRequest) -> list[str]:
    """The http(s) URLs of the request's images and documents (Gemini takes media only inline)."""
    urls: list[str] = []
    for m in req.messages:
        for b in _flat_blocks(m.content):
            url = b.url if isinstance(b, ImageBlock) or (isinstance(b, DocumentBlock) and not b.data) else None
            if url and not url.startswith("data:") and url not in urls:
                urls.append(url)
    return urls


def _flat_blocks(blocks: Iterable[Block]) -> Iterable[Block]:
    for b in blocks:
        yield b
        if isinstance(b, ToolResultBlock):
            yield from b.content


def encode_request(req: ChatRequest, *, media: Mapping[str, Media] | None = None) -> dict[str, Any]:
    """The GenerateContentRequest body; ``media`` holds the fetched bytes of ``media_urls(req)``."""
    loaded = media or {}
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, from earlier assistant turns
    for i, m in enumerate(req.messages):
        if m.role == "system":
            for b in m.content:
                if not isinstance(b, TextBlock):
                    raise InvalidRequest(f"messages[{i}]: Gemini takes only text in system instructions",
                                         param=f"messages[{i}].content")
                if b.text:
                    system.append({"text": b.text})
            continue
        for b in m.content:
            if isinstance(b, ToolCallBlock):
                names[b.id] = b.name
        parts = _parts(m, i, names, loaded)
        if not parts:
            continue
        role = "model" if m.role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    for c in contents:
        if c["role"] == "user" and any("functionResponse" in p for p in c["parts"]):
            c["parts"].sort(key=lambda p: "functionResponse" not in p)  # stable: responses first
    if not contents:
        raise InvalidRequest("Gemini needs at least one user or assistant message with content", param="messages")
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t.name, t.description, t.parameters)
                                                   for t in req.tools]}]
    if req.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(req.tool_choice.mode, req.tool_choice.name)}
    config = _generation_config(req)
    if config:
        body["generationConfig"] = config
    if req.dialect == DIALECT_GEMINI:
        _merge_extras(body, req.extras)
    return body


def _parts(m: Message, i: int, names: Mapping[str, str], media: Mapping[str, Media]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []  # images from tool results: after the message's other parts
    pending: str | None = None  # a signature waiting for the part it belongs to
    for b in m.content:
        if isinstance(b, ReasoningBlock):
            if b.text:
                out.append(_signed({"text": b.text, "thought": True}, pending))
                pending = None
            if b.signature:
                if pending:
                    _park(out, pending)
                pending = b.signature
            continue
        part: dict[str, Any] | None
        if isinstance(b, TextBlock):
            part = {"text": b.text} if b.text else None
        elif isinstance(b, ImageBlock):
            part = _inline(_media_of(b.url, media))
        elif isinstance(b, DocumentBlock):
            part = _document(b, media)
        elif isinstance(b, ToolCallBlock):
            part = {"functionCall": {"name": b.name, "args": _args(b, i), "id": b.id}}
        else:
            part = _function_response(b, i, names, m.name)
            extra.extend(_inline(_media_of(c.url, media)) for c in b.content if isinstance(c, ImageBlock))
        if part is not None:
            out.append(_signed(part, pending))
            pending = None
    if pending:
        _park(out, pending)
    return out + extra


def _signed(part: dict[str, Any], signature: str | None) -> dict[str, Any]:
    if signature:
        part["thoughtSignature"] = signature
    return part


def _park(parts: list[dict[str, Any]], signature: str) -> None:
    """A signature with no part after it: onto the last part that has none (else it has no place)."""
    for part in reversed(parts):
        if "thoughtSignature" not in part:
            part["thoughtSignature"] = signature
            return


def _media_of(url: str, media: Mapping[str, Media]) -> Media:
    if url.startswith("data:"):
        return decode_data_url(url)
    found = media.get(url)
    if found is None:
        raise InvalidRequest(f"media at {url[:100]!r} was not loaded")
    return found


def _inline(m: Media) -> dict[str, Any]:
    return {"inlineData": {"mimeType": m.media_type, "data": m.b64()}}


def _document(b: DocumentBlock, media: Mapping[str, Media]) -> dict[str, Any]:
    if b.data:
        return {"inlineData": {"mimeType": b.media_type, "data": b.data}}
    if not b.url:
        raise InvalidRequest("a document needs data or a url")
    m = _media_of(b.url, media)
    mime = m.media_type if m.media_type and m.media_type != "application/octet-stream" else b.media_type
    return {"inlineData": {"mimeType": mime, "data": m.b64()}}


def _args(b: ToolCallBlock, i: int) -> dict[str, Any]:
    if not b.arguments.strip():
        return {}
    try:
        args = json.loads(b.arguments)
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest(f"messages[{i}]: the arguments of tool call {b.id!r} are not a JSON object, "
                             "which Gemini needs", param=f"messages[{i}].tool_calls")
    return args


def _function_response(b: ToolResultBlock, i: int, names: Mapping[str, str],
                       fallback: str | None) -> dict[str, Any]:
    name = names.get(b.tool_call_id) or fallback
    if not name:
        raise InvalidRequest(f"messages[{i}]: no earlier assistant tool call has id {b.tool_call_id!r}; Gemini "
                             "needs the function name of every tool result", param=f"messages[{i}].tool_call_id")
    text = "".join(c.text for c in b.content if isinstance(c, TextBlock))
    return {"functionResponse": {"name": name, "id": b.tool_call_id,
                                 "response": {"error" if b.is_error else "output": text}}}


def clean_schema(schema: Any) -> Any:
    """A JSON Schema as Gemini's ``parametersJsonSchema``/``responseJsonSchema`` take it: ``$schema``
    removed at every depth (property names under ``properties`` are kept whatever they are)."""
    if isinstance(schema, list):
        return [clean_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_DROP:
            continue
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            out[key] = {k: clean_schema(v) for k, v in value.items()}
        else:
            out[key] = clean_schema(value)
    return out


def _declaration(name: str, description: str | None, parameters: Mapping[str, Any]) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": name}
    if description:
        decl["description"] = description
    if parameters and not _empty_object(parameters):
        decl["parametersJsonSchema"] = clean_schema(dict(parameters))
    return decl


def _empty_object(schema: Mapping[str, Any]) -> bool:
    """``{"type": "object", "properties": {}}`` and the like: a function without parameters."""
    return not schema.get("properties") and set(schema) <= {"type", "properties", "required",
                                                            "additionalProperties", "$schema"}


def _calling_config(mode: str, name: str | None) -> dict[str, Any]:
    if name:
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[mode]}


def thinking_budget(req: ChatRequest) -> int | None:
    if req.reasoning_budget is not None:
        return req.reasoning_budget
    if req.reasoning_effort is not None:
        return EFFORT_BUDGETS.get(req.reasoning_effort)
    return None


def _generation_config(req: ChatRequest) -> dict[str, Any]:
    gc: dict[str, Any] = {}
    for key, value in (("maxOutputTokens", req.max_tokens), ("temperature", req.temperature),
                       ("topP", req.top_p), ("topK", req.top_k), ("seed", req.seed)):
        if value is not None:
            gc[key] = value
    if req.stop:
        gc["stopSequences"] = list(req.stop)
    rf = req.response_format or {}
    if rf.get("type") in ("json_object", "json_schema"):
        gc["responseMimeType"] = "application/json"
        schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
        if isinstance(schema, dict):
            gc["responseJsonSchema"] = clean_schema(schema)
    budget = thinking_budget(req)
    if budget is not None:
        gc["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget != 0}
    return gc


def _merge_extras(body: dict[str, Any], extras: Mapping[str, Any]) -> None:
    """Gemini-wire fields from a Gemini front door: added where the canonical mapping set nothing."""
    for key, value in extras.items():
        if key == "generationConfig" and isinstance(value, dict):
            body.setdefault("generationConfig", {})
            for k, v in value.items():
                body["generationConfig"].setdefault(k, v)
        else:
            body.setdefault(key, value)


def unsupported(req: ChatRequest) -> list[str]:
    """The canonical request fields ``encode_request`` does not send to Gemini."""
    out = [k for k in ("parallel_tool_calls", "user") if getattr(req, k) is not None]
    if req.reasoning_effort is not None and (req.reasoning_budget is not None
                                             or req.reasoning_effort not in EFFORT_BUDGETS):
        out.append("reasoning_effort")
    if req.response_format is not None and req.response_format.get("type") not in _RESPONSE_FORMATS:
        out.append("response_format")
    if any(t.strict is not None for t in req.tools):
        out.append("tools.strict")
    blocks = [b for m in req.messages for b in _flat_blocks(m.content)]
    if any(m.name for m in req.messages if m.role != "tool"):
        out.append("messages.name")
    if any(isinstance(b, ImageBlock) and b.detail for b in blocks):
        out.append("image.detail")
    if any(isinstance(b, DocumentBlock) and b.name for b in blocks):
        out.append("document.name")
    if any(isinstance(b, ReasoningBlock) and b.redacted_data for b in blocks):
        out.append("reasoning.redacted_data")
    if req.dialect != DIALECT_GEMINI:
        out.extend(req.extras)
    return out


# --- response: GenerateContentResponse -> canonical ---------------------------------------------


def finish_reason_of(reason: str | None, has_calls: bool) -> FinishReason:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def usage_of(meta: Mapping[str, Any] | None) -> Usage:
    if not meta:
        return Usage()
    thoughts = meta.get("thoughtsTokenCount") or 0
    return Usage(
        input_tokens=(meta.get("promptTokenCount") or 0) + (meta.get("toolUsePromptTokenCount") or 0),
        output_tokens=(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=meta.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


def _call_args(call: Mapping[str, Any]) -> str:
    return json.dumps(call.get("args") or {}, ensure_ascii=False, separators=(",", ":"))


def _candidate(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    candidates = data.get("candidates")
    return candidates[0] if isinstance(candidates, list) and candidates else None


def _error_text(data: Mapping[str, Any]) -> str:
    err = data.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err.get("status") or "error")
    return str(err)


def decode_response(data: Any, *, model: str, created: int, make_id: IdFactory = new_id) -> ChatResponse:
    """A whole GenerateContentResponse as a ChatResponse (the first candidate)."""
    if not isinstance(data, dict):
        raise ValueError("the completion is not a JSON object")
    if "error" in data:
        raise ValueError(f"an error object instead of a completion: {_error_text(data)}")
    usage = usage_of(data.get("usageMetadata"))
    rid = data.get("responseId") or make_id("gen-")
    model = data.get("modelVersion") or model
    cand = _candidate(data)
    if cand is None:
        if (data.get("promptFeedback") or {}).get("blockReason"):
            return ChatResponse(id=rid, model=model, created=created, content=(), finish_reason="content_filter",
                                usage=usage)
        raise ValueError("no candidates and no block reason")
    blocks: list[Block] = []
    calls = 0
    for part in (cand.get("content") or {}).get("parts") or ():
        if part.get("thoughtSignature"):
            blocks.append(ReasoningBlock(signature=part["thoughtSignature"]))
        call = part.get("functionCall")
        if isinstance(call, dict):
            calls += 1
            blocks.append(ToolCallBlock(id=call.get("id") or make_id("call_"), name=call.get("name") or "",
                                        arguments=_call_args(call)))
        elif part.get("text"):
            blocks.append(ReasoningBlock(text=part["text"]) if part.get("thought") else TextBlock(text=part["text"]))
    return ChatResponse(id=rid, model=model, created=created, content=tuple(blocks),
                        finish_reason=finish_reason_of(cand.get("finishReason"), calls > 0), usage=usage)


class StreamDecoder:
    """Streamed GenerateContentResponse chunks -> canonical events, one chunk at a time.

    ``finished`` turns true with the chunk carrying a finishReason (or a prompt block); the
    events it returns end with Finish and UsageReport (the last usageMetadata seen).
    """

    def __init__(self, *, model: str, created: int, make_id: IdFactory = new_id) -> None:
        self.model = model
        self.created = created
        self.make_id = make_id
        self.started = False
        self.finished = False
        self.calls = 0
        self.usage = Usage()

    def feed(self, chunk: Any) -> list[StreamEvent]:
        if not isinstance(chunk, dict):
            raise ValueError("a stream chunk is not a JSON object")
        if "error" in chunk:
            raise UpstreamError(_error_text(chunk), provider=PROVIDER_GEMINI)
        out: list[StreamEvent] = []
        if not self.started:
            self.started = True
            out.append(StreamStart(id=chunk.get("responseId") or self.make_id("gen-"),
                                   model=chunk.get("modelVersion") or self.model, created=self.created))
        if chunk.get("usageMetadata"):
            self.usage = usage_of(chunk["usageMetadata"])
        cand = _candidate(chunk)
        if cand is None:
            if (chunk.get("promptFeedback") or {}).get("blockReason"):
                out += self._finish("content_filter")
            return out
        for part in (cand.get("content") or {}).get("parts") or ():
            if part.get("thoughtSignature"):
                out.append(ReasoningDelta(signature=part["thoughtSignature"]))
            call = part.get("functionCall")
            if isinstance(call, dict):
                index = self.calls
                self.calls += 1
                out.append(ToolCallStart(index=index, id=call.get("id") or self.make_id("call_"),
                                         name=call.get("name") or ""))
                out.append(ToolCallDelta(index=index, arguments=_call_args(call)))
            elif part.get("text"):
                out.append(ReasoningDelta(text=part["text"]) if part.get("thought") else TextDelta(text=part["text"]))
        if cand.get("finishReason"):
            out += self._finish(finish_reason_of(cand["finishReason"], self.calls > 0))
        return out

    def _finish(self, reason: FinishReason) -> list[StreamEvent]:
        self.finished = True
        return [Finish(reason=reason), UsageReport(usage=self.usage)]


def parse_gemini_error(body: bytes) -> str | None:
    """The message of Google's error body ``{"error": {"code", "message", "status"}}`` (or a list of them)."""
    try:
        data = _decoder.decode(body)
    except msgspec.DecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return text or None
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return None
    message, status = err.get("message"), err.get("status")
    if message and status:
        return f"{status}: {message}"
    return str(message or status) if message or status else None


RETRY_INFO: Final = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"(-?\d+(?:\.\d{1,9})?)s")


def duration_seconds(value: object) -> float | None:
    """A protobuf Duration in its JSON form (``"7s"``, ``"1.5s"``) in seconds; None if it is not one."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    return float(match[1]) if match else None


def parse_gemini_retry_after(body: bytes) -> float | None:
    """The ``retryDelay`` of a RetryInfo in an error body's ``error.details`` (Google sends a 429's
    retry delay there, not in Retry-After), in seconds."""
    try:
        data = _decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    for d in details if isinstance(details, list) else ():
        if isinstance(d, dict) and d.get("@type") == RETRY_INFO:
            return duration_seconds(d.get("retryDelay"))
    return None


# --- the adapter ----------------------------------------------------------------------------------


class GeminiProvider:
    def __init__(self, config: ProviderConfig, *, timeouts: Timeouts, media: MediaFetcher) -> None:
        self.name = config.name
        base = (config.base_url or SPEC.default_base_url).rstrip("/")
        base = base.removesuffix("/v1beta")
        self.models_url = base + "/v1beta/models/"
        self.media = media
        self.client = UpstreamClient(provider=config.name, timeouts=timeouts, parse_error=parse_gemini_error,
                                     parse_retry_after=parse_gemini_retry_after)

    def url(self, model: str, *, stream: bool) -> str:
        name = quote(model.removeprefix("models/"), safe="-._~")
        if stream:
            return f"{self.models_url}{name}:streamGenerateContent?alt=sse"
        return f"{self.models_url}{name}:generateContent"

    def headers(self, credential: Credential, *, stream: bool) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
        if credential.secret:
            h["x-goog-api-key"] = credential.secret
        return h

    def unsupported(self, req: ChatRequest) -> list[str]:
        return unsupported(req)

    async def body(self, req: ChatRequest) -> bytes:
        media = {url: await self.media.load(url) for url in media_urls(req)}
        return _encoder.encode(encode_request(req, media=media))

    def _broken(self, what: str, detail: object, secret: str | None) -> UpstreamError:
        return UpstreamError(f"{self.name} upstream {what}: {redact(str(detail), secret)}", provider=self.name)

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        body = await self.body(req)
        raw = await self.client.post(self.url(upstream_model, stream=False), self.headers(credential, stream=False),
                                     body, secret=credential.secret)
        try:
            return decode_response(_decoder.decode(raw), model=upstream_model, created=int(time.time()))
        except (msgspec.DecodeError, ValueError, TypeError, AttributeError, KeyError) as exc:
            raise self._broken("sent an unreadable completion", exc, credential.secret) from None

    async def stream(self, req: ChatRequest, *, upstream_model: str,
                     credential: Credential) -> AsyncIterator[StreamEvent]:
        body = await self.body(req)
        upstream = await self.client.open_stream(self.url(upstream_model, stream=True),
                                                 self.headers(credential, stream=True), body,
                                                 secret=credential.secret)
        decoder = StreamDecoder(model=upstream_model, created=int(time.time()))
        try:
            async for event in upstream.events():
                try:
                    events = decoder.feed(_decoder.decode(event.data))
                except UpstreamError as err:
                    raise self._broken("reported an error mid-stream", err.message, credential.secret) from None
                except (msgspec.DecodeError, ValueError, TypeError, AttributeError, KeyError):
                    raise UpstreamError(f"{self.name} upstream sent a malformed stream chunk",
                                        provider=self.name) from None
                for ev in events:
                    yield ev
                if decoder.finished:
                    break
            if not decoder.finished:
                raise UpstreamError(f"{self.name} upstream closed the stream before it finished", provider=self.name)
        finally:
            if decoder.finished:
                upstream.finish()
            else:
                upstream.close()

    async def close(self) -> None:
        await self.client.close()


def build(config: ProviderConfig, ctx: ProviderContext) -> GeminiProvider:
    return GeminiProvider(config, timeouts=ctx.timeouts, media=ctx.media)
