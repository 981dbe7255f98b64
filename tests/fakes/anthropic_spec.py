"""Validate Anthropic Messages API payloads against the official spec subset in tests/fixtures/specs.

``anthropic-messages-schemas.json`` is extracted from Anthropic's OpenAPI 3.1 spec by
``tests/fixtures/specs/extract_anthropic.py``. The spec is mostly plain JSON Schema 2020-12 (it writes
nullable fields as ``anyOf [..., {"type": "null"}]``), with OpenAPI idioms converted here:

- ``oneOf`` + ``discriminator.mapping`` (every content block, delta, event, error and tool-choice union) is
  checked by the discriminator: the object's ``type`` picks the one schema it must match, so a bad block
  yields the precise problem ("'max_tokens' is a required property") instead of "not valid under any of
  the given schemas". An object without the discriminating property falls back to ``anyOf`` the branches.
- any other ``oneOf`` (the ``tools`` list's items) is checked as ``anyOf``: a custom ``Tool`` and a server
  tool can both fit a payload, and an "exactly one" check would reject it.
- a ``discriminator`` with no union (``InputMessage``'s, on ``role``) means nothing and is dropped.
- ``nullable: true`` and boolean ``exclusiveMinimum`` (OpenAPI 3.0) are converted, though the current
  subset has none; ``format`` (``byte``, ``date-time``) is not asserted, as in any 2020-12 validator.

The spec does not describe the stream wire format; ``stream_errors`` checks the documented event order
(message_start, then each content block's start / deltas / stop, message_delta, message_stop; pings
anywhere; an ``error`` event ends the stream) on top of each event's own schema.

``as_sent=True`` checks a payload as Anthropic's API itself sends it. Stainless marks every property of a
response schema required, nullable ones included, but the API leaves most of those out when they are
empty (a text block's ``citations``, ``container``, the usage breakdowns: see Anthropic's recorded
responses), and some clients refuse them as ``null`` (the Vercel AI SDK: ``citations`` is
``z.array(...).optional()``). In that mode a nullable property may be absent; when present it must
still match its schema.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPEC_FILE = Path(__file__).parents[1] / "fixtures" / "specs" / "anthropic-messages-schemas.json"

# SSE ``event:`` name -> schema of its ``data:``. The spec names the events' union MessageStreamEvent; the
# ``error`` event is not part of it (its body is an ErrorResponse, per Anthropic's streaming docs).
EVENT_SCHEMAS = {
    "message_start": "MessageStartEvent",
    "content_block_start": "ContentBlockStartEvent",
    "content_block_delta": "ContentBlockDeltaEvent",
    "content_block_stop": "ContentBlockStopEvent",
    "message_delta": "MessageDeltaEvent",
    "message_stop": "MessageStopEvent",
    "ping": "Ping",
    "error": "ErrorResponse",
}

# Which deltas may follow which content block (Anthropic's streaming docs).
DELTAS_FOR_BLOCK = {
    "text": {"text_delta", "citations_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
    "server_tool_use": {"input_json_delta"},
}


def _ref_dispatch(prop: str, mapping: dict[str, str], branches: list[Any]) -> dict[str, Any]:
    return {
        "if": {"type": "object", "required": [prop]},
        "then": {"properties": {prop: {"enum": list(mapping)}},
                 "allOf": [{"if": {"properties": {prop: {"const": value}}}, "then": {"$ref": ref}}
                           for value, ref in mapping.items()]},
        "else": {"anyOf": branches},
    }


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("nullable", "discriminator"):
            continue
        if key in ("const", "enum", "default"):  # data, not schemas
            out[key] = value
        elif key in ("properties", "patternProperties", "$defs"):  # names (maybe "oneOf") -> schemas
            out[key] = {name: _convert(schema) for name, schema in value.items()}
        else:
            out[key] = _convert(value)
    disc = node.get("discriminator")
    if "oneOf" in out:
        branches = out.pop("oneOf")
        if disc and disc.get("mapping"):
            assert not {"if", "then", "else"} & out.keys(), node
            out.update(_ref_dispatch(disc["propertyName"], disc["mapping"], branches))
        else:
            out["anyOf"] = branches
    if out.get("exclusiveMinimum") is True and "minimum" in out:
        out["exclusiveMinimum"] = out.pop("minimum")
    elif isinstance(out.get("exclusiveMinimum"), bool):
        out.pop("exclusiveMinimum")
    if node.get("nullable") is True:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _nullable(schema: Any) -> bool:
    return isinstance(schema, dict) and any(
        isinstance(b, dict) and b.get("type") == "null" for b in schema.get("anyOf", ()))


def _absent_when_null(node: Any) -> Any:
    """``as_sent``: every object schema's nullable properties leave its ``required`` list."""
    if isinstance(node, list):
        return [_absent_when_null(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _absent_when_null(v) for k, v in node.items()}
    props = node.get("properties")
    if isinstance(props, dict) and isinstance(node.get("required"), list):
        out["required"] = [r for r in node["required"] if not _nullable(props.get(r))]
    return out


@cache
def _document(as_sent: bool = False) -> dict[str, Any]:
    raw = json.loads(SPEC_FILE.read_text())
    schemas = raw["components"]["schemas"]
    converted = {name: _convert(copy.deepcopy(schema)) for name, schema in schemas.items()}
    if as_sent:
        converted = _absent_when_null(converted)
    return {"components": {"schemas": converted}}


def schema_names() -> list[str]:
    return sorted(_document()["components"]["schemas"])


@cache
def _validator(name: str, as_sent: bool = False) -> jsonschema.Draft202012Validator:
    if name not in _document()["components"]["schemas"]:
        raise KeyError(f"no schema {name!r} in {SPEC_FILE.name}")
    doc = dict(_document(as_sent))
    doc["$ref"] = f"#/components/schemas/{name}"
    return jsonschema.Draft202012Validator(doc)


def _describe(name: str, e: jsonschema.ValidationError) -> str:
    text = f"{name}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
    if e.context:  # an anyOf: name the deepest failure among its branches, usually the real one
        best = e
        while best.context:
            best = max(best.context, key=lambda c: len(c.absolute_path))
        text += f" [deepest: {'/'.join(map(str, best.absolute_path)) or '(root)'}: {best.message[:200]}]"
    return text


def errors(name: str, payload: Any, *, as_sent: bool = False) -> list[str]:
    """Every way ``payload`` breaks schema ``name`` (empty when it conforms); ``as_sent``: as
    Anthropic's API sends it (a nullable property may be absent)."""
    return [_describe(name, e) for e in _validator(name, as_sent).iter_errors(payload)]


def request_errors(body: Any) -> list[str]:
    """A POST /v1/messages request body."""
    return errors("CreateMessageParams", body)


def count_tokens_request_errors(body: Any) -> list[str]:
    return errors("CountMessageTokensParams", body)


def message_errors(message: Any, *, as_sent: bool = False) -> list[str]:
    """A non-streamed POST /v1/messages 200 body."""
    return errors("Message", message, as_sent=as_sent)


def error_body_errors(body: Any) -> list[str]:
    """An error response body (any status), also the data of an in-stream ``event: error``."""
    return errors("ErrorResponse", body)


def event_errors(event: str, data: Any, *, as_sent: bool = False) -> list[str]:
    """One SSE event: its ``event:`` name, and its ``data:`` parsed from JSON."""
    if event not in EVENT_SCHEMAS:
        return [f"event {event!r}: not a Messages stream event (known: {sorted(EVENT_SCHEMAS)})"]
    problems = []
    if not isinstance(data, dict) or data.get("type") != event:
        problems.append(f"event {event!r}: data.type is {data.get('type') if isinstance(data, dict) else data!r}"
                        f", not the event's name")
    return problems + [f"event {event!r}: {p}" for p in errors(EVENT_SCHEMAS[event], data, as_sent=as_sent)]


def stream_errors(events: list[tuple[str, Any]], *, as_sent: bool = False) -> list[str]:
    """Schema and order problems in a whole stream, as ``[(event name, parsed data), ...]``."""
    problems = [p for name, data in events for p in event_errors(name, data, as_sent=as_sent)]

    def bad(n: int, text: str) -> None:
        problems.append(f"event #{n} {events[n][0]!r}: {text}")

    if not events or events[0][0] != "message_start":
        problems.append("the stream does not begin with message_start")
    open_block: tuple[int, str] | None = None  # (index, type) of the block being streamed
    next_index = 0
    state = "blocks"  # -> "delta" after message_delta -> "stopped" after message_stop / error
    for n, (name, data) in enumerate(events):
        data = data if isinstance(data, dict) else {}
        if state == "stopped":
            bad(n, "after the end of the stream (message_stop or error)")
            continue
        if name in ("ping",):
            continue
        if name == "error":
            state = "stopped"
        elif name == "message_start":
            if n != 0:
                bad(n, "message_start must be the first event, and only once")
            elif (data.get("message") or {}).get("content") != []:
                bad(n, "message_start's message.content must be []")
        elif name == "content_block_start":
            block_type = (data.get("content_block") or {}).get("type")
            if state != "blocks" or open_block is not None:
                bad(n, "a block starts while another is open, or after message_delta")
            if data.get("index") != next_index:
                bad(n, f"index {data.get('index')!r}, expected {next_index}")
            open_block = (data.get("index"), block_type)
            next_index += 1
        elif name == "content_block_delta":
            delta_type = (data.get("delta") or {}).get("type")
            if open_block is None or data.get("index") != open_block[0]:
                bad(n, f"a delta for index {data.get('index')!r}, but the open block is {open_block}")
            elif delta_type not in DELTAS_FOR_BLOCK.get(open_block[1], set()):
                bad(n, f"a {delta_type} inside a {open_block[1]} block")
        elif name == "content_block_stop":
            if open_block is None or data.get("index") != open_block[0]:
                bad(n, f"stops index {data.get('index')!r}, but the open block is {open_block}")
            open_block = None
        elif name == "message_delta":
            if open_block is not None:
                bad(n, f"message_delta while block {open_block} is still open")
            state = "delta"
        elif name == "message_stop":
            if state != "delta":
                bad(n, "message_stop without a message_delta before it")
            state = "stopped"
    if events and state != "stopped":
        problems.append("the stream ends without message_stop (or an error event)")
    return problems


def parse_sse(raw: str | bytes) -> list[tuple[str, Any]]:
    """``event: <name>`` / ``data: <json>`` frames -> ``[(name, parsed data), ...]`` (data left raw if not JSON)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    out: list[tuple[str, Any]] = []
    for frame in text.replace("\r\n", "\n").split("\n\n"):
        name, data_lines = "message", []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
        if not data_lines:
            continue
        data = "\n".join(data_lines)
        try:
            out.append((name, json.loads(data)))
        except ValueError:
            out.append((name, data))
    return out
