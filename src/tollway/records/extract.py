"""What a recorded exchange was, read out of the bytes the gateway already had: the request's
messages (its raw body, per dialect) and the answer the client received (a whole body, or the
frames of its stream, per dialect). Pure: no I/O. Anything unexpected yields what could be read
(never an error: a record is best effort, the response has been sent already).
"""

from __future__ import annotations

from typing import Any

import msgspec

_decoder = msgspec.json.Decoder()

Message = dict[str, str]


def _json(raw: bytes) -> Any:
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text of its parts (an image or a file is a
    short mark, never its bytes)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                kind = part.get("type")
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif kind in ("image_url", "image", "input_image"):
                    out.append("[image]")
                elif kind in ("file", "document", "input_file"):
                    out.append("[file]")
                elif kind in ("tool_result", "function_call_output"):
                    out.append(_text(part.get("content") or part.get("output")))
                elif kind in ("tool_use", "function_call"):
                    out.append(f"[tool call {part.get('name', '')}]")
        return "\n".join(o for o in out if o)
    return ""


def _messages(items: Any, role_key: str = "role") -> list[Message]:
    out = []
    for m in items if isinstance(items, list) else ():
        if isinstance(m, dict):
            role = m.get(role_key) or ("tool" if m.get("type") in ("function_call_output",) else "")
            text = _text(m.get("content"))
            if not text and m.get("type") == "function_call_output":
                text = _text(m.get("output"))
            if role or text:
                out.append({"role": str(role or "user"), "content": text})
    return out


class Asked(msgspec.Struct, frozen=True):
    messages: list[Message]
    client_ref: str | None = None  # metadata.session_id, else user, where the dialect has them
    previous_ref: str | None = None  # the Responses API's previous_response_id


def asked(dialect: str, raw: bytes) -> Asked:
    body = _json(raw)
    if not isinstance(body, dict):
        return Asked([])
    messages: list[Message] = []
    if dialect == "anthropic":
        system = body.get("system")
        if system:
            messages.append({"role": "system", "content": _text(system)})
        messages.extend(_messages(body.get("messages")))
    elif dialect == "responses":
        if isinstance(body.get("instructions"), str):
            messages.append({"role": "system", "content": body["instructions"]})
        value = body.get("input")
        messages.extend([{"role": "user", "content": value}] if isinstance(value, str) else _messages(value))
    elif dialect == "city":
        if isinstance(body.get("system"), str):
            messages.append({"role": "system", "content": body["system"]})
        messages.extend(_messages(body.get("messages")))
        if isinstance(body.get("prompt"), str):
            messages.append({"role": "user", "content": body["prompt"]})
    elif dialect == "completions":
        prompt = body.get("prompt")
        messages.append({"role": "user", "content": prompt if isinstance(prompt, str) else _text(prompt)})
    else:  # openai, platform
        messages.extend(_messages(body.get("messages")))
    found = body.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    ref = metadata.get("session_id") or metadata.get("user_id") or body.get("user") or body.get("session_id")
    previous = body.get("previous_response_id")
    return Asked(messages, str(ref) if isinstance(ref, (str, int)) and ref != "" else None,
                 previous if isinstance(previous, str) else None)


def _events(frames: list[bytes]) -> list[tuple[str | None, Any]]:
    """The SSE events of a stream's frames: (event name, decoded data)."""
    out: list[tuple[str | None, Any]] = []
    for block in b"".join(frames).replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode(errors="replace")
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        if data and data != [b"[DONE]"]:
            out.append((name, _json(b"\n".join(data))))
    return out


def answered(dialect: str, body: bytes | None, frames: list[bytes]) -> tuple[str, str | None]:
    """The answer's text as the client received it, and its Responses id (if any)."""
    if body is not None:
        return _whole(dialect, _json(body))
    parts: list[str] = []
    response_id = None
    for name, data in _events(frames):
        if not isinstance(data, dict):
            continue
        if dialect == "anthropic":
            delta = data.get("delta") if data.get("type") == "content_block_delta" else None
            if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                parts.append(delta["text"])
        elif dialect == "responses":
            kind = data.get("type")
            if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
                parts.append(data["delta"])
            elif kind == "response.created" and isinstance(data.get("response"), dict):
                response_id = data["response"].get("id")
        elif dialect == "city":
            if name == "delta" and data.get("type") == "text" and isinstance(data.get("text"), str):
                parts.append(data["text"])
        else:
            for choice in data.get("choices") or ():
                if isinstance(choice, dict):
                    delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                    text = delta.get("content") if delta else choice.get("text")
                    if isinstance(text, str):
                        parts.append(text)
    return "".join(parts), response_id if isinstance(response_id, str) else None


def _whole(dialect: str, body: Any) -> tuple[str, str | None]:
    if not isinstance(body, dict):
        return "", None
    if dialect == "anthropic":
        return _text(body.get("content")), None
    if dialect == "responses":
        texts = [_text(item.get("content")) for item in body.get("output") or ()
                 if isinstance(item, dict) and item.get("type") == "message"]
        rid = body.get("id")
        return "\n".join(t for t in texts if t), rid if isinstance(rid, str) else None
    if dialect == "city":
        return _text(body.get("parts")), None
    choices = body.get("choices") or ()
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = first.get("message") if isinstance(first.get("message"), dict) else None
    if message is not None:
        text = _text(message.get("content"))
        calls = [c.get("function", {}).get("name", "") for c in message.get("tool_calls") or () if isinstance(c, dict)]
        return text + "".join(f"\n[tool call {n}]" for n in calls if n), None
    return str(first.get("text") or ""), None
