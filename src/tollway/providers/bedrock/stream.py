"""ConverseStream -> canonical events: AWS event-stream frames (botocore's ``EventStreamBuffer``)
and the JSON events they carry. Pure: no I/O."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
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
from tollway.providers.bedrock.codec import ConverseToolUse, ConverseUsage, finish_of, parse_bedrock_error

# --- ConverseStream events -> canonical --------------------------------------------------


class _BlockStart(msgspec.Struct):
    toolUse: ConverseToolUse | None = None


class _StartEvent(msgspec.Struct):
    contentBlockIndex: int
    start: _BlockStart


class _ToolInput(msgspec.Struct):
    input: str = ""


class _ReasoningPiece(msgspec.Struct):
    text: str | None = None
    signature: str | None = None
    redactedContent: str | None = None


class _Delta(msgspec.Struct):
    text: str | None = None
    toolUse: _ToolInput | None = None
    reasoningContent: _ReasoningPiece | None = None


class _DeltaEvent(msgspec.Struct):
    contentBlockIndex: int
    delta: _Delta


class _StopEvent(msgspec.Struct):
    stopReason: str
    additionalModelResponseFields: dict[str, Any] | None = None


class _MetadataEvent(msgspec.Struct):
    usage: ConverseUsage = msgspec.field(default_factory=ConverseUsage)


_start_decoder = msgspec.json.Decoder(_StartEvent)
_delta_decoder = msgspec.json.Decoder(_DeltaEvent)
_stop_decoder = msgspec.json.Decoder(_StopEvent)
_metadata_decoder = msgspec.json.Decoder(_MetadataEvent)

# ConverseStream's exception events and the HTTP status each stands for (the service model's)
STREAM_EXCEPTIONS: Final = {
    "throttlingException": 429, "validationException": 400, "modelStreamErrorException": 424,
    "internalServerException": 500, "serviceUnavailableException": 503, "modelTimeoutException": 408,
    "accessDeniedException": 403, "resourceNotFoundException": 404,
}


class StreamDecoder:
    """ConverseStream messages (headers, payload) -> canonical events: ``feed`` takes one message,
    ``feed_read`` the bytes of one upstream read (the event-stream frames it completes).
    ``ended`` once both messageStop and metadata were seen; exceptions raise ``UpstreamError``."""

    def __init__(self, *, provider: str, response_id: str, model: str, created: int,
                 secrets: tuple[str | None, ...] = ()) -> None:
        self.provider = provider
        self._start = StreamStart(id=response_id, model=model, created=created)
        self._secrets = secrets
        self._started = False
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        from botocore.eventstream import EventStreamBuffer  # type: ignore[import-untyped]  # on first use

        self._frames = EventStreamBuffer()
        self.stopped = False
        self.metadata = False

    @property
    def ended(self) -> bool:
        return self.stopped and self.metadata

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = redact(text, s)
        return text

    def feed_read(self, chunk: bytes) -> Iterator[StreamEvent]:
        for message in read_frames(self._frames, chunk, provider=self.provider):
            yield from self.feed(message.headers, message.payload)

    def feed(self, headers: Mapping[str, Any], payload: bytes) -> list[StreamEvent]:
        kind = headers.get(":message-type")
        if kind == "exception":
            name = str(headers.get(":exception-type") or "exception")
            message = parse_bedrock_error(payload) or "no message"
            raise UpstreamError(f"{self.provider} upstream reported {name} mid-stream: {self._scrub(message)}"[:600],
                                provider=self.provider, upstream_status=STREAM_EXCEPTIONS.get(name, 500))
        if kind == "error":
            code, message = headers.get(":error-code") or "error", headers.get(":error-message") or ""
            raise UpstreamError(f"{self.provider} upstream reported {code} mid-stream: {self._scrub(str(message))}"
                                [:600], provider=self.provider, upstream_status=500)
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(self._start)
        try:
            events.extend(self._event(str(headers.get(":event-type")), payload))
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UpstreamError(f"{self.provider} upstream sent a malformed stream event",
                                provider=self.provider) from None
        return events

    def _event(self, kind: str, payload: bytes) -> list[StreamEvent]:
        if kind == "contentBlockStart":
            start = _start_decoder.decode(payload)
            if start.start.toolUse is None:
                return []
            index = self._tools[start.contentBlockIndex] = len(self._tools)
            return [ToolCallStart(index=index, id=start.start.toolUse.toolUseId, name=start.start.toolUse.name)]
        if kind == "contentBlockDelta":
            event = _delta_decoder.decode(payload)
            d = event.delta
            if d.text is not None:
                return [TextDelta(text=d.text)] if d.text else []
            if d.toolUse is not None:
                call = self._tools.get(event.contentBlockIndex)
                if call is None:
                    raise UpstreamError(f"{self.provider} upstream sent tool input for a block it never started",
                                        provider=self.provider)
                return [ToolCallDelta(index=call, arguments=d.toolUse.input)] if d.toolUse.input else []
            if d.reasoningContent is not None:
                r = d.reasoningContent
                return [ReasoningDelta(text=r.text or "", signature=r.signature, redacted_data=r.redactedContent)]
            return []
        if kind == "messageStop":
            stop = _stop_decoder.decode(payload)
            self.stopped = True
            reason, sequence = finish_of(stop.stopReason, stop.additionalModelResponseFields)
            return [Finish(reason=reason, stop_sequence=sequence)]
        if kind == "metadata":
            self.metadata = True
            return [UsageReport(usage=_metadata_decoder.decode(payload).usage.canonical())]
        return []  # messageStart, contentBlockStop, and events added later


def read_frames(frames: Any, chunk: bytes, *, provider: str) -> list[Any]:
    """Add one upstream read to ``frames`` (botocore's ``EventStreamBuffer``) and take the whole
    event-stream messages it completes."""
    from botocore.eventstream import ParserError

    frames.add_data(chunk)
    try:
        return list(frames)
    except (ParserError, ValueError, KeyError, IndexError, struct.error):
        raise UpstreamError(f"{provider} upstream sent a malformed event stream frame",
                            provider=provider) from None
