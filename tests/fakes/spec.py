"""Validate payloads against the OpenAI spec subset copied into tests/fixtures/specs.

The spec declares OpenAPI 3.1 but uses 3.0 idioms (``nullable: true``, boolean
``exclusiveMinimum``); they are converted to JSON Schema 2020-12 here, and ``oneOf`` is
checked as ``anyOf`` because the spec's union branches overlap.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPEC_FILE = Path(__file__).parents[1] / "fixtures" / "specs" / "openai-chat-schemas.json"


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v) for k, v in node.items() if k not in ("nullable", "discriminator", "x-oaiMeta",
                                                                  "x-oaiTypeLabel", "x-oaiExpandable")}
    if "oneOf" in out:
        out["anyOf"] = out.pop("oneOf")
    if out.get("exclusiveMinimum") is True and "minimum" in out:
        out["exclusiveMinimum"] = out.pop("minimum")
    elif isinstance(out.get("exclusiveMinimum"), bool):
        out.pop("exclusiveMinimum")
    if out.get("format") == "unixtime":
        out.pop("format")
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str) and not any(k in out for k in ("anyOf", "allOf", "$ref", "enum")):
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _document() -> dict[str, Any]:
    raw = json.loads(SPEC_FILE.read_text())
    return {"components": {"schemas": _convert(copy.deepcopy(raw["components"]["schemas"]))}}


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    doc = dict(_document())
    doc["$ref"] = f"#/components/schemas/{name}"
    return jsonschema.Draft202012Validator(doc)


def errors(name: str, payload: Any) -> list[str]:
    """Every way ``payload`` breaks schema ``name`` (empty when it conforms)."""
    return [f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in _validator(name).iter_errors(payload)]
