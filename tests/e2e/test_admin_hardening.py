"""Issue 17's admin hardening on a real gateway (items 5, 6, 7, 10 and 22): a copy of the
database mints no admin session; failed admin authentications are throttled per address on
every admin route; upstream account secrets are encrypted at rest (rows stored in clear before
still serve); ten identical account adds at once are one account and nine 409s; a password-only
account is never reported as tested."""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.openai_server import UPSTREAM_SECRET, FakeOpenAI
from tollway.auth.jwt import KEY_FILE, SECRET_ROW, server_secret, signing_key


def _config(fake: FakeOpenAI) -> dict[str, Any]:
    return {"providers": [{"name": "fake", "kind": "openai_compatible", "base_url": fake.base_url,
                           "credentials": [{"id": "fake-1", "api_key": UPSTREAM_SECRET}]}],
            "models": [{"id": "fake-chat", "provider": "fake", "upstream_id": "upstream-chat"}]}


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("hardening"), config=_config(fake),
                       env={"TOLLWAY_CHANGE_POLL_INTERVAL": "0.2"}).start()
    yield g
    g.stop()


def _from(address: str, bearer: str | None = None) -> httpx.Client:
    """A client whose connections come from ``address`` (127.0.0.0/8 is all loopback)."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), headers=headers, timeout=30)


def _db_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def _db_bytes(data_dir: Path) -> bytes:
    """Everything SQLite keeps on disk for the database (the file and its WAL)."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("tollway.db*")))


# item 5: a copy of the database cannot mint an admin session ----------------------------------------


