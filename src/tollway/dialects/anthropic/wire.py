"""Small msgspec views of the Anthropic wire: only what routing and billing read.

A pass-through request is never fully decoded: ``Body`` keeps every top-level value as
undecoded ``Raw`` bytes so the gateway rewrites ``model`` and forwards the rest untouched.
"""

from __future__ import annotations

import msgspec

from tollway.core.chat import Usage

Body = dict[str, msgspec.Raw]


class OutputDetailsView(msgspec.Struct, kw_only=True):
    thinking_tokens: int | None = None


class UsageView(msgspec.Struct, kw_only=True):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    output_tokens_details: OutputDetailsView | None = None

    def merge(self, later: UsageView) -> UsageView:
        """A stream's message_delta usage (cumulative) over its message_start usage."""
        return UsageView(
            input_tokens=later.input_tokens if later.input_tokens is not None else self.input_tokens,
            output_tokens=later.output_tokens if later.output_tokens is not None else self.output_tokens,
            cache_read_input_tokens=later.cache_read_input_tokens if later.cache_read_input_tokens is not None
            else self.cache_read_input_tokens,
            cache_creation_input_tokens=later.cache_creation_input_tokens
            if later.cache_creation_input_tokens is not None else self.cache_creation_input_tokens,
            output_tokens_details=later.output_tokens_details or self.output_tokens_details,
        )

    def to_usage(self) -> Usage:
        cached = self.cache_read_input_tokens or 0
        written = self.cache_creation_input_tokens or 0
        details = self.output_tokens_details
        return Usage(input_tokens=(self.input_tokens or 0) + cached + written, output_tokens=self.output_tokens or 0,
                     cached_tokens=cached, cache_write_tokens=written,
                     reasoning_tokens=(details.thinking_tokens if details else None) or 0)


class MessageView(msgspec.Struct, kw_only=True):
    type: str | None = None
    usage: UsageView | None = None


class ErrorDetail(msgspec.Struct, kw_only=True):
    type: str | None = None
    message: str | None = None


class EventView(msgspec.Struct, kw_only=True):
    """A stream event, or a whole message, or an error body: the fields billing reads."""

    type: str | None = None
    message: MessageView | None = None
    usage: UsageView | None = None
    error: ErrorDetail | None = None


body_decoder = msgspec.json.Decoder(Body)
event_view_decoder = msgspec.json.Decoder(EventView)
encoder = msgspec.json.Encoder()
