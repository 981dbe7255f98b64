"""Gemini's non-chat surfaces, canonical side: the request bodies and the answers of
embeddings, images (Gemini image models and Imagen), speech, transcription and Veo videos.
Pure: no I/O (the adapter in ``__init__`` sends).

Google's v1beta REST reference (ai.google.dev/api): "Embeddings" (``batchEmbedContents``),
"Generating content" (``responseModalities``, ``imageConfig``, ``speechConfig``), the "Image
generation", "Imagen" (``:predict``), "Speech generation" and "Audio understanding" guides, and
"Generate videos with Veo" (``:predictLongRunning`` and the operation it returns).

Choices:
- Embeddings: Gemini takes text only (a token array is a 400) and counts no tokens: the input is
  estimated at one token per four characters.
- Sizes are mapped to aspect ratios (the images Gemini and Imagen make have a size of their own);
  a size that maps to no ratio the model takes is a 400 naming the sizes it takes.
- Speech: Gemini answers 16-bit little-endian mono PCM (``audio/L16;codec=pcm;rate=24000``):
  ``wav`` adds a RIFF header, ``pcm`` is the samples; any other format is a 400. OpenAI's voice
  names map to one default Gemini voice; ``speed`` has no Gemini field (unused), ``instructions``
  go before the text, as Google's guide steers style ("Say cheerfully: ...").
- An answer without the image or audio asked for is an UpstreamError that is not retried: the
  model chose to answer that way (its text, cut, is in the message).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import wave
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from tollway.core.chat import Usage
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.media import Image, ImageRequest, SpeechRequest, TranscriptionRequest, VideoJob, VideoRequest
from tollway.providers.gemini.codec import UsageMetadata, fit_budget, thinking_range, usage_of

_encoder = msgspec.json.Encoder()

# --- embeddings ----------------------------------------------------------------------------------

MAX_EMBED_BATCH: Final = 100  # requests in one batchEmbedContents call ("Embeddings" reference)
CHARS_PER_TOKEN: Final = 4  # Gemini returns no token count for embeddings: estimated from characters


def estimate_tokens(texts: Iterable[str]) -> int:
    """Input tokens of texts Gemini counts nothing for: ceil(characters / 4) each."""
    return sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts)


def embed_body(texts: Sequence[str], model: str, dimensions: int | None) -> bytes:
    """A BatchEmbedContentsRequest: one EmbedContentRequest per text, each naming the model."""
    name = "models/" + model.removeprefix("models/")
    requests: list[dict[str, Any]] = []
    for text in texts:
        item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            item["outputDimensionality"] = dimensions
        requests.append(item)
    return _encoder.encode({"requests": requests})


class _Values(msgspec.Struct, frozen=True):
    values: list[float]


class _BatchEmbeddings(msgspec.Struct, frozen=True):
    embeddings: list[_Values]


_batch_embeddings: Final = msgspec.json.Decoder(_BatchEmbeddings)


def read_embeddings(raw: bytes, count: int) -> list[list[float]]:
    """The vectors of a BatchEmbedContentsResponse; a ValueError unless there are ``count``."""
    vectors = [e.values for e in _batch_embeddings.decode(raw).embeddings]
    if len(vectors) != count:
        raise ValueError(f"{len(vectors)} embeddings for {count} texts")
    return vectors


# --- sizes -> aspect ratios ----------------------------------------------------------------------

# OpenAI's sizes (and common others) by the aspect ratio they have
SIZE_RATIOS: Final = {
    "256x256": "1:1", "512x512": "1:1", "1024x1024": "1:1", "2048x2048": "1:1",
    "1536x1024": "3:2", "1024x1536": "2:3", "1024x768": "4:3", "768x1024": "3:4",
    "1280x1024": "5:4", "1024x1280": "4:5", "1792x1024": "16:9", "1024x1792": "9:16",
    "1280x720": "16:9", "720x1280": "9:16", "1920x1080": "16:9", "1080x1920": "9:16", "2520x1080": "21:9",
}
GEMINI_RATIOS: Final = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGEN_RATIOS: Final = ("1:1", "3:4", "4:3", "9:16", "16:9")
VEO_RATIOS: Final = ("16:9", "9:16")
_RATIO = re.compile(r"\d{1,2}:\d{1,2}")


def is_imagen(model: str) -> bool:
    return model.removeprefix("models/").startswith("imagen-")


def aspect_ratio(size: str | None, ratios: Sequence[str]) -> str | None:
    """The aspect ratio of ``size`` ("1024x1024", or a ratio itself: "16:9") among ``ratios``;
    None for no size or "auto" (the model's default); an InvalidRequest for any other."""
    if size is None or size == "auto":
        return None
    ratio = size if _RATIO.fullmatch(size) else SIZE_RATIOS.get(size.lower())
    if ratio in ratios:
        return ratio
    sizes = sorted((s for s, r in SIZE_RATIOS.items() if r in ratios), key=lambda s: (SIZE_RATIOS[s], s))
    raise InvalidRequest(f"size {size!r} is not one this model makes: it takes {', '.join(sizes)} "
                         f"(or the aspect ratios {', '.join(ratios)})", param="size")


# --- generateContent answers with media parts ----------------------------------------------------


class _Blob(msgspec.Struct, frozen=True, rename="camel"):
    mime_type: str = ""
    data: str = ""


class _Part(msgspec.Struct, frozen=True, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    inline_data: _Blob | None = None


class _Content(msgspec.Struct, frozen=True):
    parts: list[_Part] | None = None


class _Candidate(msgspec.Struct, frozen=True, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None


class _Feedback(msgspec.Struct, frozen=True, rename="camel"):
    block_reason: str | None = None


class MediaAnswer(msgspec.Struct, frozen=True, rename="camel"):
    """What is read of a GenerateContentResponse whose parts may carry inline media."""

    candidates: list[_Candidate] | None = None
    prompt_feedback: _Feedback | None = None
    usage_metadata: UsageMetadata | None = None
    error: Any = msgspec.UNSET


_media_answer: Final = msgspec.json.Decoder(MediaAnswer)
MAX_SHOWN: Final = 200  # characters of a model's text shown in an error


def read_media_answer(raw: bytes) -> MediaAnswer:
    """The answer's view; a ValueError (msgspec's included) when it is not one."""
    answer = _media_answer.decode(raw)
    if answer.error is not msgspec.UNSET:
        raise ValueError(f"an error object instead of an answer: {answer.error!r:.300}")
    return answer


def parts_of(answer: MediaAnswer) -> list[_Part]:
    cand = answer.candidates[0] if answer.candidates else None
    return (cand.content.parts if cand is not None and cand.content is not None else None) or []


def text_of(answer: MediaAnswer) -> str:
    """The answer's text (thoughts left out)."""
    return "".join(p.text for p in parts_of(answer) if p.text and not p.thought)


def usage_of_answer(answer: MediaAnswer) -> Usage:
    return usage_of(answer.usage_metadata)


def blobs_of(answer: MediaAnswer, kind: str) -> list[tuple[bytes, str]]:
    """The inline data of the answer's parts whose MIME type starts with ``kind`` ("image/",
    "audio/"), decoded; a ValueError when one is not base64."""
    out = []
    for p in parts_of(answer):
        if p.inline_data is not None and p.inline_data.mime_type.startswith(kind):
            try:
                out.append((base64.b64decode(p.inline_data.data, validate=True), p.inline_data.mime_type))
            except (binascii.Error, ValueError):
                raise ValueError(f"inline {kind} data that is not base64") from None
    return out


def missing(provider: str, what: str, answer: MediaAnswer) -> UpstreamError:
    """The model answered without the ``what`` asked for: not retried (another credential gets
    the same answer), with the reason and what text it gave instead."""
    cand = answer.candidates[0] if answer.candidates else None
    reason = (answer.prompt_feedback.block_reason if answer.prompt_feedback else None) or (
        cand.finish_reason if cand is not None else None)
    text = text_of(answer)
    detail = f" (finish reason {reason})" if reason else ""
    if text:
        detail += f"; it said: {text[:MAX_SHOWN]}" + ("..." if len(text) > MAX_SHOWN else "")
    err = UpstreamError(f"{provider}: the model returned no {what}{detail}", provider=provider)
    err.retryable = False
    return err


# --- images ----------------------------------------------------------------------------------


def image_body(req: ImageRequest) -> bytes:
    """A GenerateContentRequest asking a Gemini image model for one image of the prompt."""
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    ratio = aspect_ratio(req.size, GEMINI_RATIOS)
    if ratio is not None:
        config["imageConfig"] = {"aspectRatio": ratio}
    return _encoder.encode({"contents": [{"role": "user", "parts": [{"text": req.prompt}]}],
                            "generationConfig": config})


MAX_IMAGEN_SAMPLES: Final = 4  # sampleCount 1..4 ("Imagen" guide)


def imagen_body(req: ImageRequest, count: int) -> bytes:
    """A predict request for ``count`` Imagen images of the prompt."""
    parameters: dict[str, Any] = {"sampleCount": count}
    ratio = aspect_ratio(req.size, IMAGEN_RATIOS)
    if ratio is not None:
        parameters["aspectRatio"] = ratio
    return _encoder.encode({"instances": [{"prompt": req.prompt}], "parameters": parameters})


class _Prediction(msgspec.Struct, frozen=True, rename="camel"):
    bytes_base64_encoded: str | None = None
    mime_type: str = "image/png"
    rai_filtered_reason: str | None = None


class _Predictions(msgspec.Struct, frozen=True):
    predictions: list[_Prediction] | None = None


_predictions: Final = msgspec.json.Decoder(_Predictions)


def read_imagen(raw: bytes) -> tuple[list[Image], list[str]]:
    """The images of a predict answer, and the reasons given for those filtered out."""
    images, filtered = [], []
    for p in _predictions.decode(raw).predictions or ():
        if p.bytes_base64_encoded:
            try:
                images.append(Image(data=base64.b64decode(p.bytes_base64_encoded, validate=True),
                                    media_type=p.mime_type))
            except (binascii.Error, ValueError):
                raise ValueError("an image that is not base64") from None
        elif p.rai_filtered_reason:
            filtered.append(p.rai_filtered_reason)
    return images, filtered


# --- speech ----------------------------------------------------------------------------------

# the prebuilt voices ("Speech generation" guide, voice options)
VOICES: Final = ("Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe", "Autonoe",
                 "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib", "Rasalgethi",
                 "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima", "Achird",
                 "Zubenelgenubi", "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat")
_VOICES_BY_KEY: Final = {v.lower(): v for v in VOICES}
DEFAULT_VOICE: Final = "Kore"
OPENAI_VOICES: Final = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                                  "shimmer", "verse", "marin", "cedar"})
SPEECH_FORMATS: Final = ("wav", "pcm")
DEFAULT_RATE: Final = 24000
_RATE = re.compile(r"rate=(\d+)")


def voice_of(name: str) -> str:
    """The Gemini voice for a request's voice: a Gemini voice (any case), or OpenAI's names the default."""
    key = name.strip().lower()
    if key in _VOICES_BY_KEY:
        return _VOICES_BY_KEY[key]
    if key in OPENAI_VOICES:
        return DEFAULT_VOICE
    raise InvalidRequest(f"voice {name!r} is not a Gemini voice: use one of {', '.join(VOICES)}", param="voice")


def speech_body(req: SpeechRequest) -> bytes:
    """A GenerateContentRequest for a TTS model: the text (after any instructions), one voice, audio out."""
    if req.response_format not in SPEECH_FORMATS:
        raise InvalidRequest(f"Gemini speech comes as wav or pcm only, not {req.response_format!r}",
                             param="response_format")
    voice = voice_of(req.voice)
    text = f"{req.instructions.strip()}: {req.input}" if req.instructions and req.instructions.strip() else req.input
    return _encoder.encode({
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {"responseModalities": ["AUDIO"],
                             "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}}},
    })


def rate_of(mime_type: str) -> int:
    """The sample rate of an ``audio/L16;codec=pcm;rate=24000`` type (24 kHz when it says none)."""
    match = _RATE.search(mime_type)
    return int(match[1]) if match else DEFAULT_RATE


def wav_of(pcm: bytes, rate: int) -> bytes:
    """16-bit mono PCM samples in a RIFF/WAVE file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def speech_of(pcm: bytes, mime_type: str, response_format: str) -> tuple[bytes, str]:
    """The audio as asked (``wav`` or ``pcm``) and its media type."""
    rate = rate_of(mime_type)
    if response_format == "wav":
        return wav_of(pcm, rate), "audio/wav"
    return pcm, f"audio/L16;rate={rate};channels=1"


# --- transcription ---------------------------------------------------------------------------

# the audio types Gemini takes ("Audio understanding" guide), by file extension for an upload
# whose type says nothing (application/octet-stream); and other names of the same types
AUDIO_TYPES: Final = {"wav": "audio/wav", "mp3": "audio/mp3", "mpeg": "audio/mp3", "mpga": "audio/mp3",
                      "aiff": "audio/aiff", "aif": "audio/aiff", "aac": "audio/aac", "ogg": "audio/ogg",
                      "oga": "audio/ogg", "opus": "audio/ogg", "flac": "audio/flac"}
AUDIO_ALIASES: Final = {"audio/mpeg": "audio/mp3", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav",
                        "audio/vnd.wave": "audio/wav", "audio/x-aiff": "audio/aiff", "audio/x-flac": "audio/flac",
                        "audio/opus": "audio/ogg", "audio/x-aac": "audio/aac"}
INSTRUCTION: Final = ("Transcribe this audio verbatim. Answer with the transcript only: no preamble, no labels, "
                      "no timestamps, no commentary.")


def audio_type(req: TranscriptionRequest) -> str:
    kind = req.media_type.split(";")[0].strip().lower()
    if kind.startswith(("audio/", "video/")):
        return AUDIO_ALIASES.get(kind, kind)
    ext = req.filename.rpartition(".")[2].lower()
    if ext in AUDIO_TYPES:
        return AUDIO_TYPES[ext]
    raise InvalidRequest(f"the audio's type {req.media_type!r} ({req.filename!r}) is not one Gemini takes: "
                         f"send one of {', '.join(sorted(set(AUDIO_TYPES.values())))}", param="file")


def transcription_body(req: TranscriptionRequest, model: str) -> bytes:
    """A GenerateContentRequest: the instruction (with the language and prompt hints) and the audio inline."""
    instruction = INSTRUCTION
    if req.language:
        instruction += f" The audio is in {req.language}."
    if req.prompt:
        instruction += f" Context, for the spelling of names and terms (do not transcribe it): {req.prompt}"
    config: dict[str, Any] = {}
    if req.temperature is not None:
        config["temperature"] = req.temperature
    limits = thinking_range(model)
    budget = fit_budget(0, limits) if limits is not None else None
    if budget is not None:  # as little thinking as the model allows: a transcript needs none
        config["thinkingConfig"] = {"thinkingBudget": budget}
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [
        {"text": instruction},
        {"inlineData": {"mimeType": audio_type(req), "data": base64.b64encode(req.audio).decode()}}]}]}
    if config:
        body["generationConfig"] = config
    return _encoder.encode(body)


# --- videos (Veo) ----------------------------------------------------------------------------

# an operation name as Veo gives it: it becomes the poll URL's path, so nothing else is taken
OPERATION: Final = re.compile(r"(models/[A-Za-z0-9._-]+/)?operations/[A-Za-z0-9._-]+")
VEO_SIZES: Final = {"1280x720": ("16:9", None), "720x1280": ("9:16", None), "1920x1080": ("16:9", "1080p"),
                    "1080x1920": ("9:16", "1080p")}


def video_body(req: VideoRequest) -> bytes:
    """A predictLongRunning request: the prompt (and the image it starts from), ratio, length."""
    parameters: dict[str, Any] = {"durationSeconds": req.seconds}
    if req.size is not None and req.size != "auto":
        if req.size in VEO_SIZES:
            ratio, resolution = VEO_SIZES[req.size]
            parameters["aspectRatio"] = ratio
            if resolution:
                parameters["resolution"] = resolution
        elif req.size in VEO_RATIOS:
            parameters["aspectRatio"] = req.size
        else:
            raise InvalidRequest(f"size {req.size!r} is not one Veo makes: it takes {', '.join(VEO_SIZES)} "
                                 f"(or the aspect ratios {', '.join(VEO_RATIOS)})", param="size")
    instance: dict[str, Any] = {"prompt": req.prompt}
    if req.reference is not None:
        instance["image"] = {"bytesBase64Encoded": base64.b64encode(req.reference).decode(),
                             "mimeType": req.reference_type or "image/png"}
    return _encoder.encode({"instances": [instance], "parameters": parameters})


class _Video(msgspec.Struct, frozen=True):
    uri: str | None = None


class _Sample(msgspec.Struct, frozen=True):
    video: _Video | None = None


class _VideoResponse(msgspec.Struct, frozen=True, rename="camel"):
    generated_samples: list[_Sample] | None = None
    rai_media_filtered_reasons: list[str] | None = None


class _OperationResponse(msgspec.Struct, frozen=True, rename="camel"):
    generate_video_response: _VideoResponse | None = None


class _Status(msgspec.Struct, frozen=True):
    code: int | None = None
    message: str | None = None


class Operation(msgspec.Struct, frozen=True):
    name: str
    done: bool = False
    response: _OperationResponse | None = None
    error: _Status | None = None


_operation: Final = msgspec.json.Decoder(Operation)


def read_operation(raw: bytes) -> Operation:
    """A long-running operation; a ValueError unless it is one with a name Veo would give."""
    op = _operation.decode(raw)
    if not OPERATION.fullmatch(op.name):
        raise ValueError(f"an operation name that is not one: {op.name[:100]!r}")
    return op


def video_uri(op: Operation) -> str | None:
    samples = op.response.generate_video_response if op.response is not None else None
    for s in (samples.generated_samples if samples is not None else None) or ():
        if s.video is not None and s.video.uri:
            return s.video.uri
    return None


def job_of(op: Operation, *, started: bool = False) -> VideoJob:
    """The canonical job of an operation: queued when just started, in progress until done, then
    completed (a video to fetch) or failed (an error, or every sample filtered out)."""
    if op.error is not None:
        return VideoJob(id=op.name, status="failed", error=op.error.message or f"error {op.error.code}")
    if not op.done:
        return VideoJob(id=op.name, status="queued" if started else "in_progress")
    if video_uri(op) is not None:
        return VideoJob(id=op.name, status="completed", progress=100)
    reasons = op.response.generate_video_response if op.response is not None else None
    why = "; ".join((reasons.rai_media_filtered_reasons if reasons is not None else None) or ())
    return VideoJob(id=op.name, status="failed", error=why or "the operation ended without a video")


def is_mp4(data: bytes) -> bool:
    """An ISO base media file (Veo's MP4s start with an ``ftyp`` box)."""
    return data[4:8] == b"ftyp"
