"""The City surface (seed 000) through a real gateway: identities against the registry, studios
and their tokens, the ai service, and the OpenAI SDK on /v1/ai."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.openai_server import TINY_PNG, UPSTREAM_SECRET, Behavior, FakeOpenAI
from tollway.app import city_registry


@pytest.fixture(scope="module")
def city(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("city"), env={
        "DEEPSEEK_API_KEY": UPSTREAM_SECRET, "DEEPSEEK_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url, "TOLLWAY_TASK_POLL_INTERVAL": "0.2",
        "TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL": "16"}).start()
    yield gw
    gw.stop()


def call(gw: GatewayProcess, method: str, path: str, token: str | None = None, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "GET":
        return httpx.get(gw.url + path, headers=headers, params=body, timeout=20)
    return httpx.post(gw.url + path, headers=headers, json=body if body is not None else {}, timeout=20)


@pytest.fixture(scope="module")
def studio(city: GatewayProcess) -> dict[str, Any]:
    created = call(city, "POST", "/v1/studios/create", ADMIN_KEY, {"name": "Acme"})
    assert created.status_code == 200, created.text
    token = call(city, "POST", "/v1/studios/tokens/apply", ADMIN_KEY, {"studio_id": created.json()["id"]})
    assert token.status_code == 200 and token.json()["user_token"].startswith("ub_")
    return {"id": created.json()["id"], "token": token.json()["user_token"]}


# every action, tried as guest, user and admin, against what the registry declares
REGISTRY = city_registry()
ACTIONS = [(s.id, a) for s in REGISTRY.services.values() for a in s.actions.values()]


@pytest.mark.parametrize("kind", ["guest", "user", "admin"])
@pytest.mark.parametrize(("service", "action"), ACTIONS, ids=[f"{s}/{a.name}" for s, a in ACTIONS])
def test_every_action_allows_exactly_the_identities_it_declares(service: str, action: Any, kind: str,
                                                                city: GatewayProcess,
                                                                studio: dict[str, Any]) -> None:
    token = {"guest": None, "user": studio["token"], "admin": ADMIN_KEY}[kind]
    r = call(city, action.methods[0], f"/v1/{service}/{action.name}", token, {})
    if action.allows(kind):
        assert r.status_code not in (401, 403), (r.status_code, r.text)  # it may still refuse the empty body
    else:
        assert r.status_code == (401 if kind == "guest" else 403), r.text
        assert r.json()["error"]["code"] in ("unauthorized", "forbidden")


def test_unknown_services_and_actions_are_404s_and_wrong_methods_405(city: GatewayProcess) -> None:
    assert call(city, "POST", "/v1/nothing/here", ADMIN_KEY).json()["error"]["code"] == "not_found"
    r = call(city, "POST", "/v1/ai/nothing", ADMIN_KEY)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    wrong = call(city, "POST", "/v1/ai/models", ADMIN_KEY)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    get_chat = call(city, "GET", "/v1/ai/chat/completions", ADMIN_KEY)  # the OpenAI route's own 405
    assert get_chat.status_code == 405


def test_a_bad_token_is_401_even_where_guests_are_welcome(city: GatewayProcess) -> None:
    r = call(city, "GET", "/v1/ai/models", "ub_not-a-real-token")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_services_list_their_env(city: GatewayProcess) -> None:
    items = {s["id"]: s for s in call(city, "GET", "/v1/services").json()["items"]}
    assert {"ai", "studios"} <= set(items)
    assert any(e["key"] == "DEEPSEEK_API_KEY" for e in items["ai"]["env"])


def test_models_by_identity(city: GatewayProcess, studio: dict[str, Any]) -> None:
    user = call(city, "GET", "/v1/ai/models", studio["token"]).json()["items"]
    admin = call(city, "GET", "/v1/ai/models", ADMIN_KEY).json()["items"]
    user_ids, admin_ids = {m["id"] for m in user}, {m["id"] for m in admin}
    assert "deepseek-chat" in user_ids and "claude-sonnet-4-5" not in user_ids  # callable now only
    assert {"deepseek-chat", "gpt-4o", "claude-sonnet-4-5"} <= admin_ids  # every registered one
    claude = next(m for m in admin if m["id"] == "claude-sonnet-4-5")
    assert {"key": "ANTHROPIC_API_KEY", "description": "Anthropic API key", "required": True} \
        in claude["env_requirements"]
    assert claude["default_modes"] and set(user[0]) >= {"id", "name", "description", "modalities", "tags", "meta"}


def test_text_and_the_studio_check(city: GatewayProcess, studio: dict[str, Any], fake: FakeOpenAI) -> None:
    fake.script("deepseek-chat", Behavior(text="Hi!"))
    r = call(city, "POST", "/v1/ai/text", studio["token"],
             {"studio_id": studio["id"], "model": "deepseek-chat", "prompt": "Hello"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["role"] == "assistant" and body["parts"] == [{"type": "text", "text": "Hi!"}]
    assert body["id"].startswith("msg_")
    other = call(city, "POST", "/v1/ai/text", studio["token"],
                 {"studio_id": "studio_someone_else", "model": "deepseek-chat", "prompt": "Hello"})
    assert other.status_code == 403 and other.json()["error"]["code"] == "studio_mismatch"
    bad = call(city, "POST", "/v1/ai/text", studio["token"], {"model": "deepseek-chat"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


def test_stream_events(city: GatewayProcess, studio: dict[str, Any], fake: FakeOpenAI) -> None:
    fake.script("deepseek-reasoner", Behavior(text="one two three", reasoning="think"))
    with httpx.stream("POST", city.url + "/v1/ai/stream", headers={"Authorization": f"Bearer {studio['token']}"},
                      json={"model": "deepseek-reasoner", "prompt": "count"}, timeout=20) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1].removeprefix("data: ")))
              for block in raw.strip().split("\n\n")]
    assert events[0][0] == "start" and events[-1][0] == "done"
    assert "".join(d["text"] for e, d in events if e == "delta" and d["type"] == "text") == "one two three"
    assert "".join(d["text"] for e, d in events if e == "delta" and d["type"] == "reasoning") == "think"
    assert events[-1][1]["usage"]["output_tokens"] > 0


def _wait_task(city: GatewayProcess, token: str, task_id: str) -> dict[str, Any]:
    deadline = time.time() + 15
    while time.time() < deadline:
        task = call(city, "GET", "/v1/ai/task", token, {"id": task_id}).json()
        if task["status"] in ("succeeded", "failed", "cancelled"):
            return dict(task)
        time.sleep(0.1)
    raise AssertionError(task)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_media_actions_image_and_video_are_tasks(city: GatewayProcess, studio: dict[str, Any],
                                                 fake: FakeOpenAI) -> None:
    token = studio["token"]
    r = call(city, "POST", "/v1/ai/image", token, {"studio_id": studio["id"], "model": "dall-e-2",
                                                    "prompt": "a robot", "n": 2})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["task_id"].startswith("task_")
    task = _wait_task(city, token, r.json()["task_id"])
    assert task["status"] == "succeeded" and len(task["data"]) == 2
    assert httpx.get(task["data"][0]["url"], timeout=10).content == TINY_PNG
    fake.script("sora-2", Behavior(polls=1))
    v = call(city, "POST", "/v1/ai/video", token, {"model": "sora-2", "prompt": "waves", "seconds": 4})
    assert v.status_code == 200, v.text
    video = _wait_task(city, token, v.json()["task_id"])
    assert video["status"] == "succeeded" and video["data"][0]["media_type"] == "video/mp4"
    other = call(city, "POST", "/v1/ai/image", token, {"studio_id": "studio_someone_else", "model": "dall-e-2",
                                                        "prompt": "x"})
    assert other.status_code == 403 and other.json()["error"]["code"] == "studio_mismatch"
    missing = call(city, "POST", "/v1/ai/image", token, {"model": "dall-e-2"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "prompt_required"
    assert call(city, "POST", "/v1/ai/image", None, {"model": "dall-e-2", "prompt": "x"}).status_code == 401


def test_media_actions_tts_and_asr(city: GatewayProcess, studio: dict[str, Any], fake: FakeOpenAI) -> None:
    token = studio["token"]
    r = call(city, "POST", "/v1/ai/tts", token, {"model": "tts-1", "input": "Hello there", "voice": "alloy",
                                                  "format": "wav"})
    assert r.status_code == 200, r.text
    assert r.json()["media_type"] == "audio/wav" and r.json()["characters"] == 11
    assert base64.b64decode(r.json()["audio"])[:4] == b"RIFF"
    fake.script("whisper-1", Behavior(text="heard you"))
    a = call(city, "POST", "/v1/ai/asr", token, {"model": "whisper-1", "filename": "clip.wav",
                                                  "audio": base64.b64encode(b"RIFF" + b"\0" * 400).decode()})
    assert a.status_code == 200, a.text
    assert a.json()["text"] == "heard you"
    bad = call(city, "POST", "/v1/ai/asr", token, {"model": "whisper-1", "audio": "!!"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    chat = call(city, "POST", "/v1/ai/tts", token, {"model": "deepseek-chat", "input": "x"})
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "model_not_supported"


def test_the_openai_sdk_on_v1_ai(city: GatewayProcess, studio: dict[str, Any], fake: FakeOpenAI) -> None:
    fake.script("deepseek-chat", Behavior(text="via the SDK"))
    client = openai.OpenAI(api_key=studio["token"], base_url=city.url + "/v1/ai", max_retries=0)
    assert client.chat.completions.create(model="deepseek-chat", messages=[
        {"role": "user", "content": "hi"}]).choices[0].message.content == "via the SDK"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        model="deepseek-chat", stream=True, messages=[{"role": "user", "content": "hi"}]) if ch.choices)
    assert streamed == "via the SDK"


def test_pause_activate_and_remove(city: GatewayProcess) -> None:
    sid = call(city, "POST", "/v1/studios/create", ADMIN_KEY, {"name": "Short-lived"}).json()["id"]
    token = call(city, "POST", "/v1/studios/tokens/apply", ADMIN_KEY, {"studio_id": sid}).json()["user_token"]
    assert call(city, "GET", "/v1/ai/models", token).status_code == 200
    assert call(city, "POST", "/v1/studios/pause", ADMIN_KEY, {"id": sid}).json()["status"] == "paused"
    paused = call(city, "GET", "/v1/ai/models", token)
    assert paused.status_code == 403 and paused.json()["error"]["code"] == "studio_paused"
    on_openai = httpx.post(city.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                           json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]})
    assert on_openai.status_code == 403  # paused everywhere, not only on City routes
    assert call(city, "POST", "/v1/studios/activate", ADMIN_KEY, {"id": sid}).json()["status"] == "active"
    assert call(city, "GET", "/v1/ai/models", token).status_code == 200
    listed = [s["id"] for s in call(city, "GET", "/v1/studios/list", ADMIN_KEY).json()["items"]]
    assert sid in listed
    removed = call(city, "POST", "/v1/studios/remove", ADMIN_KEY, {"id": sid}).json()
    assert removed["revoked_tokens"] == 1
    assert call(city, "GET", "/v1/ai/models", token).status_code == 401
    assert sid not in [s["id"] for s in call(city, "GET", "/v1/studios/list", ADMIN_KEY).json()["items"]]
    assert call(city, "POST", "/v1/studios/pause", ADMIN_KEY, {"id": sid}).status_code == 404


def test_env_changes_reach_every_process_without_a_restart(tmp_path: Any, fake: FakeOpenAI) -> None:
    """Two gateways on one database: DEEPSEEK_* set through /v1/env on one make DeepSeek callable on both."""
    first = GatewayProcess(tmp_path).start()
    second = GatewayProcess(tmp_path).start()  # the same data dir: the same SQLite database
    try:
        sid = call(first, "POST", "/v1/studios/create", ADMIN_KEY, {"name": "Env"}).json()["id"]
        token = call(first, "POST", "/v1/studios/tokens/apply", ADMIN_KEY, {"studio_id": sid}).json()["user_token"]

        def user_models(gw: GatewayProcess) -> set[str]:
            return {m["id"] for m in call(gw, "GET", "/v1/ai/models", token).json()["items"]}

        assert "deepseek-chat" not in user_models(second)
        text = f'# DeepSeek, set live\nexport DEEPSEEK_API_KEY="{UPSTREAM_SECRET}"\nDEEPSEEK_BASE_URL={fake.base_url}\n'
        imported = call(first, "POST", "/v1/env/import", ADMIN_KEY, {"text": text})
        assert imported.status_code == 200, imported.text
        assert sorted(imported.json()["added"]) == ["DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL"]
        assert "deepseek-chat" in user_models(first)  # at once where it was set
        deadline = time.time() + 1.5  # and within a second (the change poll) on the other
        while "deepseek-chat" not in user_models(second) and time.time() < deadline:
            time.sleep(0.1)
        assert "deepseek-chat" in user_models(second)
        fake.script("deepseek-chat", Behavior(text="live"))
        r = call(second, "POST", "/v1/ai/text", token, {"model": "deepseek-chat", "prompt": "hi"})
        assert r.status_code == 200 and r.json()["parts"][0]["text"] == "live"
        assert fake.seen("deepseek-chat")[-1].authorization == f"Bearer {UPSTREAM_SECRET}"
        listed = call(first, "GET", "/v1/env/list", ADMIN_KEY).json()["items"]
        assert UPSTREAM_SECRET not in json.dumps(listed) and {e["key"] for e in listed} >= {"DEEPSEEK_API_KEY"}
        assert call(first, "POST", "/v1/env/remove", ADMIN_KEY, {"key": "DEEPSEEK_API_KEY"}).status_code == 200
        deadline = time.time() + 1.5
        while "deepseek-chat" in user_models(second) and time.time() < deadline:
            time.sleep(0.1)
        assert "deepseek-chat" not in user_models(second) and "deepseek-chat" not in user_models(first)
        raw = sqlite3.connect(first.db_path).execute("SELECT value FROM env_vars").fetchall()
        assert raw and all(fake.base_url not in v for (v,) in raw)  # encrypted at rest
    finally:
        second.stop()
        first.stop()


def test_an_admin_role_key_is_citys_admin(city: GatewayProcess, studio: dict[str, Any]) -> None:
    """Issue 17 #18: the README counts an admin-role key as the admin, as the admin API does."""
    with city.admin() as admin:
        key = admin.post("/admin/api-key/apply", json={"name": "ops", "role": "admin"}).json()["api_key"]
    r = call(city, "GET", "/v1/studios/list", key)
    assert r.status_code == 200, r.text
    assert studio["id"] in [s["id"] for s in r.json()["items"]]
    models = call(city, "GET", "/v1/ai/models", key).json()["items"]
    assert all("env_requirements" in m for m in models)  # the admin's view of the catalog
    with city.admin() as admin:
        user = admin.post("/admin/api-key/apply", json={"name": "plain", "role": "user"}).json()["api_key"]
    assert call(city, "GET", "/v1/studios/list", user).status_code == 403  # a user-role key stays a user


