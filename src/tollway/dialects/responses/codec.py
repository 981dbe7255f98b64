"""OpenAI's Responses API wire <-> canonical types.

``decode_request`` reads a ``CreateResponse`` body (``input`` as a string or a list of items,
``instructions``, function ``tools``, ``text.format``, ``reasoning``, the sampling fields) into a
``core.chat.ChatRequest``; ``response_object`` builds the ``Response`` object of an answer, its
``output`` items from the canonical blocks (``output_items``). Items map to canonical blocks so
that a history round-trips: assistant ``message``, ``reasoning`` and ``function_call`` items that
follow one another are one assistant message; a ``function_call_output`` is a tool result.
Reasoning text goes out as the item's ``summary`` (what clients render), its upstream signature
(Anthropic's thinking signature, Gemini's thought signature) as ``encrypted_content``.

A custom tool (free-form input, perhaps held to a grammar: the Codex CLI's ``apply_patch``) is
run by the client like a function: another upstream gets it as a function taking one string,
``input`` (its grammar in the description), and its calls come back as ``custom_tool_call`` items.
A ``namespace`` (a named group of function and custom tools, Codex's sub-agent tools) is run by
the client too: its tools go to another upstream as functions named ``<namespace>__<name>``, and
their calls come back with their own name and ``namespace`` (``tool_names`` keeps the mapping).

Built-in tools (web search, file search, code interpreter, computer use ...) and the items they
produce run on OpenAI's servers only: a request translated for another upstream that names one
is a 400 naming it, unless it sets ``drop_params: true``: then they are dropped and named in the
request log's ``dropped_params``.
Pure: no I/O, no clock, no settings (ids and times come from the caller).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from tollway.core.chat import (
    MAX_TOKENS,
    MAX_USER_CHARS,
    Block,
    ChatRequest,
    ChatResponse,
    DocumentBlock,
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
from tollway.core.json_input import too_deep
from tollway.core.names import DIALECT_RESPONSES

# fields with a canonical slot, or the gateway's own (state, streaming); the rest are ``extras``
_KNOWN = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
    "temperature", "top_p", "text", "reasoning", "user", "stream", "stream_options", "store", "background",
    "previous_response_id", "metadata", "include", "truncation", "drop_params", "safety_identifier",
})
_TO_DROP = "to drop it instead, send drop_params: true in the body or the header x-tollway-drop-params: true"
# request fields of OpenAI's server-side features the gateway does not have
_REFUSED = {"conversation": "conversations", "prompt": "stored prompts"}
# what an item of a built-in tool is called, for the error that names it
_BUILTIN_ITEMS = frozenset({
    "web_search_call", "file_search_call", "computer_call", "computer_call_output", "code_interpreter_call",
    "image_generation_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "compaction",
})
# a custom tool, as a function for an upstream that has no custom tools
CUSTOM_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {"input": {"type": "string"}},
                                     "required": ["input"], "additionalProperties": False}
_json = msgspec.json.Encoder()



def _str(value: Any, where: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    require(isinstance(value, str), f"{where} must be a string", where)
    return str(value)


def _int(value: Any, where: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    require(isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer", where)
    require(low <= value <= high, f"{where} must be between {low} and {high}", where)
    return int(value)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    require(isinstance(value, int | float) and not isinstance(value, bool), f"{where} must be a number", where)
    return float(value)


# --- request: wire -> canonical -----------------------------------------------------------


def check_request(data: Any) -> None:
    """The checks every request passes before admission, whatever its upstream."""
    require(isinstance(data, dict), "Request body must be a JSON object")
    require(isinstance(data.get("model"), str) and data["model"] != "", "The 'model' field is required.", "model")
    value = data.get("input")
    require(value is None or isinstance(value, str | list), "input must be a string or an array of items", "input")
    for i, item in enumerate(value if isinstance(value, list) else ()):  # what the gateway reads of each (to store it)
        require(isinstance(item, dict), f"input[{i}] must be an object", f"input[{i}]")
        require(isinstance(item.get("type", "message"), str), f"input[{i}].type must be a string", f"input[{i}].type")
    require(value is not None or data.get("previous_response_id") is not None, "The 'input' field is required.",
          "input")
    for name in ("stream", "store", "background", "parallel_tool_calls", "drop_params"):
        require(data.get(name) is None or isinstance(data[name], bool), f"{name} must be a boolean", name)
    _int(data.get("max_output_tokens"), "max_output_tokens", 1, MAX_TOKENS)
    for name in ("temperature", "top_p"):
        _number(data.get(name), name)
    for name in ("instructions", "previous_response_id", "user", "safety_identifier"):
        _str(data.get(name), name)
    user = data.get("user")
    require(user is None or len(user) <= MAX_USER_CHARS, f"user must be at most {MAX_USER_CHARS} characters", "user")
    for name in ("metadata", "text", "reasoning"):
        require(data.get(name) is None or isinstance(data[name], dict), f"{name} must be an object", name)
    require(data.get("tools") is None or isinstance(data["tools"], list), "tools must be an array", "tools")
    metadata = data.get("metadata") or {}
    require(len(metadata) <= 16 and all(isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                                      for k, v in metadata.items()),
          "metadata holds at most 16 string values (keys up to 64, values up to 512 characters)", "metadata")
    for name, what in _REFUSED.items():
        require(data.get(name) is None, f"{name}: {what} are not supported by this gateway; send the items as "
              "input, or use previous_response_id.", name)
    require(not (data.get("background") and data.get("store") is False), "background responses must be stored "
          "(store: true).", "background")


def decode_request(data: dict[str, Any], history: Sequence[dict[str, Any]] = (), *, drop: bool = False) -> ChatRequest:
    """A checked body (``check_request``) and the items of the conversation before it (from
    ``previous_response_id``) as a canonical request. ``drop`` (or ``drop_params`` in the body):
    what an upstream cannot run is dropped and named, not refused."""
    drop = drop or bool(data.get("drop_params"))
    lossy: list[str] = []
    messages: list[Message] = []
    instructions = data.get("instructions")
    if instructions:
        messages.append(Message(role="system", content=(TextBlock(text=instructions),)))
    items: list[Any] = list(history)
    value = data.get("input")
    if isinstance(value, str):
        items.append({"type": "message", "role": "user", "content": value})
    elif value is not None:
        items.extend(value)
    messages.extend(_decode_items(items, drop, lossy, len(history)))
    require(any(m.role != "system" for m in messages), "input must hold at least one message or item", "input")
    tools = _decode_tools(data.get("tools") or [], drop, lossy)
    text = data.get("text") or {}
    if text.get("verbosity") not in (None, "medium"):
        lossy.append("text.verbosity")
    reasoning = data.get("reasoning") or {}
    if data.get("truncation") == "auto":
        lossy.append("truncation")
    return ChatRequest(
        model=data["model"],
        messages=tuple(messages),
        stream=bool(data.get("stream")),
        include_usage=True,
        tools=tools,
        tool_choice=_decode_tool_choice(data.get("tool_choice"), drop, lossy),
        parallel_tool_calls=data.get("parallel_tool_calls"),
        max_tokens=data.get("max_output_tokens"),
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        response_format=_response_format(text.get("format")),
        user=data.get("user") or data.get("safety_identifier"),
        reasoning_effort=_str(reasoning.get("effort"), "reasoning.effort"),
        extras={k: v for k, v in data.items() if k not in _KNOWN},
        dialect=DIALECT_RESPONSES,
        lossy=tuple(lossy),
    )


def _decode_items(items: list[Any], drop: bool, lossy: list[str], first_input: int) -> list[Message]:
    """Items -> messages: assistant-side items in a row are one assistant message."""
    messages: list[Message] = []
    assistant: list[Block] = []

    def flush() -> None:
        if assistant:
            messages.append(Message(role="assistant", content=tuple(assistant)))
            assistant.clear()

    for i, item in enumerate(items):
        where = f"input[{i - first_input}]" if i >= first_input else f"previous_response_id (item {i})"
        require(isinstance(item, dict), f"{where} must be an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role == "assistant":
                assistant.extend(_decode_parts(item.get("content"), where, assistant=True))
                continue
            require(role in ("user", "system", "developer"), f"{where}.role is invalid: {role!r}", f"{where}.role")
            flush()
            messages.append(Message(role="user" if role == "user" else "system",
                                    content=tuple(_decode_parts(item.get("content"), where, assistant=False))))
        elif kind == "function_call":
            assistant.append(_decode_call(item, where))
        elif kind == "custom_tool_call":
            text = _str(item.get("input"), f"{where}.input", required=True) or ""
            assistant.append(ToolCallBlock(id=_str(item.get("call_id"), f"{where}.call_id", required=True) or "",
                                           name=_call_name(item, where),
                                           arguments=_json.encode({"input": text}).decode()))
        elif kind == "reasoning":
            assistant.append(_decode_reasoning(item, where))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            flush()
            call_id = _str(item.get("call_id"), f"{where}.call_id", required=True) or ""
            output = item.get("output")
            parts = [TextBlock(text=output)] if isinstance(output, str) else _decode_parts(output, where,
                                                                                          assistant=False)
            content = tuple(b for b in parts if isinstance(b, TextBlock | ImageBlock))
            messages.append(Message(role="tool", content=(ToolResultBlock(tool_call_id=call_id, content=content),)))
        elif kind == "item_reference":
            raise InvalidRequest(f"{where}: item_reference is not supported; send the item itself, or continue "
                                 "with previous_response_id.", param=where)
        elif kind in _BUILTIN_ITEMS and drop:
            lossy.append(f"{where}.{kind}")
        elif kind in _BUILTIN_ITEMS:
            raise InvalidRequest(f"{where}: a '{kind}' item belongs to a tool this model's upstream cannot run "
                                 f"({_TO_DROP}).", param=where)
        else:
            raise InvalidRequest(f"{where} has an unsupported item type: {kind!r}", param=where)
    flush()
    return messages


def _decode_call(item: dict[str, Any], where: str) -> ToolCallBlock:
    arguments = _str(item.get("arguments"), f"{where}.arguments", required=True) or ""
    require(not too_deep(arguments), f"{where}.arguments: arrays and objects are nested too deeply",
          f"{where}.arguments")
    return ToolCallBlock(id=_str(item.get("call_id"), f"{where}.call_id", required=True) or "",
                         name=_call_name(item, where), arguments=arguments)


def _call_name(item: dict[str, Any], where: str) -> str:
    """A call's tool, as the upstream knew it (a namespaced tool's flat name)."""
    name = _str(item.get("name"), f"{where}.name", required=True) or ""
    namespace = _str(item.get("namespace"), f"{where}.namespace")
    return flat_name(namespace, name) if namespace else name


def _decode_reasoning(item: dict[str, Any], where: str) -> ReasoningBlock:
    texts: list[Any] = []
    for key in ("summary", "content"):
        parts = item.get(key) or []
        require(isinstance(parts, list), f"{where}.{key} must be an array", f"{where}.{key}")
        texts.extend(p.get("text") or "" for p in parts if isinstance(p, dict))
    require(all(isinstance(t, str) for t in texts), f"{where}: reasoning text must be a string", where)
    return ReasoningBlock(text="\n\n".join(t for t in texts if t),
                          signature=_str(item.get("encrypted_content"), f"{where}.encrypted_content"))


def _decode_parts(content: Any, where: str, *, assistant: bool) -> list[Block]:
    if isinstance(content, str):
        return [TextBlock(text=content)]
    require(isinstance(content, list), f"{where}.content must be a string or an array", f"{where}.content")
    blocks: list[Block] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        require(isinstance(part, dict), f"{at} must be an object", at)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            blocks.append(TextBlock(text=_str(part.get("text"), f"{at}.text", required=True) or ""))
        elif kind == "refusal" and assistant:
            blocks.append(TextBlock(text=_str(part.get("refusal"), f"{at}.refusal", required=True) or ""))
        elif kind == "input_image" and not assistant:
            blocks.append(_decode_image(part, at))
        elif kind == "input_file" and not assistant:
            blocks.append(_decode_file(part, at))
        else:
            raise InvalidRequest(f"{at} has an unsupported content type: {kind!r}", param=at)
    return blocks


def _decode_image(part: dict[str, Any], at: str) -> ImageBlock:
    require(part.get("file_id") is None, f"{at}: file_id is not supported; send image_url (a URL or a data URL)",
          f"{at}.file_id")
    url = _str(part.get("image_url"), f"{at}.image_url", required=True) or ""
    detail = _str(part.get("detail"), f"{at}.detail")
    return ImageBlock(url=url, detail=None if detail == "auto" else detail)


def _decode_file(part: dict[str, Any], at: str) -> DocumentBlock:
    require(part.get("file_id") is None, f"{at}: file_id is not supported; send file_data or file_url",
          f"{at}.file_id")
    name = _str(part.get("filename"), f"{at}.filename")
    url = _str(part.get("file_url"), f"{at}.file_url")
    if url is not None:
        return DocumentBlock(url=url, name=name)
    data = _str(part.get("file_data"), f"{at}.file_data", required=True) or ""
    media_type = "application/pdf"
    if data.startswith("data:"):
        head, _, data = data.partition(",")
        media_type = head[5:].split(";")[0] or media_type
    return DocumentBlock(data=data, media_type=media_type, name=name)


def _decode_tools(tools: list[Any], drop: bool, lossy: list[str]) -> tuple[Tool, ...]:
    out = []
    for j, t in enumerate(tools):
        where = f"tools[{j}]"
        require(isinstance(t, dict), f"{where} must be an object", where)
        kind = t.get("type")
        if kind == "custom":
            out.append(_decode_custom(t, where))
            continue
        if kind == "namespace":
            out.extend(_decode_namespace(t, where))
            continue
        if kind != "function":
            if drop:
                lossy.append(f"{where}.{kind}")
                continue
            raise InvalidRequest(f"{where}: the built-in tool '{kind}' runs on OpenAI's servers only; this model's "
                                 f"upstream cannot run it (use function tools, or {_TO_DROP}).", param=where)
        out.append(_decode_function(t, where))
    return tuple(out)


def _decode_function(t: dict[str, Any], where: str, name: str | None = None) -> Tool:
    given = _str(t.get("name"), f"{where}.name", required=True) or ""
    parameters = t.get("parameters")
    require(parameters is None or isinstance(parameters, dict), f"{where}.parameters must be an object",
          f"{where}.parameters")
    strict = t.get("strict")
    require(strict is None or isinstance(strict, bool), f"{where}.strict must be a boolean", f"{where}.strict")
    return Tool(name=name or given, description=_str(t.get("description"), f"{where}.description"),
                parameters=parameters or {}, strict=strict)


def _decode_namespace(t: dict[str, Any], where: str) -> list[Tool]:
    namespace = _str(t.get("name"), f"{where}.name", required=True) or ""
    tools = t.get("tools")
    require(isinstance(tools, list), f"{where}.tools must be an array", f"{where}.tools")
    out = []
    for j, inner in enumerate(tools or ()):
        at = f"{where}.tools[{j}]"
        require(isinstance(inner, dict) and inner.get("type") in ("function", "custom"),
              f"{at} must be a function or custom tool", at)
        flat = flat_name(namespace, _str(inner.get("name"), f"{at}.name", required=True) or "")
        tool = _decode_custom(inner, at) if inner["type"] == "custom" else _decode_function(inner, at)
        described = " ".join(filter(None, [_str(t.get("description"), f"{where}.description"), tool.description]))
        out.append(msgspec.structs.replace(tool, name=flat, description=described or None))
    return out


def flat_name(namespace: str, name: str) -> str:
    """A namespaced tool's name for an upstream without namespaces (within the 64 characters of
    ``[A-Za-z0-9_-]`` every provider takes; a longer one ends in a hash of the whole)."""
    flat = _NOT_NAME.sub("_", f"{namespace}__{name}")
    if len(flat) > 64:
        flat = flat[:55] + "_" + hashlib.sha256(flat.encode()).hexdigest()[:8]
    return flat


_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")


class ToolName(NamedTuple):
    """How the client knows a tool whose upstream name differs, or whose calls are not functions."""

    name: str
    namespace: str | None
    custom: bool


def tool_names(data: dict[str, Any]) -> dict[str, ToolName]:
    """The request's custom and namespaced tools, by the name the upstream knows them by."""
    out: dict[str, ToolName] = {}
    for t in data.get("tools") or ():
        if not isinstance(t, dict):
            continue
        if t.get("type") == "custom" and isinstance(t.get("name"), str):
            out[t["name"]] = ToolName(t["name"], None, True)
        elif t.get("type") == "namespace" and isinstance(t.get("name"), str):
            for inner in t.get("tools") or ():
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    out[flat_name(t["name"], inner["name"])] = ToolName(inner["name"], t["name"],
                                                                        inner.get("type") == "custom")
    return out


