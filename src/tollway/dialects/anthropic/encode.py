"""Canonical types -> the Anthropic Messages wire.

``encode_request`` (and ``unencoded``: what it drops) serves the Anthropic upstream adapter;
``encode_response`` and the helpers of its stream encoder (``encode_block``, ``encode_usage``,
``message_id``, ``tool_use_id``, ``stop_reason_of``, ``coalesce_reasoning``) the front door.
Pure functions: no I/O, no clock, no settings.

Blocks are encoded through a table keyed by their canonical type: ``_INPUT_BLOCKS`` for a
request (what Anthropic takes as input), ``_ANSWER_BLOCKS`` for an answer (with every field the
spec marks required).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

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
    ToolChoice,
    ToolResultBlock,
    Usage,
)
from tollway.core.errors import InvalidRequest
from tollway.core.names import DIALECT_ANTHROPIC
from tollway.dialects.anthropic.thinking import DEFAULT_MAX_TOKENS, thinking_plan
from tollway.dialects.anthropic.wire import IMAGE_TYPES

_decoder = msgspec.json.Decoder()

STOP_OUT: dict[str, str] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal",
    "error": "end_turn",
}

# canonical message and tool fields Anthropic's wire has no place for, each with its test
_NO_PLACE: tuple[tuple[str, Callable[[ChatRequest, list[Block]], bool]], ...] = (
    # Anthropic checks thinking signatures: reasoning from another model cannot go back to it
    ("messages[].reasoning_content", lambda _, blocks: any(
        isinstance(b, ReasoningBlock) and b.signature is None and b.redacted_data is None for b in blocks)),
    ("messages[].name", lambda req, _: any(m.name for m in req.messages)),
    ("image_url.detail", lambda _, blocks: any(isinstance(b, ImageBlock) and b.detail for b in blocks)),
    ("tools[].strict", lambda req, _: any(t.strict is not None for t in req.tools)),
)


def unencoded(req: ChatRequest) -> list[str]:
    """Canonical request fields Anthropic's wire has no place for (dropped by ``encode_request``)."""
    out = [name for name in ("seed", "response_format") if getattr(req, name) is not None]
    if req.dialect != DIALECT_ANTHROPIC:
        out.extend(req.extras)
    blocks = [b for m in req.messages for b in m.content]
    out.extend(name for name, dropped in _NO_PLACE if dropped(req, blocks))
    out.extend(thinking_plan(req)[1])
    return out


# --- request ----------------------------------------------------------------------------------


def encode_request(req: ChatRequest, *, model: str) -> dict[str, Any]:
    """A Messages body for the upstream ``model``: the request's fields in the spec's order, then,
    for a caller of this dialect, its extras."""
    budget, dropped = thinking_plan(req)
    out: dict[str, Any] = {"model": model}
    system = "\n\n".join(b.text for m in req.messages if m.role == "system"
                         for b in m.content if isinstance(b, TextBlock) and b.text)
    if system:
        out["system"] = system
    out["messages"] = encode_messages([m for m in req.messages if m.role != "system"])
    if budget is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    out["max_tokens"] = _max_tokens(req, budget)
    out.update(_sampling(req, dropped))
    out.update(_tools(req, dropped))
    if req.dialect == DIALECT_ANTHROPIC:
        out.update(req.extras)
    return out


def _max_tokens(req: ChatRequest, budget: int | None) -> int:
    if budget is not None and req.max_tokens is None:  # Anthropic requires max_tokens > budget_tokens
        return budget + DEFAULT_MAX_TOKENS
    return req.max_tokens or DEFAULT_MAX_TOKENS


