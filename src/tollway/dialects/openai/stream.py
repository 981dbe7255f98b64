"""Canonical stream events -> OpenAI chat-completion chunk streams, for the front door.

``StreamEncoder`` turns canonical events into ``data: {...}`` SSE frames (the first delta
carries the role; tool calls carry id, type and name on their first delta; a final usage
chunk with ``choices: []`` when asked for; ``data: [DONE]``); a small state object fed one
event at a time. An upstream's chunk stream is decoded next to its provider
(``providers.openai_wire.stream``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from tollway.core.chat import (
    Finish,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageReport,
)
from tollway.dialects.openai.codec import encode_usage

_encoder = msgspec.json.Encoder()
DONE = b"data: [DONE]\n\n"


def sse_data(obj: Any) -> bytes:
    return b"data: " + _encoder.encode(obj) + b"\n\n"


class StreamEncoder:
    """Canonical events -> OpenAI SSE frames for one response."""

    def __init__(self, *, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = ""
        self.created = 0
        self._role_sent = False
        self._usage: Usage | None = None
        self._finish: str | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        return sse_data({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        })

    def feed(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self.id, self.created = event.id, event.created
            return self._chunk({"content": ""})
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, ToolCallStart):
            return self._chunk({"tool_calls": [{"index": event.index, "id": event.id, "type": "function",
                                                "function": {"name": event.name, "arguments": ""}}]})
        if isinstance(event, ToolCallDelta):
            return self._chunk({"tool_calls": [{"index": event.index, "function": {"arguments": event.arguments}}]})
        if isinstance(event, Finish):
            self._finish = event.reason
            return self._chunk({}, event.reason)
        if isinstance(event, UsageReport):
            self._usage = event.usage
            return b""
        return b""

    def close(self) -> bytes:
        """The tail of a finished stream: the usage chunk (when asked) and ``[DONE]``."""
        tail = b""
        if self.include_usage:
            tail = sse_data({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": encode_usage(self._usage or Usage()),
            })
        return tail + DONE


def error_frame(body: dict[str, Any]) -> bytes:
    """An in-stream error once headers are sent: the OpenAI SDK raises on ``{"error": ...}``."""
    return sse_data(body)
