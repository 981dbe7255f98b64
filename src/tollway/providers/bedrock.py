"""AWS Bedrock: the Converse and ConverseStream APIs, signed with SigV4.

Configuration: the region comes from ``ProviderConfig.options["region"]`` (the env config
fills it from AWS_REGION), or per credential from ``Credential.extra["region"]``. A credential
is the secret access key in ``secret`` plus ``extra["access_key_id"]`` and, for temporary
credentials, ``extra["session_token"]``; ``env_credentials`` and ``env_options`` build them
from AWS_* variables. The endpoint is ``base_url`` (BEDROCK_BASE_URL) or
``https://bedrock-runtime.{region}.amazonaws.com``.

Signing is botocore's SigV4 (service ``bedrock``); the event stream of ConverseStream is
decoded by botocore's ``EventStreamBuffer``. The model id is quoted as one path segment and
the URL is signed in the exact form aiohttp sends it (yarl turns ``%3A`` back into ``:``).

Canonical -> Converse, and what has no place there:

- system messages -> ``system``; their non-text blocks are dropped (named).
- tool messages -> user turns of ``toolResult`` blocks; adjacent same-role turns are merged,
  since Converse wants user and assistant to alternate.
- images and documents go inline as bytes (http(s) URLs fetched through ``ctx.media``);
  document names are reduced to what Bedrock allows and made unique.
- reasoning blocks go back with their signature (or as redacted content); a reasoning block
  with neither came from another provider and cannot be replayed: dropped (named).
- ``tool_choice`` none: Converse has no such choice. Without tool blocks in the history the
  tools are not sent at all (the model cannot call one); with them, Converse requires a
  toolConfig, so the tools go without a toolChoice and ``tool_choice`` is named as dropped.
  When the history has tool blocks but the request no tools, minimal specs are made from the
  tool names in the history, for the same reason.
- Anthropic models: ``top_k`` and the reasoning budget go in additionalModelRequestFields
  (``reasoning_effort`` without a budget maps to a budget: low 1024, medium 4096, high 16384);
  with thinking on, a temperature, top_k or top_p < 0.95 that Anthropic refuses is dropped
  (named). Nova models: ``top_k`` as ``inferenceConfig.topK``. Other models: both dropped.
- temperature above 1 (OpenAI allows 2) is clamped to Converse's maximum of 1.
- seed, response_format, parallel_tool_calls, user, message names, image detail, and the
  extras of any dialect but ``bedrock`` have no Converse field: dropped (named).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

import msgspec
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.eventstream import EventStreamBuffer, ParserError  # type: ignore[import-untyped]
from yarl import URL

from tollway.core.catalog import Credential, EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.chat import (
    Block,
    ChatRequest,
    ChatResponse,
    DocumentBlock,
    Finish,
    FinishReason,
    ImageBlock,
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
from tollway.core.errors import ConfigError, InvalidRequest, ProviderNotConfigured, UpstreamError
from tollway.core.names import DIALECT_BEDROCK, PROVIDER_BEDROCK
from tollway.providers.base import ProviderContext
from tollway.providers.http import UpstreamClient, redact
from tollway.providers.media import Media

SIGNING_SERVICE: Final = "bedrock"
JSON: Final = "application/json"
EVENT_STREAM: Final = "application/vnd.amazon.eventstream"


def _model(mid: str, upstream: str, name: str, caps: tuple[str, ...]) -> ModelInfo:
    return ModelInfo(id=mid, provider=PROVIDER_BEDROCK, upstream_id=upstream, display_name=name, capabilities=caps,
                     tags=("bedrock",))


SPEC = ProviderSpec(
    name=PROVIDER_BEDROCK,
    kind=PROVIDER_BEDROCK,
    env_requirements=(
        EnvRequirement(key="AWS_ACCESS_KEY_ID", description="AWS access key id"),
        EnvRequirement(key="AWS_SECRET_ACCESS_KEY", description="AWS secret access key"),
        EnvRequirement(key="AWS_REGION", description="AWS region of the Bedrock runtime (us-east-1 ...)"),
        EnvRequirement(key="AWS_SESSION_TOKEN", description="AWS session token (temporary credentials)",
                       required=False),
        EnvRequirement(key="BEDROCK_BASE_URL", description="Bedrock runtime endpoint override", required=False),
    ),
    api_key_env="AWS_SECRET_ACCESS_KEY",
    base_url_env="BEDROCK_BASE_URL",
    default_base_url="",  # https://bedrock-runtime.{region}.amazonaws.com
    models=(
        # Claude 4.5 models take on-demand calls only through an inference profile
        _model("bedrock/claude-sonnet-4-5", "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
               "Claude Sonnet 4.5 (Bedrock)", ("chat", "tools", "vision", "reasoning")),
        _model("bedrock/claude-haiku-4-5", "global.anthropic.claude-haiku-4-5-20251001-v1:0",
               "Claude Haiku 4.5 (Bedrock)", ("chat", "tools", "vision", "reasoning")),
        _model("bedrock/claude-3-5-haiku", "us.anthropic.claude-3-5-haiku-20241022-v1:0",
               "Claude 3.5 Haiku (Bedrock)", ("chat", "tools")),
        _model("bedrock/nova-pro", "amazon.nova-pro-v1:0", "Amazon Nova Pro", ("chat", "tools", "vision")),
        _model("bedrock/nova-lite", "amazon.nova-lite-v1:0", "Amazon Nova Lite", ("chat", "tools", "vision")),
        _model("bedrock/nova-micro", "amazon.nova-micro-v1:0", "Amazon Nova Micro", ("chat", "tools")),
    ),
    open_catalog=True,
    features=frozenset({"chat", "stream", "tools", "reasoning", "usage", "errors", "images"}),
)


def env_credentials(env: Mapping[str, str]) -> tuple[Credential, ...]:
    """The credential AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) make, if set."""
    key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return ()
    extra = {"access_key_id": key_id}
    if env.get("AWS_SESSION_TOKEN"):
        extra["session_token"] = env["AWS_SESSION_TOKEN"]
    return (Credential(id=f"{PROVIDER_BEDROCK}:env", secret=secret, extra=extra),)


def env_options(env: Mapping[str, str]) -> dict[str, Any]:
    """ProviderConfig.options from the environment: the region."""
    return {"region": env["AWS_REGION"]} if env.get("AWS_REGION") else {}


# --- model families ----------------------------------------------------------------------


def family_of(model: str) -> str:
    """anthropic, nova or other: which additionalModelRequestFields a model takes."""
    m = model.lower()
    if "anthropic." in m or "claude" in m:
        return "anthropic"
    if "nova" in m:
        return "nova"
    return "other"


EFFORT_BUDGETS: Final = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}


def _thinking_budget(req: ChatRequest) -> int | None:
    if req.reasoning_budget is not None:
        return req.reasoning_budget
    return EFFORT_BUDGETS.get(req.reasoning_effort or "")


def _tool_history(req: ChatRequest) -> bool:
    return any(isinstance(b, ToolCallBlock | ToolResultBlock) for m in req.messages for b in m.content)


def dropped_fields(req: ChatRequest, *, upstream_model: str) -> list[str]:
    """The canonical fields a Converse call to ``upstream_model`` cannot carry (see the module doc)."""
    out = [k for k in ("seed", "response_format", "parallel_tool_calls", "user") if getattr(req, k) is not None]
    family = family_of(upstream_model)
    budget = _thinking_budget(req) if family == "anthropic" else None
    if req.top_k is not None and (family == "other" or budget is not None):
        out.append("top_k")
    if family != "anthropic":
        out += [k for k in ("reasoning_effort", "reasoning_budget") if getattr(req, k) is not None]
    elif req.reasoning_effort is not None and (req.reasoning_budget is not None or budget is None):
        out.append("reasoning_effort")
    if budget is not None:
        if req.temperature is not None and req.temperature != 1:
            out.append("temperature")
        if req.top_p is not None and req.top_p < 0.95:
            out.append("top_p")
    if req.tool_choice is not None and req.tool_choice.mode == "none" and req.tool_choice.name is None \
            and _tool_history(req):
        out.append("tool_choice")
    if req.dialect != DIALECT_BEDROCK:
        out += [f"extras.{k}" for k in req.extras]
    seen: set[str] = set()
    for m in req.messages:
        if m.name is not None:
            seen.add("messages.name")
        for b in m.content:
            if m.role == "system" and not isinstance(b, TextBlock):
                seen.add(f"system.{b.__struct_config__.tag}")
            elif isinstance(b, ImageBlock) and b.detail is not None:
                seen.add("image.detail")
            elif isinstance(b, ReasoningBlock) and (m.role != "assistant" or not (b.signature or b.redacted_data)):
                seen.add("messages.reasoning")
    return out + sorted(seen)


# --- canonical -> Converse ---------------------------------------------------------------

IMAGE_FORMATS: Final = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                        "image/webp": "webp"}
DOCUMENT_FORMATS: Final = {
    "application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html", "text/plain": "txt", "text/markdown": "md",
}
_NAME_BAD = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")
_SPACES = re.compile(r"\s+")


def media_urls(req: ChatRequest) -> list[str]:
    """The image and document URLs the request needs as bytes (system messages' are dropped)."""
    urls: list[str] = []
    for m in req.messages:
        if m.role == "system":
            continue
        for b in m.content:
            inner: Iterable[Block] = b.content if isinstance(b, ToolResultBlock) else (b,)
            for x in inner:
                url = x.url if isinstance(x, ImageBlock) or isinstance(x, DocumentBlock) and not x.data else None
                if url:
                    urls.append(url)
    return list(dict.fromkeys(urls))


def document_name(raw: str | None, fmt: str, used: set[str]) -> str:
    """A name Bedrock accepts (letters, digits, single spaces, hyphens, parentheses, brackets),
    unique within the request."""
    name = raw or ""
    if name.lower().endswith("." + fmt):
        name = name[: -len(fmt) - 1]
    name = _SPACES.sub(" ", _NAME_BAD.sub("-", name)).strip(" -")[:180] or "document"
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name} ({n})", n + 1
    used.add(candidate)
    return candidate


