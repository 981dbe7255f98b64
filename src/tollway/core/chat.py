"""Canonical chat request, response and stream events.

These are tollway's own types, the superset the dialects need; they copy no vendor's JSON.
A dialect decodes its wire format into them and encodes them back; a provider adapter maps
them to and from one upstream's wire format.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]

# bounds a dialect's decoder holds a request to (a 400 naming the field past them), so that no
# encoder, counter or upstream gets a number or an id past what any model takes:
MAX_TOKENS: Final = 2**31 - 1  # an output cap, a reasoning budget, top_k
MAX_USER_CHARS: Final = 512  # an end-user id (Anthropic's documented maximum for metadata.user_id)


class _Block(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class TextBlock(_Block, frozen=True, kw_only=True, tag="text"):
    text: str


class ImageBlock(_Block, frozen=True, kw_only=True, tag="image"):
    """An image: ``url`` is an http(s) URL or a ``data:`` URL; ``detail`` is a hint."""

    url: str
    detail: str | None = None


class DocumentBlock(_Block, frozen=True, kw_only=True, tag="document"):
    """A document: base64 ``data`` with its media type (application/pdf, text/plain ...), or
    an http(s) ``url`` that an adapter whose upstream needs bytes fetches (SSRF-guarded)."""

    data: str = ""
    media_type: str = "application/pdf"
    name: str | None = None
    url: str | None = None


class ReasoningBlock(_Block, frozen=True, kw_only=True, tag="reasoning"):
    """Model reasoning. ``signature`` is the upstream's opaque proof (Anthropic's thinking
    signature, Gemini's thoughtSignature), returned to it unchanged on the next turn;
    ``redacted_data`` is an encrypted block (Anthropic's redacted_thinking) with no text."""

    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None


class ToolCallBlock(_Block, frozen=True, kw_only=True, tag="tool_call"):
    id: str
    name: str
    arguments: str  # the JSON text of the arguments, as models produce it


class ToolResultBlock(_Block, frozen=True, kw_only=True, tag="tool_result"):
    tool_call_id: str
    content: tuple[TextBlock | ImageBlock, ...]
    is_error: bool = False


Block = TextBlock | ImageBlock | DocumentBlock | ReasoningBlock | ToolCallBlock | ToolResultBlock


class Message(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    content: tuple[Block, ...]
    name: str | None = None


class Tool(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    strict: bool | None = None


class ToolChoice(msgspec.Struct, frozen=True, kw_only=True):
    """``mode`` is auto, none or required; ``name`` forces one named tool."""

    mode: Literal["auto", "none", "required"] = "auto"
    name: str | None = None


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    messages: tuple[Message, ...]
    stream: bool = False
    include_usage: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    # a token budget for reasoning (Anthropic's thinking.budget_tokens, Gemini's thinkingBudget)
    reasoning_budget: int | None = None
    # fields of the caller's dialect that have no canonical slot: an upstream speaking that
    # same dialect gets them; any other drops them and names them in the request log
    extras: dict[str, Any] = msgspec.field(default_factory=dict)
    dialect: str = "openai"  # the wire ``extras`` belong to
    # nested fields of the caller's dialect the canonical model does not carry (Anthropic's
    # cache_control on a block, say): whatever the upstream, they are dropped and named
    lossy: tuple[str, ...] = ()


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts in OpenAI's sense: ``input_tokens`` includes cached reads
    (``cached_tokens``) and cache writes (``cache_write_tokens``); ``output_tokens`` includes
    ``reasoning_tokens``. Anthropic counts them apart; its codec converts."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatResponse(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    model: str
    created: int
    content: tuple[Block, ...]
    finish_reason: FinishReason
    usage: Usage
    stop_sequence: str | None = None  # the stop sequence that ended the answer, when known


# --- stream events ---------------------------------------------------------------------


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    pass


class StreamStart(_Event, frozen=True, kw_only=True, tag="start"):
    id: str
    model: str
    created: int


class TextDelta(_Event, frozen=True, kw_only=True, tag="text"):
    text: str


class ReasoningDelta(_Event, frozen=True, kw_only=True, tag="reasoning"):
    """Reasoning text, and/or the signature that closes a reasoning block, or a whole
    redacted block (``redacted_data``)."""

    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None


class ToolCallStart(_Event, frozen=True, kw_only=True, tag="tool_call_start"):
    index: int
    id: str
    name: str


class ToolCallDelta(_Event, frozen=True, kw_only=True, tag="tool_call_delta"):
    index: int
    arguments: str


class Finish(_Event, frozen=True, kw_only=True, tag="finish"):
    reason: FinishReason
    stop_sequence: str | None = None


class UsageReport(_Event, frozen=True, kw_only=True, tag="usage"):
    usage: Usage


StreamEvent = StreamStart | TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | Finish | UsageReport


def text_of(message: Message) -> str:
    """The concatenated text blocks of a message."""
    return "".join(b.text for b in message.content if isinstance(b, TextBlock))
