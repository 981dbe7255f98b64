"""msgspec views of the Anthropic Messages wire: each holds only the fields tollway reads.

- A pass-through request is never fully decoded: ``Body`` keeps every top-level value as
  undecoded ``Raw`` bytes so the gateway rewrites ``model`` and forwards the rest untouched;
  ``EventView`` is what billing reads of a forwarded message or stream event.
- ``RequestHead`` is what every ``/v1/messages`` body is checked for, and the ``*Param``
  structs the content a translated request is read from (``decode``). Fields whose value the
  codec takes as it comes (``Any``) are not checked. ``parse`` converts a client's value to
  a view; when it does not fit, the view's ``rules`` say why, in the words the client gets back.
- ``MessageBody``, ``ContentBlockView`` and ``StreamEventView`` are an Anthropic upstream's
  answers, read by ``decode`` and the provider's stream decoder. They are loose on purpose:
  block, delta and event types added later decode too (and are skipped).

``UsageView.to_usage`` is the one mapping of Anthropic's usage onto the canonical ``Usage``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, NamedTuple, TypeVar, get_args

import msgspec

from tollway.core.chat import MAX_TOKENS, MAX_USER_CHARS, Usage
from tollway.core.errors import InvalidRequest

Body = dict[str, msgspec.Raw]

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
TokenCount = Annotated[int, msgspec.Meta(le=MAX_TOKENS)]
HttpUrl = Annotated[str, msgspec.Meta(pattern="^https?://")]
Number = int | float  # an int stays an int, as the caller sent it
ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
IMAGE_TYPES = frozenset(get_args(ImageMediaType))


# --- usage, and what billing reads ----------------------------------------------------------


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
        """Anthropic counts ``input_tokens`` apart from cache reads and writes; the canonical
        ``input_tokens`` includes both (OpenAI's sense)."""
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


class ErrorBody(msgspec.Struct, kw_only=True):
    """An error response: ``{"type": "error", "error": {"type", "message"}}``."""

    error: ErrorDetail | None = None


class EventView(msgspec.Struct, kw_only=True):
    """A stream event, or a whole message, or an error body: the fields billing reads."""

    type: str | None = None
    message: MessageView | None = None
    usage: UsageView | None = None
    error: ErrorDetail | None = None


# --- a request, as a client sends it ----------------------------------------------------------


class Rule(NamedTuple):
    """One field a view checks, in the words a client gets. ``message`` is a template:
    ``{where}`` is the path of the value checked, ``{value!r}`` the field's value."""

    field: str  # "": the value itself, which must be an object
    message: str
    kind: Any = None  # the type the field must fit; None: its type in the view


class View(msgspec.Struct, frozen=True, kw_only=True):
    """A typed view of part of a request, and its ``rules``, checked in order: the first that a
    value breaks says what is wrong with it (the first rule, for a value that is no object)."""

    rules: ClassVar[tuple[Rule, ...]] = ()


V = TypeVar("V", bound=View)


def parse(value: Any, view: type[V], where: str = "") -> V:
    """``value`` converted to ``view``, or InvalidRequest with the first rule it breaks."""
    try:
        return msgspec.convert(value, view)
    except msgspec.ValidationError:
        raise InvalidRequest(complaint(value, view, where)) from None


def complaint(value: Any, view: type[View], where: str = "") -> str:
    """What is wrong with ``value`` as a ``view`` at ``where``: the first rule it breaks."""
    rule = broken_rule(value, view) or view.rules[0]
    return rule.message.format(where=where, value=value.get(rule.field) if isinstance(value, dict) else value)


def broken_rule(value: Any, view: type[View]) -> Rule | None:
    """The first rule ``value`` breaks (a missing field counts as null), or None."""
    if not isinstance(value, dict):
        return view.rules[0]
    types = {f.name: f.type for f in msgspec.structs.fields(view)}
    return next((r for r in view.rules if r.field and not _fits(value.get(r.field), r.kind or types[r.field])), None)


def _fits(value: Any, kind: Any) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


class Metadata(msgspec.Struct, frozen=True, kw_only=True):
    user_id: Annotated[str, msgspec.Meta(max_length=MAX_USER_CHARS)] | None = None


class ThinkingKind(msgspec.Struct, frozen=True, kw_only=True):
    type: Literal["enabled", "disabled", "adaptive"]


class _Thinking(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class ThinkingEnabled(_Thinking, frozen=True, kw_only=True, tag="enabled"):
    budget_tokens: Annotated[int, msgspec.Meta(ge=1024, le=MAX_TOKENS)]


class ThinkingDisabled(_Thinking, frozen=True, kw_only=True, tag="disabled"):
    pass


class ThinkingAdaptive(_Thinking, frozen=True, kw_only=True, tag="adaptive"):
    pass


Thinking = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive


class InputMessage(View, frozen=True, kw_only=True):
    role: Literal["user", "assistant", "system"]
    content: str | list[Any]  # the blocks stay plain objects: each is read by its type

    rules = (Rule("role", "{where}.role: Input should be 'user', 'assistant' or 'system'"),
             Rule("content", "{where}.content: Field required"))


class RequestHead(View, frozen=True, kw_only=True):
    """What every /v1/messages body must get right, pass-through or not (its messages' blocks
    are checked only when a request is translated)."""

    model: NonEmptyStr
    messages: Annotated[list[InputMessage], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    top_k: TokenCount | None = None
    metadata: Metadata | None = None
    thinking: Thinking | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKENS)] | None = None

    rules = (  # the messages themselves come after these
        Rule("", "Request body must be a JSON object."),
        Rule("stream", "stream: must be a boolean"),
        Rule("temperature", "temperature: must be a number"),
        Rule("top_p", "top_p: must be a number"),
        Rule("top_k", f"top_k: must be an integer <= {MAX_TOKENS}"),
        Rule("metadata", f"metadata: must be an object whose user_id is a string of at most {MAX_USER_CHARS} "
             "characters"),
        Rule("thinking", "thinking.type: must be 'enabled', 'disabled' or 'adaptive'", ThinkingKind | None),
        Rule("thinking", f"thinking.budget_tokens: must be an integer from 1024 to {MAX_TOKENS}"),
        Rule("model", "model: Field required"),
        Rule("messages", "messages: Field required (a non-empty array)",
             Annotated[list[Any], msgspec.Meta(min_length=1)]),
        Rule("max_tokens", f"max_tokens: must be an integer from 1 to {MAX_TOKENS}"),
    )


class SystemTextParam(View, frozen=True, kw_only=True):
    type: Literal["text"]
    text: str

    rules = (Rule("", "system: only text blocks are allowed"),)


class TextParam(View, frozen=True, kw_only=True):
    text: str

    rules = (Rule("text", "{where}.text: Field required"),)


class Base64ImageSource(View, frozen=True, kw_only=True):
    media_type: ImageMediaType
    data: NonEmptyStr

    rules = (Rule("media_type", f"{{where}}.source.media_type: must be one of {sorted(IMAGE_TYPES)}"),
             Rule("data", "{where}.source.data: Field required"))


class UrlSource(View, frozen=True, kw_only=True):
    url: HttpUrl

    rules = (Rule("url", "{where}.source.url: must be an http(s) URL"),)


class DocumentParam(View, frozen=True, kw_only=True):
    source: dict[str, Any]
    title: str | None = None

    rules = (Rule("source", "{where}.source: Field required"), Rule("title", "{where}.title: must be a string"))


class DataSource(View, frozen=True, kw_only=True):
    """A document's base64 or text source."""

    data: str
    media_type: Any = None

    rules = (Rule("data", "{where}.source.data: Field required"),)


class ToolUseParam(View, frozen=True, kw_only=True):
    id: str
    name: str
    input: dict[str, Any]

    rules = (Rule("id", "{where}: id and name are required"), Rule("name", "{where}: id and name are required"),
             Rule("input", "{where}.input: must be an object"))


class ThinkingParam(View, frozen=True, kw_only=True):
    thinking: str | None = None
    signature: str | None = None

    rules = (Rule("thinking", "{where}.thinking: must be a string"),
             Rule("signature", "{where}.signature: must be a string"))


class RedactedThinkingParam(View, frozen=True, kw_only=True):
    data: str

    rules = (Rule("data", "{where}.data: Field required"),)


class ToolResultParam(View, frozen=True, kw_only=True):
    tool_use_id: str
    content: Any = None
    is_error: Any = None

    rules = (Rule("tool_use_id", "{where}.tool_use_id: Field required"),)


class ToolParam(View, frozen=True, kw_only=True):
    name: str
    type: Literal["custom"] | None = None  # any other is a server tool
    input_schema: dict[str, Any]
    description: str | None = None

    rules = (
        Rule("name", "{where}.name: Field required"),
        Rule("type", "{where}: server tool {value!r} runs only on Anthropic's own upstream"),
        Rule("input_schema", "{where}.input_schema: Field required"),
        Rule("description", "{where}.description: must be a string"),
    )


class NamedToolChoice(View, frozen=True, kw_only=True):
    name: str

    rules = (Rule("name", "tool_choice.name: Field required"),)


# --- an upstream's answer --------------------------------------------------------------------


class ContentBlockView(msgspec.Struct, frozen=True, kw_only=True):
    """A content block of every type: the fields of those tollway reads."""

    type: str = ""
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class MessageBody(msgspec.Struct, frozen=True, kw_only=True):
    id: str | None = None
    model: str | None = None
    content: list[ContentBlockView] | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: UsageView | None = None


class DeltaView(msgspec.Struct, frozen=True, kw_only=True):
    """A content_block_delta's delta (by its ``type``), or a message_delta's."""

    type: str = ""
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class StreamEventView(msgspec.Struct, frozen=True, kw_only=True):
    """A stream event of every type: the fields of those tollway reads."""

    type: str = ""
    index: int | None = None
    message: MessageBody | None = None
    content_block: ContentBlockView | None = None
    delta: DeltaView | None = None
    usage: UsageView | None = None
    error: ErrorDetail | None = None


body_decoder = msgspec.json.Decoder(Body)
event_view_decoder = msgspec.json.Decoder(EventView)
error_body_decoder = msgspec.json.Decoder(ErrorBody)
message_decoder = msgspec.json.Decoder(MessageBody)
stream_event_decoder = msgspec.json.Decoder(StreamEventView)
encoder = msgspec.json.Encoder()
