"""OpenAI chat-completions wire <-> canonical types, both directions.

``decode_request``/``encode_request`` serve the front door and any upstream that speaks
OpenAI; ``decode_response``/``encode_response`` the same for completions. Pure functions:
no I/O, no clock, no settings.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from tollway.core.chat import (
    MAX_TOKENS,
    MAX_USER_CHARS,
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
from tollway.core.json_input import loads, too_deep
from tollway.core.names import DIALECT_OPENAI
from tollway.dialects.openai.wire import (
    Doc,
    DocParam,
    FileData,
    FileParam,
    FunctionParam,
    ImageParam,
    NamedFunction,
    ResponseFormat,
    TextParam,
    ToolCallParam,
)

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
T = TypeVar("T")
_INT64 = 2**63

# request fields mapped to canonical slots; everything else lands in ``extras``
_KNOWN = frozenset(
    {
        "model", "messages", "stream", "stream_options", "tools", "tool_choice",
        "parallel_tool_calls", "max_tokens", "max_completion_tokens", "temperature", "top_p",
        "stop", "seed", "response_format", "user", "n", "reasoning_effort",
    }
)
_FINISH_IN: dict[str, FinishReason] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter", "tool_use": "tool_calls", "end_turn": "stop",
}



def _typed(value: Any, view: type[T], where: str) -> T:
    """``value`` as its typed ``view``; a 400 naming the path of what does not fit."""
    try:
        return msgspec.convert(value, view)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path, at, rest = message.partition(" - at `$")
        field = where + rest.rstrip("`") if at else where
        raise InvalidRequest(f"{field}: {path}", param=field) from None


# --- request: wire -> canonical -----------------------------------------------------------


def decode_request(body: bytes | dict[str, Any]) -> ChatRequest:
    data = loads(bytes(body)) if isinstance(body, bytes | bytearray) else body
    try:
        return _decode_request(data)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        # a field of the wrong shape that the checks above did not name
        raise InvalidRequest(f"Malformed request: {type(exc).__name__}: {exc}") from None


def _decode_request(data: Any) -> ChatRequest:
    require(isinstance(data, dict), "Request body must be a JSON object")
    model: Any = data.get("model")
    require(isinstance(model, str) and model != "", "you must provide a model parameter", "model")
    raw_messages: Any = data.get("messages")
    require(isinstance(raw_messages, list) and len(raw_messages) > 0, "messages must be a non-empty array",
          "messages")
    n = data.get("n")
    require(n in (None, 1), "only n=1 is supported", "n")
    _check_types(data)
    messages = tuple(_decode_message(m, i) for i, m in enumerate(raw_messages))
    tools = tuple(_decode_tool(t, j) for j, t in enumerate(data.get("tools") or ()))
    stream_options = data.get("stream_options") or {}
    max_tokens = data.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = data.get("max_tokens")
    stop = data.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(data.get("stream")),
        include_usage=bool(stream_options.get("include_usage")),
        tools=tools,
        tool_choice=_decode_tool_choice(data.get("tool_choice")),
        parallel_tool_calls=data.get("parallel_tool_calls"),
        max_tokens=max_tokens,
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        stop=stops,
        seed=data.get("seed"),
        response_format=data.get("response_format"),
        user=data.get("user"),
        reasoning_effort=data.get("reasoning_effort"),
        extras={k: v for k, v in data.items() if k not in _KNOWN},
    )


def _is(value: Any, kinds: type | tuple[type, ...]) -> bool:
    """None, or a value of ``kinds`` (a JSON true is not an integer here)."""
    if value is None:
        return True
    if isinstance(value, bool):
        return bool in (kinds if isinstance(kinds, tuple) else (kinds,))
    return isinstance(value, kinds)


_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "stream": (bool, "a boolean"), "parallel_tool_calls": (bool, "a boolean"),
    "max_tokens": (int, "an integer"), "max_completion_tokens": (int, "an integer"), "seed": (int, "an integer"),
    "temperature": ((int, float), "a number"), "top_p": ((int, float), "a number"),
    "user": (str, "a string"), "reasoning_effort": (str, "a string"),
    "response_format": (dict, "an object"), "stream_options": (dict, "an object"),
    "stop": ((str, list), "a string or an array of strings"),
}


def _check_types(data: dict[str, Any]) -> None:
    """Fields with a canonical slot must have the wire's type: a 400 here, never a 500 later."""
    for name, (kinds, what) in _TYPES.items():
        require(_is(data.get(name), kinds), f"{name} must be {what}", name)
    stop = data.get("stop")
    require(not isinstance(stop, list) or all(isinstance(x, str) for x in stop), "stop must be an array of strings",
          "stop")
    for name in ("max_tokens", "max_completion_tokens"):
        require(data.get(name) is None or data[name] >= 1, f"{name} must be at least 1", name)
        require(data.get(name) is None or data[name] <= MAX_TOKENS, f"{name} must be at most {MAX_TOKENS}", name)
    seed = data.get("seed")
    require(seed is None or -_INT64 <= seed < _INT64, "seed must be a 64-bit integer", "seed")
    user = data.get("user")
    require(user is None or len(user) <= MAX_USER_CHARS, f"user must be at most {MAX_USER_CHARS} characters", "user")
    if data.get("response_format") is not None:
        _typed(data["response_format"], ResponseFormat, "response_format")


