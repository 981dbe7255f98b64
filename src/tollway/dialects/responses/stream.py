"""Canonical stream events -> the Responses API's event stream, for the front door.

``ResponseStream`` emits OpenAI's documented sequence, each event with its ``sequence_number``:
``response.created`` and ``response.in_progress``; per output item ``response.output_item.added``,
its parts and deltas (``response.content_part.added`` / ``response.output_text.delta`` for a
message, ``response.reasoning_summary_part.added`` / ``response.reasoning_summary_text.delta`` for
reasoning, ``response.function_call_arguments.delta`` for a function call), their ``.done``
events and ``response.output_item.done``; then ``response.completed`` (or ``response.incomplete``
when the output cap or a content filter stopped it). An error after the headers is the spec's
``error`` event followed by ``response.failed``.

A custom tool's call (``custom_tool_call``) is the upstream's function call with one string
argument: its input is sent whole when the call ends (``response.custom_tool_call_input.delta``
and ``.done``), not as the upstream's JSON fragments. One item is open at a time, as OpenAI
streams them: a new item closes the one before. An upstream that interleaves its parallel calls'
arguments (none of ours does) has a late piece kept in the final response, not streamed.
Pure: ids and times come from the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from tollway.core.chat import (
    Finish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallBlock,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageReport,
)
from tollway.dialects.responses.codec import (
    ToolName,
    call_item,
    custom_input,
    failure,
    message_item,
    outcome,
    output_text,
    reasoning_item,
)

_encoder = msgspec.json.Encoder()


def event_frame(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(event) + b"\n\n"


class _Item:
    """An output item being streamed."""

    __slots__ = ("index", "id", "kind", "text", "signature", "call_id", "name", "tools")

    def __init__(self, index: int, item_id: str, kind: str, call_id: str = "", name: str = "",
                 tools: Mapping[str, ToolName] | None = None) -> None:
        self.tools = tools
        self.index = index
        self.id = item_id
        self.kind = kind  # message, reasoning or function_call
        self.text: list[str] = []  # the text, the reasoning, or the arguments
        self.signature: str | None = None
        self.call_id = call_id
        self.name = name

    def done(self) -> dict[str, Any]:
        text = "".join(self.text)
        if self.kind == "message":
            return message_item(self.id, text)
        if self.kind == "reasoning":
            return reasoning_item(self.id, text, self.signature)
        return call_item(self.id, ToolCallBlock(id=self.call_id, name=self.name, arguments=text), tools=self.tools)


class ResponseStream:
    """One answer's events. ``snapshot(status, output)`` makes the ``Response`` object the
    created/in_progress/terminal events carry; ``ids`` is the stem of the items' ids."""

    def __init__(self, snapshot: Callable[..., dict[str, Any]], ids: str,
                 tools: Mapping[str, ToolName] | None = None) -> None:
        self.snapshot = snapshot
        self.ids = ids
        self.tools = tools or {}  # the request's custom and namespaced tools (``codec.tool_names``)
        self.seq = 0
        self.started = False
        self.items: list[_Item] = []  # every item so far, in output order
        self.open: list[_Item] = []  # items not yet done
        self.calls: dict[int, _Item] = {}  # a tool call's index -> its item
        self.usage: Usage | None = None
        self.reason = "stop"
        self.final: dict[str, Any] | None = None  # the terminal response, once sent

    def _frame(self, event: dict[str, Any]) -> bytes:
        event["sequence_number"] = self.seq
        self.seq += 1
        return event_frame(event)

    def _start(self) -> bytes:
        self.started = True
        created = self.snapshot(status="in_progress", output=[])
        return (self._frame({"type": "response.created", "response": created})
                + self._frame({"type": "response.in_progress", "response": created}))

    def _close(self, item: _Item) -> bytes:
        text = "".join(item.text)
        at = {"item_id": item.id, "output_index": item.index}
        out = b""
        if item.kind == "message":
            out += self._frame({"type": "response.output_text.done", **at, "content_index": 0, "text": text,
                                "logprobs": []})
            out += self._frame({"type": "response.content_part.done", **at, "content_index": 0,
                                "part": output_text(text)})
        elif item.kind == "reasoning" and item.text:
            out += self._frame({"type": "response.reasoning_summary_text.done", **at, "summary_index": 0,
                                "text": text})
            out += self._frame({"type": "response.reasoning_summary_part.done", **at, "summary_index": 0,
                                "part": {"type": "summary_text", "text": text}})
        elif item.kind == "function_call":
            out += self._frame({"type": "response.function_call_arguments.done", **at, "name": item.name,
                                "arguments": text})
        elif item.kind == "custom_tool_call":  # the upstream streamed JSON arguments: the input is known now
            given = custom_input(text)
            if given:
                out += self._frame({"type": "response.custom_tool_call_input.delta", **at, "delta": given})
            out += self._frame({"type": "response.custom_tool_call_input.done", **at, "input": given})
        self.open.remove(item)
        return out + self._frame({"type": "response.output_item.done", "output_index": item.index,
                                  "item": item.done()})

    def _close_all(self) -> bytes:
        return b"".join(self._close(item) for item in list(self.open))

    def _open(self, kind: str, prefix: str, added: dict[str, Any], call_id: str = "", name: str = "") -> tuple[
            _Item, bytes]:
        item = _Item(len(self.items), f"{prefix}_{self.ids}{len(self.items)}", kind, call_id, name, self.tools)
        self.items.append(item)
        self.open.append(item)
        return item, self._frame({"type": "response.output_item.added", "output_index": item.index,
                                  "item": {"id": item.id, **added}})

    def _current(self, kind: str) -> _Item | None:
        """The open item of ``kind`` that the next delta extends (the last one opened)."""
        return self.open[-1] if self.open and self.open[-1].kind == kind else None

    def feed(self, event: StreamEvent) -> bytes:
        out = b"" if self.started else self._start()
        if isinstance(event, TextDelta):
            item = self._current("message")
            if item is None:
                out += self._close_all()
                item, added = self._open("message", "msg", {"type": "message", "status": "in_progress",
                                                            "role": "assistant", "content": []})
                out += added + self._frame({"type": "response.content_part.added", "item_id": item.id,
                                            "output_index": item.index, "content_index": 0, "part": output_text("")})
            item.text.append(event.text)
            return out + self._frame({"type": "response.output_text.delta", "item_id": item.id,
                                      "output_index": item.index, "content_index": 0, "delta": event.text,
                                      "logprobs": []})
        if isinstance(event, ReasoningDelta):
            return out + self._reasoning(event)
        if isinstance(event, ToolCallStart):
            out += self._close_all()
            shown = call_item("", ToolCallBlock(id=event.id, name=event.name, arguments=""), "in_progress", self.tools)
            del shown["id"]
            kind = shown["type"]
            item, added = self._open(kind, "ctc" if kind == "custom_tool_call" else "fc", shown, event.id, event.name)
            self.calls[event.index] = item
            return out + added
        if isinstance(event, ToolCallDelta):
            open_call = self.calls.get(event.index)
            if open_call is None or not event.arguments:
                return out
            open_call.text.append(event.arguments)
            if open_call.kind == "custom_tool_call" or open_call not in self.open:
                return out  # a late delta of a call already done (an upstream interleaving its calls): kept
            return out + self._frame({"type": "response.function_call_arguments.delta", "item_id": open_call.id,
                                      "output_index": open_call.index, "delta": event.arguments})
        if isinstance(event, Finish):
            self.reason = event.reason
        elif isinstance(event, UsageReport):
            self.usage = event.usage
        return out

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        out = b""
        item = self._current("reasoning")
        if item is None:
            if not (event.text or event.signature):
                return out  # a redacted block: nothing a client can show or send back
            out += self._close_all()
            item, added = self._open("reasoning", "rs", {"type": "reasoning", "summary": []})
            out += added
        if event.text:
            if not item.text:
                out += self._frame({"type": "response.reasoning_summary_part.added", "item_id": item.id,
                                    "output_index": item.index, "summary_index": 0,
                                    "part": {"type": "summary_text", "text": ""}})
            item.text.append(event.text)
            out += self._frame({"type": "response.reasoning_summary_text.delta", "item_id": item.id,
                                "output_index": item.index, "summary_index": 0, "delta": event.text})
        if event.signature:
            item.signature = event.signature
        return out

    def output(self) -> list[dict[str, Any]]:
        return [item.done() for item in self.items]

    def close(self) -> bytes:
        out = (b"" if self.started else self._start()) + self._close_all()
        status, incomplete = outcome(self.reason)
        self.final = self.snapshot(status=status, output=self.output(), usage=self.usage, incomplete=incomplete,
                                   completed=True)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._frame({"type": kind, "response": self.final})

    def fail(self, code: str | None, message: str, param: str | None, status: int) -> bytes:
        """The spec's ``error`` event, then ``response.failed`` (its snapshot holds what was said)."""
        out = b"" if self.started else self._start()
        out += self._frame({"type": "error", "code": code, "message": message, "param": param})
        self.final = self.snapshot(status="failed", output=self.output(), usage=self.usage,
                                   error=failure(code or "", message, status))
        return out + self._frame({"type": "response.failed", "response": self.final})
