"""Issue 14 end to end: embeddings, images, speech, transcriptions and videos in OpenAI's shape,
seed 003's image tasks, driven by the official ``openai`` SDK (and raw HTTP where a seed's shape
is not the SDK's) against ``tollway serve`` and the fake OpenAI upstream, with exact billing."""

from __future__ import annotations

import base64
import io
import sqlite3
import time
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.openai_server import TINY_PNG, UPSTREAM_SECRET, Behavior, FakeOpenAI, embedding_for

MICRO = 1_000_000


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    credentials = [{"id": "cred-1", "api_key": UPSTREAM_SECRET}]
    config = {
        "providers": [
            # an OpenAI-compatible server with embeddings and images only
            {"name": "local", "kind": "openai_compatible", "base_url": fake.base_url, "credentials": credentials,
             "options": {"media_paths": {"embeddings": "/embeddings", "images": "/images/generations"}}},
            # chat only
            {"name": "chatonly", "kind": "openai_compatible", "base_url": fake.base_url, "credentials": credentials},
        ],
        "models": [
            # priced: 0.5 credit per million input tokens
            {"id": "team-embed", "provider": "local", "upstream_id": "text-embedding-3-small",
             "category": "embedding", "capabilities": ["embeddings"], "price_in": 500_000},
            # 0.02 credit per image
            {"id": "team-images", "provider": "local", "upstream_id": "dall-e-2", "category": "image",
             "capabilities": ["images"], "credit_cost": 20_000},
            # 0.000015 credit per character
            {"id": "priced-tts", "provider": "openai", "upstream_id": "tts-1", "category": "audio",
             "capabilities": ["speech"], "unit_price": 15, "price_unit": "character"},
            # 0.0001 credit per second heard
            {"id": "priced-whisper", "provider": "openai", "upstream_id": "whisper-1", "category": "audio",
             "capabilities": ["transcription"], "unit_price": 100, "price_unit": "second"},
            # 0.1 credit per second of video
            {"id": "priced-sora", "provider": "openai", "upstream_id": "sora-2", "category": "video",
             "capabilities": ["video"], "unit_price": 100_000, "price_unit": "second"},
            {"id": "chat-only", "provider": "local", "upstream_id": "gpt-4o-mini"},
        ],
    }
    gateway = GatewayProcess(tmp_path_factory.mktemp("media"), config=config, env={
        "OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url,
        "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1", "TOLLWAY_LEDGER_FLUSH_INTERVAL": "0.05",
        "TOLLWAY_DISCOVERY_INTERVAL": "3600", "TOLLWAY_TASK_POLL_INTERVAL": "0.2", "TOLLWAY_TASK_LEASE": "3",
        "TOLLWAY_MAX_UPLOAD_BYTES": "200000", "TOLLWAY_MEDIA_ALLOW_PRIVATE": "1"}).start()
    yield gateway
    gateway.stop()


def new_key(gw: GatewayProcess, credits: str | None = "10") -> tuple[str, int]:
    with gw.admin() as admin:
        r = admin.post("/admin/api-key/apply", json={"name": "media", "role": "user"})
        assert r.status_code == 200, r.text
        secret, key_id = str(r.json()["api_key"]), int(r.json()["id"])
        if credits is not None:
            topped = admin.post("/admin/api-key/recharge", json={"api_key": key_id, "balance": credits})
            assert topped.status_code == 200, topped.text
    return secret, key_id


@pytest.fixture(scope="module")
def key(gw: GatewayProcess) -> str:
    return new_key(gw)[0]


@pytest.fixture(scope="module")
def client(gw: GatewayProcess, key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=30) as c:
        yield c