def _decode_custom(t: dict[str, Any], where: str) -> Tool:
    description = _str(t.get("description"), f"{where}.description") or ""
    fmt = t.get("format") or {}
    require(isinstance(fmt, dict), f"{where}.format must be an object", f"{where}.format")
    if fmt.get("type") == "grammar":
        syntax = _str(fmt.get("syntax"), f"{where}.format.syntax") or "lark"
        definition = _str(fmt.get("definition"), f"{where}.format.definition", required=True)
        description += f"\n\nThe input must follow this {syntax} grammar:\n{definition}"
    return Tool(name=_str(t.get("name"), f"{where}.name", required=True) or "",
                description=description.strip() or None, parameters=CUSTOM_PARAMETERS)


def custom_input(arguments: str) -> str:
    """A custom tool's input, from the arguments of the function it was for the upstream."""
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return arguments
    return value["input"] if isinstance(value, dict) and isinstance(value.get("input"), str) else arguments


def _decode_tool_choice(tc: Any, drop: bool, lossy: list[str]) -> ToolChoice | None:
    if tc is None:
        return None
    if tc in ("auto", "none", "required"):
        return ToolChoice(mode=tc)
    require(isinstance(tc, dict), f"tool_choice is invalid: {tc!r}", "tool_choice")
    kind = tc.get("type")
    if kind in ("function", "custom"):
        name = _str(tc.get("name"), "tool_choice.name", required=True) or ""
        namespace = _str(tc.get("namespace"), "tool_choice.namespace")
        return ToolChoice(mode="required", name=flat_name(namespace, name) if namespace else name)
    if kind == "allowed_tools":  # the tools stay as listed; the mode is kept
        mode = tc.get("mode", "auto")
        require(mode in ("auto", "required"), "tool_choice.mode must be auto or required", "tool_choice.mode")
        lossy.append("tool_choice.tools")
        return ToolChoice(mode=mode)
    if drop:
        lossy.append("tool_choice")
        return None
    raise InvalidRequest(f"tool_choice: the built-in tool '{kind}' runs on OpenAI's servers only; this model's "
                         f"upstream cannot run it ({_TO_DROP}).", param="tool_choice")


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None:
        return None
    require(isinstance(fmt, dict), "text.format must be an object", "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    require(kind == "json_schema", f"text.format.type is invalid: {kind!r}", "text.format.type")
    require(isinstance(fmt.get("schema"), dict), "text.format.schema must be an object", "text.format.schema")
    schema: dict[str, Any] = {"name": _str(fmt.get("name"), "text.format.name", required=True),
                              "schema": fmt["schema"]}
    for key in ("strict", "description"):
        if fmt.get(key) is not None:
            schema[key] = fmt[key]
    return {"type": "json_schema", "json_schema": schema}


# --- answer: canonical -> wire ------------------------------------------------------------


def usage_object(u: Usage) -> dict[str, Any]:
    return {"input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_write_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens}


def usage_of(u: Any) -> Usage | None:
    """A ``ResponseUsage`` object (an upstream's) as canonical usage."""
    if not isinstance(u, dict):
        return None
    ind, outd = u.get("input_tokens_details") or {}, u.get("output_tokens_details") or {}
    return Usage(input_tokens=u.get("input_tokens") or 0, output_tokens=u.get("output_tokens") or 0,
                 cached_tokens=ind.get("cached_tokens") or 0, cache_write_tokens=ind.get("cache_write_tokens") or 0,
                 reasoning_tokens=outd.get("reasoning_tokens") or 0)


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [output_text(text)] if status != "in_progress" else []}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id: str, text: str, signature: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}] if text else []}
    if signature:
        item["encrypted_content"] = signature
    return item


