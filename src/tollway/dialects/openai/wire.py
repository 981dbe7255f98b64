"""Small msgspec views of the OpenAI wire format: only what routing and billing read.

Pass-through requests are never fully decoded: ``RequestView`` reads the model and stream
flags, ``Body`` keeps every top-level value as undecoded ``Raw`` bytes so the gateway can
rewrite one field and forward the rest untouched.
"""

from __future__ import annotations

import msgspec

from tollway.core.chat import Usage

Body = dict[str, msgspec.Raw]


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None


class RequestView(msgspec.Struct, kw_only=True):
    model: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    messages: msgspec.Raw = msgspec.Raw()
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int | None = None


class CompletionTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int | None = None


class UsageView(msgspec.Struct, kw_only=True):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    total_tokens: int | None = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek

    def to_usage(self) -> Usage:
        ptd, ctd = self.prompt_tokens_details, self.completion_tokens_details
        return Usage(
            input_tokens=self.prompt_tokens or 0,
            output_tokens=self.completion_tokens or 0,
            cached_tokens=(ptd.cached_tokens if ptd else None) or self.prompt_cache_hit_tokens or 0,
            reasoning_tokens=(ctd.reasoning_tokens if ctd else None) or 0,
        )


class ChoiceView(msgspec.Struct, kw_only=True):
    finish_reason: str | None = None


class ResponseView(msgspec.Struct, kw_only=True):
    """A completion or a stream chunk: what billing and the request log read."""

    usage: UsageView | None = None
    choices: list[ChoiceView] | None = None


class ErrorDetail(msgspec.Struct, kw_only=True):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class ErrorView(msgspec.Struct, kw_only=True):
    error: ErrorDetail | str | None = None
    message: str | None = None
    detail: str | None = None


body_decoder = msgspec.json.Decoder(Body)
request_view_decoder = msgspec.json.Decoder(RequestView)
response_view_decoder = msgspec.json.Decoder(ResponseView)
error_view_decoder = msgspec.json.Decoder(ErrorView)
encoder = msgspec.json.Encoder()
