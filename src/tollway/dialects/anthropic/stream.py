"""Anthropic message streams <-> canonical stream events.

``StreamEncoder`` turns canonical events into Anthropic's ``event:``/``data:`` SSE pairs:
message_start (and a ping), one content block at a time (content_block_start, its deltas,
content_block_stop; text_delta, thinking_delta, signature_delta, input_json_delta), then
message_delta (stop reason and the full usage, input tokens included, since the upstream's
usage arrives only at the end) and message_stop. ``StreamDecoder`` turns an Anthropic
upstream's events into canonical ones. Both are small state objects fed one item at a time.
"""

from __future__ import annotations

from typing import Any

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
from tollway.core.errors import UpstreamError
from tollway.dialects.anthropic.codec import (
    STOP_IN,
    decode_usage,
    encode_usage,
    message_id,
    stop_reason_of,
    tool_use_id,
)

_encoder = msgspec.json.Encoder()

# Anthropic's error types and the HTTP status each stands for
ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}


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
        self._finish: FinishReason = "stop"
        self._stop_sequence: str | None = None
        self._usage = Usage()

    def _start(self, id_: str) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(id_), "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "stop_details": None, "container": None,
            "usage": encode_usage(Usage()),
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
        out = b"" if self._started or isinstance(event, StreamStart) else self._start("")
        if isinstance(event, StreamStart):
            return self._start(event.id) if not self._started else b""
        if isinstance(event, TextDelta):
            if not event.text:
                return out
            if self._open != "text":
                out += self._open_block("text", {"type": "text", "text": "", "citations": None})
            return out + self._delta(self._index, {"type": "text_delta", "text": event.text})
        if isinstance(event, ReasoningDelta):
            if event.redacted_data is not None:
                out += self._open_block("redacted_thinking", {"type": "redacted_thinking", "data": event.redacted_data})
                return out + self._stop_block()
            if event.text:
                if self._open != "thinking":
                    out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out += self._delta(self._index, {"type": "thinking_delta", "thinking": event.text})
            if event.signature:
                if self._open != "thinking":
                    out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out += self._delta(self._index, {"type": "signature_delta", "signature": event.signature})
            return out
        if isinstance(event, ToolCallStart):
            if self._tool is not None and not self._tool_has_args:  # headers first (vLLM): hold this one
                self._pending[event.index] = (event.id, event.name, [])
                return out
            return out + self._open_tool(event.index, event.id, event.name)
        if isinstance(event, ToolCallDelta):
            if not event.arguments:
                return out
            if event.index == self._tool:
                self._tool_has_args = True
                return out + self._delta(self._index, {"type": "input_json_delta", "partial_json": event.arguments})
            if event.index in self._pending:  # the held call's arguments begin: its block opens now
                id_, name, args = self._pending.pop(event.index)
                return out + self._open_tool(event.index, id_, name, "".join(args) + event.arguments, flush=False)
            return out  # arguments for a call that never started, or whose block is closed: nowhere to go
        if isinstance(event, FinishEvent):
            self._finish = event.reason
            self._stop_sequence = event.stop_sequence
            return out
        if isinstance(event, UsageReport):
            self._usage = event.usage
            return out
        return out

    def close(self) -> bytes:
        """The tail of a finished message: the open block's stop, message_delta, message_stop."""
        out = b"" if self._started else self._start("")
        out += self._stop_block()
        usage = encode_usage(self._usage)
        delta_usage = {k: usage[k] for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                                             "cache_read_input_tokens", "output_tokens_details", "server_tool_use")}
        out += sse_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason_of(self._finish, self._stop_sequence),
                      "stop_sequence": self._stop_sequence, "stop_details": None, "container": None},
            "usage": delta_usage,
        })
        return out + sse_event("message_stop", {"type": "message_stop"})


class StreamDecoder:
    """An Anthropic upstream's events (parsed ``data`` objects) -> canonical events."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._tools: dict[int, int] = {}  # block index -> canonical tool index
        self._usage: dict[str, Any] = {}
        self.done = False

    def feed(self, data: dict[str, Any]) -> list[StreamEvent]:
        kind = data.get("type")
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            dkind = delta.get("type")
            if dkind == "text_delta":
                return [TextDelta(text=delta.get("text") or "")]
            if dkind == "thinking_delta":
                return [ReasoningDelta(text=delta.get("thinking") or "")]
            if dkind == "signature_delta":
                return [ReasoningDelta(signature=delta.get("signature") or "")]
            if dkind == "input_json_delta":
                index = self._tools.get(data.get("index", -1))
                partial = delta.get("partial_json") or ""
                return [ToolCallDelta(index=index, arguments=partial)] if index is not None and partial else []
            return []
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            bkind = block.get("type")
            if bkind == "text" and block.get("text"):
                return [TextDelta(text=block["text"])]
            if bkind == "thinking" and block.get("thinking"):
                return [ReasoningDelta(text=block["thinking"])]
            if bkind == "redacted_thinking":
                return [ReasoningDelta(redacted_data=block.get("data") or "")]
            if bkind == "tool_use":
                index = len(self._tools)
                self._tools[data.get("index", index)] = index
                return [ToolCallStart(index=index, id=block.get("id") or "", name=block.get("name") or "")]
            return []
        if kind == "message_start":
            message = data.get("message") or {}
            self._usage = dict(message.get("usage") or {})
            return [StreamStart(id=message.get("id") or "", model=message.get("model") or "", created=0)]
        if kind == "message_delta":
            delta = data.get("delta") or {}
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            events: list[StreamEvent] = []
            if delta.get("stop_reason"):
                events.append(FinishEvent(reason=STOP_IN.get(delta["stop_reason"], "stop"),
                                          stop_sequence=delta.get("stop_sequence")))
            events.append(UsageReport(usage=decode_usage(self._usage)))
            return events
        if kind == "message_stop":
            self.done = True
            return []
        if kind == "error":
            err = data.get("error") or {}
            etype = err.get("type") or "api_error"
            raise UpstreamError(f"{self.provider} upstream reported an error mid-stream: "
                                f"{err.get('message') or etype}", provider=self.provider,
                                upstream_status=ERROR_STATUS.get(etype, 500))
        return []  # ping, and event types added later
