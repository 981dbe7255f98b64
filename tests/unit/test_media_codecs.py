"""The media front doors' pure codecs: embeddings, images, speech and transcription requests
decoded and refused, answers encoded, transcripts rendered; prices per image and per unit."""

from __future__ import annotations

import base64
import struct

import msgspec
import pytest

from tollway.billing.pricing import cost, reservation
from tollway.core.catalog import ModelInfo
from tollway.core.chat import Usage
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.core.media import Embeddings, Image, Images, Segment, Transcript
from tollway.dialects.media import audio, embeddings, images


def enc(body: object) -> bytes:
    return msgspec.json.encode(body)


def test_embedding_inputs() -> None:
    one = embeddings.decode(enc({"model": "m", "input": "hi"}))
    assert one.canonical.texts == ("hi",) and one.encoding_format == "float"
    tokens = embeddings.decode(enc({"model": "m", "input": [[1, 2], [3]], "encoding_format": "base64"}))
    assert tokens.canonical.tokens == ((1, 2), (3,)) and tokens.tokens == 3
    assert embeddings.decode(enc({"model": "m", "input": [5, 6]})).canonical.tokens == ((5, 6),)
    for bad in ({"model": "m"}, {"model": "m", "input": []}, {"model": "m", "input": ["a", 1]},
                {"model": "m", "input": [True]}, {"model": "m", "input": "x", "dimensions": 0},
                {"model": "m", "input": "x", "encoding_format": ["float"]}, {"input": "x"},
                {"model": "m", "input": ["x"] * 2049}):
        with pytest.raises(InvalidRequest):
            embeddings.decode(enc(bad))


def test_embeddings_encoded_as_floats_or_little_endian_float32() -> None:
    result = Embeddings(vectors=[[0.5, -1.0]], usage=Usage(input_tokens=3))
    floats = msgspec.json.decode(embeddings.encode(result, "m", "float"))
    assert floats["data"][0]["embedding"] == [0.5, -1.0] and floats["usage"] == {"prompt_tokens": 3,
                                                                                 "total_tokens": 3}
    b64 = msgspec.json.decode(embeddings.encode(result, "m", "base64"))["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(b64)) == (0.5, -1.0)


def test_an_upstream_embedding_answer_is_read_or_refused() -> None:
    body, usage = embeddings.read_answer("p", b'{"object":"list","data":[],"model":"up","usage":{"prompt_tokens":4}}',
                                         "mine")
    assert b'"model":"mine"' in body and usage == Usage(input_tokens=4)
    with pytest.raises(UpstreamError):
        embeddings.read_answer("p", b'{"error":{"message":"x"}}', "mine")


def test_image_requests() -> None:
    req = images.decode(enc({"prompt": "a cat", "n": 2, "size": "1024x1024"}))
    assert req.model == images.DEFAULT_MODEL and req.canonical.n == 2
    with pytest.raises(InvalidRequest) as err:
        images.decode(enc({"prompt": "a cat"}), default_model=None)
    assert err.value.code == "model_required"
    with pytest.raises(InvalidRequest) as err:
        images.decode(enc({"model": "m", "prompt": "  "}))
    assert err.value.code == "prompt_required"
    for bad in ({"size": "big"}, {"n": 0}, {"n": 11}, {"response_format": "gif"}, {"output_format": "bmp"},
                {"quality": 3}):
        with pytest.raises(InvalidRequest):
            images.decode(enc({"model": "m", "prompt": "x", **bad}))


def test_images_encoded_as_b64_or_urls() -> None:
    result = Images(images=[Image(data=b"png", revised_prompt="better")], usage=Usage(input_tokens=1, output_tokens=2))
    out = msgspec.json.decode(images.encode(result, 7, None))
    assert out["data"] == [{"b64_json": base64.b64encode(b"png").decode(), "revised_prompt": "better"}]
    assert out["usage"]["total_tokens"] == 3
    assert msgspec.json.decode(images.encode(result, 7, ["https://x/1"]))["data"][0]["url"] == "https://x/1"


def test_speech_requests() -> None:
    req = audio.decode_speech(enc({"model": "m", "input": "hi", "voice": "alloy"}))
    assert req.canonical.response_format == "mp3" and req.media_type == "audio/mpeg" and not req.sse
    assert audio.decode_speech(enc({"model": "m", "input": "hi", "voice": {"id": "v_1"},
                                    "stream_format": "sse"})).media_type == "text/event-stream"
    for bad in ({"input": ""}, {"input": "x" * 4097}, {"voice": ""}, {"response_format": "ogg"},
                {"response_format": ["mp3"]}, {"speed": 5}, {"speed": True}, {"stream_format": "ws"}):
        with pytest.raises(InvalidRequest):
            audio.decode_speech(enc({"model": "m", "input": "hi", "voice": "alloy", **bad}))


def test_transcription_forms() -> None:
    req = audio.decode_transcription([("model", "w"), ("response_format", "srt"), ("language", "en")], "a.MP3",
                                     b"x" * 4001)
    assert req.canonical.media_type == "audio/mpeg" and req.response_format == "srt" and req.seconds_bound == 3
    with pytest.raises(InvalidRequest) as err:
        audio.decode_transcription([("model", "w")], "notes.txt", b"x")
    assert err.value.code == "unsupported_format" and "txt" in err.value.message
    for fields, name, data in (([], "a.wav", b"x"), ([("model", "w")], None, None), ([("model", "w")], "a.wav", b""),
                               ([("model", "w"), ("response_format", "xml")], "a.wav", b"x"),
                               ([("model", "w"), ("temperature", "hot")], "a.wav", b"x")):
        with pytest.raises(InvalidRequest):
            audio.decode_transcription(fields, name, data)


def test_transcripts_rendered_in_every_format() -> None:
    t = Transcript(text="Hello world.", language="english", duration=3.25,
                   segments=[Segment(start=0.0, end=1.5, text=" Hello"), Segment(start=1.5, end=3.25, text=" world.")])
    assert audio.render_transcript(t, "text")[0] == b"Hello world.\n"
    srt = audio.render_transcript(t, "srt")[0].decode()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello\n") and "2\n00:00:01,500 --> 00:00:03,250" in srt
    vtt, kind = audio.render_transcript(t, "vtt")
    assert vtt.decode().startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500") and kind.startswith("text/vtt")
    verbose = msgspec.json.decode(audio.render_transcript(t, "verbose_json")[0])
    assert verbose["duration"] == 3.25 and [s["text"] for s in verbose["segments"]] == [" Hello", " world."]
    assert msgspec.json.decode(audio.render_transcript(t, "json")[0])["usage"] == {"type": "duration", "seconds": 3}
    bare = Transcript(text="x", duration=2.0)  # no segments: one cue over the whole audio
    assert "00:00:00,000 --> 00:00:02,000" in audio.render_transcript(bare, "srt")[0].decode()


def test_prices_per_image_and_per_unit() -> None:
    image = ModelInfo(id="i", provider="p", upstream_id="i", credit_cost=20_000)
    assert cost(image, 0, 0, count=3) == 60_000 and reservation(image, 10, 0, count=4) == 80_000
    speech = ModelInfo(id="s", provider="p", upstream_id="s", unit_price=15, price_unit="character")
    assert cost(speech, 0, 0, units=100) == 1500 and speech.priced
    both = ModelInfo(id="b", provider="p", upstream_id="b", price_in=1_000_000, unit_price=100, price_unit="second")
    assert cost(both, 5, 0, units=7, multiplier=2_000_000) == 2 * (5 + 700)
