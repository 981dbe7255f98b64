"""Issue 14: the OpenAI-shaped media surfaces over the upstreams without OpenAI's endpoints, end to
end (the official ``openai`` SDK -> ``tollway serve`` -> the Gemini and Bedrock fakes): the
gateway translates, and encodes the answer in OpenAI's shape (embeddings as floats or base64,
images as b64_json or signed URLs, speech as wav, transcripts in every format, Veo as a task)."""

from __future__ import annotations

import base64
import io
import struct
import time
import wave
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.fakes.bedrock_server import ACCESS_KEY_ID, SECRET_KEY, FakeBedrock
from tests.fakes.gemini_server import GEMINI_KEY, MP4, FakeGemini
from tests.fakes.gemini_server import Behavior as GeminiBehavior


@pytest.fixture(scope="module")
def gw(fake_gemini: FakeGemini, fake_bedrock: FakeBedrock,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("media-upstreams"), env={
        "GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": fake_gemini.base_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
        "BEDROCK_BASE_URL": fake_bedrock.base_url, "TOLLWAY_TASK_POLL_INTERVAL": "0.2",
        "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1"}).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=gw.create_key("upstreams"), base_url=gw.url + "/v1", max_retries=0,
                       timeout=30) as c:
        yield c


@pytest.mark.parametrize("model, dims", [("gemini-embedding-001", 3072), ("bedrock/titan-embed-text-v2", 1024),
                                         ("bedrock/cohere-embed-english-v3", 1024)])
def test_embeddings_translated_float_and_base64(client: openai.OpenAI, model: str, dims: int) -> None:
    floats = client.embeddings.create(model=model, input=["alpha", "beta"], encoding_format="float")
    assert [len(d.embedding) for d in floats.data] == [dims, dims] and floats.model == model
    assert floats.usage.prompt_tokens > 0
    default = client.embeddings.create(model=model, input=["alpha", "beta"])  # the SDK asks for base64
    assert default.data[1].embedding == pytest.approx(floats.data[1].embedding, rel=1e-6)


def test_gemini_refuses_token_arrays(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="text only"):
        client.embeddings.create(model="gemini-embedding-001", input=[[1, 2, 3]])


@pytest.mark.parametrize("model", ["gemini-2.5-flash-image", "imagen-4.0-generate-001",
                                   "bedrock/titan-image-generator-v2", "bedrock/nova-canvas"])
def test_images_translated(client: openai.OpenAI, model: str) -> None:
    out = client.images.generate(model=model, prompt="a lighthouse", n=2, size="1024x1024")
    assert len(out.data) == 2
    assert base64.b64decode(out.data[0].b64_json or "")[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_translated_image_as_a_signed_url(client: openai.OpenAI) -> None:
    out = client.images.generate(model="bedrock/nova-canvas", prompt="a fox", response_format="url")
    url = out.data[0].url or ""
    assert "/blobs/" in url and "signature=" in url
    got = httpx.get(url, timeout=10)
    assert got.status_code == 200 and got.content[:4] == b"\x89PNG"


def test_a_size_the_model_cannot_make_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="1536x1024"):
        client.images.generate(model="imagen-4.0-generate-001", prompt="x", size="1536x1024")


def test_gemini_speech_as_wav(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model="gemini-2.5-flash-preview-tts", voice="Kore", input="Hello there",
                                       response_format="wav")
    with wave.open(io.BytesIO(audio.content)) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 0
    with pytest.raises(openai.BadRequestError, match="wav or pcm"):
        client.audio.speech.create(model="gemini-2.5-flash-preview-tts", voice="Kore", input="x")  # mp3


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack("<8000h", *([0] * 8000)))
    return buf.getvalue()


def test_gemini_transcription_in_every_format(client: openai.OpenAI, fake_gemini: FakeGemini) -> None:
    fake_gemini.script("gemini-2.5-flash", GeminiBehavior(text="the quick brown fox"))
    try:
        plain = client.audio.transcriptions.create(model="gemini-2.5-flash", file=("a.wav", _wav(), "audio/wav"))
        assert plain.text.strip() == "the quick brown fox"
        srt = client.audio.transcriptions.create(model="gemini-2.5-flash", file=("a.wav", _wav(), "audio/wav"),
                                                 response_format="srt")
        assert "-->" in srt and "the quick brown fox" in srt
    finally:
        fake_gemini.script("gemini-2.5-flash", GeminiBehavior())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_veo_through_openais_videos_api(client: openai.OpenAI, fake_gemini: FakeGemini) -> None:
    fake_gemini.script("veo-3.0-fast-generate-001", GeminiBehavior(polls=2))
    video = client.videos.create(model="veo-3.0-fast-generate-001", prompt="waves", seconds="8",  # type: ignore[arg-type]
                                 size="1280x720")
    deadline = time.time() + 20
    while video.status in ("queued", "in_progress") and time.time() < deadline:
        time.sleep(0.2)
        video = client.videos.retrieve(video.id)
    assert video.status == "completed", video
    assert client.videos.download_content(video.id).content == MP4


def test_a_chat_only_provider_model_cannot_make_images(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="does not serve images"):
        client.images.generate(model="bedrock/nova-pro", prompt="x")
