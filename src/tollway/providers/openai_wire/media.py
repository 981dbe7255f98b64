"""OpenAI's non-chat wires, canonical side: a canonical media request encoded as the body of
OpenAI's endpoint for it, and the endpoint's answer decoded. Pure (no I/O): the adapter sends.

Used where the gateway itself needs the canonical answer (a task that stores the images, City's
actions, a front door of another shape); a client of OpenAI's own shape gets the upstream's bytes
forwarded instead (``dialects.media``).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

import msgspec

from tollway.core.chat import Usage
from tollway.core.errors import UpstreamError
from tollway.core.media import (
    Embeddings,
    EmbedRequest,
    Image,
    ImageRequest,
    Images,
    Segment,
    SpeechRequest,
    Transcript,
    TranscriptionRequest,
    VideoJob,
    VideoRequest,
)

_encoder = msgspec.json.Encoder()

AUDIO_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/L16;rate=24000;channels=1"}
IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class _Embedding(msgspec.Struct):
    embedding: list[float] | str
    index: int = 0


class _EmbedUsage(msgspec.Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class _EmbedAnswer(msgspec.Struct):
    data: list[_Embedding]
    usage: _EmbedUsage | None = None


class _ImageDatum(msgspec.Struct):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class _ImageUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class _ImagesAnswer(msgspec.Struct):
    data: list[_ImageDatum] | None = None
    output_format: str | None = None
    usage: _ImageUsage | None = None


class _Seg(msgspec.Struct):
    start: float = 0.0
    end: float = 0.0
    text: str = ""


class _TranscriptAnswer(msgspec.Struct):
    text: str
    language: str | None = None
    duration: float | None = None
    segments: list[_Seg] | None = None
    usage: dict[str, Any] | None = None


class _VideoError(msgspec.Struct):
    message: str = ""
    code: str = ""


class _VideoAnswer(msgspec.Struct):
    id: str
    status: str
    progress: int | None = None
    error: _VideoError | None = None


_embed_answer = msgspec.json.Decoder(_EmbedAnswer)
_images_answer = msgspec.json.Decoder(_ImagesAnswer)
_transcript_answer = msgspec.json.Decoder(_TranscriptAnswer)
_video_answer = msgspec.json.Decoder(_VideoAnswer)


def _unreadable(provider: str, what: str) -> UpstreamError:
    return UpstreamError(f"{provider} upstream sent an unreadable {what}", provider=provider)


def embed_body(req: EmbedRequest, model: str) -> bytes:
    body: dict[str, Any] = {"model": model, "input": list(req.texts) or [list(t) for t in req.tokens],
                            "encoding_format": "float"}
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    if req.user:
        body["user"] = req.user
    return _encoder.encode(body)


def read_embeddings(provider: str, raw: bytes) -> Embeddings:
    try:
        answer = _embed_answer.decode(raw)
        vectors: list[list[float]] = [[]] * len(answer.data)
        for item in answer.data:
            vec = item.embedding
            if isinstance(vec, str):  # an upstream that answered base64 anyway
                vec = list(memoryview(base64.b64decode(vec)).cast("f"))
            vectors[item.index] = vec
    except (msgspec.DecodeError, msgspec.ValidationError, IndexError, binascii.Error, TypeError, ValueError):
        raise _unreadable(provider, "embedding answer") from None
    tokens = answer.usage.prompt_tokens if answer.usage is not None else 0
    return Embeddings(vectors=vectors, usage=Usage(input_tokens=tokens))


def image_body(req: ImageRequest, model: str) -> bytes:
    body: dict[str, Any] = {"model": model, "prompt": req.prompt, "n": req.n}
    for name in ("size", "quality", "style", "background", "output_format", "user"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if not model.startswith("gpt-image"):  # gpt-image models always answer base64 and refuse the field
        body["response_format"] = "b64_json"
    return _encoder.encode(body)


def read_images(provider: str, raw: bytes) -> tuple[Images, list[str]]:
    """The images of an answer, and the URLs of those it gave as URLs (the adapter fetches them:
    ``Image.data`` is empty for those, in order)."""
    try:
        answer = _images_answer.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _unreadable(provider, "image answer") from None
    if not answer.data:
        raise _unreadable(provider, "image answer (no image in it)")
    media_type = IMAGE_TYPES.get(answer.output_format or "png", "image/png")
    images, urls = [], []
    for d in answer.data:
        if d.b64_json is not None:
            try:
                data = base64.b64decode(d.b64_json, validate=True)
            except (binascii.Error, ValueError):
                raise _unreadable(provider, "image (invalid base64)") from None
        elif d.url:
            data = b""
            urls.append(d.url)
        else:
            raise _unreadable(provider, "image (neither b64_json nor url)")
        images.append(Image(data=data, media_type=media_type, revised_prompt=d.revised_prompt))
    usage = None
    if answer.usage is not None:
        usage = Usage(input_tokens=answer.usage.input_tokens, output_tokens=answer.usage.output_tokens)
    return Images(images=images, usage=usage), urls


def speech_body(req: SpeechRequest, model: str) -> bytes:
    body: dict[str, Any] = {"model": model, "input": req.input, "voice": req.voice,
                            "response_format": req.response_format}
    if req.speed is not None:
        body["speed"] = req.speed
    if req.instructions:
        body["instructions"] = req.instructions
    return _encoder.encode(body)


def transcription_form(req: TranscriptionRequest, model: str) -> tuple[bytes, str]:
    """A multipart body (and its content type) of ``req`` for OpenAI's transcriptions endpoint,
    asking for verbose_json where the model has it (whisper: segments and duration), else json."""
    fields: list[tuple[str, str]] = [("model", model),
                                     ("response_format", "verbose_json" if model.startswith("whisper") else "json")]
    if req.language:
        fields.append(("language", req.language))
    if req.prompt:
        fields.append(("prompt", req.prompt))
    if req.temperature is not None:
        fields.append(("temperature", repr(req.temperature)))
    return multipart(fields, [("file", req.filename, req.media_type, req.audio)])


def read_transcript(provider: str, raw: bytes) -> Transcript:
    try:
        answer = _transcript_answer.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _unreadable(provider, "transcription") from None
    usage = None
    if answer.usage and answer.usage.get("type") == "tokens":
        usage = Usage(input_tokens=int(answer.usage.get("input_tokens") or 0),
                      output_tokens=int(answer.usage.get("output_tokens") or 0))
    duration = answer.duration
    if duration is None and answer.usage and answer.usage.get("type") == "duration":
        duration = float(answer.usage.get("seconds") or 0)
    return Transcript(text=answer.text, language=answer.language, duration=duration,
                      segments=[Segment(start=s.start, end=s.end, text=s.text) for s in answer.segments or ()],
                      usage=usage)


def video_form(req: VideoRequest, model: str) -> tuple[bytes, str]:
    fields = [("model", model), ("prompt", req.prompt), ("seconds", str(req.seconds))]
    if req.size:
        fields.append(("size", req.size))
    files = []
    if req.reference is not None:
        kind = req.reference_type or "image/png"
        files.append(("input_reference", "reference." + kind.rpartition("/")[2], kind, req.reference))
    return multipart(fields, files)


def read_video(provider: str, raw: bytes) -> VideoJob:
    try:
        answer = _video_answer.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _unreadable(provider, "video job") from None
    error = None
    if answer.error is not None:
        error = f"{answer.error.code}: {answer.error.message}" if answer.error.code else answer.error.message
    return VideoJob(id=answer.id, status=answer.status, progress=answer.progress, error=error)


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body: text ``fields`` and ``files`` (name, filename, type, bytes)."""
    boundary = "tollway-" + uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_q(name)}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    for name, filename, media_type, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_q(name)}"; '
                     f'filename="{_q(filename)}"\r\nContent-Type: {media_type}\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _q(value: str) -> str:
    """A form field's name or filename, quoted (RFC 7578: percent-encode what would break the quotes)."""
    return value.replace("\\", "%5C").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
