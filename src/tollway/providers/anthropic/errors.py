"""Anthropic's error bodies: ``{"type": "error", "error": {"type", "message"}}``."""

from __future__ import annotations

import msgspec

from tollway.dialects.anthropic.wire import error_body_decoder


def parse_anthropic_error(body: bytes) -> str | None:
    """The message of an Anthropic error body (``error.message``), or the text's start."""
    try:
        err = error_body_decoder.decode(body).error
    except msgspec.DecodeError:  # ValidationError too: JSON that is no error body
        text = body[:300].decode("utf-8", "replace").strip()
        return text or None
    if err is None:
        return None
    return f"{err.type}: {err.message}" if err.type and err.message else (err.message or err.type)