def test_studio_actions_take_id_or_studio_id(city: GatewayProcess) -> None:
    """Issue 17 #18: pause/activate/remove took ``id`` and tokens/apply ``studio_id``; each takes both."""
    sid = call(city, "POST", "/v1/studios/create", ADMIN_KEY, {"name": "Either"}).json()["id"]
    applied = call(city, "POST", "/v1/studios/tokens/apply", ADMIN_KEY, {"id": sid})
    assert applied.status_code == 200 and applied.json()["studio_id"] == sid
    paused = call(city, "POST", "/v1/studios/pause", ADMIN_KEY, {"studio_id": sid})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert call(city, "POST", "/v1/studios/activate", ADMIN_KEY, {"studio_id": sid}).json()["status"] == "active"
    both = call(city, "POST", "/v1/studios/pause", ADMIN_KEY, {"id": sid, "studio_id": "studio_other"})
    assert both.status_code == 400 and both.json()["error"]["code"] == "invalid_request"
    assert call(city, "POST", "/v1/studios/pause", ADMIN_KEY, {"id": sid, "studio_id": sid}).status_code == 200
    missing = call(city, "POST", "/v1/studios/remove", ADMIN_KEY, {})
    assert missing.status_code == 400 and "studio_id" in missing.json()["error"]["message"]
    removed = call(city, "POST", "/v1/studios/remove", ADMIN_KEY, {"studio_id": sid})
    assert removed.status_code == 200 and removed.json()["revoked_tokens"] == 1


