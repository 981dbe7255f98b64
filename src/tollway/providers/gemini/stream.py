"""Streamed GenerateContentResponse chunks (``streamGenerateContent?alt=sse``) -> canonical
events. Pure: no I/O, no clock (the time comes in as an argument)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from tollway.core.chat import (
    Finish,
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
from tollway.core.names import PROVIDER_GEMINI
from tollway.core.redaction import Secret
from tollway.providers.gemini.codec import (
    GenerateContentResponse,
    IdFactory,
    UsageMetadata,
    as_response,
    blocked,
    call_args,
    error_text,
    finish_reason_of,
    first_candidate,
    new_id,
    parts_of,
    response_decoder,
    usage_of,
)
from tollway.providers.gemini.errors import upstream_fault
from tollway.providers.sse import SSEEvent

_NO_USAGE = UsageMetadata()  # ``"usageMetadata": {}`` keeps the counts seen before


class StreamDecoder:
    """Streamed GenerateContentResponse chunks -> canonical events: ``feed`` takes one chunk,
    ``feed_read`` the SSE events of one upstream read (there is no ``[DONE]``).

    ``ended`` turns true with the chunk carrying a finishReason (or a prompt block); the
    events it returns end with Finish and UsageReport (the last usageMetadata seen). To
    ``feed``, a chunk of the wrong shape raises ValueError (``msgspec.ValidationError``) before
    any state changes, and an error chunk raises UpstreamError; ``feed_read`` turns both into
    the UpstreamError the client sees, naming ``provider``, with ``secret`` redacted.
    """

    def __init__(self, *, model: str, created: int, make_id: IdFactory = new_id,
                 provider: str = PROVIDER_GEMINI, secret: Secret = None) -> None:
        self.model = model
        self.created = created
        self.make_id = make_id
        self.provider = provider
        self.secret = secret
        self.started = False
        self.ended = False
        self.calls = 0
        self.usage = Usage()

    def feed_read(self, batch: list[SSEEvent]) -> Iterator[StreamEvent]:
        for event in batch:
            yield from self._feed_data(event.data)
            if self.ended:
                return

    def _feed_data(self, data: bytes) -> list[StreamEvent]:
        try:
            return self.feed(response_decoder.decode(data))
        except UpstreamError as err:
            raise upstream_fault(self.provider, "reported an error mid-stream", err.message, self.secret) from None
        except Exception as exc:  # a chunk that cannot be read is the upstream's fault: a 502
            raise upstream_fault(self.provider, "sent a malformed stream chunk", exc, self.secret) from None

    def feed(self, chunk: Any) -> list[StreamEvent]:
        """One chunk (decoded JSON, or the ``GenerateContentResponse`` view) -> its events."""
        if not isinstance(chunk, dict | GenerateContentResponse):
            raise ValueError("a stream chunk is not a JSON object")
        data = as_response(chunk)
        if data.error is not msgspec.UNSET:
            raise UpstreamError(error_text(data.error), provider=self.provider)
        out: list[StreamEvent] = []
        if not self.started:
            self.started = True
            out.append(StreamStart(id=data.response_id or self.make_id("gen-"),
                                   model=data.model_version or self.model, created=self.created))
        if data.usage_metadata is not None and data.usage_metadata != _NO_USAGE:
            self.usage = usage_of(data.usage_metadata)
        cand = first_candidate(data)
        if cand is None:
            if blocked(data):
                out += self._finish("content_filter")
            return out
        for part in parts_of(cand):
            if part.thought_signature:
                out.append(ReasoningDelta(signature=part.thought_signature))
            call = part.function_call
            if call is not None:
                index = self.calls
                self.calls += 1
                out.append(ToolCallStart(index=index, id=call.id or self.make_id("call_"), name=call.name or ""))
                out.append(ToolCallDelta(index=index, arguments=call_args(call)))
            elif part.text:
                out.append(ReasoningDelta(text=part.text) if part.thought else TextDelta(text=part.text))
        if cand.finish_reason:
            out += self._finish(finish_reason_of(cand.finish_reason, self.calls > 0))
        return out

    def _finish(self, reason: FinishReason) -> list[StreamEvent]:
        self.ended = True
        return [Finish(reason=reason), UsageReport(usage=self.usage)]