def _decode_message(m: Any, i: int) -> Message:
    require(isinstance(m, dict), f"messages[{i}] must be an object", f"messages[{i}]")
    role = m.get("role")
    if role == "developer":
        role = "system"
    require(role in ("system", "user", "assistant", "tool"), f"messages[{i}].role is invalid: {role!r}",
          f"messages[{i}].role")
    content = m.get("content")
    name = m.get("name")
    require(name is None or isinstance(name, str), f"messages[{i}].name must be a string", f"messages[{i}].name")
    if role == "tool":
        tool_call_id = m.get("tool_call_id")
        require(isinstance(tool_call_id, str), f"messages[{i}].tool_call_id is required",
              f"messages[{i}].tool_call_id")
        parts = tuple(b for b in _decode_parts(content, i) if isinstance(b, TextBlock | ImageBlock))
        return Message(role="tool", content=(ToolResultBlock(tool_call_id=tool_call_id, content=parts),))
    blocks: list[Block] = []
    reasoning = m.get("reasoning_content")
    if role == "assistant" and isinstance(reasoning, str) and reasoning:
        blocks.append(ReasoningBlock(text=reasoning))
    blocks.extend(_decode_parts(content, i))
    if role == "assistant":
        calls = m.get("tool_calls") or []
        require(isinstance(calls, list), f"messages[{i}].tool_calls must be an array", f"messages[{i}].tool_calls")
        blocks.extend(_decode_tool_call(call, f"messages[{i}].tool_calls[{j}]") for j, call in enumerate(calls))
    return Message(role=role, content=tuple(blocks), name=name)


def _decode_tool_call(call: Any, where: str) -> ToolCallBlock:
    c = _typed(call, ToolCallParam, where)
    arguments = c.function.arguments or ""
    # an upstream's encoder decodes them: bounded like a body
    require(not too_deep(arguments), f"{where}.function.arguments: arrays and objects are nested too deeply",
          f"{where}.function.arguments")
    return ToolCallBlock(id=c.id or "", name=c.function.name, arguments=arguments)


def _decode_parts(content: Any, i: int) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextBlock(text=content)]
    require(isinstance(content, list), f"messages[{i}].content must be a string or an array",
          f"messages[{i}].content")
    blocks: list[Block] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind == "text":
            blocks.append(TextBlock(text=_typed(part, TextParam, where).text or ""))
        elif kind == "image_url":
            img = _typed(part, ImageParam, where).image_url
            blocks.append(ImageBlock(url=img) if isinstance(img, str) else ImageBlock(url=img.url, detail=img.detail))
        elif kind == "file":
            blocks.append(_decode_file(part, i, where))
        elif kind == "doc":
            blocks.append(_decode_doc(part, where))
        else:
            raise InvalidRequest(f"messages[{i}].content has an unsupported part type: {kind!r}",
                                 param=f"messages[{i}].content")
    return blocks


