"""OpenAI chat-completion chunk streams <-> canonical stream events.

``StreamEncoder`` turns canonical events into ``data: {...}`` SSE frames (the first delta
carries the role; tool calls carry id, type and name on their first delta; a final usage
chunk with ``choices: []`` when asked for; ``data: [DONE]``). ``StreamDecoder`` turns upstream
chunk objects into canonical events. Both are small state objects fed one item at a time.
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
from tollway.core.errors import UpstreamError
from tollway.dialects.openai.codec import decode_usage, encode_usage, finish_reason_in

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


class StreamDecoder:
    """OpenAI chunk objects from an upstream -> canonical events."""

    def __init__(self) -> None:
        self._started = False
        self._tool_ids: dict[int, str] = {}

    def feed(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if "error" in chunk and chunk["error"]:
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamError(message or "upstream reported an error in the stream", provider="upstream")
        if not self._started:
            self._started = True
            events.append(StreamStart(id=chunk.get("id") or "", model=chunk.get("model") or "",
                                      created=chunk.get("created") or 0))
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                events.append(ReasoningDelta(text=delta["reasoning_content"]))
            if delta.get("content"):
                events.append(TextDelta(text=delta["content"]))
            for call in delta.get("tool_calls") or ():
                index = call.get("index", 0)
                fn = call.get("function") or {}
                if index not in self._tool_ids:
                    self._tool_ids[index] = call.get("id") or f"call_{index}"
                    events.append(ToolCallStart(index=index, id=self._tool_ids[index], name=fn.get("name") or ""))
                if fn.get("arguments"):
                    events.append(ToolCallDelta(index=index, arguments=fn["arguments"]))
            if choice.get("finish_reason"):
                events.append(Finish(reason=finish_reason_in(choice["finish_reason"])))
        if chunk.get("usage"):
            events.append(UsageReport(usage=decode_usage(chunk["usage"])))
        return events