def test_a_copy_of_the_database_cannot_mint_an_admin_session(fake: FakeOpenAI, tmp_path: Path) -> None:
    g = GatewayProcess(tmp_path, config=_config(fake), admin_key=None).start()  # the default setup
    try:
        match = re.search(r"admin key: (tw-admin-\S+)", g.output())
        assert match, g.output()
        admin_key = match.group(1)
        r = httpx.post(g.url + "/admin/login", json={"admin_key": admin_key})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        copy = tmp_path / "stolen.db"
        with sqlite3.connect(g.db_path) as live, sqlite3.connect(copy) as stolen:
            live.backup(stolen)
        meta = dict(_db_rows(copy, "SELECT key, value FROM meta"))
        stored, admin_hash = meta[SECRET_ROW], meta["admin_key_hash"]
        assert admin_hash == hashlib.sha256(admin_key.encode()).hexdigest()  # the copy holds both ...
        now = int(time.time())
        claims = {"sub": "admin", "iat": now, "exp": now + 600}
        keys = [hmac.new(stored.encode(), admin_hash.encode(), hashlib.sha256).digest(),  # ... the old key
                hmac.new(admin_hash.encode(), stored.encode(), hashlib.sha256).digest(),
                *(str(v).encode() for v in meta.values())]
        for key in keys:
            forged = jwt.encode(claims, key, algorithm="HS256")
            r = httpx.get(g.url + "/admin/config", headers={"Authorization": f"Bearer {forged}"})
            assert r.status_code == 401, r.text
        key_file = g.data_dir / KEY_FILE  # the part of the key that is not in the database
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text().strip().encode() not in copy.read_bytes()
        with _from("127.0.0.1", token) as admin:
            assert admin.get(g.url + "/admin/config").status_code == 200
    finally:
        g.stop()
    again = GatewayProcess(tmp_path, config=_config(fake), admin_key=None).start()
    try:  # the key file stays: a session outlives a restart
        r = httpx.get(again.url + "/admin/verify", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["valid"] is True
    finally:
        again.stop()


# item 7: failed admin authentications are throttled on every admin route ---------------------------


def test_wrong_bearers_are_throttled_per_address_on_every_admin_route(gw: GatewayProcess) -> None:
    paths = ["/admin/config", "/admin/api-key/list", "/admin/accounts", "/admin/usage", "/admin/queue/status"]
    codes: list[int] = []
    with _from("127.0.0.3") as guesser:
        for i in range(30):
            r = guesser.get(gw.url + paths[i % len(paths)], headers={"Authorization": f"Bearer tw-guess-{i:040}"})
            codes.append(r.status_code)
            if r.status_code == 429:
                assert 1 <= int(r.headers["retry-after"]) <= 60 and "detail" in r.json()
        assert codes == [401] * 10 + [429] * 20, codes
        r = guesser.get(gw.url + "/admin/config", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 429  # the right key too: a right guess must not stand out
        r = guesser.post(gw.url + "/admin/login", json={"admin_key": ADMIN_KEY})
        assert r.status_code == 429  # one count for the login and every other admin route
    with _from("127.0.0.4", ADMIN_KEY) as admin:
        assert admin.get(gw.url + "/admin/config").status_code == 200  # another address is untouched


def test_what_is_no_guess_is_not_counted(gw: GatewayProcess) -> None:
    with _from("127.0.0.9") as client:  # the stored row is made at the first login
        assert client.post(gw.url + "/admin/login", json={"admin_key": ADMIN_KEY}).status_code == 200
    with sqlite3.connect(gw.db_path) as db:
        (stored,) = db.execute("SELECT value FROM meta WHERE key = ?", (SECRET_ROW,)).fetchone()
    key = signing_key(server_secret({"TOLLWAY_ADMIN_KEY": ADMIN_KEY}, gw.data_dir), stored,
                      hashlib.sha256(ADMIN_KEY.encode()).hexdigest())
    now = int(time.time())
    expired = jwt.encode({"sub": "admin", "iat": now - 100, "exp": now - 10}, key, algorithm="HS256")
    user_key = gw.create_key("not-an-admin")
    with _from("127.0.0.5") as client:
        for _ in range(15):
            assert client.get(gw.url + "/admin/config").status_code == 401  # no credential at all
            r = client.get(gw.url + "/admin/config", headers={"Authorization": f"Bearer {expired}"})
            assert r.status_code == 401 and "expired" in r.json()["detail"]  # a session that ran out
            r = client.get(gw.url + "/admin/config", headers={"Authorization": f"Bearer {user_key}"})
            assert r.status_code == 403  # a real key that is not an admin's
        r = client.get(gw.url + "/admin/config", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200


def test_bad_tokens_at_verify_count_too(gw: GatewayProcess) -> None:
    with _from("127.0.0.6") as client:
        codes = [client.get(gw.url + "/admin/verify", headers={"Authorization": f"Bearer a.b.{i}"}).status_code
                 for i in range(12)]
    assert codes == [401] * 10 + [429] * 2


# item 6: upstream secrets are encrypted at rest ------------------------------------------------------


def test_account_secrets_are_encrypted_at_rest_and_still_serve(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    api_key, password, token = "sk-at-rest-API-0123456789", "pw-at-rest-PASSWORD-1", "tok-at-rest-TOKEN-0123456789"
    with gw.admin() as admin:
        try:
            assert admin.post("/admin/accounts", json={"id": "rest-key", "api_key": api_key}).status_code == 200
            r = admin.post("/admin/accounts", json={"email": "rest@example.com", "password": password,
                                                    "token": token})
            assert r.status_code == 200, r.text
            on_disk = _db_bytes(gw.data_dir)
            for secret in (api_key, password, token, "0123456789"):
                assert secret.encode() not in on_disk, secret
            (sealed,) = _db_rows(gw.db_path, "SELECT secret FROM credentials WHERE id = 'rest-key'")[0]
            assert sealed and api_key not in sealed
            # the gateway reads them back: the pinned account serves with its own key
            r = httpx.post(gw.url + "/v1/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Tollway-Credential": "rest-key"},
                           json={"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            assert fake.requests[-1].authorization == f"Bearer {api_key}"
            listed = admin.get("/admin/accounts", params={"page_size": 100}).text
            assert api_key not in listed and password not in listed and token not in listed
            exported = admin.get("/admin/export").json()["json"]  # the admin's backup: in clear, as before
            assert api_key in exported and password in exported and token in exported
        finally:
            admin.delete("/admin/accounts/rest-key")
            admin.delete("/admin/accounts/rest@example.com")


def test_accounts_stored_in_clear_before_keep_serving_and_are_sealed(fake: FakeOpenAI, tmp_path: Path) -> None:
    old_key = "sk-stored-in-clear-0123456789"
    g = GatewayProcess(tmp_path, config=_config(fake)).start()
    g.stop()
    now = time.time()
    with sqlite3.connect(g.db_path) as db:  # a row as the previous release wrote it
        db.execute("INSERT INTO credentials (id, provider, email, mobile, password, secret, created_at, updated_at)"
                   " VALUES ('legacy', 'fake', '', '', 'pw-legacy-clear', ?, ?, ?)", (old_key, now, now))
    g = GatewayProcess(tmp_path, config=_config(fake)).start()
    try:
        r = httpx.post(g.url + "/v1/chat/completions", timeout=30,
                       headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Tollway-Credential": "legacy"},
                       json={"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        assert fake.requests[-1].authorization == f"Bearer {old_key}"
        (password, secret), = _db_rows(g.db_path, "SELECT password, secret FROM credentials WHERE id = 'legacy'")
        assert old_key not in secret and "pw-legacy-clear" not in password  # sealed at the first read
        with g.admin() as admin:
            exported = admin.get("/admin/export").json()["json"]
            assert old_key in exported and "pw-legacy-clear" in exported
    finally:
        g.stop()


# item 10: concurrent identical adds -----------------------------------------------------------------


def _add_ten_at_once(url: str, body: dict[str, Any]) -> list[int]:
    codes: list[int] = []
    barrier = threading.Barrier(10)

    def add() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as client:
            barrier.wait()
            codes.append(client.post(url + "/admin/accounts", json=body).status_code)

    threads = [threading.Thread(target=add) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(codes)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_gateway(request: pytest.FixtureRequest, gw: GatewayProcess, fake: FakeOpenAI,
                   tmp_path: Path) -> Iterator[GatewayProcess]:
    if request.param == "sqlite":
        yield gw
        return
    url = str(request.getfixturevalue("postgres_url"))
    g = GatewayProcess(tmp_path, config=_config(fake), env={"TOLLWAY_DATABASE_URL": url}).start()
    yield g
    g.stop()


def test_ten_identical_adds_at_once_are_one_account_and_nine_conflicts(any_db_gateway: GatewayProcess) -> None:
    g = any_db_gateway
    body = {"email": "race@example.com", "password": "pw-race-1", "token": "tok-race-0123456789"}
    with g.admin() as admin:
        try:
            assert _add_ten_at_once(g.url, body) == [200] + [409] * 9
            listed = admin.get("/admin/accounts", params={"page_size": 100}).json()["items"]
            assert [a["identifier"] for a in listed].count("race@example.com") == 1
            r = admin.post("/admin/accounts", json=body)  # one after the other: the same answer
            assert r.status_code == 409 and "already exists" in r.json()["detail"]
        finally:
            admin.delete("/admin/accounts/race@example.com")


# item 22: a password-only account cannot be tested ----------------------------------------------------


def test_a_password_only_account_is_reported_as_not_tested(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    with gw.admin() as admin:
        assert admin.post("/admin/accounts", json={"email": "pw-only@example.com", "password": "pw-only-1"}
                          ).status_code == 200
        try:
            before = len(fake.requests)
            r = admin.post("/admin/accounts/test", json={"identifier": "pw-only@example.com"})
            result = r.json()
            assert r.status_code == 200 and result["success"] is False, result
            assert result["account"] == "pw-only@example.com" and "Not tested" in result["message"]
            assert "pw-only-1" not in r.text
            everything = admin.post("/admin/accounts/test-all", json={}).json()
            assert (everything["total"], everything["success"], everything["failed"]) == (1, 0, 1)
            assert "Not tested" in everything["results"][0]["message"]
            assert len(fake.requests) == before  # nothing went upstream
        finally:
            admin.delete("/admin/accounts/pw-only@example.com")
