"""JSON from clients, decoded within bounds: every surface reads a request body through ``loads``.

msgspec's decoder recurses once per level of nesting and stops with a RecursionError at whatever
depth the interpreter's stack has left, and Python code that walks a decoded value (a schema
cleaner, a token counter) recurses too. So ``loads`` refuses, before decoding, a document whose
arrays and objects nest deeper than ``MAX_DEPTH`` (serde_json's default limit; real requests,
tool schemas included, stay far below it), and turns every way decoding can fail (malformed
JSON, invalid UTF-8, a value of the wrong type for a typed decoder, a recursion limit all the
same) into ``InvalidRequest``. ``too_deep`` is the check alone, for JSON text held in a string
field (a tool call's ``arguments``) that an upstream's encoder decodes later.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, Final, TypeVar, overload

import msgspec

from tollway.core.errors import InvalidRequest

MAX_DEPTH: Final = 128

T = TypeVar("T")
_ANY: Final = msgspec.json.Decoder()
_ESCAPED: Final = re.compile(rb'\\[\\"]')  # an escaped backslash or quote
_NOT_MARKS: Final = bytes(b for b in range(256) if b not in b'"[]{}')  # deleted: all but quotes and brackets
_STRING: Final = re.compile(rb'"[^"]*+"')
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def too_deep(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether the arrays and objects of JSON text ``raw`` nest deeper than ``limit``, read without
    decoding it. Brackets inside strings do not count. Exact for valid JSON; for invalid JSON
    some answer (the decoder refuses it anyway). A few passes at C speed, about as long as
    decoding the body, and one step per bracket outside strings beyond that."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # in valid JSON a backslash occurs only in a string, where it starts an escape: without the
    # escaped backslashes and quotes, every quote left delimits a string
    if b"\\" in data:
        data = _ESCAPED.sub(b"", data)
    marks = data.translate(None, _NOT_MARKS)
    if len(marks) <= limit:
        return False
    # two quotes in a row: a string without brackets, or two strings with nothing between them
    marks = marks.replace(b'""', b"")
    if b'"' in marks:
        marks = _STRING.sub(b"", marks)
    if len(marks) <= limit:
        return False
    return max(accumulate(memoryview(marks.translate(_STEPS, b'"')).cast("b")), default=0) > limit


@overload
def loads(raw: bytes | str, *, invalid: str = ..., param: str | None = ...) -> Any: ...


@overload
def loads(raw: bytes | str, decoder: msgspec.json.Decoder[T], *, invalid: str = ..., param: str | None = ...) -> T: ...


def loads(raw: bytes | str, decoder: msgspec.json.Decoder[Any] | None = None, *,
          invalid: str = "Request body is not valid JSON", param: str | None = None) -> Any:
    """``raw`` decoded (with ``decoder``, else to plain values), at most ``MAX_DEPTH`` deep;
    ``InvalidRequest`` ("<invalid>: <why>", with ``param``) for anything that is not such a document."""
    if too_deep(raw):
        raise InvalidRequest(f"{invalid}: arrays and objects are nested deeper than {MAX_DEPTH} levels", param=param)
    try:
        return (decoder or _ANY).decode(raw)
    except (msgspec.DecodeError, UnicodeError) as exc:  # ValidationError is a DecodeError
        raise InvalidRequest(f"{invalid}: {exc}", param=param) from None
    except RecursionError:  # nested within the limit, on a stack already deep: the same answer
        raise InvalidRequest(f"{invalid}: arrays and objects are nested too deeply", param=param) from None


def body_loads(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """A front door's request body: ``loads`` with ``decoder`` (a view that may leave parts
    undecoded) after the whole body is checked to be UTF-8, since a pass-through forwards the
    bytes the view skipped; every failure a 400 "Invalid request body: ..."."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}") from None
    return loads(raw, decoder, invalid="Invalid request body")
