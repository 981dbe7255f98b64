"""``POST /v1/images/generations`` in OpenAI's shape, and seed 003's asynchronous
``POST /api/v1/images/generations`` (same request, a task's metadata for an answer). Pure.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Final

import msgspec

from tollway.core.chat import Usage
from tollway.core.errors import InvalidRequest, UpstreamError, require
from tollway.core.json_input import body_loads
from tollway.core.media import ImageRequest, Images
from tollway.dialects.passthrough import model_field, renamed

DEFAULT_MODEL: Final = "dall-e-2"  # what OpenAI generates with when ``model`` is absent
MAX_N: Final = 10
MAX_PROMPT: Final = 32_000  # gpt-image-1's limit (dall-e-3: 4000, dall-e-2: 1000; their upstream says)
RESPONSE_FORMATS: Final = ("url", "b64_json")
OUTPUT_FORMATS: Final = ("png", "jpeg", "webp")
_SIZE = re.compile(r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")


class _View(msgspec.Struct, kw_only=True):
    model: Any = None
    prompt: Any = None
    n: Any = None
    size: Any = None
    quality: Any = None
    style: Any = None
    background: Any = None
    output_format: Any = None
    response_format: Any = None
    user: Any = None


_view = msgspec.json.Decoder(_View)
_body = msgspec.json.Decoder(dict[str, Any])


class ImagesRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    canonical: ImageRequest
    response_format: str | None  # url | b64_json; None: the model's own default
    body: dict[str, Any]


def _text(value: Any, name: str) -> str | None:
    require(value is None or isinstance(value, str), f"'{name}' must be a string.", name)
    return value or None


def decode(raw: bytes, *, default_model: str | None = DEFAULT_MODEL) -> ImagesRequest:
    """``default_model`` None: the request must name one (seed 003: ``model_required``)."""
    view = body_loads(raw, _view)
    model = view.model if view.model is not None else default_model
    if not isinstance(model, str) or not model:
        raise InvalidRequest("The 'model' field is required.", code="model_required", param="model")
    if not isinstance(view.prompt, str) or not view.prompt.strip():
        raise InvalidRequest("The 'prompt' field is required.", code="prompt_required", param="prompt")
    require(len(view.prompt) <= MAX_PROMPT, f"'prompt' is longer than {MAX_PROMPT} characters.", "prompt")
    n = 1 if view.n is None else view.n
    require(type(n) is int and 1 <= n <= MAX_N, f"'n' must be an integer from 1 to {MAX_N}.", "n")
    size = _text(view.size, "size")
    if size is not None and not _SIZE.match(size):
        raise InvalidRequest(f"Size {size!r} is not supported: give WIDTHxHEIGHT (e.g. 1024x1024) or 'auto'.",
                             param="size")
    fmt = _text(view.response_format, "response_format")
    require(fmt is None or fmt in RESPONSE_FORMATS,
            f"response_format {fmt!r} is not supported: use 'url' or 'b64_json'.", "response_format")
    out = _text(view.output_format, "output_format")
    require(out is None or out in OUTPUT_FORMATS,
            f"output_format {out!r} is not supported: use png, jpeg or webp.", "output_format")
    canonical = ImageRequest(prompt=view.prompt, n=n, size=size, quality=_text(view.quality, "quality"),
                             style=_text(view.style, "style"), background=_text(view.background, "background"),
                             output_format=out, user=_text(view.user, "user"))
    return ImagesRequest(model=model, canonical=canonical, response_format=fmt, body=_body.decode(raw))


def encode(result: Images, created: int, urls: list[str] | None) -> bytes:
    """A canonical answer in OpenAI's ``ImagesResponse`` shape: each image as ``b64_json``, or
    as the URL given for it (``urls``, in order)."""
    data: list[dict[str, Any]] = []
    for i, image in enumerate(result.images):
        item: dict[str, Any] = ({"url": urls[i]} if urls is not None
                                else {"b64_json": base64.b64encode(image.data).decode()})
        if image.revised_prompt:
            item["revised_prompt"] = image.revised_prompt
        data.append(item)
    body: dict[str, Any] = {"created": created, "data": data}
    if result.usage is not None:
        u = result.usage
        body["usage"] = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                         "total_tokens": u.input_tokens + u.output_tokens,
                         "input_tokens_details": {"text_tokens": u.input_tokens, "image_tokens": 0}}
    return msgspec.json.encode(body)


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class _Answer(msgspec.Struct):
    data: list[msgspec.Raw]
    usage: _Usage | None = None


_answer = msgspec.json.Decoder(_Answer)


def read_answer(provider: str, raw: bytes, model: str) -> tuple[bytes, Usage | None, int]:
    """An OpenAI-wire upstream's images (named as asked, where it names a model), their usage,
    and how many there are; a retryable ``UpstreamError`` for anything else."""
    try:
        answer = _answer.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamError(f"{provider} upstream sent an unreadable image answer", provider=provider) from None
    if not answer.data:
        raise UpstreamError(f"{provider} upstream answered with no image", provider=provider)
    usage = None
    if answer.usage is not None:
        usage = Usage(input_tokens=answer.usage.input_tokens, output_tokens=answer.usage.output_tokens)
    return renamed(raw, model_field(model)), usage, len(answer.data)
