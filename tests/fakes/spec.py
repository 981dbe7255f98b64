"""Validate payloads against the OpenAI spec subset copied into tests/fixtures/specs.

``openai-chat-schemas.json`` (chat completions, the Responses API, legacy completions, moderations,
embeddings, image generation, speech, transcriptions, videos) is extracted from the official spec by
``tests/fixtures/specs/extract_openai.py``. The spec declares OpenAPI
3.1 but mixes in 3.0 and Stainless idioms; they are converted to JSON Schema 2020-12 here:

- ``nullable: true`` (3.0) becomes a ``null`` alternative; a boolean ``exclusiveMinimum`` (3.0) becomes
  the 2020-12 number form.
- ``oneOf`` is checked as ``anyOf``: the spec's union branches overlap (an ``EasyInputMessage`` is also an
  ``InputMessage``), so an "exactly one" check would reject good payloads.
- a union with a ``discriminator`` (the spec gives only ``propertyName``, never a ``mapping``) is checked
  by dispatch: the mapping is read from the ``enum`` / ``const`` of each branch's discriminating property
  (through ``$ref``, ``allOf`` and nested unions), and an object whose ``type`` names a branch is checked
  against that branch alone, so a bad output item or stream event yields the precise problem ("'call_id'
  is a required property") instead of "not valid under any of the given schemas". An object without the
  property falls back to ``anyOf``; one whose value no branch names is told so. A union whose branches
  cannot all be read stays a plain ``anyOf`` (whose error then names the closest branch's problem).
- ``$recursiveAnchor`` / ``$recursiveRef: "#"`` (2019-09, in ``CompoundFilter``) become a plain ``$ref``
  to the enclosing component schema: 2020-12 validators ignore ``$recursiveRef``.
- ``x-stainless-const: true`` marks a one-value ``enum``, which already checks it; ``format`` (``unixtime``,
  ``uri``, ``int64``, ...) is not asserted, as in any 2020-12 validator; ``x-oai*`` keys are dropped.

``request=True`` checks a request as the API reads it: Stainless marks nullable properties of schemas
shared by requests and responses required (``FunctionTool.strict`` and ``parameters``), which the API
and the SDKs let a request leave out, and an earlier answer sent back as input need not carry what only
the API fills in (``REQUEST_OPTIONAL``). In that mode a nullable property may be absent.

A multipart/form-data request (transcriptions, videos) is checked as the JSON object ``form_payload``
makes of its parts: ``key[]`` parts a list, ``key[sub]`` an object (the SDKs' encoding), each text
value the integer, number or boolean its property's schema asks for; a file part stands as a string (the
spec's ``format: binary``).

The Responses stream: ``stream_event_errors`` checks one event against the schema its ``type`` names
(``ResponseStreamEvent`` is a union of about 60), and ``response_stream_errors`` a whole stream: the
schemas, ``sequence_number`` from 0 and the documented event order.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

SPEC_FILE = Path(__file__).parents[1] / "fixtures" / "specs" / "openai-chat-schemas.json"
_REF = "#/components/schemas/"
_DROPPED = ("nullable", "discriminator", "x-oaiMeta", "x-oaiTypeLabel", "x-oaiExpandable", "$recursiveAnchor")
_DATA = ("enum", "const", "default", "example", "examples")  # values, not schemas

# Not in the spec: DELETE /responses/{response_id} documents no body schema, only this example
# ({"id": "resp_...", "object": "response", "deleted": true}); the SDK discards the body.
LOCAL_SCHEMAS: dict[str, Any] = {
    "DeletedResponse": {"type": "object", "required": ["id", "object", "deleted"],
                        "properties": {"id": {"type": "string"}, "object": {"enum": ["response"]},
                                       "deleted": {"enum": [True]}}},
}

# ``request=True``: what a request may leave out of these schemas although the spec marks it required. A
# model's earlier answer sent back as input is an ``OutputMessage``, and clients send it as the API reads
# it: ``{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": ...}]}``
# (the Codex CLI, the Agents SDK with ``store: false``), without the ids, statuses, annotations and
# logprobs the API puts in what it sends.
REQUEST_OPTIONAL: dict[str, frozenset[str]] = {
    "OutputMessage": frozenset({"id", "status"}),
    "OutputTextContent": frozenset({"annotations", "logprobs"}),
}

# --- conversion ---------------------------------------------------------------------------------------


def _resolve(node: Any, raw: dict[str, Any]) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith(_REF):
        node = raw[node["$ref"][len(_REF):]]
    return node


def _property_values(schema: Any, raw: dict[str, Any], depth: int = 0) -> frozenset[Any] | None:
    """The values a discriminating property's schema allows, or None when it allows any."""
    schema = _resolve(schema, raw)
    if not isinstance(schema, dict) or depth > 6:
        return None
    if "const" in schema:
        return frozenset([schema["const"]])
    if "enum" in schema:
        return frozenset(schema["enum"]) | (frozenset([None]) if schema.get("nullable") else frozenset())
    if schema.get("type") == "null":
        return frozenset([None])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [_property_values(b, raw, depth + 1) for b in schema[key]]
            return None if any(p is None for p in parts) else frozenset(v for p in parts if p for v in p)
    return None


