"""Feishu's event wire (decryption, signature, token, parsing, mentions), the bot config's pure
parts, and the API client against the fake platform (token cache, expiry, refresh on a refused
token)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from tests.fakes import feishu_server as fs
from tollway.auth.secret_box import SecretBox
from tollway.bots import feishu
from tollway.bots.config import listed, masked, requested, settings
from tollway.bots.feishu import MessageEvent, OtherEvent, UrlVerification
from tollway.bots.feishu_api import App, FeishuApi, FeishuApiError, text_content
from tollway.core.errors import AuthenticationFailed, InvalidRequest

# the vector of Feishu's "receive events" documentation (Python sample): key "test key"
DOC_KEY, DOC_PAYLOAD = "test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="


# encryption ---------------------------------------------------------------------------------

def test_decrypts_the_documented_vector() -> None:
    assert feishu.decrypt(DOC_KEY, DOC_PAYLOAD) == b"hello world"


def test_encrypt_round_trips_and_matches_the_fake() -> None:
    iv = bytes(range(16))
    plain = json.dumps({"challenge": "c-1", "type": "url_verification"}).encode()
    ours = feishu.encrypt("k3y", plain, iv)
    assert ours == fs.encrypt("k3y", plain, iv)  # both written from the documentation
    assert feishu.decrypt("k3y", ours) == plain
    assert feishu.decrypt("k3y", fs.encrypt("k3y", "中文 ✓".encode())) == "中文 ✓".encode()
    # a random IV each time
    assert feishu.encrypt("k3y", plain) != feishu.encrypt("k3y", plain)


@pytest.mark.parametrize("payload", ["not base64!", "", "AAAA", fs.encrypt("k", b"x")[:-4] + "AAA="])
def test_undecryptable_payloads_are_400s(payload: str) -> None:
    with pytest.raises(InvalidRequest):
        feishu.decrypt("k", payload)


def test_a_wrong_key_is_a_400_not_a_crash() -> None:
    # a wrong key gives bad padding (nearly always; this IV and text do)
    with pytest.raises(InvalidRequest):
        feishu.decrypt("other key", feishu.encrypt("k", b'{"a": 1}', bytes(16)))


# signature and token ------------------------------------------------------------------------

def _headers(ts: str, nonce: str, sig: str) -> dict[str, str]:
    return {feishu.TIMESTAMP: ts, feishu.NONCE: nonce, feishu.SIGNATURE: sig}


def test_signature_is_sha256_of_timestamp_nonce_key_body() -> None:
    body = b'{"encrypt":"abc"}'
    expected = hashlib.sha256(b"1700000000" + b"n0nce" + b"ek" + body).hexdigest()
    assert feishu.signature("1700000000", "n0nce", "ek", body) == expected == fs.sign("1700000000", "n0nce", "ek",
                                                                                       body)
    feishu.check_signature(_headers("1700000000", "n0nce", expected), "ek", body, now=1700000100)


@pytest.mark.parametrize("case", ["missing", "wrong", "other body", "old", "future", "bad timestamp"])
def test_bad_signatures_are_401s(case: str) -> None:
    body, ts, nonce = b'{"encrypt":"abc"}', "1700000000", "n"
    good = feishu.signature(ts, nonce, "ek", body)
    headers, now, sent = _headers(ts, nonce, good), 1700000000.0, body
    if case == "missing":
        headers.pop(feishu.SIGNATURE)
    elif case == "wrong":
        headers[feishu.SIGNATURE] = good[:-1] + ("0" if good[-1] != "0" else "1")
    elif case == "other body":
        sent = body + b" "
    elif case == "old":
        now += 301
    elif case == "future":
        now -= 301
    else:
        headers = _headers("soon", nonce, feishu.signature("soon", nonce, "ek", body))
    with pytest.raises(AuthenticationFailed):
        feishu.check_signature(headers, "ek", sent, now)


def test_verification_token_from_either_schema() -> None:
    feishu.check_token({"token": "vt"}, "vt")
    feishu.check_token({"schema": "2.0", "header": {"token": "vt"}}, "vt")
    for data in ({"token": "nope"}, {"header": {"token": "nope"}}, {}, {"token": 5}):
        with pytest.raises(AuthenticationFailed):
            feishu.check_token(data, "vt")


# events -------------------------------------------------------------------------------------

def test_parses_url_verification_messages_and_others() -> None:
    assert feishu.parse(fs.url_verification("ch-1", "vt")) == UrlVerification(challenge="ch-1")
    event = fs.message_event(text="hi", event_id="ev1", message_id="om_1", chat_id="oc_1",
                             mentions=[fs.mention()])
    parsed = feishu.parse(event)
    assert isinstance(parsed, MessageEvent)
    assert (parsed.event_id, parsed.message_id, parsed.chat_id, parsed.chat_type, parsed.message_type) == (
        "ev1", "om_1", "oc_1", "p2p", "text")
    assert parsed.mentions[0].key == "@_user_1" and parsed.mentions[0].open_id == fs.BOT_OPEN_ID
    assert parsed.sender_open_id == "ou_user_alice" and parsed.sender_type == "user"
    other = {"schema": "2.0", "header": {"event_type": "im.chat.member.bot.added_v1"}, "event": {}}
    assert feishu.parse(other) == OtherEvent(event_type="im.chat.member.bot.added_v1")
    assert isinstance(feishu.parse({"type": "event_callback", "event": {}}), OtherEvent)  # schema 1.0


@pytest.mark.parametrize("breaks", ["no message", "no message_id", "no event_id", "chat_id a number"])
def test_a_message_event_without_what_a_reply_needs_is_a_400(breaks: str) -> None:
    event = fs.message_event(text="hi")
    if breaks == "no message":
        del event["event"]["message"]
    elif breaks == "no message_id":
        del event["event"]["message"]["message_id"]
    elif breaks == "no event_id":
        del event["header"]["event_id"]
    else:
        event["event"]["message"]["chat_id"] = 5
    with pytest.raises(InvalidRequest):
        feishu.parse(event)
    with pytest.raises(InvalidRequest):
        feishu.parse([1, 2])


def _message(**kw: object) -> MessageEvent:
    parsed = feishu.parse(fs.message_event(**kw))  # type: ignore[arg-type]
    assert isinstance(parsed, MessageEvent)
    return parsed


def test_mentions_decide_group_messages_and_leave_the_text() -> None:
    p2p = _message(text="  hello there  ")
    assert feishu.text_for_bot(p2p, None) == (True, "hello there")
    quiet = _message(text="just chatting", chat_type="group")
    assert feishu.text_for_bot(quiet, fs.BOT_OPEN_ID) == (False, "just chatting")
    to_bot = _message(text="@_user_1 what is 2+2?", chat_type="group", mentions=[fs.mention()])
    assert feishu.text_for_bot(to_bot, fs.BOT_OPEN_ID) == (True, "what is 2+2?")
    to_bob = _message(text="@_user_1 ping", chat_type="group", mentions=[fs.mention(open_id="ou_bob", name="Bob")])
    assert feishu.text_for_bot(to_bob, fs.BOT_OPEN_ID) == (False, "@Bob ping")
    assert feishu.text_for_bot(to_bob, None) == (True, "ping")  # the bot's own id unknown: any mention counts
    both = _message(text="@_user_10 and @_user_1 compare\nline two", chat_type="group",
                    mentions=[fs.mention("@_user_10", "ou_bob", "Bob"), fs.mention("@_user_1")])
    assert feishu.text_for_bot(both, fs.BOT_OPEN_ID) == (True, "@Bob and compare\nline two")
    image = _message(message_type="image", chat_type="group", mentions=[fs.mention()])
    assert feishu.text_for_bot(image, fs.BOT_OPEN_ID) == (True, "")
    broken = _message(content="not json")
    assert feishu.text_for_bot(broken, None) == (True, "")


# config -------------------------------------------------------------------------------------

def test_config_merges_top_level_fields_and_masks_secrets() -> None:
    body = {"name": "b", "config": json.dumps({"appId": "cli_1", "modelId": "m"}), "apiKey": "tw-x", "modelId": "n"}
    assert requested(body) == {"appId": "cli_1", "modelId": "n", "apiKey": "tw-x"}
    with pytest.raises(InvalidRequest):
        requested({"config": {"appId": "x", "appSecrets": "typo"}})
    with pytest.raises(InvalidRequest):
        requested({"config": "[1]"})
    with pytest.raises(InvalidRequest):
        requested({"colour": "blue"})
    assert masked("secret-value") == "secr…" and masked("") == ""
    box = SecretBox(b"0" * 43 + b"=")
    stored = {"appId": "cli_1", "appSecret": box.encrypt("s3cret-app"), "apiKey": box.encrypt("tw-abcdef"),
              "modelId": "m", "verificationToken": "", "encryptKey": box.encrypt("ek-123"), "apiBase": ""}
    shown = listed(box, stored)
    assert shown["appSecret"] == "s3cr…" and shown["apiKey"] == "tw-a…" and shown["encryptKey"] == "ek-1…"
    assert "s3cret-app" not in json.dumps(shown)
    opened = settings(box, stored)
    assert (opened.app_secret, opened.api_key, opened.encrypt_key, opened.api_base) == (
        "s3cret-app", "tw-abcdef", "ek-123", feishu.DEFAULT_API_BASE)


# the API client against the fake ----------------------------------------------------------

@pytest.fixture
def platform() -> Iterator[fs.FakeFeishu]:
    server = fs.FakeFeishu()
    server.start()
    yield server
    server.stop()
    assert server.spec_errors == []


async def test_the_tenant_token_is_cached_until_near_expiry(platform: fs.FakeFeishu) -> None:
    now = [1000.0]
    api = FeishuApi(clock=lambda: now[0])
    app = App(platform.base_url, fs.APP_ID, fs.APP_SECRET)
    try:
        first = await api.tenant_token(app)
        assert await api.tenant_token(app) == first and platform.token_fetches == 1
        now[0] += 7200 - 301  # still more than the margin left
        assert await api.tenant_token(app) == first and platform.token_fetches == 1
        now[0] += 2  # within five minutes of its expiry
        assert await api.tenant_token(app) != first and platform.token_fetches == 2
        await api.reply(app, "om_1", 'say "hi"\nplease')
        await api.send(app, "oc_1", "to the chat")
        assert [(s.via, s.target, s.text) for s in platform.replies] == [
            ("reply", "om_1", 'say "hi"\nplease'), ("send", "oc_1", "to the chat")]
        assert await api.bot_open_id(app) == fs.BOT_OPEN_ID
        assert await api.bot_open_id(app) == fs.BOT_OPEN_ID and platform.info_calls == 1
    finally:
        await api.close()


async def test_a_refused_token_is_fetched_again_once(platform: fs.FakeFeishu) -> None:
    api = FeishuApi()
    app = App(platform.base_url, fs.APP_ID, fs.APP_SECRET)
    try:
        await api.reply(app, "om_1", "one")
        platform.revoke_tokens()  # the cached token is now refused with 99991663
        await api.reply(app, "om_2", "two")
        assert platform.token_fetches == 2 and platform.texts() == ["one", "two"]
        with pytest.raises(FeishuApiError) as err:
            await api.reply(App(platform.base_url, fs.APP_ID, "wrong secret"), "om_3", "three")
        assert err.value.code == 10014 and "wrong secret" not in str(err.value)
        platform.refuse_replies = 230011
        with pytest.raises(FeishuApiError) as refused:
            await api.reply(app, "om_4", "four")
        assert refused.value.code == 230011
    finally:
        await api.close()


async def test_a_dead_platform_is_an_api_error() -> None:
    api = FeishuApi(timeout=2.0)
    try:
        with pytest.raises(FeishuApiError) as err:
            await api.tenant_token(App("http://127.0.0.1:9", "cli_x", "s"))
        assert err.value.code == -1
    finally:
        await api.close()


def test_long_answers_are_cut_to_one_message() -> None:
    content = json.loads(text_content("x" * 40_000))
    assert len(content["text"]) == 30_001