def call_item(item_id: str, call: ToolCallBlock, status: str = "completed",
              tools: Mapping[str, ToolName] | None = None) -> dict[str, Any]:
    """A call as an output item: a custom tool's as ``custom_tool_call``, a namespaced tool's
    under its own name and namespace (``tools``: the request's ``tool_names``)."""
    known = (tools or {}).get(call.name)
    named: dict[str, Any] = {"call_id": call.id, "name": known.name if known else call.name}
    if known is not None and known.namespace is not None:
        named["namespace"] = known.namespace
    if known is not None and known.custom:
        return {"id": item_id, "type": "custom_tool_call", **named, "input": custom_input(call.arguments)}
    return {"id": item_id, "type": "function_call", "status": status, **named, "arguments": call.arguments}


def is_custom(name: str, tools: Mapping[str, ToolName]) -> bool:
    known = tools.get(name)
    return known is not None and known.custom


def output_items(resp: ChatResponse, ids: str, status: str, tools: Mapping[str, ToolName] | None = None) -> list[
        dict[str, Any]]:
    """The answer's blocks as output items (texts in a row are one message); ``ids`` is the
    stem their ids are made from; ``tools``: see ``call_item``."""
    tools = tools or {}
    items: list[dict[str, Any]] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            items.append(message_item(f"msg_{ids}{len(items)}", "".join(text), status))
            text.clear()

    for b in resp.content:
        if isinstance(b, TextBlock):
            text.append(b.text)
            continue
        flush()
        if isinstance(b, ReasoningBlock) and (b.text or b.signature):
            items.append(reasoning_item(f"rs_{ids}{len(items)}", b.text, b.signature))
        elif isinstance(b, ToolCallBlock):
            prefix = "ctc" if is_custom(b.name, tools) else "fc"
            items.append(call_item(f"{prefix}_{ids}{len(items)}", b, tools=tools))
    flush()
    return items


