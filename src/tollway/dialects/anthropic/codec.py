"""Anthropic Messages wire <-> canonical types, both directions.

``decode_request``/``encode_response`` serve the front door (``/v1/messages``);
``encode_request``/``decode_response`` serve the Anthropic upstream adapter. Pure functions:
no I/O, no clock, no settings.

Usage: Anthropic counts ``input_tokens`` apart from cache reads and cache writes; tollway's
canonical ``Usage.input_tokens`` includes both (OpenAI's sense), so the codec adds them on the
way in and subtracts them on the way out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
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
    Tool,
    ToolCallBlock,
    ToolChoice,
    ToolResultBlock,
    Usage,
)
from tollway.core.errors import InvalidRequest
from tollway.core.names import DIALECT_ANTHROPIC

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

# request fields mapped to canonical slots; everything else lands in ``extras``
_KNOWN = frozenset({
    "model", "messages", "system", "max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "metadata", "thinking",
})
# max_tokens is required by Anthropic's API; a caller from another dialect may not send it
DEFAULT_MAX_TOKENS = 4096
# reasoning_effort (OpenAI) -> a thinking budget
EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}

STOP_IN: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "tool_use": "tool_calls",
    "max_tokens": "length", "model_context_window_exceeded": "length", "refusal": "content_filter",
}
STOP_OUT: dict[str, str] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal",
    "error": "end_turn",
}
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _want(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidRequest(message)


def loads(body: bytes) -> Any:
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None


# --- request: wire -> canonical -----------------------------------------------------------


def decode_request(body: bytes | dict[str, Any]) -> ChatRequest:
    data = loads(body) if isinstance(body, bytes | bytearray) else body
    try:
        return _decode_request(data)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        raise InvalidRequest(f"Malformed request: {type(exc).__name__}: {exc}") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_request(data: Any) -> None:
    """The checks every /v1/messages body gets, pass-through or not."""
    _want(isinstance(data, dict), "Request body must be a JSON object.")
    _want(data.get("stream") is None or isinstance(data["stream"], bool), "stream: must be a boolean")
    for name in ("temperature", "top_p"):
        _want(data.get(name) is None or _is_number(data[name]), f"{name}: must be a number")
    _want(data.get("top_k") is None or (isinstance(data["top_k"], int) and not isinstance(data["top_k"], bool)),
          "top_k: must be an integer")
    metadata = data.get("metadata")
    _want(metadata is None or (isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str | None)),
          "metadata: must be an object whose user_id is a string")
    thinking = data.get("thinking")
    if thinking is not None:
        _want(isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled", "adaptive"),
              "thinking.type: must be 'enabled', 'disabled' or 'adaptive'")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            _want(isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1024,
                  "thinking.budget_tokens: must be an integer >= 1024")
    _want(isinstance(data.get("model"), str) and data["model"] != "", "model: Field required")
    messages = data.get("messages")
    _want(isinstance(messages, list) and len(messages) > 0, "messages: Field required (a non-empty array)")
    max_tokens = data.get("max_tokens")
    _want(max_tokens is None or (isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
                                 and max_tokens >= 1), "max_tokens: must be an integer >= 1")
    for i, m in enumerate(messages):
        _want(isinstance(m, dict) and m.get("role") in ("user", "assistant", "system"),
              f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'")
        _want(isinstance(m.get("content"), str | list), f"messages.{i}.content: Field required")


def _decode_request(data: Any) -> ChatRequest:
    check_request(data)
    messages: list[Message] = []
    system = data.get("system")
    if system:
        messages.append(Message(role="system", content=tuple(_decode_system(system))))
    for i, m in enumerate(data["messages"]):
        messages.extend(_decode_message(m, i))
    _want(any(m.role != "system" for m in messages), "messages: at least one message is required")
    tools = tuple(_decode_tool(t, i) for i, t in enumerate(data.get("tools") or ()))
    tool_choice, parallel = _decode_tool_choice(data.get("tool_choice"))
    thinking = data.get("thinking") or {}
    budget = thinking.get("budget_tokens") if thinking.get("type") == "enabled" else None
    lossy = sorted(_lossy_fields(data))
    if thinking.get("type") == "adaptive":
        lossy.append("thinking.adaptive")
    metadata = data.get("metadata") or {}
    stops = data.get("stop_sequences") or ()
    _want(isinstance(stops, list | tuple) and all(isinstance(s, str) for s in stops),
          "stop_sequences: must be an array of strings")
    return ChatRequest(
        model=data["model"],
        messages=tuple(messages),
        stream=bool(data.get("stream")),
        include_usage=True,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=data.get("max_tokens"),
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        top_k=data.get("top_k"),
        stop=tuple(stops),
        user=metadata.get("user_id") if isinstance(metadata, dict) else None,
        reasoning_budget=budget,
        extras={k: v for k, v in data.items() if k not in _KNOWN},
        dialect=DIALECT_ANTHROPIC,
        lossy=tuple(lossy),
    )


_LOSSY_BLOCK_FIELDS = ("cache_control", "citations", "context")


def _lossy_fields(data: dict[str, Any]) -> set[str]:
    """Nested Anthropic fields that have no canonical slot (named when a request is translated)."""
    found: set[str] = set()

    def scan(block: Any, where: str) -> None:
        if isinstance(block, dict):
            found.update(f"{where}.{k}" for k in _LOSSY_BLOCK_FIELDS if block.get(k) is not None)

    def items(value: Any) -> list[Any]:
        return value if isinstance(value, list) else []

    for b in items(data.get("system")):
        scan(b, "system[]")
    for t in items(data.get("tools")):
        scan(t, "tools[]")
    for m in data["messages"]:
        for b in items(m.get("content")):
            scan(b, "messages[].content[]")
            for c in items(b.get("content") if isinstance(b, dict) else None):
                scan(c, "messages[].content[].content[]")
    return found


def _decode_system(system: Any) -> list[Block]:
    if isinstance(system, str):
        return [TextBlock(text=system)]
    _want(isinstance(system, list), "system: must be a string or an array of text blocks")
    out: list[Block] = []
    for b in system:
        _want(isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str),
              "system: only text blocks are allowed")
        out.append(TextBlock(text=b["text"]))
    return out


def _decode_message(m: dict[str, Any], i: int) -> list[Message]:
    """One Anthropic turn -> canonical messages: a user turn's tool_result blocks become
    ``tool`` messages (in order), the rest of the turn a user message after them."""
    role = m["role"]
    content = m["content"]
    if role == "system":  # the spec's InputMessage allows it: the same as a system prompt
        return [Message(role="system", content=tuple(_decode_system(content)))]
    if isinstance(content, str):
        return [Message(role=role, content=(TextBlock(text=content),))]
    out: list[Message] = []
    blocks: list[Block] = []
    for j, b in enumerate(content):
        where = f"messages.{i}.content.{j}"
        _want(isinstance(b, dict), f"{where}: must be an object")
        kind = b.get("type")
        if kind == "tool_result":
            _want(role == "user", f"{where}: tool_result blocks belong in user turns")
            out.append(Message(role="tool", content=(_decode_tool_result(b, where),)))
        else:
            blocks.append(_decode_block(b, kind, role, where))
    if blocks or not out:
        out.append(Message(role=role, content=tuple(blocks)))
    return out


def _decode_block(b: dict[str, Any], kind: Any, role: str, where: str) -> Block:
    if kind == "text":
        _want(isinstance(b.get("text"), str), f"{where}.text: Field required")
        return TextBlock(text=b["text"])
    if kind == "image":
        return _decode_image(b.get("source"), where)
    if kind == "document":
        return _decode_document(b, where)
    if kind == "tool_use":
        _want(role == "assistant", f"{where}: tool_use blocks belong in assistant turns")
        _want(isinstance(b.get("id"), str) and isinstance(b.get("name"), str), f"{where}: id and name are required")
        args = b.get("input")
        _want(isinstance(args, dict), f"{where}.input: must be an object")
        return ToolCallBlock(id=b["id"], name=b["name"], arguments=_encoder.encode(args).decode())
    if kind == "thinking":
        return ReasoningBlock(text=str(b.get("thinking") or ""), signature=b.get("signature") or None)
    if kind == "redacted_thinking":
        _want(isinstance(b.get("data"), str), f"{where}.data: Field required")
        return ReasoningBlock(redacted_data=b["data"])
    raise InvalidRequest(f"{where}: content block type {kind!r} is not supported by this model's upstream "
                         "(only text, image, document, tool_use, tool_result, thinking and redacted_thinking "
                         "translate to other providers)")


def _decode_image(source: Any, where: str) -> ImageBlock:
    _want(isinstance(source, dict), f"{where}.source: Field required")
    if source.get("type") == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        _want(media_type in IMAGE_TYPES, f"{where}.source.media_type: must be one of {sorted(IMAGE_TYPES)}")
        _want(isinstance(data, str) and data != "", f"{where}.source.data: Field required")
        return ImageBlock(url=f"data:{media_type};base64,{data}")
    if source.get("type") == "url":
        url = source.get("url")
        _want(isinstance(url, str) and url.startswith(("http://", "https://")),
              f"{where}.source.url: must be an http(s) URL")
        return ImageBlock(url=url)
    raise InvalidRequest(f"{where}.source.type: must be 'base64' or 'url'")


def _decode_document(b: dict[str, Any], where: str) -> DocumentBlock:
    source: Any = b.get("source")
    _want(isinstance(source, dict), f"{where}.source: Field required")
    name = b.get("title")
    _want(name is None or isinstance(name, str), f"{where}.title: must be a string")
    kind = source.get("type")
    if kind == "base64":
        _want(isinstance(source.get("data"), str), f"{where}.source.data: Field required")
        return DocumentBlock(data=source["data"], media_type=str(source.get("media_type") or "application/pdf"),
                             name=name)
    if kind == "text":
        _want(isinstance(source.get("data"), str), f"{where}.source.data: Field required")
        return DocumentBlock(data=base64.b64encode(source["data"].encode()).decode(), media_type="text/plain",
                             name=name)
    if kind == "url":
        url = source.get("url")
        _want(isinstance(url, str) and url.startswith(("http://", "https://")),
              f"{where}.source.url: must be an http(s) URL")
        return DocumentBlock(url=url, name=name)
    raise InvalidRequest(f"{where}.source.type: must be 'base64', 'text' or 'url'")


def _decode_tool_result(b: dict[str, Any], where: str) -> ToolResultBlock:
    _want(isinstance(b.get("tool_use_id"), str), f"{where}.tool_use_id: Field required")
    content = b.get("content")
    parts: list[TextBlock | ImageBlock] = []
    if isinstance(content, str):
        parts.append(TextBlock(text=content))
    elif isinstance(content, list):
        for k, c in enumerate(content):
            kind = c.get("type") if isinstance(c, dict) else None
            if kind == "text":
                parts.append(TextBlock(text=str(c.get("text") or "")))
            elif kind == "image":
                parts.append(_decode_image(c.get("source"), f"{where}.content.{k}"))
            else:
                raise InvalidRequest(f"{where}.content.{k}: a tool result holds text or image blocks, not {kind!r}")
    elif content is not None:
        raise InvalidRequest(f"{where}.content: must be a string or an array of blocks")
    return ToolResultBlock(tool_call_id=b["tool_use_id"], content=tuple(parts), is_error=bool(b.get("is_error")))


def _decode_tool(t: Any, i: int) -> Tool:
    _want(isinstance(t, dict) and isinstance(t.get("name"), str), f"tools.{i}.name: Field required")
    kind = t.get("type")
    if kind not in (None, "custom"):
        raise InvalidRequest(f"tools.{i}: server tool {kind!r} runs only on Anthropic's own upstream")
    schema = t.get("input_schema")
    _want(isinstance(schema, dict), f"tools.{i}.input_schema: Field required")
    _want(t.get("description") is None or isinstance(t["description"], str), f"tools.{i}.description: must be a string")
    return Tool(name=t["name"], description=t.get("description"), parameters=schema)


def _decode_tool_choice(tc: Any) -> tuple[ToolChoice | None, bool | None]:
    if tc is None:
        return None, None
    _want(isinstance(tc, dict), "tool_choice: must be an object")
    parallel = False if tc.get("disable_parallel_tool_use") else None
    kind = tc.get("type")
    if kind == "auto":
        return ToolChoice(mode="auto"), parallel
    if kind == "any":
        return ToolChoice(mode="required"), parallel
    if kind == "none":
        return ToolChoice(mode="none"), parallel
    if kind == "tool":
        _want(isinstance(tc.get("name"), str), "tool_choice.name: Field required")
        return ToolChoice(mode="required", name=tc["name"]), parallel
    raise InvalidRequest(f"tool_choice.type: must be auto, any, tool or none, not {kind!r}")


# --- request: canonical -> wire -----------------------------------------------------------


def unencoded(req: ChatRequest) -> list[str]:
    """Canonical request fields Anthropic's wire has no place for (dropped by ``encode_request``)."""
    out = [name for name in ("seed", "response_format") if getattr(req, name) is not None]
    if req.dialect != DIALECT_ANTHROPIC:
        out.extend(req.extras)
    blocks = [b for m in req.messages for b in m.content]
    # Anthropic checks thinking signatures: reasoning from another model cannot go back to it
    if any(isinstance(b, ReasoningBlock) and b.signature is None and b.redacted_data is None for b in blocks):
        out.append("messages[].reasoning_content")
    if any(m.name for m in req.messages):
        out.append("messages[].name")
    if any(isinstance(b, ImageBlock) and b.detail for b in blocks):
        out.append("image_url.detail")
    if any(t.strict is not None for t in req.tools):
        out.append("tools[].strict")
    out.extend(thinking_plan(req)[1])
    return out


