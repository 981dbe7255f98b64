"""Bedrock's non-chat surfaces, canonical side: InvokeModel bodies and answers of the embedding
and image models. Pure: no I/O (the adapter in ``__init__`` signs and sends).

The bodies are each model's own (Bedrock user guide, "Inference request parameters and response
fields for foundation models"):
- Amazon Titan Text Embeddings V2: ``{"inputText", "dimensions": 256|512|1024, "normalize"}``,
  one text per call -> ``{"embedding", "inputTextTokenCount"}``;
- Cohere Embed v3: ``{"texts": [...] (up to 96), "input_type"}`` -> ``{"embeddings": [[...]],
  "id", "texts"}``, no token count (estimated at one token per four characters), 1024 dimensions;
- Amazon Titan Image Generator v2 and Nova Canvas: ``{"taskType": "TEXT_IMAGE",
  "textToImageParams": {"text"}, "imageGenerationConfig": {"numberOfImages" (1-5), "width",
  "height", "quality"}}`` -> ``{"images": [base64 PNG], "error"}``. Titan makes a fixed list of
  sizes; Nova Canvas any of 320-4096 pixels a side, in steps of 16, at most 4:1, under 4.19 MP.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from tollway.core.errors import InvalidRequest
from tollway.core.media import Image, ImageRequest

_encoder = msgspec.json.Encoder()
CHARS_PER_TOKEN: Final = 4


def estimate_tokens(texts: Iterable[str]) -> int:
    """Input tokens of texts the upstream counts nothing for: ceil(characters / 4) each."""
    return sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts)


# --- embeddings ----------------------------------------------------------------------------------

TITAN_DIMENSIONS: Final = (256, 512, 1024)
COHERE_DIMENSIONS: Final = 1024
COHERE_BATCH: Final = 96  # texts in one Cohere call


def embed_family(model: str) -> str:
    """titan or cohere: which body an embedding model takes; an InvalidRequest for any other."""
    m = model.lower()
    if "titan-embed-text" in m:
        return "titan"
    if "cohere.embed" in m:
        return "cohere"
    raise InvalidRequest(f"{model!r} is not a Bedrock embedding model Tollway speaks (Titan Text Embeddings, "
                         "Cohere Embed)", param="model")


def titan_embed_body(text: str, dimensions: int | None) -> bytes:
    body: dict[str, Any] = {"inputText": text, "normalize": True}
    if dimensions is not None:
        if dimensions not in TITAN_DIMENSIONS:
            raise InvalidRequest(f"dimensions {dimensions} is not one Titan Text Embeddings makes: "
                                 f"{', '.join(map(str, TITAN_DIMENSIONS))}", param="dimensions")
        body["dimensions"] = dimensions
    return _encoder.encode(body)


def cohere_embed_body(texts: Sequence[str], dimensions: int | None) -> bytes:
    if dimensions is not None and dimensions != COHERE_DIMENSIONS:
        raise InvalidRequest(f"dimensions {dimensions}: Cohere Embed v3 makes {COHERE_DIMENSIONS} only",
                             param="dimensions")
    return _encoder.encode({"texts": list(texts), "input_type": "search_document"})


class _TitanEmbedding(msgspec.Struct, frozen=True, rename="camel"):
    embedding: list[float]
    input_text_token_count: int = 0


class _CohereEmbeddings(msgspec.Struct, frozen=True):
    embeddings: list[list[float]]


_titan_embedding: Final = msgspec.json.Decoder(_TitanEmbedding)
_cohere_embeddings: Final = msgspec.json.Decoder(_CohereEmbeddings)


def read_titan_embedding(raw: bytes) -> tuple[list[float], int]:
    """The vector and the input tokens; a ValueError (msgspec's) when it is not an answer."""
    answer = _titan_embedding.decode(raw)
    return answer.embedding, answer.input_text_token_count


def read_cohere_embeddings(raw: bytes, count: int) -> list[list[float]]:
    vectors = _cohere_embeddings.decode(raw).embeddings
    if len(vectors) != count:
        raise ValueError(f"{len(vectors)} embeddings for {count} texts")
    return vectors


# --- images ----------------------------------------------------------------------------------

MAX_IMAGES_PER_CALL: Final = 5
TITAN_SIZES: Final = frozenset({
    (1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768), (576, 384), (768, 1280),
    (384, 640), (1280, 768), (640, 384), (896, 1152), (448, 576), (1152, 896), (576, 448), (768, 1408),
    (384, 704), (1408, 768), (704, 384), (640, 1408), (320, 704), (1408, 640), (704, 320), (1152, 640),
    (1173, 640)})
PROMPT_LIMITS: Final = {"titan": 512, "nova": 1024}  # characters of textToImageParams.text
NOVA_SIDE: Final = (320, 4096)
NOVA_PIXELS: Final = 4_194_304  # the pixel count must stay under it
_SIZE = re.compile(r"(\d{2,5})x(\d{2,5})")


def image_family(model: str) -> str:
    m = model.lower()
    if "titan-image-generator" in m:
        return "titan"
    if "nova-canvas" in m:
        return "nova"
    raise InvalidRequest(f"{model!r} is not a Bedrock image model Tollway speaks (Titan Image Generator, "
                         "Nova Canvas)", param="model")


def image_size(size: str | None, family: str) -> tuple[int, int]:
    """(width, height) of ``size`` ("WxH"; none or "auto": 1024x1024), if the model makes it."""
    if size is None or size == "auto":
        return 1024, 1024
    match = _SIZE.fullmatch(size.lower())
    if match is None:
        raise InvalidRequest(f"size {size!r} is not WIDTHxHEIGHT (1024x1024)", param="size")
    width, height = int(match[1]), int(match[2])
    if family == "titan":
        if (width, height) not in TITAN_SIZES:
            listed = ", ".join(f"{w}x{h}" for w, h in sorted(TITAN_SIZES))
            raise InvalidRequest(f"size {size!r} is not one Titan Image Generator makes: {listed}", param="size")
        return width, height
    low, high = NOVA_SIDE
    if not (low <= width <= high and low <= height <= high and width % 16 == 0 and height % 16 == 0
            and max(width, height) <= 4 * min(width, height) and width * height < NOVA_PIXELS):
        raise InvalidRequest(f"size {size!r} is not one Nova Canvas makes: each side {low}-{high} pixels and a "
                             f"multiple of 16, at most 4:1, fewer than {NOVA_PIXELS} pixels", param="size")
    return width, height


def image_body(req: ImageRequest, family: str, count: int) -> bytes:
    """A TEXT_IMAGE request for ``count`` (1-5) images."""
    limit = PROMPT_LIMITS[family]
    if not 1 <= len(req.prompt) <= limit:
        raise InvalidRequest(f"the prompt must be 1-{limit} characters for this model, not {len(req.prompt)}",
                             param="prompt")
    width, height = image_size(req.size, family)
    quality = "premium" if req.quality in ("hd", "high") else "standard"
    return _encoder.encode({
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": req.prompt},
        "imageGenerationConfig": {"numberOfImages": count, "width": width, "height": height, "quality": quality},
    })


class _ImagesAnswer(msgspec.Struct, frozen=True):
    images: list[str] | None = None
    error: str | None = None


_images_answer: Final = msgspec.json.Decoder(_ImagesAnswer)


def read_images(raw: bytes) -> tuple[list[Image], str | None]:
    """The PNG images of an answer and the error it reports (a ValueError when it is no answer)."""
    answer = _images_answer.decode(raw)
    images = []
    for b64 in answer.images or ():
        try:
            images.append(Image(data=base64.b64decode(b64, validate=True), media_type="image/png"))
        except (binascii.Error, ValueError):
            raise ValueError("an image that is not base64") from None
    return images, answer.error
