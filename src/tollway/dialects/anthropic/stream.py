"""Canonical stream events -> an Anthropic message stream, for the front door.

``StreamEncoder`` turns canonical events into Anthropic's ``event:``/``data:`` SSE pairs:
message_start (and a ping), one content block at a time (content_block_start, its deltas,
content_block_stop; text_delta, thinking_delta, signature_delta, input_json_delta), then
message_delta (stop reason and the full usage, input tokens included, since the upstream's
usage arrives only at the end) and message_stop. Each event carries what Anthropic's own carry
(see ``encode``: no null it would leave out). It is a small state object fed one event at
a time, each through the method its type maps to. (An Anthropic upstream's stream is read by
the provider: ``tollway.providers.anthropic.stream``.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import msgspec

from tollway.core.chat import Finish as FinishEvent
from tollway.core.chat import (
    FinishReason,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageReport,
)
from tollway.dialects.anthropic.encode import encode_usage, message_id, stop_reason_of, tool_use_id
from tollway.dialects.anthropic.errors import ERROR_STATUS as ERROR_STATUS  # the front door's in-stream errors

_encoder = msgspec.json.Encoder()


def sse_event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(obj) + b"\n\n"


def error_event(body: dict[str, Any]) -> bytes:
    """An error once headers are sent: the anthropic SDK raises on ``event: error``."""
    return sse_event("error", body)


class StreamEncoder:
    """Canonical events -> Anthropic SSE for one message."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self._started = False
        self._index = -1  # index of the open block, or of the last one
        self._open: str | None = None  # type of the open block
        self._tool: int | None = None  # canonical index of the tool call whose block is open
        self._tool_has_args = False
        # tool calls that started while the open one had no arguments yet (vLLM-style: every
        # call's header first, then the arguments): each opens when its arguments begin
        self._pending: dict[int, tuple[str, str, list[str]]] = {}
        self._reason: FinishReason = "stop"
        self._stop_sequence: str | None = None
        self._usage = Usage()

    def _start(self, id_: str) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(id_), "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "stop_details": None, "usage": encode_usage(Usage()),
        }
        return sse_event("message_start", {"type": "message_start", "message": message}) + sse_event(
            "ping", {"type": "ping"})

    def _stop_block(self, *, flush: bool = True) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        self._tool = None
        out = sse_event("content_block_stop", {"type": "content_block_stop", "index": self._index})
        if not flush:
            return out
        pending, self._pending = self._pending, {}
        for index in sorted(pending):
            id_, name, args = pending[index]
            out += self._open_block("tool_use", self._tool_block(id_, name, index))
            if args:
                out += self._delta(self._index, {"type": "input_json_delta", "partial_json": "".join(args)})
            self._open = None
            out += sse_event("content_block_stop", {"type": "content_block_stop", "index": self._index})
        return out

    def _open_tool(self, index: int, id_: str, name: str, args: str = "", *, flush: bool = True) -> bytes:
        out = self._stop_block(flush=flush)
        out += self._open_block("tool_use", self._tool_block(id_, name, index))
        self._tool, self._tool_has_args = index, bool(args)
        if args:
            out += self._delta(self._index, {"type": "input_json_delta", "partial_json": args})
        return out

    def _tool_block(self, id_: str, name: str, index: int) -> dict[str, Any]:
        return {"type": "tool_use", "id": tool_use_id(id_, index), "name": name, "input": {},
                "caller": {"type": "direct"}}

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._stop_block()
        self._index += 1
        self._open = kind
        return out + sse_event("content_block_start",
                               {"type": "content_block_start", "index": self._index, "content_block": block})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def feed(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            return b"" if self._started else self._start(event.id)
        out = b"" if self._started else self._start("")
        on = self._ON.get(type(event))
        return out + on(self, event) if on is not None else out

    def _text(self, event: TextDelta) -> bytes:
        if not event.text:
            return b""
        out = b"" if self._open == "text" else self._open_block("text", {"type": "text", "text": ""})
        return out + self._delta(self._index, {"type": "text_delta", "text": event.text})

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        if event.redacted_data is not None:
            block = {"type": "redacted_thinking", "data": event.redacted_data}
            return self._open_block("redacted_thinking", block) + self._stop_block()
        out = b""
        if event.text:
            out += self._thinking_delta({"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            out += self._thinking_delta({"type": "signature_delta", "signature": event.signature})
        return out

    def _thinking_delta(self, delta: dict[str, Any]) -> bytes:
        out = b""
        if self._open != "thinking":
            out = self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        return out + self._delta(self._index, delta)

    def _tool_start(self, event: ToolCallStart) -> bytes:
        if self._tool is not None and not self._tool_has_args:  # headers first (vLLM): hold this one
            self._pending[event.index] = (event.id, event.name, [])
            return b""
        return self._open_tool(event.index, event.id, event.name)

    def _tool_delta(self, event: ToolCallDelta) -> bytes:
        if not event.arguments:
            return b""
        if event.index == self._tool:
            self._tool_has_args = True
            return self._delta(self._index, {"type": "input_json_delta", "partial_json": event.arguments})
        if event.index in self._pending:  # the held call's arguments begin: its block opens now
            id_, name, args = self._pending.pop(event.index)
            return self._open_tool(event.index, id_, name, "".join(args) + event.arguments, flush=False)
        return b""  # arguments for a call that never started, or whose block is closed: nowhere to go

    def _finish(self, event: FinishEvent) -> bytes:
        self._reason = event.reason
        self._stop_sequence = event.stop_sequence
        return b""

    def _usage_report(self, event: UsageReport) -> bytes:
        self._usage = event.usage
        return b""

    # each canonical event's method (StreamStart is feed's own)
    _ON: ClassVar[Mapping[type[Any], Callable[[StreamEncoder, Any], bytes]]] = {
        TextDelta: _text, ReasoningDelta: _reasoning, ToolCallStart: _tool_start, ToolCallDelta: _tool_delta,
        FinishEvent: _finish, UsageReport: _usage_report,
    }

    def close(self) -> bytes:
        """The tail of a finished message: the open block's stop, message_delta, message_stop."""
        out = b"" if self._started else self._start("")
        out += self._stop_block()
        out += sse_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason_of(self._reason, self._stop_sequence),
                      "stop_sequence": self._stop_sequence, "stop_details": None},
            "usage": encode_usage(self._usage),
        })
        return out + sse_event("message_stop", {"type": "message_stop"})
