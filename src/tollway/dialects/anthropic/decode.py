"""Anthropic Messages wire -> canonical types.

``loads``, ``check_request`` and ``decode_request`` serve the front door (``/v1/messages``);
``decode_response``, ``decode_usage`` and ``finish_reason_of`` read an Anthropic upstream's
answers. Pure functions: no I/O, no clock, no settings.

Each part of a request is converted to its typed view in ``wire`` in one step; when it does
not fit, the view's ``rules`` say why. Content blocks are read through a table keyed by their
type (``_BLOCKS``), those of an answer through another (``_ANSWER_BLOCKS``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

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
from tollway.core.errors import InvalidRequest, require
from tollway.core.json_input import loads as json_loads
from tollway.core.names import DIALECT_ANTHROPIC
from tollway.dialects.anthropic.wire import (
    Base64ImageSource,
    ContentBlockView,
    DataSource,
    DocumentParam,
    InputMessage,
    MessageBody,
    NamedToolChoice,
    RedactedThinkingParam,
    RequestHead,
    SystemTextParam,
    TextParam,
    ThinkingAdaptive,
    ThinkingEnabled,
    ThinkingParam,
    ToolParam,
    ToolResultParam,
    ToolUseParam,
    UrlSource,
    UsageView,
    broken_rule,
    complaint,
    message_decoder,
    parse,
)

_encoder = msgspec.json.Encoder()
T = TypeVar("T")

# request fields mapped to canonical slots; everything else lands in ``extras``
_KNOWN = frozenset({
    "model", "messages", "system", "max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "metadata", "thinking",
})
# nested fields with no canonical slot, named when a request is translated
_LOSSY_BLOCK_FIELDS = ("cache_control", "citations", "context")

STOP_IN: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "tool_use": "tool_calls",
    "max_tokens": "length", "model_context_window_exceeded": "length", "refusal": "content_filter",
}


def loads(raw: bytes) -> Any:
    return json_loads(raw, invalid="Request body is not valid JSON")



def _typed(value: Any, kind: type[T], message: str) -> T:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError:
        raise InvalidRequest(message) from None


def _kind(block: dict[str, Any]) -> str | None:
    kind = block.get("type")
    return kind if isinstance(kind, str) else None


# --- request: the checks every body gets ------------------------------------------------------


def check_request(data: Any) -> RequestHead:
    """The checks every /v1/messages body gets, pass-through or not; its checked fields, typed."""
    try:
        return msgspec.convert(data, RequestHead)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(_head_complaint(data) or f"Malformed request: {exc}") from None


def _head_complaint(data: Any) -> str | None:
    if broken_rule(data, RequestHead) is not None:
        return complaint(data, RequestHead)
    # the body's own fields are right: one of its messages is not
    return next((complaint(m, InputMessage, f"messages.{i}") for i, m in enumerate(data["messages"])
                 if broken_rule(m, InputMessage) is not None), None)


# --- request: wire -> canonical ---------------------------------------------------------------


def decode_request(data: bytes | dict[str, Any]) -> ChatRequest:
    """A /v1/messages body (raw, or as ``loads`` gave it) as a canonical request."""
    body = loads(data) if isinstance(data, bytes | bytearray) else data
    head = check_request(body)
    try:
        return _decode_request(body, head)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        raise InvalidRequest(f"Malformed request: {type(exc).__name__}: {exc}") from None


def _decode_request(data: dict[str, Any], head: RequestHead) -> ChatRequest:
    messages = _decode_system(data.get("system"))
    for i, m in enumerate(head.messages):
        messages.extend(_decode_message(m, i))
    require(any(m.role != "system" for m in messages), "messages: at least one message is required")
    tools = tuple(_decode_tool(t, i) for i, t in enumerate(data.get("tools") or ()))
    tool_choice, parallel = _decode_tool_choice(data.get("tool_choice"))
    lossy = sorted(_lossy_fields(data)) + (["thinking.adaptive"] if isinstance(head.thinking, ThinkingAdaptive) else [])
    stop = _typed(data.get("stop_sequences") or [], list[str], "stop_sequences: must be an array of strings")
    return ChatRequest(
        model=head.model,
        messages=tuple(messages),
        stream=bool(head.stream),
        include_usage=True,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=head.max_tokens,
        temperature=head.temperature,
        top_p=head.top_p,
        top_k=head.top_k,
        stop=tuple(stop),
        user=head.metadata.user_id if head.metadata else None,
        reasoning_budget=head.thinking.budget_tokens if isinstance(head.thinking, ThinkingEnabled) else None,
        extras={k: v for k, v in data.items() if k not in _KNOWN},
        dialect=DIALECT_ANTHROPIC,
        lossy=tuple(lossy),
    )


def _lossy_fields(data: dict[str, Any]) -> set[str]:
    """Nested Anthropic fields that have no canonical slot."""
    found: set[str] = set()

    def scan(blocks: Any, where: str, inner: str | None = None) -> None:
        for b in blocks if isinstance(blocks, list) else ():
            if isinstance(b, dict):
                found.update(f"{where}.{k}" for k in _LOSSY_BLOCK_FIELDS if b.get(k) is not None)
                if inner:
                    scan(b.get("content"), inner)

    scan(data.get("system"), "system[]")
    scan(data.get("tools"), "tools[]")
    for m in data["messages"]:
        scan(m.get("content"), "messages[].content[]", "messages[].content[].content[]")
    return found


def _decode_system(system: Any) -> list[Message]:
    return [Message(role="system", content=_system_blocks(system))] if system else []


def _system_blocks(system: Any) -> tuple[Block, ...]:
    if isinstance(system, str):
        return (TextBlock(text=system),)
    blocks = _typed(system, list[Any], "system: must be a string or an array of text blocks")
    return tuple(TextBlock(text=parse(b, SystemTextParam).text) for b in blocks)


def _decode_message(m: InputMessage, i: int) -> list[Message]:
    """One Anthropic turn -> canonical messages: a user turn's tool_result blocks become
    ``tool`` messages (in order), the rest of the turn a user message after them."""
    if m.role == "system":  # the spec's InputMessage allows it: the same as a system prompt
        return [Message(role="system", content=_system_blocks(m.content))]
    if isinstance(m.content, str):
        return [Message(role=m.role, content=(TextBlock(text=m.content),))]
    out: list[Message] = []
    blocks: list[Block] = []
    for j, b in enumerate(m.content):
        where = f"messages.{i}.content.{j}"
        require(isinstance(b, dict), f"{where}: must be an object")
        if b.get("type") == "tool_result":
            require(m.role == "user", f"{where}: tool_result blocks belong in user turns")
            out.append(Message(role="tool", content=(_decode_tool_result(b, where),)))
        else:
            blocks.append(_decode_block(b, m.role, where))
    if blocks or not out:
        out.append(Message(role=m.role, content=tuple(blocks)))
    return out


def _decode_block(b: dict[str, Any], role: str, where: str) -> Block:
    decode = _BLOCKS.get(_kind(b) or "")
    if decode is None:
        raise InvalidRequest(f"{where}: content block type {b.get('type')!r} is not supported by this model's "
                             "upstream (only text, image, document, tool_use, tool_result, thinking and "
                             "redacted_thinking translate to other providers)")
    return decode(b, role, where)


def _text(b: dict[str, Any], role: str, where: str) -> Block:
    return TextBlock(text=parse(b, TextParam, where).text)


def _image(b: dict[str, Any], role: str, where: str) -> Block:
    return _decode_image(b.get("source"), where)


def _tool_use(b: dict[str, Any], role: str, where: str) -> Block:
    require(role == "assistant", f"{where}: tool_use blocks belong in assistant turns")
    call = parse(b, ToolUseParam, where)
    return ToolCallBlock(id=call.id, name=call.name, arguments=_encoder.encode(call.input).decode())


def _thinking(b: dict[str, Any], role: str, where: str) -> Block:
    thinking = parse(b, ThinkingParam, where)
    return ReasoningBlock(text=thinking.thinking or "", signature=thinking.signature or None)


def _redacted_thinking(b: dict[str, Any], role: str, where: str) -> Block:
    return ReasoningBlock(redacted_data=parse(b, RedactedThinkingParam, where).data)


def _decode_image(source: Any, where: str) -> ImageBlock:
    require(isinstance(source, dict), f"{where}.source: Field required")
    kind = _kind(source)
    if kind == "base64":
        image = parse(source, Base64ImageSource, where)
        return ImageBlock(url=f"data:{image.media_type};base64,{image.data}")
    if kind == "url":
        return ImageBlock(url=parse(source, UrlSource, where).url)
    raise InvalidRequest(f"{where}.source.type: must be 'base64' or 'url'")


def _document(b: dict[str, Any], role: str, where: str) -> Block:
    doc = parse(b, DocumentParam, where)
    read = _DOCUMENT_SOURCES.get(_kind(doc.source) or "")
    if read is None:
        raise InvalidRequest(f"{where}.source.type: must be 'base64', 'text' or 'url'")
    return read(doc.source, doc.title, where)


def _base64_document(source: dict[str, Any], name: str | None, where: str) -> DocumentBlock:
    doc = parse(source, DataSource, where)
    return DocumentBlock(data=doc.data, media_type=str(doc.media_type or "application/pdf"), name=name)


def _text_document(source: dict[str, Any], name: str | None, where: str) -> DocumentBlock:
    doc = parse(source, DataSource, where)
    return DocumentBlock(data=base64.b64encode(doc.data.encode()).decode(), media_type="text/plain", name=name)


def _url_document(source: dict[str, Any], name: str | None, where: str) -> DocumentBlock:
    return DocumentBlock(url=parse(source, UrlSource, where).url, name=name)


_DOCUMENT_SOURCES: dict[str, Callable[[dict[str, Any], str | None, str], DocumentBlock]] = {
    "base64": _base64_document, "text": _text_document, "url": _url_document,
}
# a request's content blocks by type (tool_result blocks become tool messages: _decode_message)
_BLOCKS: dict[str, Callable[[dict[str, Any], str, str], Block]] = {
    "text": _text, "image": _image, "document": _document, "tool_use": _tool_use, "thinking": _thinking,
    "redacted_thinking": _redacted_thinking,
}


def _decode_tool_result(b: dict[str, Any], where: str) -> ToolResultBlock:
    result = parse(b, ToolResultParam, where)
    return ToolResultBlock(tool_call_id=result.tool_use_id, content=_tool_result_content(result.content, where),
                           is_error=bool(result.is_error))


def _tool_result_content(content: Any, where: str) -> tuple[TextBlock | ImageBlock, ...]:
    if content is None:
        return ()
    if isinstance(content, str):
        return (TextBlock(text=content),)
    require(isinstance(content, list), f"{where}.content: must be a string or an array of blocks")
    return tuple(_tool_result_part(c, f"{where}.content.{k}") for k, c in enumerate(content))


def _tool_result_part(c: Any, where: str) -> TextBlock | ImageBlock:
    kind = c.get("type") if isinstance(c, dict) else None
    if kind == "text":
        return TextBlock(text=str(c.get("text") or ""))
    if kind == "image":
        return _decode_image(c.get("source"), where)
    raise InvalidRequest(f"{where}: a tool result holds text or image blocks, not {kind!r}")


def _decode_tool(t: Any, i: int) -> Tool:
    tool = parse(t, ToolParam, f"tools.{i}")
    return Tool(name=tool.name, description=tool.description, parameters=tool.input_schema)


_TOOL_CHOICES = {"auto": ToolChoice(mode="auto"), "any": ToolChoice(mode="required"), "none": ToolChoice(mode="none")}


def _decode_tool_choice(tc: Any) -> tuple[ToolChoice | None, bool | None]:
    if tc is None:
        return None, None
    require(isinstance(tc, dict), "tool_choice: must be an object")
    parallel = False if tc.get("disable_parallel_tool_use") else None
    kind = _kind(tc)
    if kind == "tool":
        named = parse(tc, NamedToolChoice)
        return ToolChoice(mode="required", name=named.name), parallel
    choice = _TOOL_CHOICES.get(kind or "")
    if choice is None:
        raise InvalidRequest(f"tool_choice.type: must be auto, any, tool or none, not {tc.get('type')!r}")
    return choice, parallel


# --- an upstream's answer ---------------------------------------------------------------------


def decode_usage(usage: UsageView | None) -> Usage:
    return usage.to_usage() if usage is not None else Usage()


def finish_reason_of(stop_reason: str | None) -> FinishReason:
    return STOP_IN.get(stop_reason or "end_turn", "stop")


def _tool_call(b: ContentBlockView) -> Block:
    return ToolCallBlock(id=b.id or "", name=b.name or "", arguments=_encoder.encode(b.input or {}).decode())


# an answer's content blocks by type; other types (server tools' blocks) have no canonical form
_ANSWER_BLOCKS: dict[str, Callable[[ContentBlockView], Block]] = {
    "text": lambda b: TextBlock(text=b.text or ""),
    "thinking": lambda b: ReasoningBlock(text=b.thinking or "", signature=b.signature or None),
    "redacted_thinking": lambda b: ReasoningBlock(redacted_data=b.data or ""),
    "tool_use": _tool_call,
}


def decode_response(body: bytes | dict[str, Any]) -> ChatResponse:
    """An upstream's message (raw or parsed). A body that is not one raises msgspec.DecodeError
    (ValidationError included)."""
    msg = message_decoder.decode(body) if isinstance(body, bytes | bytearray) else msgspec.convert(body, MessageBody)
    return ChatResponse(
        id=msg.id or "",
        model=msg.model or "",
        created=0,
        content=tuple(_ANSWER_BLOCKS[b.type](b) for b in msg.content or () if b.type in _ANSWER_BLOCKS),
        finish_reason=finish_reason_of(msg.stop_reason),
        usage=decode_usage(msg.usage),
        stop_sequence=msg.stop_sequence,
    )