def test_chat_completions_on_v1_ai_checks_the_studio(city: GatewayProcess, studio: dict[str, Any],
                                                     fake: FakeOpenAI) -> None:
    """Issue 17 #18: the other ai actions refuse a body's studio_id of another studio; so does this one."""
    fake.script("deepseek-chat", Behavior(text="mine"))
    client = openai.OpenAI(api_key=studio["token"], base_url=city.url + "/v1/ai", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client.chat.completions.create(model="deepseek-chat", messages=messages,
                                       extra_body={"studio_id": "studio_someone_else"})
    assert exc.value.code == "studio_mismatch"
    before = len(fake.seen("deepseek-chat"))
    mine = {"studio_id": studio["id"]}
    ok = client.chat.completions.create(model="deepseek-chat", messages=messages, extra_body=mine)
    assert ok.choices[0].message.content == "mine"
    assert "studio_id" not in fake.seen("deepseek-chat")[-1].body  # City's field, not the upstream's
    streamed = client.chat.completions.create(model="deepseek-chat", messages=messages, stream=True, extra_body=mine)
    assert "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices) == "mine"
    assert len(fake.seen("deepseek-chat")) == before + 2
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="deepseek-chat", messages=messages, stream=True,
                                       extra_body={"studio_id": "studio_someone_else"})
    admin = openai.OpenAI(api_key=ADMIN_KEY, base_url=city.url + "/v1/ai", max_retries=0)  # no studio to differ from
    assert admin.chat.completions.create(model="deepseek-chat", messages=messages,
                                         extra_body=mine).choices[0].message.content == "mine"
