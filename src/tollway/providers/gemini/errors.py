"""Google's error bodies: the message and the RetryInfo delay; and the UpstreamError for what the
upstream got wrong in a 200. Pure: no I/O.

``{"error": {"code", "message", "status", "details"}}``, sometimes wrapped in a one-element list.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from tollway.core.errors import UpstreamError
from tollway.core.redaction import Secret, redact

_decoder = msgspec.json.Decoder()
MAX_DETAIL: Final = 300  # characters of a decoding error shown in an UpstreamError


def upstream_fault(provider: str, what: str, detail: object, secret: Secret) -> UpstreamError:
    """``{provider} upstream {what}: {detail}``, the detail redacted and cut to MAX_DETAIL characters
    (a 502: an unreadable body or chunk, an error reported mid-stream)."""
    text = redact(str(detail), secret)
    if len(text) > MAX_DETAIL:
        text = text[:MAX_DETAIL] + "..."
    return UpstreamError(f"{provider} upstream {what}: {text}", provider=provider)


def parse_gemini_error(body: bytes) -> str | None:
    """The message of Google's error body ``{"error": {"code", "message", "status"}}`` (or a list of them)."""
    try:
        data = _decoder.decode(body)
    except msgspec.DecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return text or None
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return None
    message, status = err.get("message"), err.get("status")
    if message and status:
        return f"{status}: {message}"
    return str(message or status) if message or status else None


RETRY_INFO: Final = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"(-?\d+(?:\.\d{1,9})?)s")


def duration_seconds(value: object) -> float | None:
    """A protobuf Duration in its JSON form (``"7s"``, ``"1.5s"``) in seconds; None if it is not one."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    return float(match[1]) if match else None


def parse_gemini_retry_after(body: bytes) -> float | None:
    """The ``retryDelay`` of a RetryInfo in an error body's ``error.details`` (Google sends a 429's
    retry delay there, not in Retry-After), in seconds."""
    try:
        data = _decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    for d in details if isinstance(details, list) else ():
        if isinstance(d, dict) and d.get("@type") == RETRY_INFO:
            return duration_seconds(d.get("retryDelay"))
    return None
