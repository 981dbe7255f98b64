"""Canonical chat <-> Gemini's v1beta ``GenerateContentRequest``/``GenerateContentResponse``.
Pure: no I/O, no clock (``encode_request`` takes media already fetched,
``decode_response`` takes the time as an argument).

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
- Thinking budgets are fitted to the upstream model (``thinking_range``, from the budgets table
  of Google's "Gemini thinking" guide): 2.5 Pro takes 128..32768 and cannot turn thinking off,
  2.5 Flash 0..24576, 2.5 Flash-Lite 0 or 512..24576, all -1 (dynamic); 2.0 and 1.x models take
  no thinkingConfig at all, so it is not sent. A budget outside the range is clamped into it.
  Models the table does not name (Gemini 3, tuned or future models) get the budget as asked.
- Responses are decoded into typed view structs (``GenerateContentResponse``): a part, usage
  count or id of the wrong type is a ``msgspec.ValidationError`` naming its path, never a
  canonical block holding a value of the wrong type.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

import msgspec

from tollway.core.chat import (
    Block,
    ChatRequest,
    ChatResponse,
    DocumentBlock,
    FinishReason,
    ImageBlock,
    Message,
    ReasoningBlock,
    TextBlock,
    ToolCallBlock,
    ToolResultBlock,
    Usage,
)
from tollway.core.errors import InvalidRequest
from tollway.core.json_input import loads
from tollway.core.names import DIALECT_GEMINI
from tollway.providers.media import Media, decode_data_url

# reasoning_effort -> thinkingBudget (the budgets Google's OpenAI-compatible endpoint uses)
EFFORT_BUDGETS: Final[Mapping[str, int]] = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
DYNAMIC_BUDGET: Final = -1  # thinkingBudget -1: the model decides how much to think
_RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
_SCHEMA_DROP = frozenset({"$schema"})
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                       "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


IdFactory = Callable[[str], str]

# --- thinking budgets per model ----------------------------------------------------------------


class ThinkingRange(NamedTuple):
    """The thinkingBudget values a model takes: -1 (dynamic), ``low..high``, and 0 (thinking
    off) when ``can_disable``. ``thinks`` false: the model takes no thinkingConfig at all."""

    thinks: bool
    low: int = 0
    high: int = 0
    can_disable: bool = False


NO_THINKING: Final = ThinkingRange(thinks=False)

# by upstream model name prefix, the most specific first (Google's "Gemini thinking" guide)
_THINKING_RANGES: Final[tuple[tuple[str, ThinkingRange | None], ...]] = (
    ("gemini-2.5-flash-lite", ThinkingRange(thinks=True, low=512, high=24576, can_disable=True)),
    ("gemini-2.5-flash", ThinkingRange(thinks=True, low=0, high=24576, can_disable=True)),
    ("gemini-2.5-pro", ThinkingRange(thinks=True, low=128, high=32768, can_disable=False)),
    ("gemini-2.0-flash-thinking", None),  # the experimental thinking model: not in the table, left alone
    ("gemini-2.0-", NO_THINKING),
    ("gemini-1.", NO_THINKING),
)


def thinking_range(model: str) -> ThinkingRange | None:
    """What ``model`` (an upstream model name) takes as a thinking budget; None when unknown."""
    name = model.lower().removeprefix("models/")
    return next((r for prefix, r in _THINKING_RANGES if name.startswith(prefix)), None)


def fit_budget(budget: int, limits: ThinkingRange) -> int | None:
    """``budget`` clamped into ``limits``; None when the model takes no thinkingConfig."""
    if not limits.thinks:
        return None
    if budget < 0:
        return DYNAMIC_BUDGET  # -1, the one negative budget Gemini takes
    if budget == 0 and limits.can_disable:
        return 0
    return min(max(budget, limits.low), limits.high)


def thinking_budget(req: ChatRequest) -> int | None:
    """The budget the request asks for (``reasoning_budget`` wins over ``reasoning_effort``)."""
    if req.reasoning_budget is not None:
        return req.reasoning_budget
    if req.reasoning_effort is not None:
        return EFFORT_BUDGETS.get(req.reasoning_effort)
    return None


def _thinking(req: ChatRequest, model: str) -> tuple[int | None, bool]:
    """The thinkingBudget to send to ``model`` (None: no thinkingConfig) and whether it is not
    what the request asked for (dropped or clamped)."""
    asked = thinking_budget(req)
    limits = thinking_range(model)
    if asked is None or limits is None:
        return asked, False
    sent = fit_budget(asked, limits)
    return sent, sent != asked


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


def encode_request(req: ChatRequest, *, media: Mapping[str, Media] | None = None,
                   upstream_model: str | None = None) -> dict[str, Any]:
    """The GenerateContentRequest body; ``media`` holds the fetched bytes of ``media_urls(req)``.
    ``upstream_model`` (default ``req.model``) decides the thinking budget's range."""
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
    config = _generation_config(req, upstream_model or req.model)
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
    found = media.get(url)  # a data: URL too, when the adapter decoded it already (in steps)
    if found is None and url.startswith("data:"):
        return decode_data_url(url)
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
        args = loads(b.arguments)
    except InvalidRequest:
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


def _generation_config(req: ChatRequest, model: str) -> dict[str, Any]:
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
    budget, _ = _thinking(req, model)
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