def _branch_values(schema: Any, prop: str, raw: dict[str, Any], depth: int = 0) -> frozenset[Any] | None:
    """The discriminator values an object matching ``schema`` can carry, or None when unknown."""
    schema = _resolve(schema, raw)
    if not isinstance(schema, dict) or depth > 8:
        return None
    if prop in schema.get("properties", {}):
        return _property_values(schema["properties"][prop], raw)
    for member in schema.get("allOf", ()):
        found = _branch_values(member, prop, raw, depth + 1)
        if found is not None:
            return found
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [_branch_values(b, prop, raw, depth + 1) for b in schema[key]]
            return None if any(p is None for p in parts) else frozenset(v for p in parts if p for v in p)
    return None


def _dispatch(prop: str, raw_branches: list[Any], branches: list[Any], raw: dict[str, Any]) -> dict[str, Any] | None:
    values = [_branch_values(b, prop, raw) for b in raw_branches]
    if any(v is None for v in values):
        return None
    by_value: dict[Any, list[Any]] = {}
    for branch, allowed in zip(branches, values, strict=True):
        for value in sorted(allowed or (), key=str):
            by_value.setdefault(value, []).append(branch)
    return {
        "if": {"type": "object", "required": [prop]},
        "then": {"properties": {prop: {"enum": list(by_value)}},
                 "allOf": [{"if": {"properties": {prop: {"const": value}}},
                            "then": targets[0] if len(targets) == 1 else {"anyOf": targets}}
                           for value, targets in by_value.items()]},
        "else": {"anyOf": branches},
    }


