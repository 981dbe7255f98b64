"""Seed 002's admin API over HTTP on a real gateway: JWT login and verify, the login throttle,
config, accounts (CRUD, paging, token-only ids), queue status, account tests, import, export,
the self test, and ``tollway credentials`` on the same data directory."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tollway.auth.jwt import server_secret, signing_key

OTHER_SECRET = "sk-other-upstream-secret-0123456789"


def _config(fake: FakeOpenAI) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "fake", "kind": "openai_compatible", "base_url": fake.base_url,
             "credentials": [{"id": "fake-1", "api_key": UPSTREAM_SECRET}]},
            {"name": "other", "kind": "openai_compatible", "base_url": fake.base_url,
             "credentials": [{"id": "other-1", "api_key": OTHER_SECRET}]},
        ],
        "models": [{"id": "fake-chat", "provider": "fake", "upstream_id": "upstream-chat"},
                   {"id": "other-chat", "provider": "other", "upstream_id": "other-upstream"}],
        "claude_mapping": {"fast": "fake-chat"},
    }


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("ds2api"), config=_config(fake),
                       env={"TOLLWAY_LOG_FLUSH_INTERVAL": "0.1", "TOLLWAY_CHANGE_POLL_INTERVAL": "0.2"}).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayProcess) -> str:
    r = httpx.post(gw.url + "/admin/login", json={"admin_key": ADMIN_KEY})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def _client(gw: GatewayProcess, bearer: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


def _signing_key(gw: GatewayProcess) -> bytes:
    """What the gateway signs with: its stored secret and the admin secret's hash, keyed by the
    server secret that is not in the database (here TOLLWAY_ADMIN_KEY, which the test knows)."""
    with sqlite3.connect(gw.db_path) as db:
        (secret,) = db.execute("SELECT value FROM meta WHERE key = 'admin_jwt_secret'").fetchone()
    admin_hash = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    return signing_key(server_secret({"TOLLWAY_ADMIN_KEY": ADMIN_KEY}, gw.data_dir), secret, admin_hash)


def _chat(gw: GatewayProcess, key: str, model: str = "echo", content: str = "hi",
          headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})},
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


# login and verify ------------------------------------------------------------------------------


def test_login_gives_a_jwt_that_opens_every_admin_endpoint(gw: GatewayProcess, token: str) -> None:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert claims["sub"] == "admin" and claims["exp"] - claims["iat"] == 24 * 3600
    with pytest.raises(jwt.InvalidSignatureError), warnings.catch_warnings():  # never signed with the admin key
        warnings.simplefilter("ignore")  # PyJWT warns about a 31-byte HMAC key
        jwt.decode(token, ADMIN_KEY, algorithms=["HS256"])
    with _client(gw, token) as admin:
        assert admin.get("/admin/accounts").status_code == 200
        assert admin.get("/admin/queue/status").status_code == 200
        assert admin.get("/admin/api-key/list").status_code == 200  # seed 004's routes too
        added = admin.post("/admin/keys", json={"key": "jwt-made-key-0001"})
        assert added.status_code == 200 and added.json()["success"] is True
        assert admin.delete("/admin/keys/jwt-made-key-0001").json()["success"] is True
    assert _chat(gw, token).status_code == 401  # an admin session is not an API key
    r = httpx.post(gw.url + "/admin/login", json={"admin_key": ADMIN_KEY, "expire_hours": 2})
    assert r.json()["success"] is True and r.json()["expires_in"] == 7200


def test_login_checks_expire_hours(gw: GatewayProcess) -> None:
    for bad in (0, 721, 1.5, "x", True):
        r = httpx.post(gw.url + "/admin/login", json={"admin_key": ADMIN_KEY, "expire_hours": bad})
        assert r.status_code == 400 and "expire_hours" in r.json()["detail"], bad
    r = httpx.post(gw.url + "/admin/login", json={"admin_key": ADMIN_KEY, "expire_hours": 720})
    assert r.json()["expires_in"] == 720 * 3600


def test_verify_takes_the_jwt_only(gw: GatewayProcess, token: str) -> None:
    r = httpx.get(gw.url + "/admin/verify", headers={"Authorization": f"Bearer {token}"})
    body = r.json()
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert r.status_code == 200 and body["valid"] is True and body["expires_at"] == exp
    assert exp - time.time() - 5 <= body["remaining_seconds"] <= exp - time.time() + 5
    r = httpx.get(gw.url + "/admin/verify", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 401 and "detail" in r.json()
    r = httpx.get(gw.url + "/admin/verify")
    assert r.status_code == 401 and r.json() == {"detail": "No credentials provided"}


def test_expired_tampered_and_foreign_jwts_are_refused(gw: GatewayProcess, token: str) -> None:
    key = _signing_key(gw)
    now = int(time.time())
    minted = jwt.encode({"sub": "admin", "iat": now, "exp": now + 60}, key, algorithm="HS256")
    expired = jwt.encode({"sub": "admin", "iat": now - 100, "exp": now - 10}, key, algorithm="HS256")
    with _client(gw, minted) as admin:  # the test mints what the gateway would: the refusals below are real
        assert admin.get("/admin/accounts").status_code == 200
    for path in ("/admin/verify", "/admin/accounts"):
        r = httpx.get(gw.url + path, headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and "expired" in r.json()["detail"], path
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] += 3600
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about short HMAC keys (the admin key; HS512)
        with_admin_key = jwt.encode({"sub": "admin", "iat": now, "exp": now + 60}, ADMIN_KEY, algorithm="HS256")
        hs512 = jwt.encode({"sub": "admin", "iat": now, "exp": now + 60}, key, algorithm="HS512")
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = [
        f"{head}.{forged_payload}.{sig}",  # a changed payload under the old signature
        token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"),  # a changed signature
        jwt.encode({"sub": "user", "iat": now, "exp": now + 60}, key, algorithm="HS256"),
        with_admin_key,
        jwt.encode({"sub": "admin", "exp": now + 60}, key, algorithm="HS256"),  # no iat
        jwt.encode({"sub": "admin", "iat": now, "exp": now + 60}, None, algorithm="none"),
        hs512,
    ]
    for i, bad in enumerate(forged):  # each from an address of its own: failures are throttled per address
        with httpx.Client(transport=httpx.HTTPTransport(local_address=f"127.0.1.{i + 1}")) as client:
            for path in ("/admin/verify", "/admin/accounts"):
                r = client.get(gw.url + path, headers={"Authorization": f"Bearer {bad}"})
                assert r.status_code == 401 and "detail" in r.json(), (bad, path)


def test_wrong_admin_keys_are_throttled_per_address(fake: FakeOpenAI, tmp_path: Any) -> None:
    g = GatewayProcess(tmp_path, config=_config(fake)).start()
    try:
        for _ in range(10):
            r = httpx.post(g.url + "/admin/login", json={"admin_key": "not-the-admin-key"})
            assert r.status_code == 401 and r.json() == {"detail": "Invalid admin key"}
        r = httpx.post(g.url + "/admin/login", json={"admin_key": "not-the-admin-key"})
        assert r.status_code == 429 and "detail" in r.json()
        assert 1 <= int(r.headers["retry-after"]) <= 60
        r = httpx.post(g.url + "/admin/login", json={"admin_key": ADMIN_KEY})  # no oracle while throttled
        assert r.status_code == 429
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as elsewhere:
            r = elsewhere.post(g.url + "/admin/login", json={"admin_key": ADMIN_KEY})
        assert r.status_code == 200 and r.json()["success"] is True
    finally:
        g.stop()


# accounts --------------------------------------------------------------------------------------


def test_accounts_crud_paging_and_total_pages(gw: GatewayProcess, token: str) -> None:
    with _client(gw, token) as admin:
        try:
            for i in range(23):
                r = admin.post("/admin/accounts", json={"provider": "other", "email": f"u{i:02}@example.com",
                                                        "password": f"pw-{i}"})
                assert r.status_code == 200 and r.json()["success"] is True
                assert r.json()["total_accounts"] == i + 1
            page = admin.get("/admin/accounts", params={"provider": "other", "page": 1, "page_size": 10}).json()
            assert (page["total"], page["page"], page["page_size"], page["total_pages"]) == (23, 1, 10, 3)
            assert [a["identifier"] for a in page["items"]] == [f"u{i:02}@example.com" for i in range(10)]
            last = admin.get("/admin/accounts", params={"provider": "other", "page": 3, "page_size": 10}).json()
            assert [a["email"] for a in last["items"]] == ["u20@example.com", "u21@example.com", "u22@example.com"]
            item = last["items"][0]
            assert item == {"identifier": "u20@example.com", "provider": "other", "email": "u20@example.com",
                            "mobile": "", "has_password": True, "has_token": False, "token_preview": ""}
            assert admin.get("/admin/accounts", params={"provider": "other", "page_size": 100}).json()[
                "total_pages"] == 1
            assert admin.get("/admin/accounts", params={"provider": "other"}).json()["page_size"] == 10
            for bad in ({"page": 0}, {"page_size": 0}, {"page_size": 101}, {"page": "x"}):
                r = admin.get("/admin/accounts", params={"provider": "other", **bad})
                assert r.status_code == 400 and "detail" in r.json(), bad
            r = admin.post("/admin/accounts", json={"provider": "other", "email": "u01@example.com", "password": "x"})
            assert r.status_code == 409 and "already exists" in r.json()["detail"]
            r = admin.post("/admin/accounts", json={"provider": "other", "email": "lonely@example.com"})
            assert r.status_code == 400 and "password or a token" in r.json()["detail"]
            r = admin.post("/admin/accounts", json={"provider": "nope", "email": "a@b.c", "password": "x"})
            assert r.status_code == 400 and "not configured" in r.json()["detail"]
            r = admin.post("/admin/accounts", json={"provider": "other", "id": "other-1", "api_key": "sk-x-1234567"})
            assert r.status_code == 400 and "configured in env or YAML" in r.json()["detail"]
            d = admin.delete("/admin/accounts/u05@example.com", params={"provider": "other"})
            assert d.status_code == 200 and d.json()["success"] is True and d.json()["total_accounts"] == 22
            d = admin.delete("/admin/accounts/u05@example.com", params={"provider": "other"})
            assert d.status_code == 404 and d.json() == {"detail": "account does not exist"}
            assert admin.get("/admin/accounts", params={"provider": "other"}).json()["total_pages"] == 3
        finally:
            for i in range(23):
                admin.delete(f"/admin/accounts/u{i:02}@example.com", params={"provider": "other"})
        empty = admin.get("/admin/accounts", params={"provider": "other"}).json()
        assert (empty["total"], empty["total_pages"], empty["items"]) == (0, 1, [])


def test_accounts_default_to_the_first_provider_that_is_not_echo(gw: GatewayProcess, token: str) -> None:
    with _client(gw, token) as admin:
        r = admin.post("/admin/accounts", json={"mobile": "+15550001", "password": "pw"})
        try:
            assert r.status_code == 200 and r.json()["identifier"] == "+15550001"
            assert r.json()["account"]["provider"] == "fake"
            listed = admin.get("/admin/accounts").json()
            assert listed["provider"] == "fake" and "+15550001" in [a["mobile"] for a in listed["items"]]
            assert admin.get("/admin/accounts", params={"provider": "other"}).json()["total"] == 0
        finally:
            assert admin.delete("/admin/accounts/+15550001").status_code == 200  # by mobile


def test_token_only_and_api_key_accounts(gw: GatewayProcess, token: str) -> None:
    session = "tok-session-secret-0123456789"
    api_key = "sk-account-key-0123456789"
    synthetic = "token:" + hashlib.sha256(session.encode()).hexdigest()[:16]
    with _client(gw, token) as admin:
        r = admin.post("/admin/accounts", json={"token": session})
        assert r.status_code == 200 and r.json()["identifier"] == synthetic
        assert r.json()["account"]["has_token"] is True and r.json()["account"]["token_preview"] == "tok-s..."
        r = admin.post("/admin/accounts", json={"id": "team-key", "api_key": api_key})
        assert r.status_code == 200 and r.json()["identifier"] == "team-key"
        r = admin.post("/admin/accounts", json={"id": "token:made-up", "api_key": "sk-whatever-123"})
        assert r.status_code == 400 and "token-only" in r.json()["detail"]
        listed = admin.get("/admin/accounts", params={"page_size": 100}).text
        assert session not in listed and api_key not in listed
        assert admin.delete(f"/admin/accounts/{synthetic}").json()["success"] is True
        assert admin.delete("/admin/accounts/team-key").json()["success"] is True
        assert admin.delete(f"/admin/accounts/{synthetic}").status_code == 404


# config ----------------------------------------------------------------------------------------


def test_get_config_never_shows_a_password_a_token_or_a_key(gw: GatewayProcess, token: str) -> None:
    password, session, key = "pw-SECRET-xyz-123", "tok-SECRET-long-0123456789", "my-config-key-0001"
    with _client(gw, token) as admin:
        assert admin.post("/admin/keys", json={"key": key}).status_code == 200
        admin.post("/admin/accounts", json={"email": "cfg@example.com", "password": password, "token": session})
        try:
            r = admin.get("/admin/config")
            assert r.status_code == 200
            for secret in (password, session, key, ADMIN_KEY, UPSTREAM_SECRET):
                assert secret not in r.text
            config = r.json()
            assert "my-c..." in config["keys"] and all(k.endswith("...") for k in config["keys"])
            account = next(a for a in config["accounts"] if a["identifier"] == "cfg@example.com")
            assert account == {"identifier": "cfg@example.com", "provider": "fake", "email": "cfg@example.com",
                               "mobile": "", "has_password": True, "has_token": True, "token_preview": "tok-S..."}
            assert config["claude_mapping"] == {"fast": "fake-chat"}
        finally:
            admin.delete("/admin/accounts/cfg@example.com")
            admin.delete(f"/admin/keys/{key}")


def test_post_config_imports_keys_upserts_accounts_and_maps_claude(gw: GatewayProcess, token: str,
                                                                   fake: FakeOpenAI) -> None:
    with _client(gw, token) as admin:
        try:
            r = admin.post("/admin/config", json={"keys": ["cfg-new-key-0001", "short", "cfg-new-key-0002"]})
            assert r.status_code == 400 and "keys[1]" in r.json()["detail"]
            assert _chat(gw, "cfg-new-key-0001").status_code == 401  # nothing half-imported
            r = admin.post("/admin/config", json={"keys": ["cfg-new-key-0001", "cfg-new-key-0001", "cfg-n..."]})
            assert r.status_code == 200 and (r.json()["imported_keys"], r.json()["skipped_keys"]) == (1, 2)
            assert _chat(gw, "cfg-new-key-0001").status_code == 200
            assert _chat(gw, "cfg-n...").status_code == 401  # a masked prefix is never made a key
            assert admin.post("/admin/config", json={"keys": ["cfg-new-key-0001"]}).json()["imported_keys"] == 0

            r = admin.post("/admin/config", json={"accounts": [{"email": "up@example.com", "password": "pw-1"}]})
            assert r.status_code == 200 and r.json()["updated_accounts"] == 1
            r = admin.post("/admin/config",
                           json={"accounts": [{"email": "up@example.com", "token": "tok-upsert-000001"}]})
            assert r.status_code == 200
            account = next(a for a in admin.get("/admin/config").json()["accounts"] if a["email"] == "up@example.com")
            assert account["has_password"] is True and account["has_token"] is True  # the password was kept
            exported = json.loads(admin.get("/admin/export").json()["json"])
            kept = next(a for a in exported["accounts"] if a["email"] == "up@example.com")
            assert (kept["password"], kept["token"]) == ("pw-1", "tok-upsert-000001")

            for bad in ({"fast": "nope-model"}, {"medium": "fake-chat"}, {"fast": 3}, ["fake-chat"]):
                r = admin.post("/admin/config", json={"claude_mapping": bad})
                assert r.status_code == 400 and "claude_mapping" in r.json()["detail"], bad
            assert admin.get("/admin/config").json()["claude_mapping"] == {"fast": "fake-chat"}
            r = admin.post("/admin/config", json={"claude_mapping": {"fast": "other-chat", "slow": "fake-chat"}})
            assert r.status_code == 200 and r.json()["claude_mapping"] == {"fast": "other-chat", "slow": "fake-chat"}
            before = len(fake.seen("other-upstream"))
            assert _chat(gw, ADMIN_KEY, "claude-3-5-haiku-20241022").status_code == 200
            assert len(fake.seen("other-upstream")) == before + 1  # the new mapping routes at once
        finally:
            admin.post("/admin/config", json={"claude_mapping": {"fast": "fake-chat"}})
            admin.delete("/admin/keys/cfg-new-key-0001")
            admin.delete("/admin/accounts/up@example.com")
        assert admin.get("/admin/config").json()["claude_mapping"] == {"fast": "fake-chat"}


# queue status ----------------------------------------------------------------------------------


def test_queue_status_fields_and_in_use(gw: GatewayProcess, token: str, fake: FakeOpenAI) -> None:
    slow_secret = "sk-slow-account-0123456789"
    with _client(gw, token) as admin:
        status = admin.get("/admin/queue/status").json()
        assert status["provider"] == "fake" and set(status["providers"]) == {"echo", "fake", "other"}
        for field in ("available", "in_use", "total", "available_accounts", "in_use_accounts",
                      "max_inflight_per_account", "recommended_concurrency"):
            assert field in status, field
        assert status["total"] == 1 and status["available_accounts"] == ["fake-1"]
        assert status["recommended_concurrency"] == status["total"] * status["max_inflight_per_account"]
        assert admin.get("/admin/queue/status", params={"provider": "other"}).json()["available_accounts"] == [
            "other-1"]
        admin.post("/admin/accounts", json={"id": "slow-acct", "api_key": slow_secret})
        fake.script_secret(slow_secret, Behavior(headers_delay=1.5))
        try:
            grown = admin.get("/admin/queue/status").json()  # this process reloaded its pool at once
            assert grown["total"] == 2 and grown["recommended_concurrency"] == 2 * grown["max_inflight_per_account"]
            result: list[int] = []
            call = threading.Thread(target=lambda: result.append(
                _chat(gw, ADMIN_KEY, "fake-chat", headers={"X-Tollway-Credential": "slow-acct"}).status_code))
            call.start()
            seen_in_use = False
            for _ in range(100):
                now = admin.get("/admin/queue/status").json()
                if now["in_use_accounts"] == ["slow-acct"] and now["in_use"] == 1:
                    seen_in_use = True
                    break
                time.sleep(0.02)
            call.join(10)
            assert seen_in_use and result == [200]
            assert admin.get("/admin/queue/status").json()["in_use"] == 0
        finally:
            fake.by_secret.pop(slow_secret, None)
            admin.delete("/admin/accounts/slow-acct")
        assert admin.get("/admin/queue/status").json()["total"] == 1


# account tests ---------------------------------------------------------------------------------


def test_account_test_success_failure_and_re_enable(gw: GatewayProcess, token: str, fake: FakeOpenAI) -> None:
    good, bad = "sk-good-account-0123456789", "sk-bad-account-0123456789"
    with _client(gw, token) as admin:
        admin.post("/admin/accounts", json={"id": "good", "api_key": good})
        admin.post("/admin/accounts", json={"email": "bad@example.com", "password": "pw-bad-1", "token": bad})
        fake.script_secret(bad, Behavior(status=401, error_message=f"invalid key {bad} for pw-bad-1"))
        try:
            r = admin.post("/admin/accounts/test", json={"identifier": "good", "message": "ping"})
            result = r.json()
            assert r.status_code == 200 and result["success"] is True and result["account"] == "good"
            assert result["model"] == "fake-chat" and isinstance(result["response_time"], int)
            assert result["message"].startswith("API test successful")
            last = fake.requests[-1]
            assert last.authorization == f"Bearer {good}" and last.body["model"] == "upstream-chat"
            assert last.body["messages"] == [{"role": "user", "content": "ping"}]

            r = admin.post("/admin/accounts/test", json={"identifier": "bad@example.com"})
            result = r.json()
            assert r.status_code == 200 and result["success"] is False and result["account"] == "bad@example.com"
            assert bad not in r.text and "pw-bad-1" not in r.text and "401" in result["message"]
            status = admin.get("/admin/queue/status").json()
            assert "bad@example.com" in status["disabled"] and "bad@example.com" not in status["available_accounts"]

            fake.by_secret.pop(bad)  # an admin fixed the upstream side: a re-test re-enables it
            assert admin.post("/admin/accounts/test", json={"identifier": "bad@example.com"}).json()["success"]
            status = admin.get("/admin/queue/status").json()
            assert "bad@example.com" not in status["disabled"] and "bad@example.com" in status["available_accounts"]

            assert admin.post("/admin/accounts/test", json={"identifier": "fake-1"}).json()["success"]  # from YAML
            r = admin.post("/admin/accounts/test", json={"identifier": "nobody"})
            assert r.status_code == 404 and r.json() == {"detail": "account does not exist"}
            r = admin.post("/admin/accounts/test", json={"identifier": "good", "model": "other-chat"})
            assert r.status_code == 400 and "provider 'other'" in r.json()["detail"]
            assert admin.post("/admin/accounts/test", json={}).status_code == 400
        finally:
            fake.by_secret.pop(bad, None)
            admin.delete("/admin/accounts/good")
            admin.delete("/admin/accounts/bad@example.com")


def test_test_all_counts_successes_and_failures(gw: GatewayProcess, token: str, fake: FakeOpenAI) -> None:
    secrets = {f"all-{i}": f"sk-all-account-{i}-0123456789" for i in range(3)}
    with _client(gw, token) as admin:
        for ident, secret in secrets.items():
            admin.post("/admin/accounts", json={"provider": "other", "id": ident, "api_key": secret})
        fake.script_secret(secrets["all-1"], Behavior(status=403, error_message="forbidden"))
        try:
            r = admin.post("/admin/accounts/test-all", json={"provider": "other"})
            out = r.json()
            assert r.status_code == 200 and (out["total"], out["success"], out["failed"]) == (3, 2, 1)
            assert {x["account"]: x["success"] for x in out["results"]} == {"all-0": True, "all-1": False,
                                                                             "all-2": True}
            assert all(x["model"] == "other-chat" for x in out["results"])
            assert all(s not in r.text for s in secrets.values())
            none = admin.post("/admin/accounts/test-all", json={}).json()  # provider fake has no accounts
            assert (none["total"], none["success"], none["failed"], none["results"]) == (0, 0, 0, [])
        finally:
            fake.by_secret.pop(secrets["all-1"], None)
            for ident in secrets:
                admin.delete(f"/admin/accounts/{ident}", params={"provider": "other"})


# import, export, self test ---------------------------------------------------------------------


def test_import_adds_only_what_is_new(gw: GatewayProcess, token: str) -> None:
    body = {"keys": ["imp-key-00000001"],
            "accounts": [{"email": "imp@example.com", "password": "pw-imp"}, {"token": "tok-import-0123456789"}]}
    with _client(gw, token) as admin:
        try:
            r = admin.post("/admin/import", json=body)
            assert r.status_code == 200
            assert {k: r.json()[k] for k in ("success", "imported_keys", "imported_accounts")} == {
                "success": True, "imported_keys": 1, "imported_accounts": 2}
            assert _chat(gw, "imp-key-00000001").status_code == 200
            again = admin.post("/admin/import", json=body).json()
            assert (again["imported_keys"], again["imported_accounts"]) == (0, 0)
            r = admin.post("/admin/import", json={"accounts": [{"email": "x@example.com"}]})
            assert r.status_code == 400
            assert admin.post("/admin/import", json={"keys": "not-a-list"}).status_code == 400
        finally:
            admin.delete("/admin/keys/imp-key-00000001")
            admin.delete("/admin/accounts/imp@example.com")
            admin.delete("/admin/accounts/" + "token:" + hashlib.sha256(b"tok-import-0123456789").hexdigest()[:16])


def test_export_is_a_full_backup_that_imports_back(gw: GatewayProcess, token: str) -> None:
    with _client(gw, token) as admin:
        admin.post("/admin/keys", json={"key": "exp-key-00000001"})
        admin.post("/admin/accounts", json={"email": "exp@example.com", "password": "pw-exp", "token": "tok-exp-01234"})
        try:
            r = admin.get("/admin/export")
            assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
            out = r.json()
            assert base64.b64decode(out["base64"]).decode() == out["json"]
            data = json.loads(out["json"])
            assert set(data) == {"keys", "accounts", "claude_mapping"}
            assert "exp-key-00000001" not in out["json"] and "exp-..." in data["keys"]
            account = next(a for a in data["accounts"] if a["id"] == "exp@example.com")
            assert account == {"provider": "fake", "id": "exp@example.com", "email": "exp@example.com", "mobile": "",
                               "password": "pw-exp", "token": "tok-exp-01234"}
            assert data["claude_mapping"] == {"fast": "fake-chat"}
            same = admin.post("/admin/import", json=data).json()
            assert (same["imported_keys"], same["imported_accounts"]) == (0, 0)
            admin.delete("/admin/accounts/exp@example.com")
            restored = admin.post("/admin/import", json=data).json()
            assert restored["imported_accounts"] == 1
            back = next(a for a in admin.get("/admin/config").json()["accounts"]
                        if a["identifier"] == "exp@example.com")
            assert back["has_password"] and back["token_preview"] == "tok-e..."
        finally:
            admin.delete("/admin/keys/exp-key-00000001")
            admin.delete("/admin/accounts/exp@example.com")


def test_admin_test_calls_the_gateway_itself(gw: GatewayProcess, token: str, fake: FakeOpenAI) -> None:
    before = len(fake.seen("upstream-chat"))
    with gw.admin() as admin:
        r = admin.post("/admin/test", json={})
        out = r.json()
        assert r.status_code == 200 and out["success"] is True and out["status_code"] == 200
        assert out["response"]["object"] == "chat.completion" and out["response"]["choices"]
        assert len(fake.seen("upstream-chat")) == before + 1
        echo = admin.post("/admin/test", json={"model": "echo", "message": "ping"}).json()
        assert echo["response"]["choices"][0]["message"]["content"] == "ping"
        wrong = admin.post("/admin/test", json={"model": "echo", "api_key": "tw-not-a-key-000000"}).json()
        assert wrong["success"] is False and wrong["status_code"] == 401 and "error" in wrong["response"]
    user_key = gw.create_key("selftest")
    with _client(gw, token) as admin:
        r = admin.post("/admin/test", json={"model": "echo"})
        assert r.status_code == 400 and "api_key" in r.json()["detail"]
        r = admin.post("/admin/test", json={"model": "echo", "api_key": user_key})
        assert r.json()["success"] is True and r.json()["status_code"] == 200


# CLI -------------------------------------------------------------------------------------------


def _cli(gw: GatewayProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tollway.cli", "credentials", *args], cwd=gw.workdir, env=gw.env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_cli_credentials_on_the_same_data(gw: GatewayProcess, token: str, fake: FakeOpenAI) -> None:
    secret, bad = "sk-cli-account-0123456789", "sk-cli-bad-account-0123456789"
    with _client(gw, token) as admin:
        try:
            added = _cli(gw, "add", "--id", "cli-acct", "--api-key", "-", stdin=secret + "\n")
            assert added.returncode == 0, added.stderr
            assert "cli-acct" in added.stdout and secret not in added.stdout
            assert _cli(gw, "add", "--id", "cli-acct", "--api-key", secret).returncode == 2  # exists
            admin.post("/admin/accounts", json={"email": "web@example.com", "password": "pw-web-1", "token": bad})
            listed = _cli(gw, "list")
            assert listed.returncode == 0, listed.stderr
            assert "cli-acct" in listed.stdout and "sk-cl..." in listed.stdout and "web@example.com" in listed.stdout
            assert secret not in listed.stdout and bad not in listed.stdout and "pw-web-1" not in listed.stdout
            # the running gateway sees what the CLI wrote: listed at once, in its pool after a change poll
            assert "cli-acct" in [a["identifier"] for a in admin.get("/admin/accounts", params={"page_size": 100})
                                  .json()["items"]]
            deadline = time.time() + 10
            while "cli-acct" not in admin.get("/admin/queue/status").json()["available_accounts"]:
                assert time.time() < deadline
                time.sleep(0.1)

            ok = _cli(gw, "test", "cli-acct", "--message", "hello")
            assert ok.returncode == 0 and ok.stdout.startswith("ok") and "fake-chat" in ok.stdout, ok.stdout + ok.stderr
            assert fake.requests[-1].authorization == f"Bearer {secret}"
            fake.script_secret(bad, Behavior(status=401, error_message=f"bad key {bad}"))
            failed = _cli(gw, "test", "web@example.com")
            assert failed.returncode == 1 and failed.stdout.startswith("FAILED"), failed.stdout + failed.stderr
            assert bad not in failed.stdout + failed.stderr and "pw-web-1" not in failed.stdout
            assert _cli(gw, "test", "nobody").returncode == 1

            removed = _cli(gw, "remove", "cli-acct")
            assert removed.returncode == 0, removed.stderr
            assert _cli(gw, "remove", "cli-acct").returncode == 1
            assert "cli-acct" not in _cli(gw, "list").stdout
            bad_provider = _cli(gw, "list", "--provider", "nope")
            assert bad_provider.returncode == 2 and "not configured" in bad_provider.stderr
        finally:
            fake.by_secret.pop(bad, None)
            admin.delete("/admin/accounts/cli-acct")
            admin.delete("/admin/accounts/web@example.com")


def test_claude_mapping_set_by_an_admin_survives_a_restart(tmp_path: Path, fake: FakeOpenAI) -> None:
    env = {"OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url}
    gw = GatewayProcess(tmp_path, env=env).start()
    try:
        with gw.admin() as admin:
            r = admin.post("/admin/config", json={"claude_mapping": {"fast": "gpt-4o-mini", "slow": "gpt-4o"}})
            assert r.status_code == 200, r.text
    finally:
        gw.stop()
    again = GatewayProcess(tmp_path, env=env).start()
    try:
        with again.admin() as admin:
            assert admin.get("/admin/config").json()["claude_mapping"] == {"fast": "gpt-4o-mini", "slow": "gpt-4o"}
        fake.script("gpt-4o", Behavior(text="slow one"))
        key = again.create_key()
        r = httpx.post(again.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                       json={"model": "claude-opus-4-6", "max_tokens": 16,
                             "messages": [{"role": "user", "content": "hi"}]}, timeout=20)
        assert r.status_code == 200 and r.json()["content"][0]["text"] == "slow one"
    finally:
        again.stop()
