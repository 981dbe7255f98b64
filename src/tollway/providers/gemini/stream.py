"""Streamed GenerateContentResponse chunks (``streamGenerateContent?alt=sse``) -> canonical
events. Pure: no I/O, no clock (the time comes in as an argument)."""

from __future__ import annotations

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
    usage_of,
)

_NO_USAGE = UsageMetadata()  # ``"usageMetadata": {}`` keeps the counts seen before


class StreamDecoder:
    """Streamed GenerateContentResponse chunks -> canonical events, one chunk at a time.

    ``finished`` turns true with the chunk carrying a finishReason (or a prompt block); the
    events it returns end with Finish and UsageReport (the last usageMetadata seen). A chunk
    of the wrong shape raises ValueError (``msgspec.ValidationError``) before any state
    changes; an error chunk raises UpstreamError.
    """

    def __init__(self, *, model: str, created: int, make_id: IdFactory = new_id) -> None:
        self.model = model
        self.created = created
        self.make_id = make_id
        self.started = False
        self.finished = False
        self.calls = 0
        self.usage = Usage()

    def feed(self, chunk: Any) -> list[StreamEvent]:
        """One chunk (decoded JSON, or the ``GenerateContentResponse`` view) -> its events."""
        if not isinstance(chunk, dict | GenerateContentResponse):
            raise ValueError("a stream chunk is not a JSON object")
        data = as_response(chunk)
        if data.error is not msgspec.UNSET:
            raise UpstreamError(error_text(data.error), provider=PROVIDER_GEMINI)
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
        self.finished = True
        return [Finish(reason=reason), UsageReport(usage=self.usage)]