class _Encoder:
    def __init__(self, req: ChatRequest, upstream_model: str, media: Mapping[str, Media]) -> None:
        self.req = req
        self.model = upstream_model
        self.media = media
        self.names: set[str] = set()

    def _media(self, url: str) -> Media:
        got = self.media.get(url)
        if got is None:
            raise InvalidRequest("A media URL of the request was not loaded.")
        return got

    def image(self, b: ImageBlock) -> dict[str, Any]:
        m = self._media(b.url)
        fmt = IMAGE_FORMATS.get(m.media_type.split(";")[0].strip().lower())
        if fmt is None:
            raise InvalidRequest(f"Bedrock takes png, jpeg, gif or webp images, not {m.media_type!r}.")
        return {"image": {"format": fmt, "source": {"bytes": m.b64()}}}

    def document(self, b: DocumentBlock) -> dict[str, Any]:
        if b.data:
            try:
                base64.b64decode(b.data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequest("A document holds invalid base64.") from None
            data, types = b.data, [b.media_type]
        elif b.url:
            m = self._media(b.url)
            data, types = m.b64(), [m.media_type, b.media_type]
        else:
            raise InvalidRequest("A document needs data or a url.")
        fmt = next((f for t in types if (f := DOCUMENT_FORMATS.get(t.split(";")[0].strip().lower()))), None)
        if fmt is None:
            raise InvalidRequest(f"Bedrock takes pdf, csv, doc, docx, xls, xlsx, html, txt or md documents, "
                                 f"not {types[0]!r}.")
        return {"document": {"format": fmt, "name": document_name(b.name, fmt, self.names), "source": {"bytes": data}}}

    def tool_use(self, b: ToolCallBlock) -> dict[str, Any]:
        try:
            args = msgspec.json.decode(b.arguments) if b.arguments.strip() else {}
        except msgspec.DecodeError:
            raise InvalidRequest(f"The arguments of tool call {b.id!r} are not valid JSON.") from None
        if not isinstance(args, dict):
            raise InvalidRequest(f"The arguments of tool call {b.id!r} must be a JSON object.")
        return {"toolUse": {"toolUseId": b.id, "name": b.name, "input": args}}

    def tool_result(self, b: ToolResultBlock) -> dict[str, Any]:
        content = [{"text": x.text} if isinstance(x, TextBlock) else self.image(x) for x in b.content]
        out: dict[str, Any] = {"toolUseId": b.tool_call_id, "content": content}
        if b.is_error:
            out["status"] = "error"
        return {"toolResult": out}

    def block(self, b: Block, role: str) -> dict[str, Any] | None:
        if isinstance(b, TextBlock):
            return {"text": b.text} if b.text else None
        if isinstance(b, ImageBlock):
            return self.image(b)
        if isinstance(b, DocumentBlock):
            return self.document(b)
        if isinstance(b, ToolCallBlock):
            return self.tool_use(b)
        if isinstance(b, ToolResultBlock):
            return self.tool_result(b)
        if role != "assistant":
            return None
        if b.redacted_data:
            return {"reasoningContent": {"redactedContent": b.redacted_data}}
        if b.signature:
            return {"reasoningContent": {"reasoningText": {"text": b.text, "signature": b.signature}}}
        return None

    def messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in self.req.messages:
            if m.role == "system":
                continue
            role = "assistant" if m.role == "assistant" else "user"
            blocks = [x for b in m.content if (x := self.block(b, m.role)) is not None]
            if not blocks:
                continue
            if out and out[-1]["role"] == role:
                out[-1]["content"].extend(blocks)
            else:
                out.append({"role": role, "content": blocks})
        return out

    def tool_config(self) -> dict[str, Any] | None:
        req = self.req
        history = _tool_history(req)
        choice = req.tool_choice
        if choice is not None and choice.mode == "none" and choice.name is None and not history:
            return None
        specs: list[dict[str, Any]] = []
        for t in req.tools:
            spec: dict[str, Any] = {"name": t.name,
                                    "inputSchema": {"json": t.parameters or {"type": "object", "properties": {}}}}
            if t.description:
                spec["description"] = t.description
            if t.strict:
                spec["strict"] = True
            specs.append({"toolSpec": spec})
        if not specs and history:
            names = dict.fromkeys(b.name for m in req.messages for b in m.content if isinstance(b, ToolCallBlock))
            specs = [{"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object", "properties": {}}}}}
                     for n in names]
        if not specs:
            return None
        config: dict[str, Any] = {"tools": specs}
        if choice is not None and req.tools:
            if choice.name:
                config["toolChoice"] = {"tool": {"name": choice.name}}
            elif choice.mode == "required":
                config["toolChoice"] = {"any": {}}
            elif choice.mode == "auto":
                config["toolChoice"] = {"auto": {}}
        return config

    def body(self) -> dict[str, Any]:
        req, family = self.req, family_of(self.model)
        body: dict[str, Any] = {"messages": self.messages()}
        system = [{"text": b.text} for m in req.messages if m.role == "system"
                  for b in m.content if isinstance(b, TextBlock) and b.text]
        if system:
            body["system"] = system
        budget = _thinking_budget(req) if family == "anthropic" else None
        inference: dict[str, Any] = {}
        if req.max_tokens is not None:
            inference["maxTokens"] = req.max_tokens
        if req.temperature is not None and (budget is None or req.temperature == 1):
            inference["temperature"] = min(max(req.temperature, 0.0), 1.0)
        if req.top_p is not None and (budget is None or req.top_p >= 0.95):
            inference["topP"] = req.top_p
        stops = [s for s in req.stop if s]
        if stops:
            inference["stopSequences"] = stops
        if inference:
            body["inferenceConfig"] = inference
        tools = self.tool_config()
        if tools is not None:
            body["toolConfig"] = tools
        extra: dict[str, Any] = {}
        if family == "anthropic":
            if budget is not None:
                extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
            elif req.top_k is not None:
                extra["top_k"] = req.top_k
            if stops:
                body["additionalModelResponseFieldPaths"] = ["/stop_sequence"]
        elif family == "nova" and req.top_k is not None:
            extra["inferenceConfig"] = {"topK": req.top_k}
        if extra:
            body["additionalModelRequestFields"] = extra
        if req.dialect == DIALECT_BEDROCK:
            for key, value in req.extras.items():
                if isinstance(value, dict) and isinstance(body.get(key), dict):
                    body[key] = {**value, **body[key]}
                else:
                    body.setdefault(key, value)
        return body