def thinking_plan(req: ChatRequest) -> tuple[int | None, list[str]]:
    """The thinking budget a Claude model gets (on Anthropic or Bedrock), and the fields
    thinking makes it drop.

    A caller's ``max_tokens`` (OpenAI's sense: reasoning included) caps the budget; a budget
    under Anthropic's 1,024 minimum means no thinking. So does a tool loop whose last assistant
    turn has tool calls but no signed thinking block (an OpenAI client carries no signatures),
    which Anthropic refuses while thinking is on. With thinking on, Anthropic refuses a
    temperature other than 1, ``top_k``, ``top_p`` under 0.95 and a forced tool choice."""
    budget, source = req.reasoning_budget, "reasoning_budget"
    if budget is None and req.reasoning_effort is not None:
        source = "reasoning_effort"
        budget = EFFORT_BUDGET.get(req.reasoning_effort)
        if budget is None:
            return None, [] if req.reasoning_effort == "none" else [source]
    if budget is None:
        return None, []
    if req.max_tokens is not None:
        budget = min(budget, req.max_tokens - 1)
    if budget < 1024:
        return None, [source]
    assistant = [m for m in req.messages if m.role == "assistant"]
    if assistant and any(isinstance(b, ToolCallBlock) for b in assistant[-1].content) and not any(
            isinstance(b, ReasoningBlock) and (b.signature or b.redacted_data) for b in assistant[-1].content):
        return None, [source]
    dropped = []
    if req.temperature is not None and req.temperature != 1:
        dropped.append("temperature")
    if req.top_k is not None:
        dropped.append("top_k")
    if req.top_p is not None and req.top_p < 0.95:
        dropped.append("top_p")
    if req.tool_choice is not None and req.tool_choice.mode == "required":
        dropped.append("tool_choice")
    return budget, dropped


