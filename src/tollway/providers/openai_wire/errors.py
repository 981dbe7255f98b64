"""OpenAI-style error bodies: the message. Pure: no I/O."""

from __future__ import annotations

import msgspec

from tollway.dialects.openai.wire import error_view_decoder


def parse_openai_error(body: bytes) -> str | None:
    """The message of an OpenAI-style error body (``error.message``, ``message`` or ``detail``)."""
    try:
        view = error_view_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body[:300].decode("utf-8", "replace").strip()
        return text or None
    err = view.error
    if isinstance(err, str):
        return err
    if err is not None and err.message:
        return err.message
    return view.message or view.detail