def encode_request(req: ChatRequest, *, upstream_model: str, media: Mapping[str, Media]) -> dict[str, Any]:
    """The Converse body for ``req`` (without modelId, which goes in the path). ``media`` holds
    the bytes of every URL ``media_urls(req)`` names."""
    return _Encoder(req, upstream_model, media).body()


# --- Converse -> canonical ---------------------------------------------------------------


class _Usage(msgspec.Struct):
    inputTokens: int = 0
    outputTokens: int = 0
    cacheReadInputTokens: int = 0
    cacheWriteInputTokens: int = 0

    def canonical(self) -> Usage:
        cr, cw = self.cacheReadInputTokens, self.cacheWriteInputTokens
        return Usage(input_tokens=self.inputTokens + cr + cw, output_tokens=self.outputTokens, cached_tokens=cr,
                     cache_write_tokens=cw)


class _ToolUse(msgspec.Struct):
    toolUseId: str
    name: str
    input: Any = None


class _ReasoningText(msgspec.Struct):
    text: str = ""
    signature: str | None = None


class _Reasoning(msgspec.Struct):
    reasoningText: _ReasoningText | None = None
    redactedContent: str | None = None


class _Content(msgspec.Struct):
    text: str | None = None
    toolUse: _ToolUse | None = None
    reasoningContent: _Reasoning | None = None