def outcome(finish_reason: str) -> tuple[str, dict[str, Any] | None]:
    """A finish reason as the response's status and ``incomplete_details``."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_object(data: dict[str, Any], *, response_id: str, created_at: int, model: str, status: str,
                    output: list[dict[str, Any]], usage: Usage | None = None,
                    incomplete: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
                    completed_at: int | None = None) -> dict[str, Any]:
    """The ``Response`` object, echoing the request (``data``) as OpenAI does."""
    reasoning = data.get("reasoning") or {}
    text = dict(data.get("text") or {})
    text.setdefault("format", {"type": "text"})
    obj: dict[str, Any] = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "background": bool(data.get("background")), "completed_at": completed_at,
        "error": error, "incomplete_details": incomplete,
        "instructions": data.get("instructions"), "max_output_tokens": data.get("max_output_tokens"),
        "model": model, "output": output,
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "previous_response_id": data.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": data.get("store", True),
        "temperature": data.get("temperature", 1.0), "text": text,
        "tool_choice": data.get("tool_choice", "auto"), "tools": [_echoed_tool(t) for t in data.get("tools") or ()],
        "top_p": data.get("top_p", 1.0), "truncation": data.get("truncation") or "disabled",
        "metadata": data.get("metadata") or {},
    }
    if usage is not None:
        obj["usage"] = usage_object(usage)
    for key in ("user", "safety_identifier", "prompt_cache_key", "service_tier"):
        if data.get(key) is not None:
            obj[key] = data[key]
    return obj


def _echoed_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A function tool as a response lists it (its optional fields spelled out, as OpenAI's)."""
    if tool.get("type") != "function":
        return tool
    return {"parameters": None, "strict": None, **tool}


def failure(code: str, message: str, status: int) -> dict[str, Any]:
    """A ``ResponseError`` for a failed response (its code is one of the spec's)."""
    return {"code": "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 or code not in
            _ERROR_CODES else code, "message": message}


_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt", "invalid_image",
                          "invalid_image_format", "invalid_base64_image", "invalid_image_url", "image_too_large"})


def input_items(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A request's ``input`` as a list of items (a string is one user message)."""
    value = data.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return [item if "type" in item else {"type": "message", **item} for item in value]
