"""Feishu bots end to end: ``tollway serve`` with the fake OpenAI upstream as the bots' model
(``fake-chat``) and the fake Feishu platform as every bot's ``apiBase``. Events are delivered as
the platform delivers them (``tests/fakes/feishu_server.deliver``: encrypted and signed when the
bot has an Encrypt Key); answers arrive at the fake's reply API."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.harness import ADMIN_KEY, GatewayProcess, fake_config
from tests.fakes import feishu_server as fs
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tests.fuzz_inputs import bodies, fuzz_settings

pytestmark = pytest.mark.e2e
ENCRYPT_KEY = "feishu-encrypt-key-4f2a"
TOKEN = "verification-token-9b1c"
PRICE = "0.01"  # credits per request of fake-chat
PRICE_MICRO = 10_000


@pytest.fixture(scope="module")
def feishu() -> Iterator[fs.FakeFeishu]:
    server = fs.FakeFeishu()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _feishu_spec(feishu: fs.FakeFeishu) -> Iterator[None]:
    before = len(feishu.spec_errors)
    yield
    assert feishu.spec_errors[before:] == []


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("bots"), config=fake_config(fake.base_url, UPSTREAM_SECRET),
                             env={"TOLLWAY_LOG_FLUSH_INTERVAL": "0.1"}).start()
    with gateway.admin() as admin:
        r = admin.post("/admin/model/save", json={"name": "fake-chat", "provider": "fake", "credit_cost": PRICE})
        assert r.status_code == 200, r.text
    yield gateway
    gateway.stop()
    assert "Traceback" not in gateway.output()
    for secret in (fs.APP_SECRET, ENCRYPT_KEY, TOKEN):
        assert secret not in gateway.output()


def _key(gw: GatewayProcess, name: str, credits: str | None) -> tuple[str, int]:
    secret = gw.create_key(name)
    with gw.admin() as admin:
        items = admin.get("/admin/api-key/list", params={"q": name}).json()["items"]
        key_id = next(k["id"] for k in items if k["name"] == name)
        if credits is not None:
            r = admin.post("/admin/api-key/recharge", json={"api_key": key_id, "balance": credits})
            assert r.status_code == 200, r.text
    return secret, key_id


@pytest.fixture(scope="module")
def paid_key(gw: GatewayProcess) -> tuple[str, int]:
    return _key(gw, "bot-payer", "5")


def _save(gw: GatewayProcess, body: dict[str, Any]) -> httpx.Response:
    with gw.admin() as admin:
        return admin.post("/admin/bot/feishu/save", json=body)


def _bot(gw: GatewayProcess, feishu: fs.FakeFeishu, key: str, *, encrypt_key: str = ENCRYPT_KEY,
         token: str = TOKEN, name: str = "helper") -> dict[str, Any]:
    config = {"appId": fs.APP_ID, "appSecret": fs.APP_SECRET, "apiKey": key, "modelId": "fake-chat",
              "verificationToken": token, "encryptKey": encrypt_key, "apiBase": feishu.base_url}
    r = _save(gw, {"name": name, "provider": "fake", "config": json.dumps(config)})
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def bot(gw: GatewayProcess, feishu: fs.FakeFeishu, paid_key: tuple[str, int]) -> dict[str, Any]:
    return _bot(gw, feishu, paid_key[0])


def _post(gw: GatewayProcess, bot_id: int, event: dict[str, Any], *, encrypt_key: str = ENCRYPT_KEY,
          **kw: Any) -> httpx.Response:
    raw, headers = fs.deliver(event, encrypt_key=encrypt_key, **kw)
    return httpx.post(f"{gw.url}/bots/feishu/{bot_id}/events", content=raw, headers=headers, timeout=10)


def _say(gw: GatewayProcess, bot: dict[str, Any], text: str, **kw: Any) -> tuple[dict[str, Any], httpx.Response]:
    event = fs.message_event(text=text, token=TOKEN, **kw)
    return event, _post(gw, bot["id"], event)


def _mid(event: dict[str, Any]) -> str:
    return str(event["event"]["message"]["message_id"])


def _quiet(fake: FakeOpenAI, feishu: fs.FakeFeishu, upstream_before: int, replies_before: int,
           wait: float = 0.6) -> None:
    """Nothing was processed: no upstream call, no reply (after a moment for a background task)."""
    time.sleep(wait)
    assert len(fake.seen("upstream-chat")) == upstream_before
    assert len(feishu.replies) == replies_before


def _answered(feishu: fs.FakeFeishu, event: dict[str, Any], timeout: float = 10.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        texts = feishu.texts(_mid(event))
        if texts:
            return texts[0]
        time.sleep(0.02)
    raise AssertionError(f"no reply to {_mid(event)}: {feishu.replies}")


def _user_turns(seen_body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"] if isinstance(m["content"], str) else "".join(p["text"] for p in m["content"]))
            for m in seen_body["messages"]]


# admin API -----------------------------------------------------------------------------------

def test_crud_masks_secrets_and_validates(gw: GatewayProcess, feishu: fs.FakeFeishu,
                                          paid_key: tuple[str, int]) -> None:
    key, key_id = paid_key
    # seed 004's create: config as a string, provider kept as given
    created = _save(gw, {"name": "crud", "provider": "bedrock-converse", "config": json.dumps(
        {"appId": "cli_crud", "apiKey": key, "modelId": "claude-3-sonnet", "appSecret": "crud-app-secret"})})
    assert created.status_code == 200, created.text
    bot = created.json()
    assert bot["provider"] == "bedrock-converse" and bot["key_id"] == key_id and bot["model"] == "claude-3-sonnet"
    assert bot["config"]["appSecret"] == "crud…" and bot["config"]["apiKey"] == key[:4] + "…"
    assert bot["config"]["apiBase"] == "https://open.feishu.cn" and bot["config"]["encryptKey"] == ""
    assert bot["event_url"] == f"{gw.url}/bots/feishu/{bot['id']}/events"
    with gw.admin() as admin:
        listing = admin.get("/admin/bot/feishu/list", params={"q": "cli_crud", "limit": 10}).json()
        assert listing["total"] == 1 and listing["items"][0]["id"] == bot["id"]
        assert "crud-app-secret" not in json.dumps(listing) and key not in json.dumps(listing)
        # seed 004's update sends the fields at the top level; with the id, it changes that bot; the
        # masks sent back keep the secrets
        changed = admin.post("/admin/bot/feishu/save", json={
            "id": bot["id"], "modelId": "fake-chat", "apiBase": "https://open.larksuite.com/",
            "appSecret": bot["config"]["appSecret"], "encryptKey": "ek-new"})
        assert changed.status_code == 200, changed.text
        after = changed.json()
        assert (after["model"], after["name"], after["config"]["apiBase"], after["config"]["encryptKey"]) == (
            "fake-chat", "crud", "https://open.larksuite.com", "ek-n…")
        # without an id it would be a new bot, which needs a name
        no_id = admin.post("/admin/bot/feishu/save", json={"appId": "cli_x", "apiKey": key, "modelId": "m",
                                                             "appSecret": "s"})
        assert no_id.status_code == 400 and "name" in no_id.json()["detail"]
        for body, param in (({"name": "x", "config": {"appId": "a", "appSecret": "s", "modelId": "m",
                                                       "apiKey": "tw-not-a-key"}}, "apiKey"),
                            ({"name": "x", "config": {"appId": "a", "appSecret": "s", "apiKey": key}}, "modelId"),
                            ({"name": "x", "config": "{not json"}, "config"),
                            ({"name": "x", "config": {"appId": "a", "appSecret": "s", "modelId": "m", "apiKey": key,
                                                      "apiBase": "ftp://x"}}, "apiBase")):
            r = admin.post("/admin/bot/feishu/save", json=body)
            assert r.status_code == 400 and param in r.json()["detail"], (body, r.text)
        assert admin.post("/admin/bot/feishu/save", json={"id": 999999, "name": "x"}).status_code == 404
        assert admin.post("/admin/bot/feishu/delete", json={"id": bot["id"]}).json() == {"success": True,
                                                                                      "id": bot["id"]}
        assert admin.post("/admin/bot/feishu/delete", json={"id": bot["id"]}).status_code == 404
        assert admin.get("/admin/bot/feishu/list", params={"q": "cli_crud"}).json()["total"] == 0
    # admin only
    for auth in ({}, {"Authorization": f"Bearer {key}"}):
        r = httpx.get(f"{gw.url}/admin/bot/feishu/list", headers=auth)
        assert r.status_code in (401, 403) and "detail" in r.json()
    # secrets are not in the database in the clear
    kept = _bot(gw, feishu, key, name="stored")
    with sqlite3.connect(gw.db_path) as db:
        (config,) = db.execute("SELECT config FROM bots WHERE id = ?", (kept["id"],)).fetchone()
    for secret in (fs.APP_SECRET, key, ENCRYPT_KEY, TOKEN):
        assert secret not in config
    assert fs.APP_ID in config


# the event URL ---------------------------------------------------------------------------------

def test_url_verification_plain_and_encrypted(gw: GatewayProcess, feishu: fs.FakeFeishu,
                                              paid_key: tuple[str, int], bot: dict[str, Any]) -> None:
    plain = _bot(gw, feishu, paid_key[0], encrypt_key="", name="plain")
    r = _post(gw, plain["id"], fs.url_verification("challenge-plain", TOKEN), encrypt_key="")
    assert r.status_code == 200 and r.json() == {"challenge": "challenge-plain"}
    r = _post(gw, plain["id"], fs.url_verification("c", "wrong-token"), encrypt_key="")
    assert r.status_code == 401
    # encrypted: the platform does not sign its URL check
    r = _post(gw, bot["id"], fs.url_verification("challenge-enc", TOKEN), sign_it=False)
    assert r.status_code == 200 and r.json() == {"challenge": "challenge-enc"}
    r = _post(gw, bot["id"], fs.url_verification("challenge-signed", TOKEN))
    assert r.status_code == 200 and r.json() == {"challenge": "challenge-signed"}
    # a bot with an Encrypt Key takes nothing in the clear
    r = _post(gw, bot["id"], fs.url_verification("c", TOKEN), encrypt_key="")
    assert r.status_code in (400, 401)


def test_a_signed_encrypted_message_is_answered_by_the_model(gw: GatewayProcess, fake: FakeOpenAI,
                                                             feishu: fs.FakeFeishu, bot: dict[str, Any]) -> None:
    fake.script("upstream-chat", Behavior(text="Two plus two is four."))
    before = len(fake.seen("upstream-chat"))
    event, r = _say(gw, bot, "What is 2+2?", chat_id="oc_p2p_math")
    assert r.status_code == 200 and r.json() == {}
    assert _answered(feishu, event) == "Two plus two is four."
    sent = [s for s in feishu.replies if s.target == _mid(event)]
    assert [(s.via, s.app_id) for s in sent] == [("reply", fs.APP_ID)]
    seen = fake.seen("upstream-chat")[before:]
    assert len(seen) == 1 and _user_turns(seen[0].body) == [("user", "What is 2+2?")]


def test_a_redelivered_event_is_answered_once(gw: GatewayProcess, fake: FakeOpenAI, feishu: fs.FakeFeishu,
                                              bot: dict[str, Any]) -> None:
    fake.script("upstream-chat", Behavior(text="Once."))
    before = len(fake.seen("upstream-chat"))
    event = fs.message_event(text="say it once", token=TOKEN, chat_id="oc_dupes")
    for _ in range(3):  # the platform redelivers with a new signature each time
        assert _post(gw, bot["id"], event).status_code == 200
    assert _answered(feishu, event) == "Once."
    time.sleep(0.5)
    assert feishu.texts(_mid(event)) == ["Once."]
    assert len(fake.seen("upstream-chat")) == before + 1


def test_group_messages_need_the_bot_mentioned(gw: GatewayProcess, fake: FakeOpenAI, feishu: fs.FakeFeishu,
                                               bot: dict[str, Any]) -> None:
    fake.script("upstream-chat", Behavior(text="Hi group."))
    upstream, replies = len(fake.seen("upstream-chat")), len(feishu.replies)
    ignored, r = _say(gw, bot, "chatting among ourselves", chat_id="oc_group_1", chat_type="group")
    assert r.status_code == 200
    other, r = _say(gw, bot, "@_user_1 not you", chat_id="oc_group_1", chat_type="group",
                    mentions=[fs.mention(open_id="ou_bob", name="Bob")])
    assert r.status_code == 200
    _quiet(fake, feishu, upstream, replies)
    event, r = _say(gw, bot, "@_user_1 hello bot", chat_id="oc_group_1", chat_type="group",
                    mentions=[fs.mention()])
    assert _answered(feishu, event) == "Hi group."
    assert _user_turns(fake.seen("upstream-chat")[-1].body)[-1] == ("user", "hello bot")
    assert feishu.texts(_mid(ignored)) == [] and feishu.texts(_mid(other)) == []
    # the bot's open id was asked once; one tenant token serves every call of the app so far
    assert feishu.info_calls == 1 and feishu.token_fetches == 1
    # other message types get a short reply, in p2p or when mentioned
    image = fs.message_event(message_type="image", token=TOKEN, chat_id="oc_group_1", chat_type="group",
                             mentions=[fs.mention()])
    assert _post(gw, bot["id"], image).status_code == 200
    assert "only read text" in _answered(feishu, image)


def test_a_conversation_carries_its_earlier_turns(gw: GatewayProcess, fake: FakeOpenAI, feishu: fs.FakeFeishu,
                                                  bot: dict[str, Any], paid_key: tuple[str, int]) -> None:
    chat = "oc_p2p_" + secrets.token_hex(4)
    fake.script("upstream-chat", Behavior(text="Nice to meet you, Ada."))
    first, _ = _say(gw, bot, "My name is Ada.", chat_id=chat)
    assert _answered(feishu, first) == "Nice to meet you, Ada."
    fake.script("upstream-chat", Behavior(text="Your name is Ada."))
    second, _ = _say(gw, bot, "What is my name?", chat_id=chat)
    assert _answered(feishu, second) == "Your name is Ada."
    assert _user_turns(fake.seen("upstream-chat")[-1].body) == [
        ("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada."), ("user", "What is my name?")]
    # recorded under the bot's key and its chat (seed 004's sessions)
    deadline = time.time() + 5
    rows: list[Any] = []
    while time.time() < deadline and len(rows) < 2:
        with sqlite3.connect(gw.db_path) as db:
            session = db.execute("SELECT id, owner, key_id, threads FROM chat_sessions WHERE client_ref = ?",
                                 (f"feishu:{bot['id']}:{chat}",)).fetchone()
            rows = db.execute("SELECT input, output, dialect, status FROM chat_threads WHERE session_id = ? "
                              "ORDER BY id", (session[0],)).fetchall() if session else []
        time.sleep(0.1)
    assert session is not None and session[1] == f"key:{paid_key[1]}" and session[2] == paid_key[1]
    assert [(json.loads(i)[-1]["content"], o, d, s) for i, o, d, s in rows] == [
        ("My name is Ada.", "Nice to meet you, Ada.", "feishu", 200),
        ("What is my name?", "Your name is Ada.", "feishu", 200)]


def test_bad_deliveries_are_refused_and_nothing_runs(gw: GatewayProcess, fake: FakeOpenAI, feishu: fs.FakeFeishu,
                                                     bot: dict[str, Any]) -> None:
    upstream, replies = len(fake.seen("upstream-chat")), len(feishu.replies)
    event = fs.message_event(text="forged", token=TOKEN)
    raw, headers = fs.deliver(event, encrypt_key=ENCRYPT_KEY)
    url = f"{gw.url}/bots/feishu/{bot['id']}/events"
    forged = dict(headers, **{"X-Lark-Signature": "0" * 64})
    assert httpx.post(url, content=raw, headers=forged).status_code == 401
    unsigned = {k: v for k, v in headers.items() if not k.startswith("X-Lark")}
    assert httpx.post(url, content=raw, headers=unsigned).status_code == 401
    old_raw, old_headers = fs.deliver(event, encrypt_key=ENCRYPT_KEY, timestamp=time.time() - 600)
    assert httpx.post(url, content=old_raw, headers=old_headers).status_code == 401  # a replay
    wrong_key_raw, wrong_key_headers = fs.deliver(event, encrypt_key="another-key")
    assert httpx.post(url, content=wrong_key_raw, headers=wrong_key_headers).status_code == 401
    bad_token = fs.message_event(text="x", token="not-the-token")
    assert _post(gw, bot["id"], bad_token).status_code == 401
    # malformed: signed as the platform would, but not JSON / not an event
    for body in (b"{not json", b"[1, 2]", b'{"encrypt": "%%%"}'):
        ts, nonce = str(int(time.time())), "n1"
        signed = {"X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
                  "X-Lark-Signature": fs.sign(ts, nonce, ENCRYPT_KEY, body)}
        r = httpx.post(url, content=body, headers=signed)
        assert r.status_code == 400 and "detail" in r.json(), body
    no_message = fs.message_event(text="x", token=TOKEN)
    del no_message["event"]["message"]["message_id"]
    assert _post(gw, bot["id"], no_message).status_code == 400
    assert _post(gw, 987654, event).status_code == 404
    assert httpx.post(f"{gw.url}/bots/feishu/99999999999999999999/events", content=raw).status_code == 404
    _quiet(fake, feishu, upstream, replies)


def test_a_key_without_credits_says_so_once_per_chat(gw: GatewayProcess, fake: FakeOpenAI, feishu: fs.FakeFeishu,
                                                     paid_key: tuple[str, int]) -> None:
    broke_key, broke_id = _key(gw, "bot-broke", None)
    broke = _bot(gw, feishu, broke_key, name="broke")
    upstream = len(fake.seen("upstream-chat"))
    first, r = _say(gw, broke, "anyone there?", chat_id="oc_broke")
    assert r.status_code == 200
    assert "run out of credits" in _answered(feishu, first)
    second, _ = _say(gw, broke, "hello?", chat_id="oc_broke")
    time.sleep(0.6)
    assert feishu.texts(_mid(second)) == []  # said once in this chat
    other_chat, _ = _say(gw, broke, "hi", chat_id="oc_broke_2")
    assert "run out of credits" in _answered(feishu, other_chat)
    assert len(fake.seen("upstream-chat")) == upstream
    # a revoked key: the bot says that instead
    with gw.admin() as admin:
        assert admin.post("/admin/api-key/delete", json={"id": broke_id}).status_code == 200
    revoked, _ = _say(gw, broke, "still there?", chat_id="oc_broke")
    assert "no longer valid" in _answered(feishu, revoked)


def test_the_bots_key_pays_for_its_calls(gw: GatewayProcess, fake: FakeOpenAI, feishu: fs.FakeFeishu,
                                         bot: dict[str, Any], paid_key: tuple[str, int]) -> None:
    key, key_id = paid_key
    fake.script("upstream-chat", Behavior(text="Paid answer."))
    event, _ = _say(gw, bot, "bill me", chat_id="oc_bill")
    assert _answered(feishu, event) == "Paid answer."
    deadline = time.time() + 5
    items: list[dict[str, Any]] = []
    with gw.admin() as admin:
        while time.time() < deadline:
            items = admin.get("/admin/log/list", params={"key_id": key_id, "limit": 100}).json()["items"]
            if any(i.get("path") == f"/bots/feishu/{bot['id']}" and i.get("status") == 200 for i in items):
                break
            time.sleep(0.1)
        ours = [i for i in items if i.get("path") == f"/bots/feishu/{bot['id']}" and i.get("status") == 200]
        assert ours and all(i["cost_micro"] == PRICE_MICRO and i["model"] == "fake-chat" for i in ours), items
        # the stored balance follows the ledger's write-behind, a moment after the log row
        while True:
            balance = next(k for k in admin.get("/admin/api-key/list", params={"q": "bot-payer"}).json()["items"]
                           if k["id"] == key_id)["balance_micro"]
            if balance <= 5_000_000 - len(ours) * PRICE_MICRO or time.time() > deadline + 5:
                break
            time.sleep(0.1)
    assert balance <= 5_000_000 - len(ours) * PRICE_MICRO


def test_a_failing_model_gets_a_short_reply(gw: GatewayProcess, fake: FakeOpenAI, feishu: fs.FakeFeishu,
                                            bot: dict[str, Any]) -> None:
    fake.script("upstream-chat", Behavior(status=400, error_message="the prompt is not allowed"))
    try:
        event, _ = _say(gw, bot, "fail please", chat_id="oc_fail")
        assert _answered(feishu, event).startswith("Sorry, the model failed:")
    finally:
        fake.script("upstream-chat", Behavior())


def test_a_withdrawn_message_is_answered_in_its_chat(gw: GatewayProcess, fake: FakeOpenAI,
                                                     feishu: fs.FakeFeishu, bot: dict[str, Any]) -> None:
    fake.script("upstream-chat", Behavior(text="Here anyway."))
    feishu.refuse_replies = 230011
    try:
        _say(gw, bot, "quick question", chat_id="oc_withdrawn")
        deadline = time.time() + 10
        while time.time() < deadline and not feishu.texts("oc_withdrawn"):
            time.sleep(0.02)
        assert feishu.texts("oc_withdrawn") == ["Here anyway."]
    finally:
        feishu.refuse_replies = None


# fuzz: no body makes either surface fail ------------------------------------------------------

FUZZ = fuzz_settings(60)


def test_fuzzed_saves_and_events_are_never_5xx(gw: GatewayProcess, feishu: fs.FakeFeishu,
                                               paid_key: tuple[str, int]) -> None:
    key = paid_key[0]
    plain = _bot(gw, feishu, key, encrypt_key="", token="", name="fuzzed")
    save_base = {"name": "fz", "provider": "fake", "config": {
        "appId": "cli_fz", "appSecret": "s", "apiKey": key, "modelId": "fake-chat", "verificationToken": "t",
        "encryptKey": "", "apiBase": feishu.base_url}}
    event_base = fs.message_event(text="@_user_1 hi", chat_type="group", mentions=[fs.mention()])
    client = httpx.Client(base_url=gw.url, timeout=10)

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(bodies(save_base))
        r = client.post("/admin/bot/feishu/save", content=raw,
                        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
        assert r.status_code < 500, (raw[:300], r.text)
        raw = data.draw(bodies(event_base))
        r = client.post(f"/bots/feishu/{plain['id']}/events", content=raw)
        assert r.status_code < 500, (raw[:300], r.text)

    with client:
        run()
    time.sleep(0.5)  # the events taken on are handled behind
    assert "Traceback" not in gw.output()