class _Message(msgspec.Struct):
    content: list[_Content] = msgspec.field(default_factory=list)


class _Output(msgspec.Struct):
    message: _Message | None = None


class _Response(msgspec.Struct):
    output: _Output
    stopReason: str
    usage: _Usage = msgspec.field(default_factory=_Usage)
    additionalModelResponseFields: dict[str, Any] | None = None


_response_decoder = msgspec.json.Decoder(_Response)

FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
    "model_context_window_exceeded": "length", "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter", "malformed_model_output": "error", "malformed_tool_use": "error",
}


def finish_of(stop_reason: str, fields: dict[str, Any] | None) -> tuple[FinishReason, str | None]:
    sequence = (fields or {}).get("stop_sequence") if stop_reason == "stop_sequence" else None
    return FINISH.get(stop_reason, "stop"), sequence if isinstance(sequence, str) else None


def decode_content(blocks: Iterable[_Content]) -> tuple[Block, ...]:
    out: list[Block] = []
    for c in blocks:
        if c.text is not None:
            out.append(TextBlock(text=c.text))
        elif c.toolUse is not None:
            args = msgspec.json.encode(c.toolUse.input if c.toolUse.input is not None else {}).decode()
            out.append(ToolCallBlock(id=c.toolUse.toolUseId, name=c.toolUse.name, arguments=args))
        elif c.reasoningContent is not None:
            r = c.reasoningContent
            if r.redactedContent is not None:
                out.append(ReasoningBlock(redacted_data=r.redactedContent))
            elif r.reasoningText is not None:
                out.append(ReasoningBlock(text=r.reasoningText.text, signature=r.reasoningText.signature))
    return tuple(out)


