"""Issue 15: chat records end to end. Every dialect that produces text is recorded, streamed or
not, as the client received it; sessions group by X-Session-Id, metadata.session_id / user, and
the Responses API's previous_response_id chain; the admin and user APIs list, search, show and
delete them; a key sees only its own; recording follows the key, group and studio settings."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("records"), env={
        "OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url, "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1",
        "TOLLWAY_RECORD_MAX_CHARS": "400"}).start()
    yield gateway
    gateway.stop()


def new_key(gw: GatewayProcess, **fields: Any) -> tuple[str, int]:
    with gw.admin() as admin:
        r = admin.post("/admin/api-key/apply", json={"name": "records", "role": "user", **fields})
        assert r.status_code == 200, r.text
        return str(r.json()["api_key"]), int(r.json()["id"])


def user(gw: GatewayProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def wait_threads(gw: GatewayProcess, key: str, n: int, **params: Any) -> list[dict[str, Any]]:
    deadline = time.time() + 10
    with user(gw, key) as c:
        while time.time() < deadline:
            items = c.get("/user/thread/list", params={"limit": 100, **params}).json()["items"]
            if len(items) >= n:
                return list(items)
            time.sleep(0.1)
    raise AssertionError(f"{len(items)} threads, wanted {n}")


def detail(gw: GatewayProcess, key: str, thread_id: int) -> dict[str, Any]:
    with user(gw, key) as c:
        r = c.get(f"/user/thread/detail/{thread_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.mark.parametrize("stream", [False, True])
def test_every_dialect_is_recorded_as_the_client_received_it(gw: GatewayProcess, fake: FakeOpenAI,
                                                             stream: bool) -> None:
    key, _ = new_key(gw)
    ref = f"s-{stream}"
    headers = {"X-Session-Id": ref}
    fake.script("gpt-4o-mini", Behavior(text="passed through words"))
    got: dict[str, str] = {}
    with openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, default_headers=headers) as oa:
        msgs: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "openai says hi"}]
        if stream:
            got["openai"] = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(
                model="gpt-4o-mini", messages=msgs, stream=True) if c.choices)
            got["openai-echo"] = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "echo me please"}], stream=True) if c.choices)
            with oa.responses.stream(model="echo", input="responses hello there") as s:
                got["responses"] = s.get_final_response().output_text
        else:
            got["openai"] = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs).choices[0].message.content \
                or ""
            got["openai-echo"] = oa.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "echo me please"}]).choices[0].message.content or ""
            got["responses"] = oa.responses.create(model="echo", input="responses hello there").output_text
    with anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0, default_headers=headers) as an:
        if stream:
            with an.messages.stream(model="echo", max_tokens=50,
                                    messages=[{"role": "user", "content": "anthropic hello"}]) as s:
                got["anthropic"] = s.get_final_text()
        else:
            block = an.messages.create(model="echo", max_tokens=50,
                                       messages=[{"role": "user", "content": "anthropic hello"}]).content[0]
            got["anthropic"] = getattr(block, "text", "")
    with user(gw, key) as c:
        city = c.post("/v1/ai/stream" if stream else "/v1/ai/text", headers=headers,
                      json={"model": "echo", "prompt": "city hello"})
        assert city.status_code == 200, city.text
        if stream:
            got["city"] = "".join(json.loads(line[6:])["text"] for line in city.text.splitlines()
                                  if line.startswith("data: ") and '"type":"text"' in line.replace(" ", ""))
        else:
            got["city"] = "".join(p["text"] for p in city.json()["parts"])
    threads = wait_threads(gw, key, 5)
    assert {t["dialect"] for t in threads} == {"openai", "responses", "anthropic", "city"}
    assert all(t["stream"] is stream for t in threads)
    with user(gw, key) as c:
        sessions = c.get("/user/session/list").json()
    assert sessions["total"] == 1 and sessions["items"][0]["threads"] == 5  # one X-Session-Id
    assert sessions["items"][0]["title"] == "openai says hi"  # the first user message
    outputs = {}
    for t in threads:
        d = detail(gw, key, t["id"])
        outputs.setdefault(t["dialect"], []).append(d)
    by_text = {d["output"]: d for ds in outputs.values() for d in ds}
    for name, text in got.items():
        assert text and text in by_text, (name, text, list(by_text))
    openai_thread = by_text[got["openai"]]
    assert openai_thread["input"] == [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": "openai says hi"}]
    assert openai_thread["model"] == "gpt-4o-mini" and openai_thread["completion_tokens"] > 0


def test_sessions_group_by_metadata_user_and_the_responses_chain(gw: GatewayProcess) -> None:
    key, _ = new_key(gw)
    with openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0) as oa:
        for text in ("first", "second"):
            oa.chat.completions.create(model="echo", user="alice", messages=[{"role": "user", "content": text}])
        oa.chat.completions.create(model="echo", metadata={"session_id": "m-1"},
                                   messages=[{"role": "user", "content": "meta"}])
        oa.chat.completions.create(model="echo", messages=[{"role": "user", "content": "alone one"}])
        oa.chat.completions.create(model="echo", messages=[{"role": "user", "content": "alone two"}])
        r1 = oa.responses.create(model="echo", input="chain start")
        r2 = oa.responses.create(model="echo", input="chain next", previous_response_id=r1.id)
        oa.responses.create(model="echo", input="chain last", previous_response_id=r2.id)
    wait_threads(gw, key, 8)
    with user(gw, key) as c:
        sessions = c.get("/user/session/list", params={"limit": 50}).json()["items"]
    by_title = {s["title"]: s for s in sessions}
    assert by_title["first"]["threads"] == 2 and by_title["meta"]["threads"] == 1
    assert by_title["alone one"]["threads"] == 1 and by_title["alone two"]["threads"] == 1
    assert by_title["chain start"]["threads"] == 3  # previous_response_id continues its session
    assert len(sessions) == 5


def test_a_key_sees_only_its_own_records(gw: GatewayProcess) -> None:
    mine, my_id = new_key(gw)
    theirs, _ = new_key(gw)
    with openai.OpenAI(api_key=mine, base_url=gw.url + "/v1", max_retries=0) as oa:
        oa.chat.completions.create(model="echo", messages=[{"role": "user", "content": "private words"}])
    thread = wait_threads(gw, mine, 1)[0]
    with user(gw, theirs) as c:
        assert c.get("/user/session/list").json() == {"items": [], "total": 0}
        assert c.get(f"/user/session/detail/{thread['session_id']}").status_code == 404
        assert c.get(f"/user/thread/detail/{thread['id']}").status_code == 404
        assert c.post("/user/session/delete", json={"id": thread["session_id"]}).status_code == 404
        assert c.get("/user/thread/list", params={"q": "private"}).json()["total"] == 0
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        found = admin.get("/admin/thread/list", params={"q": "private", "key_id": my_id}).json()
        assert found["total"] == 1 and found["items"][0]["id"] == thread["id"]
        sessions = admin.get("/admin/session/list", params={"q": "private", "key_id": my_id}).json()
        assert sessions["total"] == 1
        assert admin.get("/admin/session/list", params={"q": "nowhere-to-be-found"}).json()["total"] == 0
        assert admin.get(f"/admin/thread/detail/{thread['id']}").json()["output"] == "private words"
    with user(gw, mine) as c:
        assert c.delete(f"/user/session/{thread['session_id']}").json() == {"success": True,
                                                                            "id": thread["session_id"]}
        assert c.get(f"/user/thread/detail/{thread['id']}").status_code == 404


def test_long_exchanges_are_cut_and_marked(gw: GatewayProcess) -> None:
    key, _ = new_key(gw)
    long = " ".join(f"word{i}" for i in range(200))
    with openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0) as oa:
        oa.chat.completions.create(model="echo", messages=[{"role": "user", "content": long}])
    thread = detail(gw, key, wait_threads(gw, key, 1)[0]["id"])
    assert thread["truncated"] and thread["output"].endswith("[truncated]") and len(thread["output"]) < 450


def test_recording_follows_key_group_and_studio_settings(gw: GatewayProcess) -> None:
    with gw.admin() as admin:
        group = admin.post("/admin/group/save", json={"name": f"quiet-{time.time()}"}).json()["id"]
    quiet, quiet_id = new_key(gw, group_id=group)
    loud, loud_id = new_key(gw, group_id=group)
    with gw.admin() as admin:
        for body in ({"scope": "group", "id": group, "enabled": False},
                     {"scope": "key", "id": loud_id, "enabled": True}):
            assert admin.post("/admin/record/save", json=body).status_code == 200
        settings = admin.get("/admin/record/settings").json()
        assert settings["default"] is True
        assert {"scope": "group", "id": str(group), "enabled": False} in settings["items"]
        assert admin.post("/admin/record/save", json={"scope": "team", "id": 1, "enabled": True}).status_code == 400
    for k in (quiet, loud):
        with openai.OpenAI(api_key=k, base_url=gw.url + "/v1", max_retries=0) as oa:
            oa.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello"}])
    wait_threads(gw, loud, 1)
    time.sleep(0.8)  # the writer's interval: had the quiet key's been recorded, it would be in
    with user(gw, quiet) as c:
        assert c.get("/user/thread/list").json()["total"] == 0
        me = c.get("/user/me").json()
    assert me["records_chats"] is False and me["id"] == quiet_id and me["group"]["id"] == group
    with user(gw, loud) as c:
        assert c.get("/user/me").json()["records_chats"] is True


def test_user_me(gw: GatewayProcess) -> None:
    key, key_id = new_key(gw, rpm=30, month_quota=5)
    with gw.admin() as admin:
        admin.post("/admin/api-key/recharge", json={"api_key": key_id, "balance": "2.5"})
    with user(gw, key) as c:
        me = c.get("/user/me").json()
        assert me["id"] == key_id and me["balance"] == 2.5 and me["limits"]["rpm"] == 30
        assert me["month_quota"] == 5 and me["quota_left"] == 5
        assert "echo" in me["models"] and "api_key" not in me and "key_hash" not in me
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        assert admin.get("/user/me").status_code == 400  # the admin secret is no key
    assert httpx.get(gw.url + "/user/me").status_code == 401
