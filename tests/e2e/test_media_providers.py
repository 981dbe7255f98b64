"""The non-chat surfaces of the Gemini and Bedrock adapters (``providers.base``: Embedder,
ImageMaker, Speaker, Transcriber, VideoMaker) against their fakes over real HTTP on loopback:
every body must pass the fake's checks of the documented shapes, and what comes back must be
what the fake sent (vectors, PNGs, WAV/PCM, transcripts, Veo's operation and video)."""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes.bedrock_server import ACCESS_KEY_ID, SECRET_KEY, FakeBedrock, embedding_vector
from tests.fakes.bedrock_server import Behavior as BedrockBehavior
from tests.fakes.gemini_server import GEMINI_KEY, MP4, FakeGemini, tone, vector
from tests.fakes.gemini_server import Behavior as GeminiBehavior
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.media import (
    CATEGORY,
    EMBEDDINGS,
    IMAGES,
    SPEECH,
    TRANSCRIPTION,
    VIDEO,
    EmbedRequest,
    ImageRequest,
    SpeechRequest,
    TranscriptionRequest,
    VideoRequest,
)
from tollway.providers import bedrock, gemini
from tollway.providers.base import Embedder, ImageMaker, ProviderContext, Speaker, Transcriber, VideoMaker
from tollway.providers.http import Timeouts
from tollway.providers.media import MediaFetcher, MediaPolicy

GCRED = Credential(id="g1", secret=GEMINI_KEY)
BCRED = Credential(id="b1", secret=SECRET_KEY, extra={"access_key_id": ACCESS_KEY_ID})
TIMEOUTS = Timeouts(connect=2, first_byte=5, idle=2)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gfake() -> Iterator[FakeGemini]:
    server = FakeGemini()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bfake() -> Iterator[FakeBedrock]:
    server = FakeBedrock()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_fakes(gfake: FakeGemini, bfake: FakeBedrock) -> Iterator[None]:
    """Every test: the fakes saw and sent only documented shapes; scripts do not outlive it."""
    before = len(gfake.spec_errors), len(bfake.spec_errors)
    yield
    gfake.behaviors.clear()
    bfake.behaviors.clear()
    assert gfake.spec_errors[before[0]:] == []
    assert bfake.spec_errors[before[1]:] == []


@pytest.fixture
async def gem(gfake: FakeGemini) -> AsyncIterator[gemini.GeminiProvider]:
    media = MediaFetcher(MediaPolicy(allow_private=True))
    p = gemini.build(ProviderConfig(name="gemini", kind="gemini", base_url=gfake.base_url, credentials=(GCRED,)),
                     ProviderContext(timeouts=TIMEOUTS, media=media))
    yield p
    await p.close()
    await media.close()


@pytest.fixture
async def bed(bfake: FakeBedrock) -> AsyncIterator[bedrock.BedrockProvider]:
    media = MediaFetcher(MediaPolicy(allow_private=True))
    p = bedrock.build(ProviderConfig(name="bedrock", kind="bedrock", base_url=bfake.base_url, credentials=(BCRED,),
                                     options={"region": "us-east-1"}),
                      ProviderContext(timeouts=TIMEOUTS, media=media))
    yield p
    await p.close()
    await media.close()


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height, after checking its signature, every chunk's CRC and its pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = body
        pos += 12 + length
    assert set(chunks) == {b"IHDR", b"IDAT", b"IEND"}
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    return width, height


def test_the_adapters_implement_the_protocols(gfake: FakeGemini, bfake: FakeBedrock) -> None:
    g = gemini.build(ProviderConfig(name="gemini", kind="gemini", base_url=gfake.base_url),
                     ProviderContext(timeouts=TIMEOUTS, media=MediaFetcher(MediaPolicy())))
    b = bedrock.build(ProviderConfig(name="bedrock", kind="bedrock", base_url=bfake.base_url,
                                     options={"region": "us-east-1"}),
                      ProviderContext(timeouts=TIMEOUTS, media=MediaFetcher(MediaPolicy())))
    for proto in (Embedder, ImageMaker, Speaker, Transcriber, VideoMaker):
        assert isinstance(g, proto), proto
    assert isinstance(b, Embedder) and isinstance(b, ImageMaker)
    assert not isinstance(b, Speaker | Transcriber | VideoMaker)