def db(gw: GatewayProcess, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(gw.db_path) as conn:
        return conn.execute(sql, args).fetchall()


def charges(gw: GatewayProcess, key_id: int, wait_for: int = 1, timeout: float = 5.0) -> list[tuple[str, int]]:
    """The key's ledger movements after its recharge (kind, amount), once ``wait_for`` are in."""
    deadline = time.time() + timeout
    while True:
        rows = db(gw, "SELECT kind, amount FROM ledger WHERE key_id = ? AND kind != 'recharge' ORDER BY id",
                  (key_id,))
        if len(rows) >= wait_for or time.time() > deadline:
            return [(k, int(a)) for k, a in rows]
        time.sleep(0.05)


def balance(gw: GatewayProcess, key_id: int) -> int:
    return int(db(gw, "SELECT balance FROM api_keys WHERE id = ?", (key_id,))[0][0])


def log_row(gw: GatewayProcess, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with sqlite3.connect(gw.db_path) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM request_logs WHERE id = ?", (request_id,)).fetchone()
        if row is not None:
            return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"no request-log row for {request_id}")


# --- embeddings ------------------------------------------------------------------------------

def test_embeddings_through_the_sdk_float_and_default_base64(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    floats = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"],
                                      encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    assert floats.data[0].embedding == pytest.approx(embedding_for("hello world", 1536))
    assert floats.model == "text-embedding-3-small"
    assert floats.usage.prompt_tokens > 0
    default = client.embeddings.create(model="text-embedding-3-small", input="hello world", dimensions=64)
    assert len(default.data[0].embedding) == 64  # the SDK asked for base64 and decoded it
    assert default.data[0].embedding == pytest.approx(embedding_for("hello world", 64))
    assert fake.seen("text-embedding-3-small")[-1].body["encoding_format"] == "base64"


def test_embeddings_token_arrays_and_aliases(gw: GatewayProcess, key: str) -> None:
    for prefix in ("/v1", "/api/v1", "/v1/ai"):
        r = httpx.post(gw.url + prefix + "/embeddings", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]]}, timeout=10)
        assert r.status_code == 200, r.text
        assert [len(d["embedding"]) for d in r.json()["data"]] == [1536, 1536]


