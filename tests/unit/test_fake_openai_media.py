"""The fake OpenAI upstream's non-chat surfaces (embeddings, image generation, speech, transcriptions, videos),
driven by the official ``openai`` SDK and by raw HTTP.

Every good path also asserts that the fake found nothing against the official schemas (``spec_errors``).
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import spec
from tests.fakes.openai_server import (
    TINY_PNG,
    UPSTREAM_SECRET,
    Behavior,
    FakeOpenAI,
    embedding_for,
)

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
HEADERS = {"Authorization": f"Bearer {UPSTREAM_SECRET}"}
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt fake audio bytes"
SORA = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    fake.spec_errors.clear()
    with openai.OpenAI(base_url=fake.base_url, api_key=UPSTREAM_SECRET, max_retries=0, timeout=10) as c:
        yield c


def _post(fake: FakeOpenAI, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        if body is not None:
            kwargs["json"] = body
        return http.post(fake.base_url + path, headers=HEADERS, **kwargs)


def _get(fake: FakeOpenAI, path: str, **params: Any) -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        return http.get(fake.base_url + path, headers=HEADERS, params=params)


def _sse(text: str) -> list[dict[str, Any]]:
    return [data for _, data in spec.parse_sse(text)]


# --- embeddings ------------------------------------------------------------------------------------------


def test_embeddings_float_and_base64_carry_the_same_vectors(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog sat"],
                                      encoding_format="float", dimensions=8)
    decoded = client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog sat"],
                                       dimensions=8)  # the SDK asks for base64 and decodes it
    assert fake.seen("text-embedding-3-small")[-1].body["encoding_format"] == "base64"
    assert [d.embedding for d in decoded.data] == [d.embedding for d in floats.data]
    assert floats.data[0].embedding == embedding_for("a cat", 8) != floats.data[1].embedding
    assert [len(d.embedding) for d in floats.data] == [8, 8] and [d.index for d in floats.data] == [0, 1]
    assert math.isclose(sum(x * x for x in floats.data[0].embedding), 1.0, rel_tol=1e-5)
    assert floats.object == "list" and floats.model == "text-embedding-3-small"
    assert (floats.usage.prompt_tokens, floats.usage.total_tokens) == (2 + 1 + 3 + 1, 7)
    raw = _post(fake, "/embeddings", {"model": "text-embedding-3-small", "input": "x", "dimensions": 4,
                                      "encoding_format": "base64"}).json()["data"][0]["embedding"]
    assert list(struct.unpack("<4f", base64.b64decode(raw))) == embedding_for("x", 4)
    assert fake.spec_errors == []


def test_embeddings_inputs_dimensions_and_refusals(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    one = client.embeddings.create(model="text-embedding-3-large", input="same text", encoding_format="float")
    assert len(one.data[0].embedding) == 3072 and one.usage.prompt_tokens == 3
    again = client.embeddings.create(model="text-embedding-3-large", input="same text", encoding_format="float")
    assert again.data[0].embedding == one.data[0].embedding
    tokens = client.embeddings.create(model="text-embedding-ada-002", input=[1, 2, 3], encoding_format="float")
    assert len(tokens.data) == 1 and len(tokens.data[0].embedding) == 1536 and tokens.usage.prompt_tokens == 3
    several = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2], [3]], dimensions=16)
    assert [d.embedding for d in several.data] == [embedding_for([1, 2], 16), embedding_for([3], 16)]
    assert several.usage.prompt_tokens == 3
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
    with pytest.raises(openai.BadRequestError, match="maximum dimensions"):
        client.embeddings.create(model="text-embedding-3-small", input="x", dimensions=2000)
    with pytest.raises(openai.BadRequestError, match="input"):
        client.embeddings.create(model="text-embedding-3-small", input="")
    assert fake.spec_errors == []  # the model's refusals, not spec problems


def test_scripted_failures_apply_to_the_media_endpoints(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("e-429", Behavior(status=429, retry_after="3", error_message="slow down"))
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model="e-429", input="x")
    assert info.value.response.headers["retry-after"] == "3" and "slow down" in info.value.message
    fake.script("i-garbage", Behavior(ok_but_error_body=True))
    garbage = _post(fake, "/images/generations", {"model": "i-garbage", "prompt": "x"})
    assert garbage.status_code == 200 and garbage.json()["error"]["type"] == "insufficient_quota"
    fake.script("tts-503", Behavior(status=503))
    with pytest.raises(openai.InternalServerError):
        client.audio.speech.create(model="tts-503", input="x", voice="alloy")
    fake.script("stt-500", Behavior(status=500))
    with pytest.raises(openai.InternalServerError):
        client.audio.transcriptions.create(model="stt-500", file=("a.wav", AUDIO))
    assert fake.spec_errors == []


# --- images ----------------------------------------------------------------------------------------------


def test_images_as_urls_served_by_the_fake(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    resp = client.images.generate(model="dall-e-2", prompt="a red fox", n=2, size="256x256")
    assert len(resp.data or []) == 2 and resp.usage is None
    for image in resp.data or []:
        assert image.url is not None and image.url.startswith(f"http://127.0.0.1:{fake.port}/files/img-")
        got = httpx.get(image.url, timeout=10)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content == TINY_PNG
    assert fake.seen("dall-e-2")[-1].body == {"model": "dall-e-2", "prompt": "a red fox", "n": 2, "size": "256x256"}
    assert fake.spec_errors == []


def test_images_as_base64_and_gpt_image_usage(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    three = client.images.generate(model="dall-e-3", prompt="a fox", response_format="b64_json")
    [image] = three.data or []
    assert image.b64_json is not None and base64.b64decode(image.b64_json) == TINY_PNG
    assert image.url is None and image.revised_prompt and "a fox" in image.revised_prompt
    assert TINY_PNG.startswith(b"\x89PNG\r\n\x1a\n")
    gpt = client.images.generate(model="gpt-image-1", prompt="a small blue fox", quality="low", n=2)
    assert [base64.b64decode(i.b64_json or "") for i in gpt.data or []] == [TINY_PNG, TINY_PNG]
    assert (gpt.size, gpt.quality, gpt.output_format, gpt.background) == ("1024x1024", "low", "png", "opaque")
    u = gpt.usage
    assert u is not None and (u.input_tokens, u.output_tokens, u.total_tokens) == (4, 544, 548)
    assert (u.input_tokens_details.text_tokens, u.input_tokens_details.image_tokens) == (4, 0)
    fake.script("gpt-image-1-mini", Behavior(completion_tokens=100))
    mini = client.images.generate(model="gpt-image-1-mini", prompt="x")
    assert mini.usage is not None and mini.usage.output_tokens == 100
    assert fake.spec_errors == []


def test_image_model_refusals(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="n=1"):
        client.images.generate(model="dall-e-3", prompt="x", n=2)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.images.generate(model="gpt-image-1", prompt="x", response_format="url")
    with pytest.raises(openai.BadRequestError, match="256x256"):
        client.images.generate(model="dall-e-2", prompt="x", size="1792x1024")
    assert httpx.get(f"http://127.0.0.1:{fake.port}/files/img-999.png", timeout=10).status_code == 404
    assert fake.spec_errors == []


# --- speech ----------------------------------------------------------------------------------------------


def test_speech_streams_mp3_in_several_chunks(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy",
                                                            input="hello there general kenobi") as resp:
        assert resp.headers["content-type"] == "audio/mpeg"
        assert resp.headers.get("transfer-encoding") == "chunked"
        chunks = list(resp.iter_bytes())
    audio = b"".join(chunks)
    assert len([c for c in chunks if c]) > 1
    assert audio.startswith(b"ID3") and audio[10:12] == b"\xff\xfb"
    assert fake.seen("tts-1")[-1].body == {"model": "tts-1", "voice": "alloy", "input": "hello there general kenobi"}
    assert fake.spec_errors == []


def test_speech_wav_and_pcm(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    wav = client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input="one two", response_format="wav",
                                     instructions="Cheerful.", speed=1.5)
    assert wav.response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.content)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 24000, 4800)
    pcm = client.audio.speech.create(model="tts-1-hd", voice={"id": "voice_123"}, input="one two",
                                     response_format="pcm")
    assert pcm.response.headers["content-type"] == "audio/pcm" and len(pcm.content) == 2 * 4800
    assert pcm.content == wav.content[44:]
    for fmt, magic in (("opus", b"OggS"), ("aac", b"\xff\xf1"), ("flac", b"fLaC")):
        got = client.audio.speech.create(model="tts-1", voice="echo", input="x", response_format=fmt)  # type: ignore[arg-type]
        assert got.content.startswith(magic), fmt
    assert fake.spec_errors == []


def test_speech_sse_events(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("gpt-4o-mini-tts", Behavior(completion_tokens=77))
    with httpx.Client(timeout=10) as http, http.stream(
            "POST", fake.base_url + "/audio/speech", headers=HEADERS,
            json={"model": "gpt-4o-mini-tts", "voice": "alloy", "input": "stream me please", "stream_format": "sse",
                  "response_format": "pcm"}) as resp:
        assert resp.headers["content-type"] == "text/event-stream"
        reads = [chunk for chunk in resp.iter_raw() if chunk]
    events = _sse(b"".join(reads).decode())
    assert len(reads) > 1
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 4 + ["speech.audio.done"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) == 2 * 7200
    assert events[-1]["usage"] == {"input_tokens": 3, "output_tokens": 77, "total_tokens": 80}
    assert all(spec.errors("CreateSpeechResponseStreamEvent", e) == [] for e in events)
    with pytest.raises(openai.BadRequestError, match="stream_format"):
        client.audio.speech.create(model="tts-1", voice="alloy", input="x", stream_format="sse")
    fake.script("tts-cut", Behavior(drop_after=1))
    with pytest.raises(Exception, match="incomplete chunked read"), \
            client.audio.speech.with_streaming_response.create(model="tts-cut", voice="alloy", input="a b c") as r:
        list(r.iter_bytes())  # a cut body: the transport's error, raised while reading
    fake.script("gpt-4o-mini-tts", Behavior())
    assert fake.spec_errors == []


# --- transcriptions --------------------------------------------------------------------------------------


def test_whisper_transcription_formats(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    text = "one two three four five six seven eight nine ten"
    fake.script("whisper-1", Behavior(text=text, audio_seconds=4.2))
    plain = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", AUDIO, "audio/wav"),
                                               language="en", prompt="Numbers.", temperature=0.2)
    assert plain.text == text and plain.usage is not None and plain.usage.model_dump() == {
        "type": "duration", "seconds": 5.0}
    seen = fake.seen("whisper-1")[-1]
    assert seen.files["file"].filename == "clip.wav" and seen.files["file"].data == AUDIO
    assert seen.files["file"].content_type == "audio/wav"
    assert seen.body == {"model": "whisper-1", "file": f"<file clip.wav: {len(AUDIO)} bytes>", "language": "en",
                         "prompt": "Numbers.", "temperature": 0.2}
    assert client.audio.transcriptions.create(model="whisper-1", file=("c.wav", AUDIO),
                                              response_format="text") == text + "\n"
    srt = client.audio.transcriptions.create(model="whisper-1", file=("c.wav", AUDIO), response_format="srt")
    assert srt == ("1\n00:00:00,000 --> 00:00:03,360\none two three four five six seven eight\n\n"
                   "2\n00:00:03,360 --> 00:00:04,200\nnine ten\n\n")
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("c.wav", AUDIO), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:03.360\none two") and "00:00:04.200\nnine ten" in vtt
    verbose = client.audio.transcriptions.create(model="whisper-1", file=("c.wav", AUDIO), language="fr",
                                                 response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"])
    assert (verbose.language, verbose.duration, verbose.text) == ("french", 4.2, text)
    assert [s.text for s in verbose.segments or []] == [" one two three four five six seven eight", " nine ten"]
    assert verbose.words is not None and verbose.words[1].word == "two" and verbose.words[-1].end == 4.2
    assert fake.seen("whisper-1")[-1].body["timestamp_granularities"] == ["word", "segment"]
    words_only = client.audio.transcriptions.create(model="whisper-1", file=("c.wav", AUDIO),
                                                    response_format="verbose_json", timestamp_granularities=["word"])
    assert words_only.segments is None and words_only.words
    streamed = client.audio.transcriptions.create(model="whisper-1", file=("c.wav", AUDIO), stream=True)
    assert [e.type for e in streamed] == []  # whisper-1 ignores stream: a JSON body, no events
    fake.script("whisper-1", Behavior())
    assert fake.spec_errors == []


def test_gpt4o_transcription_tokens_logprobs_and_stream(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("gpt-4o-transcribe", Behavior(text="Hello world again.", prompt_tokens=40))
    done = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.mp3", AUDIO), prompt="Greeting",
                                              include=["logprobs"])
    assert done.text == "Hello world again." and done.usage is not None
    assert done.usage.model_dump() == {"type": "tokens", "input_tokens": 41, "output_tokens": 3, "total_tokens": 44,
                                       "input_token_details": {"text_tokens": 1, "audio_tokens": 40}}
    assert [p.token for p in done.logprobs or []] == ["Hello", "world", "again."]
    assert client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.mp3", AUDIO),
                                              response_format="text") == "Hello world again.\n"
    events = list(client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.mp3", AUDIO), stream=True))
    assert [e.type for e in events] == ["transcript.text.delta"] * 3 + ["transcript.text.done"]
    assert "".join(e.delta for e in events if e.type == "transcript.text.delta") == "Hello world again."
    last = events[-1]
    assert last.type == "transcript.text.done" and last.text == "Hello world again."
    assert last.usage is not None and last.usage.total_tokens == 43
    assert fake.seen("gpt-4o-transcribe")[-1].body["stream"] is True
    for fmt in ("verbose_json", "srt", "vtt"):
        with pytest.raises(openai.BadRequestError, match="not compatible"):
            client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.mp3", AUDIO),
                                               response_format=fmt)
    with pytest.raises(openai.BadRequestError, match="timestamp_granularities"):
        client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", AUDIO), timestamp_granularities=["word"])
    fake.script("gpt-4o-transcribe", Behavior())
    assert fake.spec_errors == []


# --- videos ----------------------------------------------------------------------------------------------


@SORA
def test_video_lifecycle(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("sora-2-pro", Behavior(polls=2))
    video = client.videos.create(model="sora-2-pro", prompt="a fox running", seconds="8", size="1792x1024",
                                 input_reference=("ref.png", TINY_PNG, "image/png"))
    assert (video.status, video.progress, video.model, video.seconds, video.size) == (
        "queued", 0, "sora-2-pro", "8", "1792x1024")
    assert video.object == "video" and video.completed_at is None and video.error is None
    reference = fake.videos[video.id].reference
    assert reference is not None and reference.data == TINY_PNG
    assert fake.seen("sora-2-pro")[-1].files["input_reference"].filename == "ref.png"
    with pytest.raises(openai.NotFoundError, match="not ready"):
        client.videos.download_content(video.id)
    polled = client.videos.retrieve(video.id)
    assert (polled.status, polled.progress) == ("in_progress", 50)
    done = client.videos.retrieve(video.id)
    assert (done.status, done.progress) == ("completed", 100) and done.completed_at and done.expires_at
    assert client.videos.retrieve(video.id).status == "completed" and fake.videos[video.id].polls == 2
    content = client.videos.download_content(video.id)
    assert content.response.headers["content-type"] == "video/mp4" and content.content[4:8] == b"ftyp"
    thumb = client.videos.download_content(video.id, variant="thumbnail")
    assert thumb.response.headers["content-type"] == "image/webp" and thumb.content.startswith(b"RIFF")
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    assert fake.spec_errors == []


@SORA
def test_video_failure_listing_and_json_create(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.videos.clear()
    fake.script("sora-bad", Behavior(polls=0, video_error="moderation_blocked", error_message="Blocked."))
    failed = client.videos.create(model="sora-bad", prompt="x")
    got = client.videos.retrieve(failed.id)
    assert got.status == "failed" and got.error is not None
    assert (got.error.code, got.error.message) == ("moderation_blocked", "Blocked.")
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(failed.id)
    by_json = _post(fake, "/videos", {"model": "sora-2", "prompt": "json body",
                                      "input_reference": {"image_url": "https://example.com/a.png"}})
    assert by_json.status_code == 200 and by_json.json()["status"] == "queued"
    assert fake.seen("sora-2")[-1].body["input_reference"] == {"image_url": "https://example.com/a.png"}
    third = client.videos.create(prompt="defaults")
    assert (third.model, third.seconds, third.size) == ("sora-2", "4", "720x1280")
    listed = client.videos.list(order="asc")
    ids = [v.id for v in listed.data]
    assert ids == [failed.id, by_json.json()["id"], third.id]
    page = client.videos.list(limit=2)
    assert [v.id for v in page.data] == ids[::-1][:2] and page.has_more and page.last_id == ids[1]
    rest = _get(fake, "/videos", limit=2, after=ids[1]).json()
    assert [v["id"] for v in rest["data"]] == [ids[0]] and rest["has_more"] is False and rest["first_id"] == ids[0]
    assert [v.id for v in client.videos.list()] == ids[::-1]  # the SDK's auto-pagination stops
    with pytest.raises(openai.BadRequestError, match="720x1280"):
        client.videos.create(model="sora-2", prompt="x", size="1792x1024")
    assert fake.spec_errors == []


# --- spec violations -------------------------------------------------------------------------------------


def test_spec_violations_are_400(fake: FakeOpenAI) -> None:
    fake.spec_errors.clear()
    bad: list[httpx.Response] = [
        _post(fake, "/embeddings", {"model": "e", "input": "x", "encoding": "float"}),  # unknown key
        _post(fake, "/embeddings", {"model": "e"}),  # input missing
        _post(fake, "/embeddings", {"model": "e", "input": "x", "encoding_format": "int8"}),
        _post(fake, "/images/generations", {"prompt": "x", "n": 11}),
        _post(fake, "/audio/speech", {"model": "tts-1", "input": "x"}),  # voice missing
        _post(fake, "/audio/speech", {"model": "tts-1", "input": "x", "voice": "alloy", "speed": 9}),
        _post(fake, "/audio/transcriptions", files={"file": ("a.wav", AUDIO)}, data={"model": "whisper-1",
                                                                                      "verbose": "true"}),
        _post(fake, "/audio/transcriptions", files={"file": ("a.wav", AUDIO)},
              data={"model": "whisper-1", "response_format": "xml"}),
        _post(fake, "/audio/transcriptions", {"model": "whisper-1"}),  # JSON, not multipart
        _post(fake, "/videos", {"prompt": "x", "seconds": "5"}),
        _post(fake, "/videos", files={"input_reference": ("a.png", TINY_PNG)}, data={"prompt": "x", "fps": "30"}),
        _get(fake, "/videos", order="sideways"),
    ]
    assert [r.status_code for r in bad] == [400] * len(bad)
    errors = [r.json()["error"] for r in bad]
    assert all(spec.errors("ErrorResponse", r.json()) == [] for r in bad)
    assert (errors[0]["code"], errors[0]["param"]) == ("unknown_parameter", "encoding")
    assert "'input' is a required property" in errors[1]["message"]
    assert "'int8' is not one of" in errors[2]["message"] and "11 is greater than the maximum" in errors[3]["message"]
    assert (errors[6]["code"], errors[6]["param"]) == ("unknown_parameter", "verbose")
    assert (errors[10]["code"], errors[10]["param"]) == ("unknown_parameter", "fps")
    assert "'5' is not one of" in errors[9]["message"]
    assert len(fake.spec_errors) >= len(bad), fake.spec_errors
    unknown = httpx.get(fake.base_url + "/videos/video_nope", headers=HEADERS, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    with FakeOpenAI(reject_invalid=False) as lax:
        assert _post(lax, "/embeddings", {"model": "e", "input": "x", "encoding": "float"}).status_code == 200
        assert lax.spec_errors == ["CreateEmbeddingRequest: encoding: unknown parameter",
                                   "CreateEmbeddingRequest: : Additional properties are not allowed "
                                   "('encoding' was unexpected)"]


def test_form_payload_types_fields_by_the_schema() -> None:
    fields = [("model", "whisper-1"), ("file", "<file a.wav: 3 bytes>"), ("temperature", "0.5"),
              ("stream", "true"), ("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment"),
              ("include[]", "logprobs"), ("prompt", "123")]
    assert spec.form_payload("CreateTranscriptionRequest", fields) == {
        "model": "whisper-1", "file": "<file a.wav: 3 bytes>", "temperature": 0.5, "stream": True,
        "timestamp_granularities": ["word", "segment"], "include": ["logprobs"], "prompt": "123"}
    video = spec.form_payload("CreateVideoMultipartBody", [("prompt", "x"), ("seconds", "8"),
                                                           ("input_reference[image_url]", "https://e.com/a.png")])
    assert video == {"prompt": "x", "seconds": "8", "input_reference": {"image_url": "https://e.com/a.png"}}
    assert spec.request_errors("CreateVideoMultipartBody", video) == []


def test_subset_has_the_media_schemas() -> None:
    names = set(spec.schema_names())
    assert {"CreateEmbeddingRequest", "CreateEmbeddingResponse", "CreateImageRequest", "ImagesResponse",
            "CreateSpeechRequest", "CreateSpeechResponseStreamEvent", "CreateTranscriptionRequest",
            "CreateTranscriptionResponseJson", "CreateTranscriptionResponseVerboseJson",
            "CreateTranscriptionResponseStreamEvent", "CreateVideoJsonBody", "CreateVideoMultipartBody",
            "VideoResource", "VideoListResource", "DeletedVideoResource"} <= names
    source = json.loads((SPECS / "openai-chat-schemas.json").read_text())["source"]
    assert "f85dbe223d40e1a31cba812ab2d755c7e98a92a3" in source