def test_catalog_entries() -> None:
    gmodels = {m.id: m for m in gemini.SPEC.models}
    want = {"gemini-embedding-001": EMBEDDINGS, "text-embedding-004": EMBEDDINGS, "gemini-2.5-flash-image": IMAGES,
            "imagen-4.0-generate-001": IMAGES, "gemini-2.5-flash-preview-tts": SPEECH,
            "gemini-2.5-pro-preview-tts": SPEECH, "veo-3.0-generate-001": VIDEO, "veo-3.0-fast-generate-001": VIDEO,
            "veo-2.0-generate-001": VIDEO}
    for mid, cap in want.items():
        assert gmodels[mid].capabilities == (cap,) and gmodels[mid].category == CATEGORY[cap], mid
    assert TRANSCRIPTION in gmodels["gemini-2.5-flash"].capabilities
    assert gmodels["gemini-2.5-pro"].category == "chat" and "tools" in gmodels["gemini-2.5-pro"].capabilities
    bmodels = {m.upstream_id: m for m in bedrock.SPEC.models}
    for upstream, cap in {"amazon.titan-embed-text-v2:0": EMBEDDINGS, "cohere.embed-english-v3": EMBEDDINGS,
                          "cohere.embed-multilingual-v3": EMBEDDINGS, "amazon.titan-image-generator-v2:0": IMAGES,
                          "amazon.nova-canvas-v1:0": IMAGES}.items():
        assert bmodels[upstream].capabilities == (cap,) and bmodels[upstream].category == CATEGORY[cap], upstream


# --- Gemini: embeddings ----------------------------------------------------------------------------