def _convert(node: Any, home: str, raw: dict[str, Any]) -> Any:
    """``node`` (part of component schema ``home``) in JSON Schema 2020-12."""
    if isinstance(node, list):
        return [_convert(x, home, raw) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in _DATA:
            out[key] = value
        elif key in ("properties", "patternProperties", "$defs"):  # names -> schemas
            out[key] = {name: _convert(schema, home, raw) for name, schema in value.items()}
        elif key == "$recursiveRef":
            assert value == "#", node
            out["$ref"] = _REF + home
        else:
            out[key] = _convert(value, home, raw)
    union_key = "oneOf" if "oneOf" in out else "anyOf" if "anyOf" in out else None
    disc = node.get("discriminator")
    if union_key is not None:
        branches = out.pop(union_key)
        dispatch = None
        if isinstance(disc, dict) and disc.get("propertyName"):
            dispatch = _dispatch(disc["propertyName"], node[union_key], branches, raw)
        if dispatch is not None:
            assert not {"if", "then", "else"} & out.keys(), node
            out.update(dispatch)
        else:
            out["anyOf"] = branches
    if out.get("exclusiveMinimum") is True and "minimum" in out:
        out["exclusiveMinimum"] = out.pop("minimum")
    elif isinstance(out.get("exclusiveMinimum"), bool):
        out.pop("exclusiveMinimum")
    if out.get("format") == "unixtime":
        out.pop("format")
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str) and not any(k in out for k in ("anyOf", "allOf", "$ref", "enum", "if")):
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _nullable(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if isinstance(schema.get("type"), list) and "null" in schema["type"]:
        return True
    return any(isinstance(b, dict) and b.get("type") == "null" for b in schema.get("anyOf", ()))


def _absent_when_null(node: Any, optional: frozenset[str] = frozenset()) -> Any:
    """``request=True``: every object schema's nullable properties (and ``optional``) leave its
    ``required`` list."""
    if isinstance(node, list):
        return [_absent_when_null(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k in _DATA else _absent_when_null(v)) for k, v in node.items()}
    props = node.get("properties")
    if isinstance(props, dict) and isinstance(node.get("required"), list):
        out["required"] = [r for r in node["required"] if not _nullable(props.get(r)) and r not in optional]
    return out


@cache
def _raw() -> dict[str, Any]:
    schemas: dict[str, Any] = json.loads(SPEC_FILE.read_text())["components"]["schemas"]
    return schemas


@cache
def _document(request: bool = False) -> dict[str, Any]:
    raw = _raw()
    converted = {name: _convert(schema, name, raw) for name, schema in raw.items()}  # builds new nodes
    if request:
        converted = {name: _absent_when_null(schema, REQUEST_OPTIONAL.get(name, frozenset()))
                     for name, schema in converted.items()}
    return {"components": {"schemas": converted | copy.deepcopy(LOCAL_SCHEMAS)}}


def schema_names() -> list[str]:
    return sorted(_document()["components"]["schemas"])


@cache
def _validator(name: str, request: bool = False) -> jsonschema.Draft202012Validator:
    if name not in _document()["components"]["schemas"]:
        raise KeyError(f"no schema {name!r} in {SPEC_FILE.name}")
    doc = dict(_document(request))
    doc["$ref"] = _REF + name
    return jsonschema.Draft202012Validator(doc)


def _closest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The likeliest real problem under a failed ``anyOf``: leave out the alternatives that fail on the
    value's own type (the string form of ``input`` when it is a list), then take the alternative whose
    problem lies deepest in the payload, and descend into it."""
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else None, []).append(sub)
    here = len(error.absolute_path)
    fitting = [subs for subs in branches.values()
               if not any(s.validator == "type" and len(s.absolute_path) == here for s in subs)]
    candidates = [s for subs in (fitting or list(branches.values())) for s in subs]
    if not candidates:
        return error
    deepest = max(candidates, key=lambda s: len(s.absolute_path))
    if deepest.validator in ("anyOf", "oneOf") and deepest.context:
        return _closest(deepest)
    return deepest if len(deepest.absolute_path) > here or len(fitting) == 1 else best_match(candidates) or error


def _describe(name: str, error: jsonschema.ValidationError) -> str:
    where = "/".join(map(str, error.absolute_path))
    if error.validator in ("anyOf", "oneOf") and error.context:
        closest = _closest(error)
        if closest is not error:
            inner = "/".join(map(str, closest.absolute_path))
            return f"{name}: {where}: matches no alternative; closest: {inner}: {closest.message[:300]}"
    return f"{name}: {where}: {error.message[:300]}"


def errors(name: str, payload: Any, *, request: bool = False) -> list[str]:
    """Every way ``payload`` breaks schema ``name`` (empty when it conforms)."""
    return [_describe(name, e) for e in _validator(name, request).iter_errors(payload)]


@cache
def known_properties(name: str) -> frozenset[str]:
    """The top-level properties schema ``name`` declares (through ``$ref`` and ``allOf``)."""
    raw = _raw()

    def collect(node: Any) -> set[str]:
        node = _resolve(node, raw)
        if not isinstance(node, dict):
            return set()
        found = set(node.get("properties", {}))
        for member in node.get("allOf", ()):
            found |= collect(member)
        return found

    return frozenset(collect(raw[name]))


def request_errors(name: str, payload: Any) -> list[str]:
    """``errors(name, payload, request=True)``, and every top-level key the schema does not declare (the
    API answers 400 ``unknown_parameter`` to those; the spec's request schemas leave ``additionalProperties``
    open)."""
    unknown = [f"{name}: {key}: unknown parameter" for key in payload
               if key not in known_properties(name)] if isinstance(payload, dict) else []
    return unknown + errors(name, payload, request=True)


# --- multipart/form-data requests --------------------------------------------------------------------------

_FORM_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


def _types_of(schema: Any, raw: dict[str, Any], depth: int = 0) -> set[str]:
    """The JSON types a (raw, spec-form) schema allows, through ``$ref`` and unions."""
    schema = _resolve(schema, raw)
    if not isinstance(schema, dict) or depth > 8:
        return set()
    kind = schema.get("type")
    found = set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, ()):
            found |= _types_of(branch, raw, depth + 1)
    return found


def _sub_schema(schema: Any, step: str, raw: dict[str, Any], depth: int = 0) -> Any:
    """The schema of ``step`` (a property name, or ``""`` for an array item) under ``schema``."""
    schema = _resolve(schema, raw)
    if not isinstance(schema, dict) or depth > 8:
        return None
    if step == "" and "items" in schema:
        return schema["items"]
    if step and step in schema.get("properties", {}):
        return schema["properties"][step]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, ()):
            found = _sub_schema(branch, step, raw, depth + 1)
            if found is not None:
                return found
    return None


def _form_value(value: Any, schema: Any, raw: dict[str, Any]) -> Any:
    if not isinstance(value, str):
        return value
    types = _types_of(schema, raw)
    if "integer" in types and re.fullmatch(r"-?\d+", value):
        return int(value)
    if "number" in types:
        try:
            return float(value)
        except ValueError:
            pass
    if "boolean" in types and value in ("true", "false"):
        return value == "true"
    return value


def form_payload(name: str, fields: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The JSON object schema ``name`` describes, made of multipart parts ``(name, value)``: ``key[]``
    appends to a list, ``key[sub]`` sets in an object (``a[b][]`` nests), a repeated plain key keeps its
    last value; text values are converted to the type their property's schema asks for when they parse
    as one (``"0.2"`` a number, ``"true"`` a boolean), others (and files, given as strings) kept."""
    raw = _raw()
    out: dict[str, Any] = {}
    for key, value in fields:
        match = _FORM_KEY.fullmatch(key)
        if match is None:
            out[key] = value
            continue
        steps = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        schema: Any = raw[name]
        node: Any = out
        for i, step in enumerate(steps):
            schema = _sub_schema(schema, step, raw)
            last = i == len(steps) - 1
            nxt: Any = None if last else ([] if steps[i + 1] == "" else {})
            if isinstance(node, list):
                if last:
                    node.append(_form_value(value, schema, raw))
                else:
                    node.append(nxt)
                    node = nxt
            elif last:
                node[step] = _form_value(value, schema, raw)
            else:
                if not isinstance(node.get(step), type(nxt)):
                    node[step] = nxt
                node = node[step]
    return out


# --- the Responses stream -----------------------------------------------------------------------------


@cache
def event_schemas() -> dict[str, str]:
    """Event ``type`` -> the schema of that event, read from the ``type`` enum of each branch of
    ``ResponseStreamEvent``."""
    raw = _raw()
    union = raw["ResponseStreamEvent"]
    out: dict[str, str] = {}
    for branch in union.get("anyOf") or union["oneOf"]:
        name = branch["$ref"][len(_REF):]
        for value in raw[name]["properties"]["type"]["enum"]:
            assert value not in out, value
            out[value] = name
    return out


def stream_event_errors(payload: Any) -> list[str]:
    """Every way one Responses stream event breaks the schema its ``type`` names."""
    kind = payload.get("type") if isinstance(payload, dict) else None
    if not isinstance(kind, str):
        return [f"ResponseStreamEvent: an event must be an object with a string type, got {payload!r:.200}"]
    name = event_schemas().get(kind)
    if name is None:
        return [f"ResponseStreamEvent: unknown event type {kind!r}"]
    return errors(name, payload)


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """``(event name, data)`` for each SSE event in ``text``; data is parsed JSON, or the raw string when
    it is not JSON (``[DONE]``). Comment lines are skipped."""
    out: list[tuple[str | None, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if not data and event is None:
            continue
        joined = "\n".join(data)
        try:
            out.append((event, json.loads(joined)))
        except ValueError:
            out.append((event, joined))
    return out


_LIFECYCLE = {"response.created", "response.queued", "response.in_progress"}
_TERMINAL = {"response.completed": "completed", "response.incomplete": "incomplete", "response.failed": "failed"}


class _Item:
    def __init__(self, index: int, item: dict[str, Any]) -> None:
        self.index, self.id, self.type = index, item.get("id"), item.get("type")
        self.parts: dict[int, str | None] = {}  # content/summary index -> text so far (None once done)
        self.arguments = ""
        self.done = False


def response_stream_errors(events: Iterable[tuple[str | None, Any]]) -> list[str]:
    """Problems with a Responses API stream (``parse_sse`` output): each event's schema, the SSE
    ``event:`` name equal to the data's ``type``, ``sequence_number`` 0, 1, 2, ..., and the documented
    order: ``response.created`` first (``response.queued`` may come before it), ``response.in_progress``,
    then per output item ``response.output_item.added`` ... ``response.output_item.done`` (a message's
    content parts added / text deltas / text done / part done inside it; a function call's argument deltas
    then ``...arguments.done``; a reasoning item's summary parts likewise), at most one item open at a
    time, then exactly one terminal event (``response.completed``, ``response.incomplete`` or
    ``response.failed``, whose response's ``status`` says the same and whose ``output`` holds the items
    streamed) or an ``error`` event, which only ``response.failed`` may follow; nothing after that, and
    no ``[DONE]``."""
    problems: list[str] = []
    items: list[_Item] = []
    response_id: str | None = None
    ended: str | None = None
    began = False
    for n, (name, data) in enumerate(events):
        where = f"event {n}"
        if not isinstance(data, dict):
            problems.append(f"{where}: data is not a JSON object: {data!r:.100}")
            continue
        kind = data.get("type")
        where = f"event {n} ({kind})"
        problems += [f"{where}: {p}" for p in stream_event_errors(data)]
        if name is not None and name != kind:
            problems.append(f"{where}: SSE event name {name!r} differs from the data's type")
        if data.get("sequence_number") != n:
            problems.append(f"{where}: sequence_number {data.get('sequence_number')!r}, expected {n}")
        if ended == "error" and kind == "response.failed":
            # the gateway's failure: the spec's error event, then response.failed (the Codex CLI reads the
            # failure's message only from the latter); the failed response is checked below
            ended = None
        if ended is not None:
            problems.append(f"{where}: after the stream ended with {ended}")
            continue
        if kind == "error":
            ended = "error"
            continue
        response = data.get("response")
        if kind in _LIFECYCLE or kind in _TERMINAL:
            rid = response.get("id") if isinstance(response, dict) else None
            if response_id is None:
                response_id = rid
            elif rid != response_id:
                problems.append(f"{where}: response id {rid!r} differs from {response_id!r}")
        if not began:
            if kind == "response.queued" and n == 0:
                continue
            if kind != "response.created":
                problems.append(f"{where}: the stream does not begin with response.created")
            began = True
            continue
        if kind in _LIFECYCLE:
            if items:
                problems.append(f"{where}: after the first output item")
            continue
        open_items = [i for i in items if not i.done]
        if kind in _TERMINAL:
            ended = kind
            if open_items and kind != "response.failed":  # a failure may cut an item short
                problems.append(f"{where}: output item {open_items[0].index} was never done")
            status = response.get("status") if isinstance(response, dict) else None
            if status != _TERMINAL[kind]:
                problems.append(f"{where}: response status {status!r}, expected {_TERMINAL[kind]!r}")
            output = response.get("output") if isinstance(response, dict) else None
            if isinstance(output, list) and [o.get("id") for o in output if isinstance(o, dict)] != \
                    [i.id for i in items]:
                problems.append(f"{where}: response.output ids differ from the streamed items' ids")
            continue
        index = data.get("output_index")
        if kind == "response.output_item.added":
            if open_items:
                problems.append(f"{where}: output item {open_items[0].index} is still open")
            if index != len(items):
                problems.append(f"{where}: output_index {index!r}, expected {len(items)}")
            item = data.get("item") if isinstance(data.get("item"), dict) else {}
            items.append(_Item(len(items), item))
            continue
        current = open_items[0] if open_items else None
        if current is None or index != current.index:
            problems.append(f"{where}: output_index {index!r} is not the open output item")
            continue
        if "item_id" in data and data["item_id"] != current.id:
            problems.append(f"{where}: item_id {data['item_id']!r} is not the open item's {current.id!r}")
        problems += [f"{where}: {p}" for p in _item_event(kind, data, current)]
    if ended is None:
        problems.append("the stream ends without response.completed, response.incomplete, response.failed "
                        "or error")
    return problems


def _item_event(kind: Any, data: dict[str, Any], item: _Item) -> list[str]:
    """One event inside an open output item: updates ``item``, returns the order problems."""
    part_key = "summary_index" if str(kind).startswith("response.reasoning_summary") else "content_index"
    part = data.get(part_key)
    if kind == "response.output_item.done":
        out = []
        done = data.get("item") if isinstance(data.get("item"), dict) else {}
        if (done.get("id"), done.get("type")) != (item.id, item.type):
            out.append("the done item's id / type differ from the added item's")
        if any(text is not None for text in item.parts.values()):
            out.append("a content part is still open")
        if item.type == "function_call" and done.get("arguments") != item.arguments:
            out.append("the done item's arguments differ from the streamed arguments")
        item.done = True
        return out
    if kind in ("response.content_part.added", "response.reasoning_summary_part.added"):
        if part in item.parts:
            return [f"{part_key} {part!r} added twice"]
        if any(text is not None for text in item.parts.values()):
            return ["another part is still open"]
        item.parts[part] = ""
        return []
    if kind in ("response.output_text.delta", "response.refusal.delta", "response.reasoning_summary_text.delta",
                "response.reasoning_text.delta"):
        if item.parts.get(part) is None:
            return [f"a delta for {part_key} {part!r}, which is not open"]
        item.parts[part] = (item.parts[part] or "") + str(data.get("delta", ""))
        return []
    if kind in ("response.output_text.done", "response.refusal.done", "response.reasoning_summary_text.done",
                "response.reasoning_text.done"):
        field = "refusal" if kind == "response.refusal.done" else "text"
        if item.parts.get(part) is None:
            return [f"{kind} for {part_key} {part!r}, which is not open"]
        return [] if data.get(field) == item.parts[part] else [f"{field} differs from the deltas' concatenation"]
    if kind in ("response.content_part.done", "response.reasoning_summary_part.done"):
        if item.parts.get(part) is None:
            return [f"{part_key} {part!r} is not open"]
        streamed = item.parts[part]
        item.parts[part] = None
        got = (data.get("part") or {}).get("text", streamed) if isinstance(data.get("part"), dict) else streamed
        return [] if got == streamed or (data.get("part") or {}).get("type") == "refusal" else \
            ["the done part's text differs from the deltas' concatenation"]
    if kind == "response.function_call_arguments.delta":
        if item.type != "function_call":
            return [f"arguments for a {item.type} item"]
        item.arguments += str(data.get("delta", ""))
        return []
    if kind == "response.function_call_arguments.done":
        if item.type != "function_call":
            return [f"arguments for a {item.type} item"]
        return [] if data.get("arguments") == item.arguments else ["arguments differ from the deltas' concatenation"]
    return []
