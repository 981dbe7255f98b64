"""OpenAI's legacy completions front door as the request pipeline sees it: ``CompletionsCodec``.

A request is validated from a small view of its body (model, prompt shape, stream flags, the
caps the billing bound is counted from) and decoded to the canonical model only when the
upstream has no completions endpoint (``codec``: the prompt as one user message). When it has
one (OpenAI, DeepSeek's FIM, an ``openai_compatible`` server with ``completions_path``), the body
is forwarded as it came with the model rewritten and stream usage asked for, by the chat
pass-through's own ``OpenAIPassThrough`` and ``OpenAIPassReader`` (completions answers and chunks
carry ``usage`` and ``choices`` as chat ones do). Pure: no I/O, no clock, no settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from tollway.core.chat import ChatRequest, ChatResponse
from tollway.core.errors import InvalidRequest, TollwayError
from tollway.core.json_input import body_loads
from tollway.core.names import DIALECT_COMPLETIONS
from tollway.dialects.completions.codec import DEFAULT_MAX_TOKENS, decode_request, encode_response, prompt_count
from tollway.dialects.completions.stream import CompletionStreamEncoder
from tollway.dialects.completions.wire import request_view_decoder
from tollway.dialects.openai.front import OpenAIPassThrough
from tollway.dialects.openai.stream import error_frame
from tollway.dialects.openai.wire import Body, body_decoder, encoder

Render = Callable[[TollwayError], dict[str, Any]]
_plain = msgspec.json.Decoder()


class CompletionsRequest:
    """A completions request: its view, and its body and canonical form once asked for.

    ``max_tokens`` is the output the request may produce, for the billing bound: its cap (16 when
    it sets none, as OpenAI's endpoint does) for every prompt and every choice (``n``, ``best_of``)."""

    __slots__ = ("raw", "model", "stream", "max_tokens", "client_usage", "_body", "_canonical")

    def __init__(self, raw: bytes, model: str, stream: bool, max_tokens: int, client_usage: bool) -> None:
        self.raw = raw
        self.model = model
        self.stream = stream
        self.max_tokens = max_tokens
        self.client_usage = client_usage  # stream_options.include_usage: the client wants the usage chunk
        self._body: Body | None = None
        self._canonical: ChatRequest | None = None

    def canonical(self) -> ChatRequest:
        """The request as a chat; a 400 naming what only a completions endpoint can do."""
        if self._canonical is None:  # ``decode`` checked the body's depth and encoding already
            self._canonical = decode_request(_plain.decode(self.raw))
        return self._canonical

    def body(self) -> Body:
        if self._body is None:
            self._body = body_decoder.decode(self.raw)
        return self._body


def decode(raw: bytes) -> CompletionsRequest:
    view = body_loads(raw, request_view_decoder)
    if not view.model:
        raise InvalidRequest("The 'model' field is required.", code="model_required", param="model")
    prompt = bytes(view.prompt).strip()
    if prompt in (b"", b"null"):
        raise InvalidRequest("The 'prompt' field is required.", param="prompt")
    prompts = prompt_count(_plain.decode(prompt))
    cap = view.max_tokens if view.max_tokens is not None else DEFAULT_MAX_TOKENS
    choices = max(view.n or 1, view.best_of or 1)
    return CompletionsRequest(raw, view.model, bool(view.stream), cap * prompts * choices,
                              bool(view.stream_options and view.stream_options.include_usage))


class CompletionsCodec:
    """``/v1/completions`` in OpenAI's error envelope, or the platform's (``/api/v1``)."""

    passthrough = OpenAIPassThrough(DIALECT_COMPLETIONS)

    def __init__(self, dialect: str, render: Render) -> None:
        self.dialect = dialect
        self.render = render

    def decode(self, raw: bytes) -> CompletionsRequest:
        return decode(raw)

    def encode_response(self, req: CompletionsRequest, resp: ChatResponse) -> bytes:
        return encoder.encode(encode_response(resp, req.model))

    def stream_writer(self, req: CompletionsRequest) -> CompletionStreamEncoder:
        return CompletionStreamEncoder(model=req.model, include_usage=req.client_usage)

    def error_body(self, err: TollwayError) -> dict[str, Any]:
        return self.render(err)

    def error_frame(self, err: TollwayError, request_id: str | None = None) -> bytes:
        return error_frame(self.render(err))
