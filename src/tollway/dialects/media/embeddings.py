"""``POST /v1/embeddings`` in OpenAI's shape (seed 004): the request decoded and checked, a
canonical answer encoded, an OpenAI-wire upstream's answer read for its usage. Pure.

Input is a string, a list of strings, a token array, or a list of token arrays (at most
``MAX_INPUTS``); ``encoding_format`` float (a list of numbers) or base64 (little-endian float32,
what the OpenAI SDK asks for by default); ``dimensions`` where the model takes it.
"""

from __future__ import annotations

import array
import base64
import sys
from typing import Any, Final

import msgspec

from tollway.core.chat import Usage
from tollway.core.errors import InvalidRequest, UpstreamError, require
from tollway.core.json_input import body_loads
from tollway.core.media import Embeddings, EmbedRequest
from tollway.dialects.passthrough import model_field, renamed

MAX_INPUTS: Final = 2048  # OpenAI's limit on inputs per request
FORMATS: Final = ("float", "base64")


class _View(msgspec.Struct, kw_only=True):
    model: Any = None
    input: Any = None
    encoding_format: Any = None
    dimensions: Any = None
    user: Any = None


_view = msgspec.json.Decoder(_View)
_body = msgspec.json.Decoder(dict[str, Any])


class EmbeddingsRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    canonical: EmbedRequest
    encoding_format: str  # float | base64
    body: dict[str, Any]  # as sent, for an OpenAI-wire upstream
    tokens: int  # the input's tokens at most (a token array's exactly): its bound


def _token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int and t >= 0 for t in value)


def decode(raw: bytes) -> EmbeddingsRequest:
    view = body_loads(raw, _view)
    require(isinstance(view.model, str) and view.model != "", "The 'model' field is required.", "model")
    value = view.input
    require(value is not None, "The 'input' field is required.", "input")
    texts: tuple[str, ...] = ()
    tokens: tuple[tuple[int, ...], ...] = ()
    if isinstance(value, str):
        texts = (value,)
    elif _token_array(value):
        tokens = (tuple(value),)
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        texts = tuple(value)
    elif isinstance(value, list) and value and all(_token_array(v) for v in value):
        tokens = tuple(tuple(v) for v in value)
    else:
        raise InvalidRequest("'input' must be a string, a list of strings, a token array or a list of token "
                             "arrays, none of them empty.", param="input")
    require(all(texts), "'input' must not hold an empty string.", "input")
    count = len(texts) or len(tokens)
    require(count <= MAX_INPUTS, f"'input' holds {count} inputs; at most {MAX_INPUTS} may be sent at once.",
            "input")
    fmt = view.encoding_format if view.encoding_format is not None else "float"
    require(fmt in FORMATS, f"encoding_format {fmt!r} is not supported: use 'float' or 'base64'.",
            "encoding_format")
    dims = view.dimensions
    require(dims is None or (type(dims) is int and 0 < dims <= 65536),
            "'dimensions' must be a positive integer.", "dimensions")
    user = view.user if isinstance(view.user, str) else None
    bound = sum(len(t) for t in tokens) or len(raw) // 3 + 8
    return EmbeddingsRequest(model=view.model, encoding_format=fmt, body=_body.decode(raw), tokens=bound,
                             canonical=EmbedRequest(texts=texts, tokens=tokens, dimensions=dims, user=user))


def _b64(vector: list[float]) -> str:
    data = array.array("f", vector)
    if sys.byteorder != "little":
        data.byteswap()
    return base64.b64encode(data.tobytes()).decode("ascii")


def encode(result: Embeddings, model: str, encoding_format: str) -> bytes:
    """A canonical answer in OpenAI's ``CreateEmbeddingResponse`` shape."""
    b64 = encoding_format == "base64"
    data = [{"object": "embedding", "index": i, "embedding": _b64(v) if b64 else v}
            for i, v in enumerate(result.vectors)]
    tokens = result.usage.input_tokens
    return msgspec.json.encode({"object": "list", "data": data, "model": model,
                                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0


class _Answer(msgspec.Struct):
    data: list[msgspec.Raw]
    usage: _Usage | None = None


_answer = msgspec.json.Decoder(_Answer)


def read_answer(provider: str, raw: bytes, model: str) -> tuple[bytes, Usage | None]:
    """An OpenAI-wire upstream's embeddings naming ``model`` (the one asked for), and its usage;
    a retryable ``UpstreamError`` for anything that is not an embedding list."""
    try:
        answer = _answer.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamError(f"{provider} upstream sent an unreadable embedding answer", provider=provider) from None
    usage = Usage(input_tokens=answer.usage.prompt_tokens) if answer.usage is not None else None
    return renamed(raw, model_field(model)), usage
