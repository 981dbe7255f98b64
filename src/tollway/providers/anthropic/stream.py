"""An Anthropic upstream's message stream -> canonical events. Pure: no I/O, no clock (the time
comes in as an argument).

Each event's data is decoded once, into ``wire.StreamEventView``, and handed to the method its
``type`` maps to (``_ON``); a content_block_start goes on to the method of its block's type
(``_ON_BLOCK``), a content_block_delta to that of its delta's type (``_ON_DELTA``). Types added
later are skipped, as is data that is JSON but no object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import ClassVar

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
from tollway.core.redaction import Secret, redact
from tollway.dialects.anthropic.decode import decode_usage, finish_reason_of
from tollway.dialects.anthropic.errors import ERROR_STATUS
from tollway.dialects.anthropic.wire import (
    ContentBlockView,
    DeltaView,
    ErrorDetail,
    MessageBody,
    StreamEventView,
    UsageView,
    stream_event_decoder,
)
from tollway.providers.sse import SSEEvent

_decoder = msgspec.json.Decoder()
# what an event without the part its type carries is read as
_NO_MESSAGE = MessageBody()
_NO_BLOCK = ContentBlockView()
_NO_DELTA = DeltaView()
_NO_ERROR = ErrorDetail()

Events = list[StreamEvent]


class StreamDecoder:
    """An Anthropic upstream's events -> canonical events. ``feed`` takes one event's data,
    ``feed_read`` the SSE events of one upstream read, up to message_stop, which sets ``ended``.
    What the upstream got wrong (an event that cannot be read, an error event) raises
    UpstreamError naming ``provider``, with ``secret`` redacted; ``created`` goes in StreamStart."""

    def __init__(self, provider: str, *, created: int = 0, secret: Secret = None) -> None:
        self.provider = provider
        self.created = created
        self.secret = secret
        self.ended = False
        self._tools: dict[int, int] = {}  # block index -> canonical tool index
        self._usage = UsageView()  # cumulative: message_start's, then each message_delta's over it

    def feed_read(self, batch: list[SSEEvent]) -> Iterator[StreamEvent]:
        for event in batch:
            yield from self.feed(event.data)
            if self.ended:
                return

    def feed(self, data: bytes) -> Events:
        event = self._read(data)
        if event is None:
            return []
        on = self._ON.get(event.type)
        return on(self, event) if on is not None else []

    def _read(self, data: bytes) -> StreamEventView | None:
        """The event, or None for JSON that is no object."""
        try:
            return stream_event_decoder.decode(data)
        except msgspec.DecodeError:  # ValidationError too: an event of the wrong shape
            pass
        try:
            loose = _decoder.decode(data)
        except msgspec.DecodeError:
            raise UpstreamError(f"{self.provider} upstream sent a malformed stream event",
                                provider=self.provider) from None
        if not isinstance(loose, dict) or loose.get("type") not in self._ON:
            return None  # no object, or a type added later (whatever its fields hold): skipped
        raise UpstreamError(f"{self.provider} upstream sent a malformed {loose.get('type')!r} event",
                            provider=self.provider)

    # --- events ---------------------------------------------------------------------------------

    def _message_start(self, event: StreamEventView) -> Events:
        message = event.message or _NO_MESSAGE
        self._usage = message.usage or UsageView()
        return [StreamStart(id=message.id or "", model=message.model or "", created=self.created)]

    def _content_block_start(self, event: StreamEventView) -> Events:
        block = event.content_block or _NO_BLOCK
        on = self._ON_BLOCK.get(block.type)
        return on(self, event.index, block) if on is not None else []

    def _content_block_delta(self, event: StreamEventView) -> Events:
        delta = event.delta or _NO_DELTA
        on = self._ON_DELTA.get(delta.type)
        return on(self, event.index, delta) if on is not None else []

    def _message_delta(self, event: StreamEventView) -> Events:
        if event.usage is not None:
            self._usage = self._usage.merge(event.usage)
        delta = event.delta or _NO_DELTA
        finish: Events = []
        if delta.stop_reason:
            finish.append(Finish(reason=finish_reason_of(delta.stop_reason), stop_sequence=delta.stop_sequence))
        return [*finish, UsageReport(usage=decode_usage(self._usage))]

    def _message_stop(self, event: StreamEventView) -> Events:
        self.ended = True
        return []

    def _nothing(self, event: StreamEventView) -> Events:
        return []

    def _error(self, event: StreamEventView) -> Events:
        err = event.error or _NO_ERROR
        etype = err.type or "api_error"
        message = redact(err.message or etype, self.secret)
        raise UpstreamError(f"{self.provider} upstream reported an error mid-stream: {message}",
                            provider=self.provider, upstream_status=ERROR_STATUS.get(etype, 500))

    _ON: ClassVar[Mapping[str, Callable[[StreamDecoder, StreamEventView], Events]]] = {
        "message_start": _message_start, "content_block_start": _content_block_start,
        "content_block_delta": _content_block_delta, "content_block_stop": _nothing,
        "message_delta": _message_delta, "message_stop": _message_stop, "ping": _nothing, "error": _error,
    }

    # --- a block's start, by the block's type -----------------------------------------------------

    def _text_start(self, index: int | None, block: ContentBlockView) -> Events:
        return [TextDelta(text=block.text)] if block.text else []

    def _thinking_start(self, index: int | None, block: ContentBlockView) -> Events:
        return [ReasoningDelta(text=block.thinking)] if block.thinking else []

    def _redacted_thinking_start(self, index: int | None, block: ContentBlockView) -> Events:
        return [ReasoningDelta(redacted_data=block.data or "")]

    def _tool_use_start(self, index: int | None, block: ContentBlockView) -> Events:
        tool = len(self._tools)
        self._tools[tool if index is None else index] = tool
        return [ToolCallStart(index=tool, id=block.id or "", name=block.name or "")]

    _ON_BLOCK: ClassVar[Mapping[str, Callable[[StreamDecoder, int | None, ContentBlockView], Events]]] = {
        "text": _text_start, "thinking": _thinking_start, "redacted_thinking": _redacted_thinking_start,
        "tool_use": _tool_use_start,
    }

    # --- a block's delta, by the delta's type -----------------------------------------------------

    def _text_delta(self, index: int | None, delta: DeltaView) -> Events:
        return [TextDelta(text=delta.text or "")]

    def _thinking_delta(self, index: int | None, delta: DeltaView) -> Events:
        return [ReasoningDelta(text=delta.thinking or "")]

    def _signature_delta(self, index: int | None, delta: DeltaView) -> Events:
        return [ReasoningDelta(signature=delta.signature or "")]

    def _input_json_delta(self, index: int | None, delta: DeltaView) -> Events:
        tool = self._tools.get(-1 if index is None else index)
        if tool is None or not delta.partial_json:
            return []
        return [ToolCallDelta(index=tool, arguments=delta.partial_json)]

    _ON_DELTA: ClassVar[Mapping[str, Callable[[StreamDecoder, int | None, DeltaView], Events]]] = {
        "text_delta": _text_delta, "thinking_delta": _thinking_delta, "signature_delta": _signature_delta,
        "input_json_delta": _input_json_delta,
    }