def encode_request(req: ChatRequest, *, model: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model}
    system = [b for m in req.messages if m.role == "system" for b in m.content if isinstance(b, TextBlock) and b.text]
    if system:
        out["system"] = "\n\n".join(b.text for b in system)
    out["messages"] = _encode_messages([m for m in req.messages if m.role != "system"])
    budget, dropped = thinking_plan(req)
    max_tokens = req.max_tokens or DEFAULT_MAX_TOKENS
    if budget is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if req.max_tokens is None:  # Anthropic requires max_tokens > budget_tokens
            max_tokens = budget + DEFAULT_MAX_TOKENS
    out["max_tokens"] = max_tokens
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
    if req.tools:
        out["tools"] = [{"name": t.name, "description": t.description or "",
                         "input_schema": t.parameters or {"type": "object", "properties": {}}} for t in req.tools]
        tool_choice = None if "tool_choice" in dropped else req.tool_choice
        choice = _encode_tool_choice(tool_choice, req.parallel_tool_calls)
        if choice is not None:
            out["tool_choice"] = choice
    if req.dialect == DIALECT_ANTHROPIC:
        out.update(req.extras)
    return out


def _encode_tool_choice(tc: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
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


def _encode_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Canonical messages -> Anthropic turns: tool results join the user turn that follows
    them, and adjacent turns of one role are merged (Anthropic alternates user/assistant)."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = "assistant" if m.role == "assistant" else "user"
        blocks = [e for b in m.content if (e := _encode_block(b)) is not None]
        if not blocks:  # Anthropic refuses empty content: a turn with nothing in it is left out
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # tool results must open their user turn
        content = turn["content"]
        if turn["role"] == "user" and any(b["type"] == "tool_result" for b in content):
            turn["content"] = ([b for b in content if b["type"] == "tool_result"]
                               + [b for b in content if b["type"] != "tool_result"])
    return turns


def image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media_type = head[5:].split(";")[0]
        if ";base64" not in head or media_type not in IMAGE_TYPES:
            raise InvalidRequest(f"An image data URL must be base64 {sorted(IMAGE_TYPES)}, not {head[:60]!r}")
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _encode_block(b: Block) -> dict[str, Any] | None:
    if isinstance(b, TextBlock):
        return {"type": "text", "text": b.text} if b.text else None  # Anthropic refuses empty text blocks
    if isinstance(b, ImageBlock):
        return {"type": "image", "source": image_source(b.url)}
    if isinstance(b, DocumentBlock):
        out: dict[str, Any] = {"type": "document"}
        if b.url:
            out["source"] = {"type": "url", "url": b.url}
        elif b.media_type.startswith("text/"):
            try:
                text = base64.b64decode(b.data, validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                raise InvalidRequest("A text document's data is not valid base64.") from None
            out["source"] = {"type": "text", "media_type": "text/plain", "data": text}
        else:
            out["source"] = {"type": "base64", "media_type": b.media_type, "data": b.data}
        if b.name:
            out["title"] = b.name
        return out
    if isinstance(b, ToolCallBlock):
        try:
            args = _decoder.decode(b.arguments) if b.arguments.strip() else {}
        except msgspec.DecodeError:
            raise InvalidRequest(f"tool call {b.id}: arguments are not valid JSON") from None
        if not isinstance(args, dict):
            raise InvalidRequest(f"tool call {b.id}: arguments must be a JSON object")
        return {"type": "tool_use", "id": tool_use_id(b.id), "name": b.name, "input": args}
    if isinstance(b, ToolResultBlock):
        content: list[dict[str, Any]] = [
            {"type": "text", "text": c.text} if isinstance(c, TextBlock)
            else {"type": "image", "source": image_source(c.url)}
            for c in b.content if not (isinstance(c, TextBlock) and not c.text)]
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id(b.tool_call_id)}
        if content:
            result["content"] = content
        if b.is_error:
            result["is_error"] = True
        return result
    if isinstance(b, ReasoningBlock):
        if b.redacted_data is not None:
            return {"type": "redacted_thinking", "data": b.redacted_data}
        if b.signature is not None:
            return {"type": "thinking", "thinking": b.text, "signature": b.signature}
        return None  # unsigned reasoning (another model's) cannot go back to Anthropic
    raise InvalidRequest(f"a {type(b).__name__} cannot be sent to Anthropic")


# --- response -----------------------------------------------------------------------------


def decode_usage(u: dict[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    cached = u.get("cache_read_input_tokens") or 0
    written = u.get("cache_creation_input_tokens") or 0
    details = u.get("output_tokens_details") or {}
    return Usage(input_tokens=(u.get("input_tokens") or 0) + cached + written,
                 output_tokens=u.get("output_tokens") or 0, cached_tokens=cached, cache_write_tokens=written,
                 reasoning_tokens=details.get("thinking_tokens") or 0)


def encode_usage(u: Usage) -> dict[str, Any]:
    """Every field the spec's Usage marks required, null where tollway has nothing."""
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


def decode_response(body: bytes | dict[str, Any]) -> ChatResponse:
    data = _decoder.decode(body) if isinstance(body, bytes | bytearray) else body
    blocks: list[Block] = []
    for b in data.get("content") or ():
        kind = b.get("type")
        if kind == "text":
            blocks.append(TextBlock(text=b.get("text") or ""))
        elif kind == "thinking":
            blocks.append(ReasoningBlock(text=b.get("thinking") or "", signature=b.get("signature") or None))
        elif kind == "redacted_thinking":
            blocks.append(ReasoningBlock(redacted_data=b.get("data") or ""))
        elif kind == "tool_use":
            blocks.append(ToolCallBlock(id=b.get("id") or "", name=b.get("name") or "",
                                        arguments=_encoder.encode(b.get("input") or {}).decode()))
    return ChatResponse(
        id=data.get("id") or "",
        model=data.get("model") or "",
        created=0,
        content=tuple(blocks),
        finish_reason=STOP_IN.get(data.get("stop_reason") or "end_turn", "stop"),
        usage=decode_usage(data.get("usage")),
        stop_sequence=data.get("stop_sequence"),
    )


def message_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else "msg_" + (upstream_id or "tollway").replace("-", "")


def tool_use_id(call_id: str, index: int = 0) -> str:
    """Anthropic's ids match ^[a-zA-Z0-9_-]+$; other upstreams' may not (Kimi's
    ``functions.f:0``), or send none at all (then the block's index makes one)."""
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in call_id)
    return clean or f"toolu_{index}"


def encode_block(b: Block, index: int = 0) -> dict[str, Any] | None:
    """A response content block, with every field the spec marks required."""
    if isinstance(b, TextBlock):
        return {"type": "text", "text": b.text, "citations": None}
    if isinstance(b, ReasoningBlock):
        if b.redacted_data is not None:
            return {"type": "redacted_thinking", "data": b.redacted_data}
        return {"type": "thinking", "thinking": b.text, "signature": b.signature or ""}
    if isinstance(b, ToolCallBlock):
        try:
            args = _decoder.decode(b.arguments) if b.arguments.strip() else {}
        except msgspec.DecodeError:
            args = {"_raw": b.arguments}  # a model's broken JSON, kept visible rather than lost
        if not isinstance(args, dict):
            args = {"_value": args}
        return {"type": "tool_use", "id": tool_use_id(b.id, index), "name": b.name, "input": args,
                "caller": {"type": "direct"}}
    return None


def stop_reason_of(reason: FinishReason, stop_sequence: str | None) -> str:
    return "stop_sequence" if stop_sequence else STOP_OUT.get(reason, "end_turn")


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


def dumps(obj: Any) -> bytes:
    return _encoder.encode(obj)