def _decode_file(part: dict[str, Any], i: int, where: str) -> DocumentBlock:
    f = _typed(part, FileParam, where).file or FileData()
    if f.file_data is None:
        raise InvalidRequest(f"messages[{i}] file.file_data is required (file_id is not supported)")
    data = f.file_data
    media_type = "application/pdf"
    if data.startswith("data:"):
        head, _, data = data.partition(",")
        media_type = head[5:].split(";")[0] or media_type
    return DocumentBlock(data=data, media_type=media_type, name=f.filename)


def doc_as_file_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    """Seed 004's ``doc`` part (at ``where``) as the ``file`` part OpenAI's wire has for it."""
    return _encode_part(_decode_doc(part, where))


def _decode_doc(part: dict[str, Any], where: str) -> DocumentBlock:
    """Seed 004's ``doc`` part (``where`` is its path): ``source.bytes`` is an index -> byte-value
    map, a list of byte values or base64 text."""
    doc = _typed(part, DocParam, where).doc or Doc()
    raw = doc.source.bytes if doc.source is not None else None
    media_type = _doc_media_type(doc.format)
    if isinstance(raw, str):
        return DocumentBlock(data=raw, media_type=media_type, name=doc.name)
    if isinstance(raw, dict):
        try:
            order = sorted(raw, key=int)
        except ValueError:
            raise InvalidRequest(f"{where}.doc.source.bytes: its keys must be byte indexes",
                                 param=f"{where}.doc.source.bytes") from None
        data = bytes(raw[k] for k in order)
    elif isinstance(raw, list):
        data = bytes(raw)
    else:
        raise InvalidRequest(f"{where}.doc.source.bytes is required", param=f"{where}.doc.source.bytes")
    return DocumentBlock(data=base64.b64encode(data).decode(), media_type=media_type, name=doc.name)


def _doc_media_type(fmt: str | None) -> str:
    return {"pdf": "application/pdf", "txt": "text/plain", "md": "text/markdown", "html": "text/html",
            "csv": "text/csv"}.get((fmt or "pdf").lower(), "application/octet-stream")


def _decode_tool(t: Any, j: int) -> Tool:
    require(isinstance(t, dict) and t.get("type", "function") == "function" and isinstance(t.get("function"), dict),
          "tools[] must be function tools", "tools")
    require(isinstance(t["function"].get("name"), str), "tools[].function.name is required", "tools")
    fn = _typed(t["function"], FunctionParam, f"tools[{j}].function")
    return Tool(name=fn.name, description=fn.description, parameters=fn.parameters or {}, strict=fn.strict)


def _decode_tool_choice(tc: Any) -> ToolChoice | None:
    if tc is None:
        return None
    if tc in ("auto", "none", "required"):
        return ToolChoice(mode=tc)
    if isinstance(tc, dict) and isinstance(tc.get("function"), dict):
        return ToolChoice(mode="required", name=_typed(tc["function"], NamedFunction, "tool_choice.function").name)
    raise InvalidRequest(f"tool_choice is invalid: {tc!r}", param="tool_choice")


# --- request: canonical -> wire -----------------------------------------------------------