def _sampling(req: ChatRequest, dropped: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.stream:
        out["stream"] = True
    if req.stop:
        out["stop_sequences"] = list(req.stop)
    for key in ("temperature", "top_p", "top_k"):
        value = getattr(req, key)
        if value is not None and key not in dropped:
            out[key] = value
    if req.user:
        out["metadata"] = {"user_id": req.user}
    return out


def _tools(req: ChatRequest, dropped: list[str]) -> dict[str, Any]:
    if not req.tools:
        return {}
    out: dict[str, Any] = {"tools": [
        {"name": t.name, "description": t.description or "",
         "input_schema": t.parameters or {"type": "object", "properties": {}}} for t in req.tools]}
    choice = _tool_choice(None if "tool_choice" in dropped else req.tool_choice, req.parallel_tool_calls)
    if choice is not None:
        out["tool_choice"] = choice
    return out


def _tool_choice(tc: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    if tc is None and parallel is not False:
        return None
    if tc is None or tc.mode == "auto":
        out: dict[str, Any] = {"type": "auto"}
    elif tc.name:
        out = {"type": "tool", "name": tc.name}
    elif tc.mode == "required":
        out = {"type": "any"}
    else:
        return {"type": "none"}
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def encode_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Canonical messages -> Anthropic turns: tool results join the user turn that follows
    them, and adjacent turns of one role are merged (Anthropic alternates user/assistant)."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = "assistant" if m.role == "assistant" else "user"
        blocks = [e for b in m.content if (e := encode_input_block(b)) is not None]
        if not blocks:  # Anthropic refuses empty content: a turn with nothing in it is left out
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"] = _tool_results_first(turn["content"])
    return turns


def _tool_results_first(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool results must open their user turn."""
    results = [b for b in content if b["type"] == "tool_result"]
    return results + [b for b in content if b["type"] != "tool_result"] if results else content


def image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media_type = head[5:].split(";")[0]
        if ";base64" not in head or media_type not in IMAGE_TYPES:
            raise InvalidRequest(f"An image data URL must be base64 {sorted(IMAGE_TYPES)}, not {head[:60]!r}")
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def encode_input_block(b: Block) -> dict[str, Any] | None:
    """A request's content block; None for one Anthropic takes nothing of (empty text, unsigned
    reasoning)."""
    encode = _INPUT_BLOCKS.get(type(b))
    if encode is None:
        raise InvalidRequest(f"a {type(b).__name__} cannot be sent to Anthropic")
    return encode(b)


def _text_input(b: TextBlock) -> dict[str, Any] | None:
    return {"type": "text", "text": b.text} if b.text else None  # Anthropic refuses empty text blocks


def _image_input(b: ImageBlock) -> dict[str, Any]:
    return {"type": "image", "source": image_source(b.url)}


def _document_input(b: DocumentBlock) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "document", "source": _document_source(b)}
    if b.name:
        out["title"] = b.name
    return out


def _document_source(b: DocumentBlock) -> dict[str, Any]:
    if b.url:
        return {"type": "url", "url": b.url}
    if not b.media_type.startswith("text/"):
        return {"type": "base64", "media_type": b.media_type, "data": b.data}
    try:
        text = base64.b64decode(b.data, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        raise InvalidRequest("A text document's data is not valid base64.") from None
    return {"type": "text", "media_type": "text/plain", "data": text}


def _tool_use_input(b: ToolCallBlock) -> dict[str, Any]:
    try:
        args = _decoder.decode(b.arguments) if b.arguments.strip() else {}
    except msgspec.DecodeError:
        raise InvalidRequest(f"tool call {b.id}: arguments are not valid JSON") from None
    if not isinstance(args, dict):
        raise InvalidRequest(f"tool call {b.id}: arguments must be a JSON object")
    return {"type": "tool_use", "id": tool_use_id(b.id), "name": b.name, "input": args}


def _tool_result_input(b: ToolResultBlock) -> dict[str, Any]:
    content = [e for c in b.content if (e := encode_input_block(c)) is not None]
    out: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id(b.tool_call_id)}
    if content:
        out["content"] = content
    if b.is_error:
        out["is_error"] = True
    return out


def _reasoning_input(b: ReasoningBlock) -> dict[str, Any] | None:
    if b.redacted_data is not None:
        return {"type": "redacted_thinking", "data": b.redacted_data}
    if b.signature is not None:
        return {"type": "thinking", "thinking": b.text, "signature": b.signature}
    return None  # unsigned reasoning (another model's) cannot go back to Anthropic


_INPUT_BLOCKS: dict[type[Block], Callable[[Any], dict[str, Any] | None]] = {
    TextBlock: _text_input, ImageBlock: _image_input, DocumentBlock: _document_input, ToolCallBlock: _tool_use_input,
    ToolResultBlock: _tool_result_input, ReasoningBlock: _reasoning_input,
}


# --- response ---------------------------------------------------------------------------------


def encode_usage(u: Usage) -> dict[str, Any]:
    """Every field the spec's Usage marks required, null where tollway has nothing. Anthropic
    counts ``input_tokens`` apart from cache reads and writes (``UsageView.to_usage`` adds them)."""
    return {
        "input_tokens": max(0, u.input_tokens - u.cached_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation": None,
        "output_tokens_details": {"thinking_tokens": u.reasoning_tokens} if u.reasoning_tokens else None,
        "server_tool_use": None,
        "service_tier": None,
        "inference_geo": None,
    }


def message_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else "msg_" + (upstream_id or "tollway").replace("-", "")


def tool_use_id(call_id: str, index: int = 0) -> str:
    """Anthropic's ids match ^[a-zA-Z0-9_-]+$; other upstreams' may not (Kimi's
    ``functions.f:0``), or send none at all (then the block's index makes one)."""
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in call_id)
    return clean or f"toolu_{index}"


def stop_reason_of(reason: FinishReason, stop_sequence: str | None) -> str:
    return "stop_sequence" if stop_sequence else STOP_OUT.get(reason, "end_turn")


def encode_block(b: Block, index: int = 0) -> dict[str, Any] | None:
    """An answer's content block, with every field the spec marks required; None for a block
    an answer has no place for."""
    encode = _ANSWER_BLOCKS.get(type(b))
    return encode(b, index) if encode is not None else None


def _text_answer(b: TextBlock, index: int) -> dict[str, Any]:
    return {"type": "text", "text": b.text, "citations": None}


def _reasoning_answer(b: ReasoningBlock, index: int) -> dict[str, Any]:
    if b.redacted_data is not None:
        return {"type": "redacted_thinking", "data": b.redacted_data}
    return {"type": "thinking", "thinking": b.text, "signature": b.signature or ""}


def _tool_use_answer(b: ToolCallBlock, index: int) -> dict[str, Any]:
    try:
        args = _decoder.decode(b.arguments) if b.arguments.strip() else {}
    except msgspec.DecodeError:
        args = {"_raw": b.arguments}  # a model's broken JSON, kept visible rather than lost
    if not isinstance(args, dict):
        args = {"_value": args}
    return {"type": "tool_use", "id": tool_use_id(b.id, index), "name": b.name, "input": args,
            "caller": {"type": "direct"}}


_ANSWER_BLOCKS: dict[type[Block], Callable[[Any, int], dict[str, Any]]] = {
    TextBlock: _text_answer, ReasoningBlock: _reasoning_answer, ToolCallBlock: _tool_use_answer,
}


def coalesce_reasoning(blocks: Sequence[Block]) -> list[Block]:
    """Reasoning text followed by a signature-only block (Gemini puts its signature on the next
    part) is one signed thinking block, as the stream encoder makes it."""
    out: list[Block] = []
    for b in blocks:
        prev = out[-1] if out else None
        if (isinstance(b, ReasoningBlock) and isinstance(prev, ReasoningBlock) and prev.signature is None
                and prev.redacted_data is None and b.redacted_data is None):
            out[-1] = ReasoningBlock(text=prev.text + b.text, signature=b.signature)
        else:
            out.append(b)
    return out


def encode_response(resp: ChatResponse) -> dict[str, Any]:
    content = [e for i, b in enumerate(coalesce_reasoning(resp.content)) if (e := encode_block(b, i)) is not None]
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason_of(resp.finish_reason, resp.stop_sequence),
        "stop_sequence": resp.stop_sequence,
        "stop_details": None,
        "container": None,
        "usage": encode_usage(resp.usage),
    }
