"""An OpenAI-compatible upstream's chat.completion.chunk stream -> canonical events. Pure: no I/O.

The upstream sends ``data: {chunk}`` SSE events and ends the stream with ``data: [DONE]``.
``Chunk`` is the view of a chunk the decoder reads (id, model, created, choices[].delta with
content, reasoning_content and tool_calls[], finish_reason, usage, error); the rest is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import msgspec

from tollway.core.chat import (
    Finish,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from tollway.core.errors import UpstreamError
from tollway.core.redaction import redact
from tollway.dialects.openai.codec import decode_usage, finish_reason_in
from tollway.providers.sse import SSEEvent

DONE: Final = b"[DONE]"  # the data of the stream's last SSE event


# OpenAI-compatible servers vary: the view takes the shapes seen in the wild (a numeric id, a
# string ``created``, arguments as an object, Mistral's content as a list of parts) and the
# decoder normalizes them, as the dict-based decoder before it did.


class FunctionDelta(msgspec.Struct, kw_only=True):
    name: str | None = None
    arguments: str | dict[str, Any] | list[Any] | None = None


class ToolCallDeltaView(msgspec.Struct, kw_only=True):
    index: int | None = None
    id: str | int | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct, kw_only=True):
    content: str | list[Any] | None = None
    reasoning_content: str | None = None  # DeepSeek, vLLM ...
    tool_calls: list[ToolCallDeltaView] | None = None


class Choice(msgspec.Struct, kw_only=True):
    delta: Delta | None = None
    finish_reason: str | None = None


class Chunk(msgspec.Struct, kw_only=True):
    id: str | int | None = None
    model: str | None = None
    created: int | float | str | None = None
    choices: list[Choice] | None = None
    usage: dict[str, Any] | None = None  # read by the OpenAI codec's ``decode_usage``
    error: dict[str, Any] | str | None = None  # an error frame mid-stream (an empty one is none)


_encoder = msgspec.json.Encoder()


def _text_of(content: str | list[Any]) -> str:
    """A delta's content: a string, or (Mistral and others) a list of text parts."""
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))


def _created(value: int | float | str | None) -> int:
    try:
        return int(float(value)) if value is not None else 0
    except ValueError:
        return 0


chunk_decoder = msgspec.json.Decoder(Chunk)
_NO_FUNCTION = FunctionDelta()


class StreamDecoder:
    """An upstream's chunks -> canonical events. ``feed`` takes one chunk (the JSON of one SSE
    event), ``feed_read`` the SSE events of one upstream read; ``ended`` once ``[DONE]`` came.
    A chunk that cannot be read, or an error frame, raises UpstreamError (``secret`` redacted)."""

    def __init__(self, *, provider: str = "upstream", secret: str | None = None) -> None:
        self.provider = provider
        self.secret = secret
        self.ended = False
        self._started = False
        self._tool_ids: dict[int, str] = {}

    def feed_read(self, batch: list[SSEEvent]) -> Iterator[StreamEvent]:
        for event in batch:
            if event.data == DONE:
                self.ended = True
                return
            yield from self.feed(event.data)

    def feed(self, data: bytes) -> list[StreamEvent]:
        chunk = self._decode(data)
        if chunk.error:
            raise self._error(chunk.error)
        events: list[StreamEvent] = [] if self._started else [self._start(chunk)]
        for choice in chunk.choices or ():
            self._choice(choice, events)
        if chunk.usage:
            events.append(UsageReport(usage=decode_usage(chunk.usage)))
        return events

    def _decode(self, data: bytes) -> Chunk:
        try:
            return chunk_decoder.decode(data)
        except msgspec.DecodeError:  # also a chunk of the wrong shape (ValidationError)
            raise UpstreamError(f"{self.provider} upstream sent a malformed stream chunk",
                                provider=self.provider) from None

    def _start(self, chunk: Chunk) -> StreamStart:
        self._started = True
        return StreamStart(id=str(chunk.id or ""), model=chunk.model or "", created=_created(chunk.created))

    def _choice(self, choice: Choice, out: list[StreamEvent]) -> None:
        delta = choice.delta
        if delta is not None:
            if delta.reasoning_content:
                out.append(ReasoningDelta(text=delta.reasoning_content))
            text = _text_of(delta.content) if delta.content else ""
            if text:
                out.append(TextDelta(text=text))
            for call in delta.tool_calls or ():
                self._tool_call(call, out)
        if choice.finish_reason:
            out.append(Finish(reason=finish_reason_in(choice.finish_reason)))

    def _tool_call(self, call: ToolCallDeltaView, out: list[StreamEvent]) -> None:
        index = call.index or 0
        fn = call.function or _NO_FUNCTION
        if index not in self._tool_ids:
            self._tool_ids[index] = str(call.id or f"call_{index}")
            out.append(ToolCallStart(index=index, id=self._tool_ids[index], name=fn.name or ""))
        if fn.arguments:
            args = fn.arguments if isinstance(fn.arguments, str) else _encoder.encode(fn.arguments).decode()
            out.append(ToolCallDelta(index=index, arguments=args))

    def _error(self, error: dict[str, Any] | str) -> UpstreamError:
        message = error if isinstance(error, str) else error.get("message")
        message = message if isinstance(message, str) else None
        message = redact(message or "upstream reported an error in the stream", self.secret)
        return UpstreamError(f"{self.provider} upstream reported an error mid-stream: {message}",
                             provider=self.provider)
