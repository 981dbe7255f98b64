"""Bedrock Converse <-> canonical: the request body, the response, error bodies. Pure: no I/O.

Canonical -> Converse, and what has no place there:

- system messages -> ``system``; their non-text blocks are dropped (named).
- tool messages -> user turns of ``toolResult`` blocks; adjacent same-role turns are merged,
  since Converse wants user and assistant to alternate.
- images and documents go inline as bytes (http(s) URLs fetched through ``ctx.media.load_many``);
  document names are reduced to what Bedrock allows and made unique.
- reasoning blocks go back with their signature (or as redacted content); a reasoning block
  with neither came from another provider and cannot be replayed: dropped (named).
- ``tool_choice`` none: Converse has no such choice. Without tool blocks in the history the
  tools are not sent at all (the model cannot call one); with them, Converse requires a
  toolConfig, so the tools go without a toolChoice and ``tool_choice`` is named as dropped.
  When the history has tool blocks but the request no tools, minimal specs are made from the
  tool names in the history, for the same reason.
- Anthropic models: ``top_k`` and the reasoning budget go in additionalModelRequestFields
  (Claude models follow Anthropic's thinking rules: ``dialects.anthropic.thinking.thinking_plan``);
  with thinking on, a temperature, top_k or top_p < 0.95 that Anthropic refuses is dropped
  (named). Nova models: ``top_k`` as ``inferenceConfig.topK``. Other models: both dropped.
- temperature above 1 (OpenAI allows 2) is clamped to Converse's maximum of 1.
- seed, response_format, parallel_tool_calls, user, message names, image detail, and the
  extras of any dialect but ``bedrock`` have no Converse field: dropped (named).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from tollway.core.chat import (
    Block,
    ChatRequest,
    ChatResponse,
    DocumentBlock,
    FinishReason,
    ImageBlock,
    ReasoningBlock,
    TextBlock,
    ToolCallBlock,
    ToolResultBlock,
    Usage,
)
from tollway.core.errors import InvalidRequest
from tollway.core.json_input import loads
from tollway.core.names import DIALECT_BEDROCK
from tollway.dialects.anthropic.thinking import DEFAULT_MAX_TOKENS, thinking_plan
from tollway.providers.media import Media


def tool_use_id(call_id: str) -> str:
    """Converse's toolUseId is 1-64 of [a-zA-Z0-9_-]; other upstreams' ids may not be."""
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in call_id)[:64]
    return clean or "tooluse_0"


# --- model families ----------------------------------------------------------------------


def family_of(model: str) -> str:
    """anthropic, nova or other: which additionalModelRequestFields a model takes."""
    m = model.lower()
    if "anthropic." in m or "claude" in m:
        return "anthropic"
    if "nova" in m:
        return "nova"
    return "other"


def _thinking(req: ChatRequest, family: str) -> tuple[int | None, list[str]]:
    """Claude on Bedrock follows Anthropic's thinking rules (one function for both)."""
    return thinking_plan(req) if family == "anthropic" else (None, [])


def _tool_history(req: ChatRequest) -> bool:
    return any(isinstance(b, ToolCallBlock | ToolResultBlock) for m in req.messages for b in m.content)


def dropped_fields(req: ChatRequest, *, upstream_model: str) -> list[str]:
    """The canonical fields a Converse call to ``upstream_model`` cannot carry (see the module doc)."""
    out = [k for k in ("seed", "response_format", "parallel_tool_calls", "user") if getattr(req, k) is not None]
    family = family_of(upstream_model)
    budget, thinking_drops = _thinking(req, family)
    out += thinking_drops
    if req.top_k is not None and family == "other":
        out.append("top_k")
    if family != "anthropic":
        out += [k for k in ("reasoning_effort", "reasoning_budget") if getattr(req, k) is not None]
    elif req.reasoning_effort is not None and req.reasoning_budget is not None:
        out.append("reasoning_effort")  # the explicit budget wins
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
            args = loads(b.arguments) if b.arguments.strip() else {}
        except InvalidRequest:
            raise InvalidRequest(f"The arguments of tool call {b.id!r} are not valid JSON.") from None
        if not isinstance(args, dict):
            raise InvalidRequest(f"The arguments of tool call {b.id!r} must be a JSON object.")
        return {"toolUse": {"toolUseId": tool_use_id(b.id), "name": b.name, "input": args}}

    def tool_result(self, b: ToolResultBlock) -> dict[str, Any]:
        content = [{"text": x.text} if isinstance(x, TextBlock) else self.image(x) for x in b.content]
        out: dict[str, Any] = {"toolUseId": tool_use_id(b.tool_call_id), "content": content}
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
        budget, dropped = _thinking(req, family)
        inference: dict[str, Any] = {}
        if req.max_tokens is not None:
            inference["maxTokens"] = req.max_tokens
        elif budget is not None:  # Claude needs maxTokens above the thinking budget
            inference["maxTokens"] = budget + DEFAULT_MAX_TOKENS
        if req.temperature is not None and "temperature" not in dropped:
            inference["temperature"] = min(max(req.temperature, 0.0), 1.0)
        if req.top_p is not None and "top_p" not in dropped:
            inference["topP"] = req.top_p
        stops = [s for s in req.stop if s]
        if stops:
            inference["stopSequences"] = stops
        if inference:
            body["inferenceConfig"] = inference
        tools = self.tool_config()
        if tools is not None:
            if "tool_choice" in dropped:  # a forced choice with thinking on: Claude decides
                tools.pop("toolChoice", None)
            body["toolConfig"] = tools
        extra: dict[str, Any] = {}
        if family == "anthropic":
            if budget is not None:
                extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
            elif req.top_k is not None and "top_k" not in dropped:
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


class ConverseUsage(msgspec.Struct):
    inputTokens: int = 0
    outputTokens: int = 0
    cacheReadInputTokens: int = 0
    cacheWriteInputTokens: int = 0

    def canonical(self) -> Usage:
        cr, cw = self.cacheReadInputTokens, self.cacheWriteInputTokens
        return Usage(input_tokens=self.inputTokens + cr + cw, output_tokens=self.outputTokens, cached_tokens=cr,
                     cache_write_tokens=cw)


class ConverseToolUse(msgspec.Struct):
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
    toolUse: ConverseToolUse | None = None
    reasoningContent: _Reasoning | None = None


class _Message(msgspec.Struct):
    content: list[_Content] = msgspec.field(default_factory=list)


class _Output(msgspec.Struct):
    message: _Message | None = None


class _Response(msgspec.Struct):
    output: _Output
    stopReason: str
    usage: ConverseUsage = msgspec.field(default_factory=ConverseUsage)
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