def encode_request(req: ChatRequest, *, model: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model or req.model, "messages": [_encode_message(m) for m in req.messages]}
    if req.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if req.tools:
        out["tools"] = [_encode_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        tc = req.tool_choice
        out["tool_choice"] = {"type": "function", "function": {"name": tc.name}} if tc.name else tc.mode
    for key in ("parallel_tool_calls", "temperature", "top_p", "seed", "response_format", "user",
                "reasoning_effort"):
        value = getattr(req, key)
        if value is not None:
            out[key] = value
    if req.max_tokens is not None:
        out["max_tokens"] = req.max_tokens
    if req.stop:
        out["stop"] = list(req.stop)
    if req.dialect == DIALECT_OPENAI:
        out.update(req.extras)
    return out


def unencoded(req: ChatRequest) -> list[str]:
    """Canonical request fields OpenAI's chat wire has no place for (dropped by ``encode_request``)."""
    out = [name for name in ("top_k", "reasoning_budget") if getattr(req, name) is not None]
    if req.dialect != DIALECT_OPENAI:
        out.extend(req.extras)
    return out


def _encode_tool(t: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters or {"type": "object", "properties": {}}}
    if t.description is not None:
        fn["description"] = t.description
    if t.strict is not None:
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


def _encode_part(b: Block) -> dict[str, Any]:
    if isinstance(b, TextBlock):
        return {"type": "text", "text": b.text}
    if isinstance(b, ImageBlock):
        img: dict[str, Any] = {"url": b.url}
        if b.detail:
            img["detail"] = b.detail
        return {"type": "image_url", "image_url": img}
    if isinstance(b, DocumentBlock):
        f: dict[str, Any] = {"file_data": f"data:{b.media_type};base64,{b.data}"}
        if b.name:
            f["filename"] = b.name
        return {"type": "file", "file": f}
    raise InvalidRequest(f"a {type(b).__name__} cannot be sent as OpenAI message content")


def _encode_content(blocks: Sequence[Block]) -> str | list[dict[str, Any]] | None:
    if not blocks:
        return None
    if all(isinstance(b, TextBlock) for b in blocks):
        return "".join(b.text for b in blocks if isinstance(b, TextBlock))
    return [_encode_part(b) for b in blocks]


def _encode_message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        result = m.content[0]
        assert isinstance(result, ToolResultBlock)
        return {"role": "tool", "tool_call_id": result.tool_call_id,
                "content": _encode_content(list(result.content)) or ""}
    plain = [b for b in m.content if not isinstance(b, ToolCallBlock | ReasoningBlock)]
    out: dict[str, Any] = {"role": m.role, "content": _encode_content(plain)}
    if m.role != "assistant" and out["content"] is None:
        out["content"] = ""
    if m.name:
        out["name"] = m.name
    if m.role == "assistant":
        reasoning = "".join(b.text for b in m.content if isinstance(b, ReasoningBlock))
        if reasoning:
            out["reasoning_content"] = reasoning
        calls = [b for b in m.content if isinstance(b, ToolCallBlock)]
        if calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
    return out


# --- response -----------------------------------------------------------------------------


def decode_usage(u: dict[str, Any] | None) -> Usage:
    if not u:
        return Usage()
    ptd = u.get("prompt_tokens_details") or {}
    ctd = u.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        output_tokens=u.get("completion_tokens") or 0,
        cached_tokens=ptd.get("cached_tokens") or u.get("prompt_cache_hit_tokens") or 0,
        reasoning_tokens=ctd.get("reasoning_tokens") or 0,
    )


def encode_usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def finish_reason_in(value: str | None) -> FinishReason:
    return _FINISH_IN.get(value or "stop", "stop")


def decode_response(body: bytes | dict[str, Any]) -> ChatResponse:
    data = _decoder.decode(body) if isinstance(body, bytes | bytearray) else body
    choice = (data.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    blocks: list[Block] = []
    if msg.get("reasoning_content"):
        blocks.append(ReasoningBlock(text=msg["reasoning_content"]))
    if isinstance(msg.get("content"), str) and msg["content"]:
        blocks.append(TextBlock(text=msg["content"]))
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        blocks.append(ToolCallBlock(id=call.get("id") or "", name=fn.get("name") or "",
                                    arguments=fn.get("arguments") or ""))
    return ChatResponse(
        id=data.get("id") or "",
        model=data.get("model") or "",
        created=data.get("created") or 0,
        content=tuple(blocks),
        finish_reason=finish_reason_in(choice.get("finish_reason")),
        usage=decode_usage(data.get("usage")),
    )


def encode_response(resp: ChatResponse) -> dict[str, Any]:
    text = "".join(b.text for b in resp.content if isinstance(b, TextBlock))
    reasoning = "".join(b.text for b in resp.content if isinstance(b, ReasoningBlock))
    calls = [b for b in resp.content if isinstance(b, ToolCallBlock)]
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None,
                               "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    return {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "finish_reason": resp.finish_reason, "logprobs": None}],
        "usage": encode_usage(resp.usage),
    }


def dumps(obj: Any) -> bytes:
    return _encoder.encode(obj)