def decode_response(raw: bytes, *, model: str, response_id: str, created: int) -> ChatResponse:
    """A Converse response body -> ChatResponse (Converse has no response id: the caller picks one)."""
    resp = _response_decoder.decode(raw)
    reason, sequence = finish_of(resp.stopReason, resp.additionalModelResponseFields)
    content = decode_content(resp.output.message.content if resp.output.message else ())
    return ChatResponse(id=response_id, model=model, created=created, content=content, finish_reason=reason,
                        usage=resp.usage.canonical(), stop_sequence=sequence)


class _Error(msgspec.Struct):
    message: str | None = None
    Message: str | None = None


_error_decoder = msgspec.json.Decoder(_Error)


def parse_bedrock_error(body: bytes) -> str | None:
    """The message of a Bedrock error body (``{"message": ...}``), or the text's start."""
    try:
        err = _error_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body[:300].decode("utf-8", "replace").strip() or None
    return err.message or err.Message


# --- ConverseStream events -> canonical --------------------------------------------------


class _BlockStart(msgspec.Struct):
    toolUse: _ToolUse | None = None


class _StartEvent(msgspec.Struct):
    contentBlockIndex: int
    start: _BlockStart


class _ToolInput(msgspec.Struct):
    input: str = ""


class _ReasoningPiece(msgspec.Struct):
    text: str | None = None
    signature: str | None = None
    redactedContent: str | None = None


class _Delta(msgspec.Struct):
    text: str | None = None
    toolUse: _ToolInput | None = None
    reasoningContent: _ReasoningPiece | None = None


class _DeltaEvent(msgspec.Struct):
    contentBlockIndex: int
    delta: _Delta


class _StopEvent(msgspec.Struct):
    stopReason: str
    additionalModelResponseFields: dict[str, Any] | None = None


class _MetadataEvent(msgspec.Struct):
    usage: _Usage = msgspec.field(default_factory=_Usage)


_start_decoder = msgspec.json.Decoder(_StartEvent)
_delta_decoder = msgspec.json.Decoder(_DeltaEvent)
_stop_decoder = msgspec.json.Decoder(_StopEvent)
_metadata_decoder = msgspec.json.Decoder(_MetadataEvent)

