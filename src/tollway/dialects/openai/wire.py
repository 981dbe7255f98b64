"""Small msgspec views of the OpenAI wire format: only what routing and billing read, and the
typed parts a translated request is read from.

Pass-through requests are never fully decoded: ``RequestView`` reads the model and stream
flags, ``Body`` keeps every top-level value as undecoded ``Raw`` bytes so the gateway can
rewrite one field and forward the rest untouched.

A translated request's parts are converted (``codec``) to the ``*Param`` views below, so a value
of the wrong type is a 400 naming its path at decode, never a canonical block holding something
an upstream's encoder chokes on. Unknown fields are skipped, as OpenAI's API ignores them.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from tollway.core.chat import MAX_TOKENS, Usage

Body = dict[str, msgspec.Raw]
Byte = Annotated[int, msgspec.Meta(ge=0, le=255)]


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None


class RequestView(msgspec.Struct, kw_only=True):
    model: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    messages: msgspec.Raw = msgspec.Raw()
    n: int | None = None
    max_tokens: Annotated[int, msgspec.Meta(le=MAX_TOKENS)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(le=MAX_TOKENS)] | None = None


# --- the parts of a translated request ------------------------------------------------------


class TextParam(msgspec.Struct, kw_only=True):
    text: str | None = None


class ImageUrl(msgspec.Struct, kw_only=True):
    url: str
    detail: str | None = None


class ImageParam(msgspec.Struct, kw_only=True):
    image_url: ImageUrl | str


class FileData(msgspec.Struct, kw_only=True):
    file_data: str | None = None
    filename: str | None = None


class FileParam(msgspec.Struct, kw_only=True):
    file: FileData | None = None


class DocSource(msgspec.Struct, kw_only=True):
    """Seed 004: ``bytes`` is an index -> byte-value map, a list of byte values, or base64 text."""

    bytes: dict[str, Byte] | list[Byte] | str | None = None


class Doc(msgspec.Struct, kw_only=True):
    name: str | None = None
    format: str | None = None
    source: DocSource | None = None


class DocParam(msgspec.Struct, kw_only=True):
    doc: Doc | None = None


class FunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str | None = None  # the JSON text of the arguments


class ToolCallParam(msgspec.Struct, kw_only=True):
    id: str | None = None
    function: FunctionCall


class FunctionParam(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(msgspec.Struct, kw_only=True):
    name: str | None = None


class ResponseFormat(msgspec.Struct, kw_only=True):
    type: str | None = None
    json_schema: dict[str, Any] | None = None


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