def test_embeddings_are_billed_per_input_token(gw: GatewayProcess) -> None:
    secret, key_id = new_key(gw, "1")
    r = httpx.post(gw.url + "/v1/embeddings", headers={"Authorization": f"Bearer {secret}"},
                   json={"model": "team-embed", "input": "one two three"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "team-embed"
    tokens = r.json()["usage"]["prompt_tokens"]
    row = log_row(gw, r.headers["x-request-id"])
    assert row["prompt_tokens"] == tokens and row["model"] == "team-embed"
    expected = -(-tokens * 500_000 // MICRO)
    assert charges(gw, key_id) == [("charge", -expected)]
    assert row["cost_micro"] == expected


@pytest.mark.parametrize("body, param", [
    ({"model": "text-embedding-3-small"}, "input"),
    ({"model": "text-embedding-3-small", "input": ""}, "input"),
    ({"model": "text-embedding-3-small", "input": [1.5]}, "input"),
    ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x"}, "model"),
])
def test_embeddings_bad_input_is_a_400_naming_the_field(gw: GatewayProcess, key: str, body: dict[str, Any],
                                                        param: str) -> None:
    r = httpx.post(gw.url + "/v1/embeddings", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_a_chat_model_asked_for_embeddings_or_images_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="gpt-4o-mini", input="x")
    assert "chat model" in str(err.value) and "does not serve embeddings" in str(err.value)
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model="chat-only", prompt="a cat")
    assert "does not serve images" in str(err.value)


def test_a_provider_without_the_endpoint_is_refused_not_forwarded(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="chatonly/some-embedder", input="x")  # no catalog entry: the provider decides
    assert len(fake.requests) == before
    assert "chatonly" in str(err.value) and err.value.code == "model_not_supported"
    made_up = client.embeddings.create(model="local/any-embedder", input="x", encoding_format="float")
    assert made_up.model == "local/any-embedder" and made_up.data


# --- images ----------------------------------------------------------------------------------

def test_images_b64_and_url_through_the_sdk(client: openai.OpenAI, gw: GatewayProcess) -> None:
    b64 = client.images.generate(model="gpt-image-1", prompt="a lighthouse", size="1024x1024")
    assert base64.b64decode(b64.data[0].b64_json or "") == TINY_PNG
    assert b64.usage is not None and b64.usage.total_tokens > 0
    by_url = client.images.generate(model="dall-e-2", prompt="a lighthouse", n=2, response_format="url")
    assert len(by_url.data) == 2 and by_url.data[0].url


def test_images_are_billed_per_image(gw: GatewayProcess) -> None:
    secret, key_id = new_key(gw, "1")
    r = httpx.post(gw.url + "/v1/images/generations", headers={"Authorization": f"Bearer {secret}"},
                   json={"model": "team-images", "prompt": "a cat", "n": 3, "response_format": "b64_json"},
                   timeout=10)
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 3
    assert charges(gw, key_id) == [("charge", -60_000)]


@pytest.mark.parametrize("body, status, code", [
    ({"model": "gpt-image-1"}, 400, "prompt_required"),
    ({"model": "gpt-image-1", "prompt": "x", "size": "huge"}, 400, "invalid_request"),
    ({"model": "gpt-image-1", "prompt": "x", "n": 11}, 400, "invalid_request"),
    ({"model": "dall-e-2", "prompt": "x", "response_format": "gif"}, 400, "invalid_request"),
])
def test_image_bad_input(gw: GatewayProcess, key: str, body: dict[str, Any], status: int, code: str) -> None:
    r = httpx.post(gw.url + "/v1/images/generations", headers={"Authorization": f"Bearer {key}"}, json=body,
                   timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


# --- speech ----------------------------------------------------------------------------------

def test_speech_streams_audio_bytes_through(gw: GatewayProcess, client: openai.OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input="Hello there",
                                                            response_format="wav") as resp:
        assert resp.headers["content-type"] == "audio/wav"
        data = b"".join(resp.iter_bytes())
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnframes() > 0


def test_speech_is_billed_per_character(gw: GatewayProcess) -> None:
    secret, key_id = new_key(gw, "1")
    text = "Twenty-three characters"
    with openai.OpenAI(api_key=secret, base_url=gw.url + "/v1", max_retries=0) as c:
        audio = c.audio.speech.create(model="priced-tts", voice="alloy", input=text)
    assert audio.content[:3] == b"ID3"  # the fake's mp3, passed through
    assert charges(gw, key_id) == [("charge", -(len(text) * 15))]


def test_speech_bad_format_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="tts-1", voice="alloy", input="x", response_format="ogg")  # type: ignore[arg-type]
    assert "ogg" in str(err.value)


# --- transcriptions --------------------------------------------------------------------------

WAV = b"RIFF" + b"\0" * 40 + b"\x01\x02" * 2000


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_transcriptions_in_every_format(client: openai.OpenAI, fake: FakeOpenAI, fmt: str) -> None:
    fake.script("whisper-1", Behavior(text="hello from the audio"))
    out: Any = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", WAV, "audio/wav"),
                                                  response_format=fmt)  # type: ignore[call-overload]
    text = out if isinstance(out, str) else out.text
    assert "hello from the audio" in text
    if fmt == "srt":
        assert "-->" in text and text.startswith("1\n")
    if fmt == "vtt":
        assert text.startswith("WEBVTT")
    if fmt == "verbose_json":
        assert out.duration and out.segments
    seen = fake.seen("whisper-1")[-1]
    assert seen.files["file"].data == WAV and seen.files["file"].filename == "clip.wav"


def test_transcription_is_billed_per_second(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.script("whisper-1", Behavior(text="one two three", audio_seconds=7.0))
    secret, key_id = new_key(gw, "1")
    with openai.OpenAI(api_key=secret, base_url=gw.url + "/v1", max_retries=0) as c:
        c.audio.transcriptions.create(model="priced-whisper", file=("clip.mp3", WAV, "audio/mpeg"))
    assert charges(gw, key_id) == [("charge", -700)]


def test_transcription_limits(gw: GatewayProcess, key: str, client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", b"\0" * 300_000, "audio/wav"))
    assert err.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"hello", "text/plain"))
    assert "txt" in str(bad.value)


# --- seed 003's image tasks --------------------------------------------------------------------

def platform(gw: GatewayProcess, secret: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url + "/api/v1", headers={"Authorization": f"Bearer {secret}"}, timeout=10)


def wait_task(c: httpx.Client, task_id: str, until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
              timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = c.get(f"/tasks/{task_id}").json()
        if task["status"] in until:
            return dict(task)
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} never reached {until}: {task}")


def test_image_task_submitted_polled_succeeded_and_charged(gw: GatewayProcess) -> None:
    secret, key_id = new_key(gw, "1")
    with platform(gw, secret) as c:
        r = c.post("/images/generations", json={"model": "team-images", "prompt": "a robot reading docs",
                                                "size": "1024x1024", "n": 2})
        assert r.status_code == 200, r.text
        meta = r.json()
        assert set(meta) == {"created", "data", "task_id", "provider_task_id", "status", "model"}
        assert meta["data"] == [] and meta["status"] == "pending" and meta["model"] == "team-images"
        task = wait_task(c, meta["task_id"])
        assert task["status"] == "succeeded", task
        assert len(task["data"]) == 2 and task["cost"] == pytest.approx(0.04)
        image = httpx.get(task["data"][0]["url"], timeout=10)
        assert image.status_code == 200 and image.content == TINY_PNG
        assert image.headers["content-type"] == "image/png"
        tampered = task["data"][0]["url"].replace("signature=", "signature=0")
        assert httpx.get(tampered, timeout=10).status_code == 403
    assert charges(gw, key_id) == [("charge", -40_000)]


def test_image_task_failure_is_refunded(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.script("dall-e-2", Behavior(status=400, error_message="Your prompt was rejected."))
    secret, key_id = new_key(gw, "1")
    try:
        with platform(gw, secret) as c:
            task_id = c.post("/images/generations", json={"model": "team-images", "prompt": "x"}).json()["task_id"]
            task = wait_task(c, task_id)
        assert task["status"] == "failed" and "rejected" in task["error"]["message"]
        assert task["cost"] == 0
    finally:
        fake.script("dall-e-2", Behavior())
    time.sleep(0.3)
    assert balance(gw, key_id) == MICRO
    assert charges(gw, key_id, wait_for=0) in ([], [("refund", 0)])


def test_image_task_errors_in_the_seed_shape(gw: GatewayProcess, key: str) -> None:
    with platform(gw, key) as c:
        missing = c.post("/images/generations", json={"model": "team-images"})
        assert missing.status_code == 400
        assert missing.json() == {"error": {"message": missing.json()["error"]["message"], "type": "prompt_required",
                                            "code": "prompt_required"}}
        no_model = c.post("/images/generations", json={"prompt": "x"})
        assert no_model.json()["error"]["code"] == "model_required"
        assert c.get("/tasks/task_nope").status_code == 404


def test_image_task_needs_credits(gw: GatewayProcess) -> None:
    secret, _ = new_key(gw, "0.01")
    with platform(gw, secret) as c:
        r = c.post("/images/generations", json={"model": "team-images", "prompt": "x", "n": 1})
        assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_credits"


def test_another_keys_task_is_404(gw: GatewayProcess, key: str) -> None:
    other, _ = new_key(gw)
    with platform(gw, key) as c:
        task_id = c.post("/images/generations", json={"model": "team-images", "prompt": "x"}).json()["task_id"]
    with platform(gw, other) as c:
        assert c.get(f"/tasks/{task_id}").status_code == 404
        assert c.post(f"/tasks/{task_id}/cancel").status_code == 404
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        assert admin.get(f"/api/v1/tasks/{task_id}").status_code == 200


# --- videos ------------------------------------------------------------------------------------

# the SDK marks its videos API deprecated (OpenAI announced Sora's API shut down on 2026-09-24); the
# wire shape is what the gateway serves for every video upstream (Veo included)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_video_through_the_sdk_create_poll_download_list_delete(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.script("sora-2", Behavior(polls=2))
    secret, key_id = new_key(gw, "5")
    with openai.OpenAI(api_key=secret, base_url=gw.url + "/v1", max_retries=0) as c:
        video = c.videos.create(model="priced-sora", prompt="a calm sea", seconds="4")
        assert video.status == "queued" and video.id.startswith("video_")
        deadline = time.time() + 15
        while video.status in ("queued", "in_progress") and time.time() < deadline:
            time.sleep(0.2)
            video = c.videos.retrieve(video.id)
        assert video.status == "completed", video
        content = c.videos.download_content(video.id)
        assert content.content[4:8] == b"ftyp"
        assert video.id in [v.id for v in c.videos.list()]
        deleted = c.videos.delete(video.id)
        assert deleted.deleted
        with pytest.raises(openai.NotFoundError):
            c.videos.retrieve(video.id)
    assert charges(gw, key_id) == [("charge", -400_000)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_failed_video_is_refunded(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.script("sora-2", Behavior(polls=1, video_error="moderation_blocked"))
    secret, key_id = new_key(gw, "5")
    try:
        with openai.OpenAI(api_key=secret, base_url=gw.url + "/v1", max_retries=0) as c:
            video = c.videos.create(model="priced-sora", prompt="a calm sea")
            deadline = time.time() + 15
            while video.status in ("queued", "in_progress") and time.time() < deadline:
                time.sleep(0.2)
                video = c.videos.retrieve(video.id)
        assert video.status == "failed" and video.error is not None
    finally:
        fake.script("sora-2", Behavior())
    time.sleep(0.3)
    assert balance(gw, key_id) == 5 * MICRO


def test_cancel_a_running_video_task_releases_its_hold(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.script("sora-2", Behavior(polls=1000))
    secret, key_id = new_key(gw, "1.2")  # one 12-second video's worth
    try:
        with platform(gw, secret) as c:
            r = c.post("/videos", json={"model": "priced-sora", "prompt": "forever", "seconds": "12"})
            assert r.status_code == 200, r.text
            task_id = r.json()["id"]
            wait_task(c, task_id, until=("running",))
            again = c.post("/videos", json={"model": "priced-sora", "prompt": "again", "seconds": "4"})
            assert again.status_code == 402  # the whole balance is held
            cancelled = c.post(f"/tasks/{task_id}/cancel").json()
            assert cancelled["status"] == "cancelled"
            assert wait_task(c, task_id)["status"] == "cancelled"
            time.sleep(0.5)
            assert balance(gw, key_id) == 1_200_000
            # a new hold of the whole balance succeeds: nothing is left held
            r = c.post("/videos", json={"model": "priced-sora", "prompt": "x", "seconds": "12"})
            assert r.status_code == 200, r.text
            c.post(f"/tasks/{r.json()['id']}/cancel")
    finally:
        fake.script("sora-2", Behavior())


def test_a_media_model_asked_for_a_chat_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="text-embedding-3-small", messages=[{"role": "user", "content": "hi"}])
    assert "embedding model" in str(err.value) and "does not serve chat" in str(err.value)


def test_an_upstream_answering_garbage_fails_the_task_with_a_refund(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.script("dall-e-2", Behavior(ok_but_error_body=True))
    secret, key_id = new_key(gw, "1")
    try:
        with platform(gw, secret) as c:
            r = c.post("/images/generations", json={"model": "team-images", "prompt": "x", "n": 2})
            task_id = r.json()["task_id"]
            task = wait_task(c, task_id)
        assert task["status"] == "failed" and task["error"]["code"] == "provider_error", task
        assert task["cost"] == 0 and task["data"] == []
    finally:
        fake.script("dall-e-2", Behavior())
    time.sleep(0.3)
    assert balance(gw, key_id) == MICRO