# ConverseStream's exception events and the HTTP status each stands for (the service model's)
STREAM_EXCEPTIONS: Final = {
    "throttlingException": 429, "validationException": 400, "modelStreamErrorException": 424,
    "internalServerException": 500, "serviceUnavailableException": 503, "modelTimeoutException": 408,
    "accessDeniedException": 403, "resourceNotFoundException": 404,
}


class StreamDecoder:
    """ConverseStream messages (headers, payload) -> canonical events. ``done`` once both
    messageStop and metadata were seen; exceptions raise ``UpstreamError``."""

    def __init__(self, *, provider: str, response_id: str, model: str, created: int,
                 secrets: tuple[str | None, ...] = ()) -> None:
        self.provider = provider
        self._start = StreamStart(id=response_id, model=model, created=created)
        self._secrets = secrets
        self._started = False
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self.stopped = False
        self.metadata = False

    @property
    def done(self) -> bool:
        return self.stopped and self.metadata

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = redact(text, s)
        return text

    def feed(self, headers: Mapping[str, Any], payload: bytes) -> list[StreamEvent]:
        kind = headers.get(":message-type")
        if kind == "exception":
            name = str(headers.get(":exception-type") or "exception")
            message = parse_bedrock_error(payload) or "no message"
            raise UpstreamError(f"{self.provider} upstream reported {name} mid-stream: {self._scrub(message)}"[:600],
                                provider=self.provider, upstream_status=STREAM_EXCEPTIONS.get(name, 500))
        if kind == "error":
            code, message = headers.get(":error-code") or "error", headers.get(":error-message") or ""
            raise UpstreamError(f"{self.provider} upstream reported {code} mid-stream: {self._scrub(str(message))}"
                                [:600], provider=self.provider, upstream_status=500)
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(self._start)
        try:
            events.extend(self._event(str(headers.get(":event-type")), payload))
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{self.provider} upstream sent a malformed stream event",
                                provider=self.provider) from None
        return events

    def _event(self, kind: str, payload: bytes) -> list[StreamEvent]:
        if kind == "contentBlockStart":
            start = _start_decoder.decode(payload)
            if start.start.toolUse is None:
                return []
            index = self._tools[start.contentBlockIndex] = len(self._tools)
            return [ToolCallStart(index=index, id=start.start.toolUse.toolUseId, name=start.start.toolUse.name)]
        if kind == "contentBlockDelta":
            event = _delta_decoder.decode(payload)
            d = event.delta
            if d.text is not None:
                return [TextDelta(text=d.text)] if d.text else []
            if d.toolUse is not None:
                call = self._tools.get(event.contentBlockIndex)
                if call is None:
                    raise UpstreamError(f"{self.provider} upstream sent tool input for a block it never started",
                                        provider=self.provider)
                return [ToolCallDelta(index=call, arguments=d.toolUse.input)] if d.toolUse.input else []
            if d.reasoningContent is not None:
                r = d.reasoningContent
                return [ReasoningDelta(text=r.text or "", signature=r.signature, redacted_data=r.redactedContent)]
            return []
        if kind == "messageStop":
            stop = _stop_decoder.decode(payload)
            self.stopped = True
            reason, sequence = finish_of(stop.stopReason, stop.additionalModelResponseFields)
            return [Finish(reason=reason, stop_sequence=sequence)]
        if kind == "metadata":
            self.metadata = True
            return [UsageReport(usage=_metadata_decoder.decode(payload).usage.canonical())]
        return []  # messageStart, contentBlockStop, and events added later


# --- the adapter -------------------------------------------------------------------------


