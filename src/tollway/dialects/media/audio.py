"""``POST /v1/audio/speech`` and ``POST /v1/audio/transcriptions`` in OpenAI's shape. Pure: the
route parses the multipart form and hands its fields here.

Speech: ``input`` (at most ``MAX_SPEECH_INPUT`` characters), ``voice``, ``response_format`` (mp3,
opus, aac, flac, wav, pcm), ``speed``, ``instructions``, ``stream_format`` (audio | sse). Billed
per character where the model prices characters (its input is known up front).

Transcriptions: ``file`` (one of ``AUDIO_FORMATS`` by its name's extension), ``model``,
``language``, ``prompt``, ``temperature``, ``response_format`` (json, text, srt, vtt,
verbose_json) and ``stream``. The gateway asks the upstream for the fullest answer it has
(segments and duration) and renders the format asked for, so that every upstream gives every
format that its answer allows (srt and vtt need segments: without them, one cue spans the audio).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from tollway.core.errors import InvalidRequest, require
from tollway.core.json_input import body_loads
from tollway.core.media import Segment, SpeechRequest, Transcript, TranscriptionRequest

MAX_SPEECH_INPUT: Final = 4096  # OpenAI's limit
SPEECH_FORMATS: Final = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                         "wav": "audio/wav", "pcm": "audio/pcm"}
STREAM_FORMATS: Final = ("audio", "sse")
AUDIO_FORMATS: Final = {"flac": "audio/flac", "mp3": "audio/mpeg", "mp4": "audio/mp4", "mpeg": "audio/mpeg",
                        "mpga": "audio/mpeg", "m4a": "audio/mp4", "ogg": "audio/ogg", "oga": "audio/ogg",
                        "wav": "audio/wav", "webm": "audio/webm"}
TRANSCRIPT_FORMATS: Final = ("json", "text", "srt", "vtt", "verbose_json")
BYTES_PER_SECOND: Final = 2000  # the fewest bytes a second of compressed speech takes (16 kbit/s): a bound


class _SpeechView(msgspec.Struct, kw_only=True):
    model: Any = None
    input: Any = None
    voice: Any = None
    response_format: Any = None
    speed: Any = None
    instructions: Any = None
    stream_format: Any = None


_speech_view = msgspec.json.Decoder(_SpeechView)
_body = msgspec.json.Decoder(dict[str, Any])


class SpeechAsk(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    canonical: SpeechRequest
    sse: bool
    body: dict[str, Any]

    @property
    def media_type(self) -> str:
        return "text/event-stream" if self.sse else SPEECH_FORMATS[self.canonical.response_format]


def decode_speech(raw: bytes) -> SpeechAsk:
    view = body_loads(raw, _speech_view)
    require(isinstance(view.model, str) and view.model != "", "The 'model' field is required.", "model")
    require(isinstance(view.input, str) and view.input != "", "The 'input' field is required.", "input")
    require(len(view.input) <= MAX_SPEECH_INPUT,
            f"'input' is {len(view.input)} characters long; at most {MAX_SPEECH_INPUT} are spoken at once.", "input")
    voice = view.voice
    if isinstance(voice, dict):  # a custom voice: {"id": "voice_..."}
        voice = voice.get("id")
    require(isinstance(voice, str) and voice != "", "The 'voice' field is required.", "voice")
    fmt = "mp3" if view.response_format is None else view.response_format
    if not isinstance(fmt, str) or fmt not in SPEECH_FORMATS:
        raise InvalidRequest(f"response_format {fmt!r} is not supported: use one of {', '.join(SPEECH_FORMATS)}.",
                             param="response_format")
    speed = view.speed
    require(speed is None or (isinstance(speed, (int, float)) and not isinstance(speed, bool)
                              and 0.25 <= speed <= 4.0), "'speed' must be a number from 0.25 to 4.0.", "speed")
    stream = "audio" if view.stream_format is None else view.stream_format
    require(stream in STREAM_FORMATS, f"stream_format {stream!r} is not supported: use 'audio' or 'sse'.",
            "stream_format")
    instructions = view.instructions if isinstance(view.instructions, str) else None
    canonical = SpeechRequest(input=view.input, voice=voice, response_format=fmt,
                              speed=float(speed) if speed is not None else None, instructions=instructions)
    return SpeechAsk(model=view.model, canonical=canonical, sse=stream == "sse", body=_body.decode(raw))


class TranscriptionAsk(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    canonical: TranscriptionRequest
    response_format: str
    stream: bool
    fields: list[tuple[str, str]]  # the form's text fields as sent (for an OpenAI-wire upstream)

    @property
    def seconds_bound(self) -> int:
        """The most seconds the audio can hold, from its size."""
        return len(self.canonical.audio) // BYTES_PER_SECOND + 1


def decode_transcription(fields: list[tuple[str, str]], filename: str | None, audio: bytes | None) -> TranscriptionAsk:
    """A transcription form: its text ``fields`` and its ``file`` (name and bytes; None: absent)."""
    form = dict(fields)
    model = form.get("model", "")
    require(model != "", "The 'model' field is required.", "model")
    if audio is None or filename is None:
        raise InvalidRequest("The 'file' field is required: upload the audio as a file.", param="file")
    require(len(audio) > 0, "The uploaded file is empty.", "file")
    ext = filename.rpartition(".")[2].lower() if "." in filename else ""
    if ext not in AUDIO_FORMATS:
        raise InvalidRequest(f"Unsupported file format {ext or filename!r}: use one of {', '.join(AUDIO_FORMATS)}.",
                             code="unsupported_format", param="file")
    fmt = form.get("response_format", "json")
    if fmt not in TRANSCRIPT_FORMATS:
        raise InvalidRequest(f"response_format {fmt!r} is not supported: use one of {', '.join(TRANSCRIPT_FORMATS)}.",
                             param="response_format")
    temperature = None
    if form.get("temperature"):
        try:
            temperature = float(form["temperature"])
        except ValueError:
            raise InvalidRequest("'temperature' must be a number.", param="temperature") from None
        require(0 <= temperature <= 1, "'temperature' must be from 0 to 1.", "temperature")
    stream = form.get("stream", "false").lower() in ("true", "1")
    canonical = TranscriptionRequest(audio=audio, filename=filename, media_type=AUDIO_FORMATS[ext],
                                     language=form.get("language") or None, prompt=form.get("prompt") or None,
                                     temperature=temperature)
    return TranscriptionAsk(model=model, canonical=canonical, response_format=fmt, stream=stream, fields=fields)


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(t: Transcript) -> list[Segment]:
    if t.segments:
        return t.segments
    return [Segment(start=0.0, end=t.duration or 0.0, text=t.text)]


def render_transcript(t: Transcript, fmt: str) -> tuple[bytes, str]:
    """A transcript in ``fmt`` (``TRANSCRIPT_FORMATS``), and its media type."""
    if fmt == "text":
        return (t.text + "\n").encode(), "text/plain; charset=utf-8"
    if fmt == "srt":
        lines = [f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{c.text.strip()}\n"
                 for i, c in enumerate(_cues(t), 1)]
        return "\n".join(lines).encode(), "text/plain; charset=utf-8"
    if fmt == "vtt":
        lines = ["WEBVTT\n"] + [f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{c.text.strip()}\n"
                                 for c in _cues(t)]
        return "\n".join(lines).encode(), "text/vtt; charset=utf-8"
    body: dict[str, Any] = {"text": t.text}
    if fmt == "verbose_json":
        body.update(task="transcribe", language=t.language or "unknown", duration=t.duration or 0.0,
                    segments=[{"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                               "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0,
                               "no_speech_prob": 0.0} for i, s in enumerate(t.segments)])
    if t.usage is not None:
        body["usage"] = {"type": "tokens", "input_tokens": t.usage.input_tokens,
                         "output_tokens": t.usage.output_tokens, "total_tokens": t.usage.total_tokens}
    elif t.duration is not None and fmt == "json":
        body["usage"] = {"type": "duration", "seconds": round(t.duration)}
    return msgspec.json.encode(body), "application/json"