def unsupported(req: ChatRequest, *, upstream_model: str | None = None) -> list[str]:
    """The canonical request fields ``encode_request`` does not send to Gemini as asked.

    ``upstream_model`` (default ``req.model``) decides the thinking budget: when the model takes
    none it is dropped, when the budget is outside the model's range it is clamped, and either
    way the field it came from (``reasoning_budget`` or ``reasoning_effort``) is named."""
    out = [k for k in ("parallel_tool_calls", "user") if getattr(req, k) is not None]
    if req.reasoning_effort is not None and (req.reasoning_budget is not None
                                             or req.reasoning_effort not in EFFORT_BUDGETS):
        out.append("reasoning_effort")
    _, changed = _thinking(req, upstream_model or req.model)
    if changed:
        source = "reasoning_budget" if req.reasoning_budget is not None else "reasoning_effort"
        if source not in out:
            out.append(source)
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


class FunctionCall(msgspec.Struct, frozen=True):
    name: str | None = None
    id: str | None = None
    args: dict[str, Any] | None = None


class Part(msgspec.Struct, frozen=True, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    thought_signature: str | None = None
    function_call: FunctionCall | None = None


class Content(msgspec.Struct, frozen=True):
    parts: list[Part] | None = None


class Candidate(msgspec.Struct, frozen=True, rename="camel"):
    content: Content | None = None
    finish_reason: str | None = None


class PromptFeedback(msgspec.Struct, frozen=True, rename="camel"):
    block_reason: str | None = None


class UsageMetadata(msgspec.Struct, frozen=True, rename="camel"):
    prompt_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    thoughts_token_count: int | None = None
    cached_content_token_count: int | None = None


class GenerateContentResponse(msgspec.Struct, frozen=True, rename="camel"):
    """What is read of a GenerateContentResponse (or of one streamed chunk); the rest is skipped."""

    candidates: list[Candidate] | None = None
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: Any = msgspec.UNSET  # an error object instead of an answer (in a 200, or mid-stream)


# reads a body straight into the view: a value of the wrong type is a ValidationError naming its path
response_decoder: Final = msgspec.json.Decoder(GenerateContentResponse)


def as_response(data: Any) -> GenerateContentResponse:
    """``data`` (decoded JSON, or the view itself) as a GenerateContentResponse view; a
    ``msgspec.ValidationError`` (a ValueError) when it has the wrong shape."""
    if isinstance(data, GenerateContentResponse):
        return data
    return msgspec.convert(data, GenerateContentResponse)


def finish_reason_of(reason: str | None, has_calls: bool) -> FinishReason:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def usage_of(meta: UsageMetadata | Mapping[str, Any] | None) -> Usage:
    if not meta:
        return Usage()
    m = meta if isinstance(meta, UsageMetadata) else msgspec.convert(meta, UsageMetadata)
    thoughts = m.thoughts_token_count or 0
    return Usage(
        input_tokens=(m.prompt_token_count or 0) + (m.tool_use_prompt_token_count or 0),
        output_tokens=(m.candidates_token_count or 0) + thoughts,
        cached_tokens=m.cached_content_token_count or 0,
        reasoning_tokens=thoughts,
    )


def call_args(call: FunctionCall) -> str:
    return json.dumps(call.args or {}, ensure_ascii=False, separators=(",", ":"))


def first_candidate(data: GenerateContentResponse) -> Candidate | None:
    return data.candidates[0] if data.candidates else None


def blocked(data: GenerateContentResponse) -> bool:
    """A prompt Gemini refused: no candidates, a block reason."""
    return bool(data.prompt_feedback and data.prompt_feedback.block_reason)


def parts_of(cand: Candidate) -> list[Part]:
    return (cand.content.parts if cand.content else None) or []


def error_text(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or err.get("status") or "error")
    return str(err)


def decode_response(data: Any, *, model: str, created: int, make_id: IdFactory = new_id) -> ChatResponse:
    """A whole GenerateContentResponse (decoded JSON or the view) as a ChatResponse (the first
    candidate). A ValueError when it is not an answer or has the wrong shape."""
    if not isinstance(data, dict | GenerateContentResponse):
        raise ValueError("the completion is not a JSON object")
    resp = as_response(data)
    if resp.error is not msgspec.UNSET:
        raise ValueError(f"an error object instead of a completion: {error_text(resp.error)}")
    usage = usage_of(resp.usage_metadata)
    rid = resp.response_id or make_id("gen-")
    model = resp.model_version or model
    cand = first_candidate(resp)
    if cand is None:
        if blocked(resp):
            return ChatResponse(id=rid, model=model, created=created, content=(), finish_reason="content_filter",
                                usage=usage)
        raise ValueError("no candidates and no block reason")
    blocks: list[Block] = []
    calls = 0
    for part in parts_of(cand):
        if part.thought_signature:
            blocks.append(ReasoningBlock(signature=part.thought_signature))
        call = part.function_call
        if call is not None:
            calls += 1
            blocks.append(ToolCallBlock(id=call.id or make_id("call_"), name=call.name or "",
                                        arguments=call_args(call)))
        elif part.text:
            blocks.append(ReasoningBlock(text=part.text) if part.thought else TextBlock(text=part.text))
    return ChatResponse(id=rid, model=model, created=created, content=tuple(blocks),
                        finish_reason=finish_reason_of(cand.finish_reason, calls > 0), usage=usage)