class BedrockProvider:
    def __init__(self, config: ProviderConfig, ctx: ProviderContext) -> None:
        self.name = config.name
        self.region: str | None = config.options.get("region") or None
        self.base_url = config.base_url.rstrip("/")
        self.media = ctx.media
        for c in config.credentials:
            if not (c.extra.get("region") or self.region):
                raise ConfigError(f"provider {config.name!r}: no region (options.region, or region on "
                                  f"credential {c.id!r})")
            if not c.extra.get("access_key_id") or not c.secret:
                raise ConfigError(f"provider {config.name!r}: credential {c.id!r} needs a secret access key and "
                                  "extra.access_key_id")
        self.client = UpstreamClient(provider=config.name, timeouts=ctx.timeouts, parse_error=parse_bedrock_error)

    def unsupported(self, req: ChatRequest) -> list[str]:
        return dropped_fields(req, upstream_model=self._upstream_guess(req.model))

    def _upstream_guess(self, model: str) -> str:
        """The upstream id a public model name stands for, as far as the name tells."""
        known = next((m.upstream_id for m in SPEC.models if m.id == model), None)
        if known is not None:
            return known
        prefix, sep, rest = model.partition("/")
        return rest if sep and prefix == self.name else model

    # signing ------------------------------------------------------------------------------

    def _signed(self, credential: Credential, upstream_model: str, operation: str, body: bytes,
                accept: str) -> tuple[str, dict[str, str]]:
        """The URL as sent on the wire and the SigV4-signed headers for one call."""
        key_id, secret = credential.extra.get("access_key_id"), credential.secret
        region = credential.extra.get("region") or self.region
        if not key_id or not secret or not region:
            raise ProviderNotConfigured(f"{self.name} credential {credential.id!r} lacks an access key id, "
                                        "a secret access key or a region")
        endpoint = self.base_url or f"https://bedrock-runtime.{region}.amazonaws.com"
        url = str(URL(f"{endpoint}/model/{quote(upstream_model, safe='')}/{operation}"))
        request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": JSON, "Accept": accept})
        creds = Credentials(key_id, secret, credential.extra.get("session_token") or None)
        SigV4Auth(creds, SIGNING_SERVICE, region).add_auth(request)
        return url, {str(k): str(v) for k, v in request.headers.items()}

    def _scrubbed(self, err: UpstreamError, credential: Credential) -> UpstreamError:
        """The error with the session token (the client redacts the secret) taken out of its message."""
        token = credential.extra.get("session_token")
        message = redact(err.message, token)
        if message == err.message:
            return err
        return type(err)(message, provider=err.provider, upstream_status=err.upstream_status,
                         retry_after=err.retry_after)

    async def _prepare(self, req: ChatRequest, upstream_model: str) -> bytes:
        urls = media_urls(req)
        loaded = await asyncio.gather(*(self.media.load(u) for u in urls))
        body = encode_request(req, upstream_model=upstream_model, media=dict(zip(urls, loaded, strict=True)))
        return msgspec.json.encode(body)

    # calls --------------------------------------------------------------------------------

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        body = await self._prepare(req, upstream_model)
        url, headers = self._signed(credential, upstream_model, "converse", body, JSON)
        try:
            raw = await self.client.post(url, headers, body, secret=credential.secret)
        except UpstreamError as err:
            raise self._scrubbed(err, credential) from None
        try:
            return decode_response(raw, model=upstream_model, response_id=f"bedrock-{uuid.uuid4().hex}",
                                   created=int(time.time()))
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{self.name} upstream sent an unreadable Converse response",
                                provider=self.name) from None

    async def stream(self, req: ChatRequest, *, upstream_model: str,
                     credential: Credential) -> AsyncIterator[StreamEvent]:
        body = await self._prepare(req, upstream_model)
        url, headers = self._signed(credential, upstream_model, "converse-stream", body, EVENT_STREAM)
        try:
            upstream = await self.client.open_stream(url, headers, body, secret=credential.secret)
        except UpstreamError as err:
            raise self._scrubbed(err, credential) from None
        decoder = StreamDecoder(provider=self.name, model=upstream_model, created=int(time.time()),
                                response_id=upstream.headers.get("x-amzn-requestid") or f"bedrock-{uuid.uuid4().hex}",
                                secrets=(credential.secret, credential.extra.get("session_token")))
        frames = EventStreamBuffer()
        try:
            async for chunk in upstream.chunks():
                frames.add_data(chunk)
                try:
                    messages = list(frames)
                except (ParserError, ValueError, KeyError, IndexError):
                    raise UpstreamError(f"{self.name} upstream sent a malformed event stream frame",
                                        provider=self.name) from None
                for message in messages:
                    for event in decoder.feed(message.headers, message.payload):
                        yield event
                if decoder.done:
                    break
            if not decoder.done:
                raise UpstreamError(f"{self.name} upstream closed the stream before it finished",
                                    provider=self.name)
        except UpstreamError as err:
            raise self._scrubbed(err, credential) from None
        finally:
            if decoder.done:
                upstream.finish()
            else:
                upstream.close()

    async def close(self) -> None:
        await self.client.close()


def build(config: ProviderConfig, ctx: ProviderContext) -> BedrockProvider:
    return BedrockProvider(config, ctx)
