"""City's ``ai`` text and stream actions as the request pipeline sees them: ``CityCodec``.

``POST /v1/ai/text`` answers ``{id, role, model, parts, finish_reason, usage}``;
``POST /v1/ai/stream`` answers Server-Sent Events, one JSON object per ``data:`` line:

    event: start    data: {"id": "msg_...", "model": "..."}
    event: delta    data: {"type": "text", "text": "..."}        (or "type": "reasoning")
    event: done     data: {"id": "msg_...", "finish_reason": "stop", "usage": {"input_tokens": n, "output_tokens": n}}
    event: error    data: {"error": {"code": "...", "message": "..."}}   (after the headers, instead of done)

City has no upstream of its own wire: every request is translated. Pure: no I/O.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from tollway.core.chat import (
    MAX_TOKENS,
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextBlock,
    TextDelta,
    Usage,
    UsageReport,
)
from tollway.core.errors import InvalidRequest, TollwayError
from tollway.core.json_input import loads
from tollway.core.names import DIALECT_CITY
from tollway.dialects.city.errors import city_error_body

_encoder = msgspec.json.Encoder()
_ROLES = ("user", "assistant", "system")


def _int_or_none(value: Any, name: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKENS):
        raise InvalidRequest(f"{name} must be a positive integer, at most {MAX_TOKENS}", param=name)
    return value


def _messages(body: dict[str, Any]) -> list[Message]:
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise InvalidRequest("system must be a string", param="system")
        messages.append(Message(role="system", content=(TextBlock(text=system),)))
    prompt, history = body.get("prompt"), body.get("messages")
    if isinstance(history, list) and history:
        for i, m in enumerate(history):
            if not (isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str)):
                raise InvalidRequest(f"messages[{i}] must be {{role: user|assistant|system, content: string}}",
                                     param="messages")
            messages.append(Message(role=m["role"], content=(TextBlock(text=m["content"]),)))
    elif isinstance(prompt, str) and prompt:
        messages.append(Message(role="user", content=(TextBlock(text=prompt),)))
    else:
        raise InvalidRequest("prompt (a non-empty string) or messages is required", param="prompt")
    return messages


def decode_request(body: dict[str, Any], *, stream: bool) -> ChatRequest:
    """A City text or stream body (``model``; ``prompt`` or ``messages``; ``system``,
    ``max_tokens``, ``temperature``) as a canonical request."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required", param="model")
    messages = _messages(body)
    max_tokens = _int_or_none(body.get("max_tokens"), "max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or isinstance(temperature, bool)):
        raise InvalidRequest("temperature must be a number", param="temperature")
    return ChatRequest(model=model, messages=tuple(messages), stream=stream, include_usage=True,
                       max_tokens=max_tokens, temperature=temperature, dialect=DIALECT_CITY)


class CityRequest:
    """A City request, decoded whole (it is small and always translated)."""

    __slots__ = ("request",)

    def __init__(self, request: ChatRequest) -> None:
        self.request = request

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return self.request.stream

    @property
    def max_tokens(self) -> int | None:
        return self.request.max_tokens

    def canonical(self) -> ChatRequest:
        return self.request


def usage_body(u: Usage) -> dict[str, int]:
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}


def sse(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(obj) + b"\n\n"


class CityStreamWriter:
    """Canonical events -> City's start / delta / done events."""

    def __init__(self, model: str) -> None:
        self.id = "msg_" + secrets.token_hex(12)
        self.model = model
        self.started = False
        self.finish: FinishReason = "stop"
        self.usage = Usage()

    def feed(self, event: StreamEvent) -> bytes:
        head = b""
        if not self.started:
            self.started = True
            head = sse("start", {"id": self.id, "model": self.model})
        if isinstance(event, TextDelta | ReasoningDelta) and event.text:
            kind = "text" if isinstance(event, TextDelta) else "reasoning"
            return head + sse("delta", {"type": kind, "text": event.text})
        if isinstance(event, Finish):
            self.finish = event.reason
        elif isinstance(event, UsageReport):
            self.usage = event.usage
        return head

    def close(self) -> bytes:
        return sse("done", {"id": self.id, "finish_reason": self.finish, "usage": usage_body(self.usage)})


class CityCodec:
    """``/v1/ai/text`` (``stream=False``) or ``/v1/ai/stream`` (``stream=True``)."""

    dialect = DIALECT_CITY
    passthrough = None

    def __init__(self, *, stream: bool) -> None:
        self.streams = stream

    def decode(self, raw: bytes) -> CityRequest:
        body = loads(raw, invalid="The body is not valid JSON")
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a JSON object.")
        return CityRequest(decode_request(body, stream=self.streams))

    def encode_response(self, req: CityRequest, resp: ChatResponse) -> bytes:
        answer = "".join(b.text for b in resp.content if isinstance(b, TextBlock))
        return _encoder.encode({
            "id": "msg_" + (resp.id or secrets.token_hex(8)).replace("-", ""), "role": "assistant",
            "model": req.model, "parts": [{"type": "text", "text": answer}],
            "finish_reason": resp.finish_reason, "usage": usage_body(resp.usage)})

    def stream_writer(self, req: CityRequest) -> CityStreamWriter:
        return CityStreamWriter(req.model)

    def error_body(self, err: TollwayError) -> dict[str, Any]:
        return city_error_body(err)

    def error_frame(self, err: TollwayError, request_id: str | None = None) -> bytes:
        return sse("error", city_error_body(err))
