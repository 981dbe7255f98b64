"""Canonical stream events -> OpenAI's ``text_completion`` chunk stream.

Each text delta is a chunk whose ``choices[0].text`` is the delta; the finish is a chunk with an
empty text and its ``finish_reason``; a final usage chunk (``choices: []``) when the client asked
for it (``stream_options.include_usage``); then ``data: [DONE]``. Reasoning and tool calls have no
place in a text completion (no tools are ever sent for one). A small state object fed one event at
a time; pure.
"""

from __future__ import annotations

from typing import Any

from tollway.core.chat import Finish, StreamEvent, StreamStart, TextDelta, Usage, UsageReport
from tollway.dialects.completions.codec import finish_reason
from tollway.dialects.openai.codec import encode_usage
from tollway.dialects.openai.stream import DONE, sse_data


class CompletionStreamEncoder:
    """Canonical events -> ``text_completion`` SSE frames for one answer."""

    def __init__(self, *, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = ""
        self.created = 0
        self._usage: Usage | None = None

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return sse_data({"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                         "choices": choices, **extra})

    def feed(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self.id, self.created = event.id, event.created
            return b""
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            return self._chunk([{"text": event.text, "index": 0, "logprobs": None, "finish_reason": None}])
        if isinstance(event, Finish):
            return self._chunk([{"text": "", "index": 0, "logprobs": None,
                                 "finish_reason": finish_reason(event.reason)}])
        if isinstance(event, UsageReport):
            self._usage = event.usage
        return b""

    def close(self) -> bytes:
        """The tail of a finished stream: the usage chunk (when asked) and ``[DONE]``."""
        tail = self._chunk([], usage=encode_usage(self._usage or Usage())) if self.include_usage else b""
        return tail + DONE
