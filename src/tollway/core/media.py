"""The canonical non-chat requests and answers: embeddings, images, speech, transcripts, videos.

A front door decodes its wire into one of these requests; an upstream whose API has no
OpenAI-shaped endpoint for the surface (Gemini, Bedrock) implements the matching method of
``providers.base`` and answers with one of these results, which the front door encodes. An
OpenAI-wire upstream gets the request's own bytes instead (pass-through), as chat does.

Each surface is a ``capability`` a model declares in the catalog; ``CATEGORY`` is the registry
category of a model made for it.
"""

from __future__ import annotations

from typing import Final

import msgspec

from tollway.core.chat import Usage

# capabilities (catalog) of the non-chat surfaces, and the registry category of their models
EMBEDDINGS: Final = "embeddings"
IMAGES: Final = "images"
SPEECH: Final = "speech"
TRANSCRIPTION: Final = "transcription"
VIDEO: Final = "video"
CATEGORY: Final = {EMBEDDINGS: "embedding", IMAGES: "image", SPEECH: "audio", TRANSCRIPTION: "audio", VIDEO: "video"}
# what a model of each surface takes and gives, as the catalog lists it (City's ``modalities``)
MODALITIES: Final = {EMBEDDINGS: ("text", "embedding"), IMAGES: ("text", "image"), SPEECH: ("text", "audio"),
                     TRANSCRIPTION: ("audio", "text"), VIDEO: ("text", "image", "video")}
SURFACE_NAMES: Final = {"chat": "chat", EMBEDDINGS: "embeddings", IMAGES: "images", SPEECH: "speech",
                        TRANSCRIPTION: "transcriptions", VIDEO: "videos"}

# what a model's ``unit_price`` counts (besides tokens and the per-request credit cost)
UNIT_CHARACTER: Final = "character"  # speech: characters of input text
UNIT_SECOND: Final = "second"  # transcription: seconds of audio; video: seconds generated
UNITS: Final = frozenset({"", UNIT_CHARACTER, UNIT_SECOND})


class EmbedRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Texts (or, for an upstream that takes them, token arrays) to embed."""

    texts: tuple[str, ...] = ()
    tokens: tuple[tuple[int, ...], ...] = ()  # OpenAI's token-array input; texts is empty then
    dimensions: int | None = None
    user: str | None = None


class Embeddings(msgspec.Struct, frozen=True, kw_only=True):
    vectors: list[list[float]]
    usage: Usage


class ImageRequest(msgspec.Struct, frozen=True, kw_only=True):
    prompt: str
    n: int = 1
    size: str | None = None  # "1024x1024", "auto"
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    output_format: str | None = None  # png | jpeg | webp
    user: str | None = None


class Image(msgspec.Struct, frozen=True, kw_only=True):
    data: bytes  # the image itself (an upstream that answers with a URL: fetched by the adapter)
    media_type: str = "image/png"
    revised_prompt: str | None = None


class Images(msgspec.Struct, frozen=True, kw_only=True):
    images: list[Image]
    usage: Usage | None = None


class SpeechRequest(msgspec.Struct, frozen=True, kw_only=True):
    input: str
    voice: str
    response_format: str = "mp3"  # mp3 | opus | aac | flac | wav | pcm
    speed: float | None = None
    instructions: str | None = None


class Speech(msgspec.Struct, frozen=True, kw_only=True):
    data: bytes
    media_type: str
    usage: Usage | None = None


class TranscriptionRequest(msgspec.Struct, frozen=True, kw_only=True):
    audio: bytes
    filename: str
    media_type: str
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    end: float
    text: str


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    language: str | None = None
    duration: float | None = None  # seconds of audio, when the upstream says
    segments: list[Segment] = msgspec.field(default_factory=list)
    usage: Usage | None = None


class VideoRequest(msgspec.Struct, frozen=True, kw_only=True):
    prompt: str
    seconds: int = 4
    size: str | None = None  # "1280x720"
    reference: bytes | None = None  # an input image the video starts from
    reference_type: str | None = None


class VideoJob(msgspec.Struct, frozen=True, kw_only=True):
    """An upstream's long-running video generation, as the gateway polls it."""

    id: str  # the upstream's own id (an OpenAI video id, a Veo operation name)
    status: str  # queued | in_progress | completed | failed
    progress: int | None = None  # percent, where the upstream says
    error: str | None = None