async def test_gemini_embeddings_vectors_dimensions_and_estimated_usage(gem: gemini.GeminiProvider,
                                                                        gfake: FakeGemini) -> None:
    texts = ("hello world", "second")
    out = await gem.embed(EmbedRequest(texts=texts, dimensions=256), upstream_model="gemini-embedding-001",
                          credential=GCRED)
    assert out.vectors == [vector(t, 256) for t in texts]
    assert out.usage.input_tokens == math.ceil(11 / 4) + math.ceil(6 / 4)
    seen = gfake.seen("gemini-embedding-001")[-1]
    assert seen.method == "batchEmbedContents" and seen.api_key == GEMINI_KEY
    assert seen.body["requests"][0] == {"model": "models/gemini-embedding-001",
                                        "content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 256}


async def test_gemini_embeddings_over_a_batch_keep_their_order(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    texts = tuple(f"text number {i}" for i in range(205))
    before = len(gfake.seen("text-embedding-004"))
    out = await gem.embed(EmbedRequest(texts=texts), upstream_model="text-embedding-004", credential=GCRED)
    assert out.vectors == [vector(t, 768) for t in texts]
    calls = gfake.seen("text-embedding-004")[before:]
    assert sorted(len(c.body["requests"]) for c in calls) == [5, 100, 100]


async def test_gemini_embeddings_refuse_token_arrays(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    before = len(gfake.requests)
    with pytest.raises(InvalidRequest, match="text only"):
        await gem.embed(EmbedRequest(tokens=((1, 2, 3),)), upstream_model="gemini-embedding-001", credential=GCRED)
    assert len(gfake.requests) == before


# --- Gemini: images --------------------------------------------------------------------------------


async def test_gemini_images_are_pngs_one_call_each(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    model = "gemini-2.5-flash-image"
    before = len(gfake.seen(model))
    out = await gem.make_images(ImageRequest(prompt="a red fox", n=2, size="1536x1024"), upstream_model=model,
                                credential=GCRED)
    assert len(out.images) == 2
    for image in out.images:
        assert image.media_type == "image/png" and png_size(image.data) == (2, 2)
    calls = gfake.seen(model)[before:]
    assert len(calls) == 2
    assert calls[0].body["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"],
                                                 "imageConfig": {"aspectRatio": "3:2"}}
    assert out.usage is not None and out.usage.output_tokens == 2 * 1290


async def test_gemini_image_size_it_cannot_make(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    before = len(gfake.requests)
    with pytest.raises(InvalidRequest, match=r"'1000x1000'.*1024x1024") as info:
        await gem.make_images(ImageRequest(prompt="x", size="1000x1000"), upstream_model="gemini-2.5-flash-image",
                              credential=GCRED)
    assert info.value.http_status == 400
    assert len(gfake.requests) == before


async def test_gemini_image_answer_without_an_image(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    gfake.script("gemini-2.5-flash-image", GeminiBehavior(no_media=True, text="I cannot draw that."))
    with pytest.raises(UpstreamError, match="no image.*I cannot draw that") as info:
        await gem.make_images(ImageRequest(prompt="x"), upstream_model="gemini-2.5-flash-image", credential=GCRED)
    assert info.value.retryable is False


async def test_imagen_predict_in_batches_of_four(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    model = "imagen-4.0-generate-001"
    before = len(gfake.seen(model))
    out = await gem.make_images(ImageRequest(prompt="a lighthouse", n=5, size="1792x1024"), upstream_model=model,
                                credential=GCRED)
    assert len(out.images) == 5 and all(png_size(i.data) == (2, 2) for i in out.images)
    calls = gfake.seen(model)[before:]
    assert {c.method for c in calls} == {"predict"}
    assert sorted(c.body["parameters"]["sampleCount"] for c in calls) == [1, 4]
    assert calls[0].body["parameters"]["aspectRatio"] == "16:9"
    with pytest.raises(InvalidRequest, match="1536x1024"):  # 3:2 is not an Imagen ratio
        await gem.make_images(ImageRequest(prompt="x", size="1536x1024"), upstream_model=model, credential=GCRED)


# --- Gemini: speech ----------------------------------------------------------------------------------


async def test_gemini_speech_as_wav_and_pcm(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    model = "gemini-2.5-flash-preview-tts"
    out = await gem.speak(SpeechRequest(input="Hello there", voice="alloy", response_format="wav"),
                          upstream_model=model, credential=GCRED)
    assert out.media_type == "audio/wav" and out.data[:4] == b"RIFF" and out.data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(out.data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        assert w.readframes(w.getnframes()) == tone()
    voice = gfake.seen(model)[-1].body["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
    assert voice == {"voiceName": "Kore"}  # OpenAI's alloy: the default Gemini voice
    pcm = await gem.speak(SpeechRequest(input="Hi", voice="puck", response_format="pcm", instructions="Say warmly"),
                          upstream_model=model, credential=GCRED)
    assert pcm.data == tone() and pcm.media_type == "audio/L16;rate=24000;channels=1"
    body = gfake.seen(model)[-1].body
    assert body["contents"][0]["parts"] == [{"text": "Say warmly: Hi"}]
    assert body["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Puck"
    assert pcm.usage is not None and pcm.usage.output_tokens > 0


async def test_gemini_speech_refuses_unknown_voices_and_formats(gem: gemini.GeminiProvider,
                                                                gfake: FakeGemini) -> None:
    before = len(gfake.requests)
    with pytest.raises(InvalidRequest, match=r"'nobody'.*Kore") as info:
        await gem.speak(SpeechRequest(input="x", voice="nobody", response_format="wav"),
                        upstream_model="gemini-2.5-flash-preview-tts", credential=GCRED)
    assert info.value.param == "voice"
    with pytest.raises(InvalidRequest, match="wav or pcm only"):
        await gem.speak(SpeechRequest(input="x", voice="Kore", response_format="mp3"),
                        upstream_model="gemini-2.5-flash-preview-tts", credential=GCRED)
    assert len(gfake.requests) == before


# --- Gemini: transcription ----------------------------------------------------------------------------


async def test_gemini_transcription(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    gfake.script("gemini-2.5-flash", GeminiBehavior(text="  The quick brown fox.  ", prompt_tokens=80))
    audio = b"RIFF....WAVEfake-audio"
    out = await gem.transcribe(TranscriptionRequest(audio=audio, filename="memo.wav",
                                                    media_type="application/octet-stream", language="en",
                                                    prompt="Tollway"),
                               upstream_model="gemini-2.5-flash", credential=GCRED)
    assert out.text == "The quick brown fox." and out.language == "en"
    assert out.usage is not None and out.usage.input_tokens == 80
    parts = gfake.seen("gemini-2.5-flash")[-1].body["contents"][0]["parts"]
    assert parts[0]["text"].startswith("Transcribe this audio verbatim") and "in en" in parts[0]["text"]
    assert "Tollway" in parts[0]["text"]
    assert parts[1]["inlineData"]["mimeType"] == "audio/wav"


# --- Gemini: Veo ------------------------------------------------------------------------------------


async def test_veo_job_polled_to_completion_and_downloaded(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    model = "veo-3.0-generate-001"
    gfake.script(model, GeminiBehavior(polls=3))
    job = await gem.start_video(VideoRequest(prompt="waves at dusk", seconds=8, size="1280x720"),
                                upstream_model=model, credential=GCRED)
    assert job.status == "queued" and job.id.startswith(f"models/{model}/operations/")
    assert gfake.seen(model)[-1].body["parameters"] == {"durationSeconds": 8, "aspectRatio": "16:9"}
    statuses = [(await gem.poll_video(job.id, upstream_model=model, credential=GCRED)).status for _ in range(3)]
    assert statuses == ["in_progress", "in_progress", "completed"]
    data, media_type = await gem.video_content(job.id, upstream_model=model, credential=GCRED)
    assert (data, media_type) == (MP4, "video/mp4")
    assert gfake.downloads[-1] == job.id.rpartition("/")[2]


async def test_veo_job_that_fails(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    model = "veo-2.0-generate-001"
    gfake.script(model, GeminiBehavior(polls=1, video_error="The prompt was blocked."))
    job = await gem.start_video(VideoRequest(prompt="x", seconds=5), upstream_model=model, credential=GCRED)
    done = await gem.poll_video(job.id, upstream_model=model, credential=GCRED)
    assert done.status == "failed" and done.error == "The prompt was blocked."
    with pytest.raises(InvalidRequest, match="failed"):
        await gem.video_content(job.id, upstream_model=model, credential=GCRED)


async def test_veo_refuses_what_is_not_an_operation_or_size(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    before = len(gfake.requests)
    for bad in ("../../files/x", "models/veo/operations/a/../b", "https://evil.example/x"):
        with pytest.raises(InvalidRequest, match="not a Veo operation"):
            await gem.poll_video(bad, upstream_model="veo-3.0-generate-001", credential=GCRED)
    with pytest.raises(InvalidRequest, match="'640x480'"):
        await gem.start_video(VideoRequest(prompt="x", size="640x480"), upstream_model="veo-3.0-generate-001",
                              credential=GCRED)
    assert len(gfake.requests) == before


# --- Gemini: errors ----------------------------------------------------------------------------------


async def test_gemini_media_upstream_500_is_retryable(gem: gemini.GeminiProvider, gfake: FakeGemini) -> None:
    gfake.script("gemini-embedding-001", GeminiBehavior(status=500))
    with pytest.raises(UpstreamError) as info:
        await gem.embed(EmbedRequest(texts=("x",)), upstream_model="gemini-embedding-001", credential=GCRED)
    assert info.value.retryable and info.value.upstream_status == 500 and info.value.http_status == 502


@pytest.mark.parametrize("model", ["gemini-embedding-001", "gemini-2.5-flash-image", "imagen-4.0-generate-001",
                                   "gemini-2.5-flash-preview-tts", "gemini-2.5-flash", "veo-3.0-generate-001"])
async def test_gemini_media_garbage_200(gem: gemini.GeminiProvider, gfake: FakeGemini, model: str) -> None:
    garbage = b'{"candidates": "no", "embeddings": 7, "name": 1, "predictions": "x"}'
    gfake.script(model, GeminiBehavior(raw_body=garbage))
    with pytest.raises(UpstreamError, match="unreadable") as info:
        if "embedding" in model:
            await gem.embed(EmbedRequest(texts=("x",)), upstream_model=model, credential=GCRED)
        elif "image" in model or "imagen" in model:
            await gem.make_images(ImageRequest(prompt="x"), upstream_model=model, credential=GCRED)
        elif "tts" in model:
            await gem.speak(SpeechRequest(input="x", voice="Kore", response_format="wav"), upstream_model=model,
                            credential=GCRED)
        elif "veo" in model:
            await gem.start_video(VideoRequest(prompt="x", seconds=8), upstream_model=model, credential=GCRED)
        else:
            await gem.transcribe(TranscriptionRequest(audio=b"x", filename="a.mp3", media_type="audio/mpeg"),
                                 upstream_model=model, credential=GCRED)
    assert info.value.http_status == 502


# --- Bedrock: embeddings -----------------------------------------------------------------------------


async def test_titan_embeddings(bed: bedrock.BedrockProvider, bfake: FakeBedrock) -> None:
    model = "amazon.titan-embed-text-v2:0"
    before = len(bfake.seen(model))
    out = await bed.embed(EmbedRequest(texts=("one two three", "four"), dimensions=512), upstream_model=model,
                          credential=BCRED)
    assert out.vectors == [embedding_vector("one two three", 512), embedding_vector("four", 512)]
    assert out.usage.input_tokens == math.ceil(3 * 1.3) + math.ceil(1 * 1.3)
    calls = bfake.seen(model)[before:]
    assert [c.operation for c in calls] == ["InvokeModel", "InvokeModel"]
    assert sorted(c.body["inputText"] for c in calls) == ["four", "one two three"]
    assert all(c.body["dimensions"] == 512 and c.body["normalize"] is True for c in calls)


async def test_titan_dimensions_it_cannot_make(bed: bedrock.BedrockProvider, bfake: FakeBedrock) -> None:
    before = len(bfake.requests)
    with pytest.raises(InvalidRequest, match="256, 512, 1024"):
        await bed.embed(EmbedRequest(texts=("x",), dimensions=300), upstream_model="amazon.titan-embed-text-v2:0",
                        credential=BCRED)
    with pytest.raises(InvalidRequest, match="text only"):
        await bed.embed(EmbedRequest(tokens=((1,),)), upstream_model="amazon.titan-embed-text-v2:0",
                        credential=BCRED)
    assert len(bfake.requests) == before


async def test_cohere_embeddings_in_batches_of_96(bed: bedrock.BedrockProvider, bfake: FakeBedrock) -> None:
    model = "cohere.embed-multilingual-v3"
    texts = tuple(f"doc {i}" for i in range(100))
    before = len(bfake.seen(model))
    out = await bed.embed(EmbedRequest(texts=texts), upstream_model=model, credential=BCRED)
    assert out.vectors == [embedding_vector(t, 1024) for t in texts]
    assert out.usage.input_tokens == sum(math.ceil(len(t) / 4) for t in texts)
    calls = bfake.seen(model)[before:]
    assert sorted(len(c.body["texts"]) for c in calls) == [4, 96]
    assert {c.body["input_type"] for c in calls} == {"search_document"}


# --- Bedrock: images -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "size", "n", "per_call"), [
    ("amazon.titan-image-generator-v2:0", "1152x896", 2, [2]),
    ("amazon.nova-canvas-v1:0", "1280x720", 7, [2, 5]),
])
async def test_bedrock_images(bed: bedrock.BedrockProvider, bfake: FakeBedrock, model: str, size: str, n: int,
                              per_call: list[int]) -> None:
    before = len(bfake.seen(model))
    out = await bed.make_images(ImageRequest(prompt="a castle", n=n, size=size, quality="hd"),
                                upstream_model=model, credential=BCRED)
    assert len(out.images) == n and all(png_size(i.data) == (2, 2) for i in out.images)
    calls = bfake.seen(model)[before:]
    assert sorted(c.body["imageGenerationConfig"]["numberOfImages"] for c in calls) == per_call
    width, height = map(int, size.split("x"))
    config = calls[0].body["imageGenerationConfig"]
    assert (config["width"], config["height"], config["quality"]) == (width, height, "premium")
    assert calls[0].body["taskType"] == "TEXT_IMAGE" and calls[0].body["textToImageParams"] == {"text": "a castle"}


@pytest.mark.parametrize(("model", "size"), [
    ("amazon.titan-image-generator-v2:0", "1000x1000"),
    ("amazon.titan-image-generator-v2:0", "big"),
    ("amazon.nova-canvas-v1:0", "4096x320"),  # more than 4:1
    ("amazon.nova-canvas-v1:0", "1000x1000"),  # not a multiple of 16
    ("amazon.nova-canvas-v1:0", "4096x4096"),  # too many pixels
])
async def test_bedrock_image_sizes_refused(bed: bedrock.BedrockProvider, bfake: FakeBedrock, model: str,
                                           size: str) -> None:
    before = len(bfake.requests)
    with pytest.raises(InvalidRequest, match=f"'{size}'") as info:
        await bed.make_images(ImageRequest(prompt="x", size=size), upstream_model=model, credential=BCRED)
    assert info.value.http_status == 400 and info.value.param == "size"
    assert len(bfake.requests) == before


async def test_bedrock_image_refused_by_the_model(bed: bedrock.BedrockProvider, bfake: FakeBedrock) -> None:
    bfake.script("amazon.nova-canvas-v1:0", BedrockBehavior(image_error="blocked by content filters"))
    with pytest.raises(UpstreamError, match="no image.*content filters") as info:
        await bed.make_images(ImageRequest(prompt="x"), upstream_model="amazon.nova-canvas-v1:0", credential=BCRED)
    assert info.value.retryable is False


# --- Bedrock: errors -----------------------------------------------------------------------------------


async def test_bedrock_media_upstream_500_is_retryable(bed: bedrock.BedrockProvider, bfake: FakeBedrock) -> None:
    bfake.script("cohere.embed-english-v3", BedrockBehavior(status=500, error_type="InternalServerException"))
    with pytest.raises(UpstreamError, match="fake bedrock failure") as info:
        await bed.embed(EmbedRequest(texts=("x",)), upstream_model="cohere.embed-english-v3", credential=BCRED)
    assert info.value.retryable and info.value.upstream_status == 500


@pytest.mark.parametrize("model", ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3",
                                   "amazon.titan-image-generator-v2:0"])
async def test_bedrock_media_garbage_200(bed: bedrock.BedrockProvider, bfake: FakeBedrock, model: str) -> None:
    bfake.script(model, BedrockBehavior(raw_body=b'{"embedding": "nope", "embeddings": {}, "images": [3]}'))
    with pytest.raises(UpstreamError, match="unreadable") as info:
        if "image" in model:
            await bed.make_images(ImageRequest(prompt="x"), upstream_model=model, credential=BCRED)
        else:
            await bed.embed(EmbedRequest(texts=("x",)), upstream_model=model, credential=BCRED)
    assert info.value.http_status == 502


# --- the fakes' new checks can fail (they guard every test above) ------------------------------------


def test_the_fakes_refuse_bodies_off_the_documented_shapes() -> None:
    from tests.fakes.bedrock_server import invoke_problems
    from tests.fakes.gemini_server import embed_problems, modality_problems, predict_problems, veo_problems

    voice = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "alloy"}}}
    tts = {"contents": [{"role": "user", "parts": [{"text": "x"}]}],
           "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": voice}}
    assert modality_problems("gemini-2.5-flash-preview-tts", tts)
    assert modality_problems("gemini-2.5-flash", {"generationConfig": {"responseModalities": ["IMAGE"]}})
    assert modality_problems("gemini-2.5-flash-image", {"generationConfig": {"responseModalities": ["IMAGE"],
                                                                             "imageConfig": {"aspectRatio": "7:5"}}})
    assert embed_problems("gemini-embedding-001", {"model": "models/other", "content": {"parts": [{"text": "x"}]}},
                          "r", batched=True)
    assert predict_problems("imagen-4.0-generate-001", {"instances": [{"prompt": "x"}],
                                                        "parameters": {"sampleCount": 5}})
    assert veo_problems("veo-2.0-generate-001", {"instances": [{"prompt": "x"}], "parameters": {"durationSeconds": 4}})
    assert invoke_problems("amazon.titan-embed-text-v2:0", {"inputText": "x", "dimensions": 300})
    assert invoke_problems("cohere.embed-english-v3", {"texts": ["x"] * 97, "input_type": "search_document"})
    assert invoke_problems("amazon.titan-image-generator-v2:0", {
        "taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x"},
        "imageGenerationConfig": {"numberOfImages": 6, "width": 1000, "height": 1000}})
