"""City's accounts service through a real gateway: password logins and their limits, and
GitHub/Google sign-in against fake providers on loopback (tests/fakes/oauth_server.py).

The client IP the login limits count is the one uvicorn resolves; it honours X-Forwarded-For
from 127.0.0.1 (trusted here: TOLLWAY_TRUSTED_PROXIES), so each test sends its own address and the
per-IP counts stay apart.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.oauth_server import FakeOAuth

CALLBACK = "/v1/accounts/oauth/callback"


@pytest.fixture(scope="module")
def oauth() -> Iterator[FakeOAuth]:
    server = FakeOAuth()
    server.start()
    yield server
    server.stop()


# the tests play many clients from 127.0.0.1 through X-Forwarded-For: believed from a trusted proxy only
TRUSTED = {"TOLLWAY_TRUSTED_PROXIES": "127.0.0.1"}


@pytest.fixture(scope="module")
def gw(oauth: FakeOAuth, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("accounts"), env=oauth.env() | TRUSTED).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def short_gw(oauth: FakeOAuth, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """States live one second; only GitHub is configured."""
    env = {k: v for k, v in oauth.env().items() if "GOOGLE" not in k} | {"TOLLWAY_OAUTH_STATE_TTL": "1"} | TRUSTED
    process = GatewayProcess(tmp_path_factory.mktemp("accounts-short"), env=env).start()
    yield process
    process.stop()


def ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def post(gw: GatewayProcess, path: str, body: dict[str, Any], token: str | None = None,
         client_ip: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["X-Forwarded-For"] = client_ip or ip()
    return httpx.post(gw.url + path, json=body, headers=headers, timeout=30)


def get(gw: GatewayProcess, path: str, params: dict[str, str], token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(gw.url + path, params=params, headers=headers, timeout=30)


def new_user(gw: GatewayProcess, password: str = "correct horse battery", **extra: Any) -> dict[str, Any]:
    email = f"u-{secrets.token_hex(4)}@example.com"
    r = post(gw, "/v1/accounts/users/create", {"email": email, "password": password, **extra}, ADMIN_KEY)
    assert r.status_code == 200, r.text
    return dict(r.json())


def login(gw: GatewayProcess, email: str, password: str, client_ip: str | None = None) -> httpx.Response:
    return post(gw, "/v1/accounts/login", {"email": email, "password": password}, client_ip=client_ip)


def works(gw: GatewayProcess, token: str) -> bool:
    r = get(gw, "/v1/ai/models", {}, token)
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def start(gw: GatewayProcess, provider: str, **extra: Any) -> dict[str, Any]:
    r = post(gw, "/v1/accounts/oauth/start", {"provider": provider, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())


def callback(gw: GatewayProcess, params: dict[str, str]) -> httpx.Response:
    return httpx.get(gw.url + CALLBACK, params=params, timeout=30)


def result(gw: GatewayProcess, state: str) -> httpx.Response:
    return get(gw, "/v1/accounts/oauth/result", {"state": state})


def sign_in(gw: GatewayProcess, oauth: FakeOAuth, provider: str, expect: int = 200,
            **extra: Any) -> tuple[dict[str, Any], str]:
    """start -> the provider's page -> callback; (the first result, the code used)."""
    started = start(gw, provider, **extra)
    code, query = oauth.authorize(started["authorize_url"])
    assert query["state"] == started["state"]
    assert query["redirect_uri"] == gw.url + CALLBACK
    page = callback(gw, {"code": code, "state": started["state"]})
    assert page.status_code == expect, page.text
    assert page.headers["content-type"].startswith("text/html") and "You can close this window" in page.text
    r = result(gw, started["state"])
    assert r.status_code == 200, r.text
    return dict(r.json()) | {"state": started["state"]}, code


# password logins ----------------------------------------------------------------------------


def test_an_admin_created_user_logs_in_as_a_guest_and_the_token_works(gw: GatewayProcess) -> None:
    studio = post(gw, "/v1/studios/create", {"name": "Acme"}, ADMIN_KEY).json()["id"]
    user = new_user(gw, name="Ada", studio_id=studio)
    assert set(user) == {"id", "email", "name", "studio_id"} and user["name"] == "Ada"
    r = login(gw, user["email"].upper(), "correct horse battery")  # no Authorization: a guest
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == user
    assert body["user_token"].startswith("ub_") and works(gw, body["user_token"])
    assert not works(gw, body["user_token"] + "x")


def test_users_create_is_for_the_admin_and_checks_its_input(gw: GatewayProcess) -> None:
    body = {"email": f"x-{secrets.token_hex(3)}@example.com", "password": "long enough"}
    assert post(gw, "/v1/accounts/users/create", body).status_code == 401
    u = new_user(gw)
    token = login(gw, u["email"], "correct horse battery").json()["user_token"]
    assert post(gw, "/v1/accounts/users/create", body, token).status_code == 403
    short = post(gw, "/v1/accounts/users/create", body | {"password": "seven77"}, ADMIN_KEY)
    assert short.status_code == 400 and short.json()["error"]["code"] == "invalid_request"
    assert post(gw, "/v1/accounts/users/create", body | {"email": "nope"}, ADMIN_KEY).status_code == 400
    unknown_studio = post(gw, "/v1/accounts/users/create", body | {"studio_id": "studio_none"}, ADMIN_KEY)
    assert unknown_studio.status_code == 404
    again = post(gw, "/v1/accounts/users/create", body | {"email": u["email"].upper()}, ADMIN_KEY)
    assert again.status_code == 400 and again.json()["error"]["code"] == "email_taken"


def test_wrong_password_and_unknown_email_get_the_same_401(gw: GatewayProcess) -> None:
    user = new_user(gw)
    wrong = login(gw, user["email"], "not the password")
    unknown = login(gw, f"nobody-{secrets.token_hex(4)}@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "user_token" not in wrong.text


def _login_from(gw: GatewayProcess, address: str, email: str, password: str) -> httpx.Response:
    """A login whose connection comes from ``address`` (loopback), with no forwarding header."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30) as client:
        return client.post(gw.url + "/v1/accounts/login", json={"email": email, "password": password})


def test_wrong_passwords_from_one_address_never_lock_the_user_out(gw: GatewayProcess) -> None:
    """Issue 17 item 7: five wrong passwords used to lock the email for everyone (429 from
    anywhere); now they slow down the address that sent them, on that email, and nobody else."""
    user, attacker, owner = new_user(gw), "127.0.0.7", "127.0.0.8"
    for _ in range(5):
        assert _login_from(gw, attacker, user["email"], "wrong password").status_code == 401
    limited = _login_from(gw, attacker, user["email"], "wrong password")  # the attacker waits now
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["code"] == "rate_limited" and int(limited.headers["retry-after"]) == 1
    assert _login_from(gw, attacker, user["email"], "correct horse battery").status_code == 429  # no oracle
    assert _login_from(gw, owner, user["email"], "correct horse battery").status_code == 200
    time.sleep(1.05)
    assert _login_from(gw, attacker, user["email"], "wrong password").status_code == 401  # the delay is over ...
    limited = _login_from(gw, attacker, user["email"], "wrong password")
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 2  # ... the next is longer
    assert _login_from(gw, owner, user["email"], "correct horse battery").status_code == 200


def test_failures_per_ip_are_limited(gw: GatewayProcess) -> None:
    user, here = new_user(gw), ip()
    for _ in range(20):
        assert login(gw, f"n-{secrets.token_hex(4)}@example.com", "wrong password", here).status_code == 401
    limited = login(gw, user["email"], "correct horse battery", here)
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert login(gw, user["email"], "correct horse battery", ip()).status_code == 200  # another address


def test_a_successful_login_clears_the_count(gw: GatewayProcess) -> None:
    user, here = new_user(gw), ip()
    for _ in range(4):
        assert login(gw, user["email"], "wrong password", here).status_code == 401
    assert login(gw, user["email"], "correct horse battery", here).status_code == 200
    for _ in range(5):
        assert login(gw, user["email"], "wrong password", here).status_code == 401
    assert login(gw, user["email"], "wrong password", here).status_code == 429


def test_guests_and_users_may_call_login_and_oauth(gw: GatewayProcess) -> None:
    user = new_user(gw)
    token = login(gw, user["email"], "correct horse battery").json()["user_token"]
    for bearer in (None, token):
        assert post(gw, "/v1/accounts/login", {"email": user["email"], "password": "correct horse battery"},
                    bearer).status_code == 200
        assert post(gw, "/v1/accounts/oauth/start", {"provider": "github"}, bearer).status_code == 200
    assert post(gw, "/v1/accounts/oauth/start", {"provider": "gitlab"}).status_code == 400


# OAuth ----------------------------------------------------------------------------------------


def test_github_sign_in_from_start_to_a_working_token_given_once(gw: GatewayProcess, oauth: FakeOAuth) -> None:
    studio = post(gw, "/v1/studios/create", {"name": "GH studio"}, ADMIN_KEY).json()["id"]
    uid = 5000 + secrets.randbelow(10**6)
    oauth.script_github({"id": uid, "login": "octo", "name": None, "email": None}, [
        {"email": f"old-{uid}@example.com", "primary": False, "verified": True, "visibility": None},
        {"email": f"octo-{uid}@example.com", "primary": True, "verified": True, "visibility": None}])
    assert start(gw, "github", studio_id=studio)["expires_in"] == 600
    first, code = sign_in(gw, oauth, "github", studio_id=studio)
    assert first["status"] == "succeeded", first
    assert first["user"]["email"] == f"octo-{uid}@example.com" and first["user"]["name"] == "octo"
    assert first["user"]["studio_id"] == studio
    assert first["user_token"].startswith("ub_") and works(gw, first["user_token"])
    assert oauth.tokens and oauth.grants[code].used
    form = next(t.form for t in oauth.token_requests if t.form.get("code") == code)
    assert form["redirect_uri"] == gw.url + CALLBACK and len(form["code_verifier"]) >= 43
    again = result(gw, first["state"])
    assert again.status_code == 200 and again.json() == {"status": "succeeded"}  # the token once only
    assert post(gw, "/v1/accounts/oauth/start", {"provider": "github", "studio_id": "studio_gone"}).status_code == 404


def test_google_sign_in_twice_is_the_same_user(gw: GatewayProcess, oauth: FakeOAuth) -> None:
    sub = f"g-{secrets.token_hex(6)}"
    oauth.script_google({"sub": sub, "email": f"{sub}@example.com", "email_verified": True, "name": "Gina"})
    first, _ = sign_in(gw, oauth, "google")
    second, _ = sign_in(gw, oauth, "google")
    assert first["status"] == second["status"] == "succeeded"
    assert first["user"] == second["user"] and first["user"]["email"] == f"{sub}@example.com"
    assert first["user_token"] != second["user_token"]
    assert works(gw, first["user_token"]) and works(gw, second["user_token"])


def test_a_verified_email_links_an_existing_user_and_an_unverified_one_does_not(gw: GatewayProcess,
                                                                               oauth: FakeOAuth) -> None:
    user = new_user(gw)
    oauth.script_google({"sub": f"g-{secrets.token_hex(6)}", "email": user["email"], "email_verified": False,
                         "name": "Mallory"})
    unverified, _ = sign_in(gw, oauth, "google")
    assert unverified["user"]["id"] != user["id"] and unverified["user"]["email"] is None
    oauth.script_google({"sub": f"g-{secrets.token_hex(6)}", "email": user["email"], "email_verified": True,
                         "name": "Owner"})
    verified, _ = sign_in(gw, oauth, "google")
    assert verified["user"] == user
    # a GitHub account whose email the emails API cannot confirm is a new user, without an email
    oauth.script_github({"id": 9_000_000 + secrets.randbelow(10**6), "login": "m", "name": "M",
                         "email": user["email"]}, None)
    github, _ = sign_in(gw, oauth, "github")
    assert github["user"]["id"] != user["id"] and github["user"]["email"] is None


def test_an_unknown_state_is_refused_and_marks_nothing(gw: GatewayProcess, oauth: FakeOAuth) -> None:
    started = start(gw, "github")
    code, _ = oauth.authorize(started["authorize_url"])
    page = callback(gw, {"code": code, "state": secrets.token_urlsafe(32)})
    assert page.status_code == 400 and "unknown" in page.text
    assert not oauth.grants[code].used  # never exchanged
    assert result(gw, started["state"]).json() == {"status": "pending"}
    assert callback(gw, {"code": code, "state": started["state"]}).status_code == 200  # the real one still works
    assert result(gw, started["state"]).json()["status"] == "succeeded"
    assert result(gw, secrets.token_urlsafe(32)).status_code == 404
    assert callback(gw, {"code": code}).status_code == 400


def test_a_replayed_callback_or_code_is_refused(gw: GatewayProcess, oauth: FakeOAuth) -> None:
    first, code = sign_in(gw, oauth, "github")
    assert first["status"] == "succeeded"
    requests = len(oauth.token_requests)
    replay = callback(gw, {"code": code, "state": first["state"]})  # the same URL again
    assert replay.status_code == 400 and "used already" in replay.text
    assert len(oauth.token_requests) == requests  # the gateway refused it before the provider
    assert result(gw, first["state"]).json() == {"status": "succeeded"}
    other = start(gw, "github")
    oauth.authorize(other["authorize_url"])
    page = callback(gw, {"code": code, "state": other["state"]})  # the used code with a fresh state
    assert page.status_code == 400
    assert oauth.token_requests[-1].verdict == "code already used"
    failed = result(gw, other["state"]).json()
    assert failed["status"] == "failed" and "bad_verification_code" in failed["error"]


def test_a_code_issued_for_another_pkce_challenge_is_refused(gw: GatewayProcess, oauth: FakeOAuth) -> None:
    attacker, victim = start(gw, "google"), start(gw, "google")
    attacker_challenge = parse_qs(urlsplit(attacker["authorize_url"]).query)["code_challenge"][0]
    code, _ = oauth.authorize(victim["authorize_url"], challenge=attacker_challenge)
    page = callback(gw, {"code": code, "state": victim["state"]})
    assert page.status_code == 400
    assert oauth.token_requests[-1].verdict == "code_verifier mismatch"
    failed = result(gw, victim["state"]).json()
    assert failed["status"] == "failed" and "invalid_grant" in failed["error"]


def test_a_provider_error_fails_the_sign_in(gw: GatewayProcess) -> None:
    started = start(gw, "github")
    page = callback(gw, {"error": "access_denied", "error_description": "The user said no",
                         "state": started["state"]})
    assert page.status_code == 400 and "The user said no" in page.text
    assert result(gw, started["state"]).json() == {"status": "failed", "error": "github said: The user said no"}


def test_an_expired_state_is_refused(short_gw: GatewayProcess, oauth: FakeOAuth) -> None:
    started = start(short_gw, "github")
    assert started["expires_in"] == 1
    code, _ = oauth.authorize(started["authorize_url"])
    time.sleep(1.3)
    assert result(short_gw, started["state"]).json() == {"status": "failed", "error": "expired"}
    page = callback(short_gw, {"code": code, "state": started["state"]})
    assert page.status_code == 400 and "expired" in page.text
    assert not oauth.grants[code].used


def test_an_unconfigured_provider_is_a_400(short_gw: GatewayProcess) -> None:
    r = post(short_gw, "/v1/accounts/oauth/start", {"provider": "google"})
    assert r.status_code == 400 and "not configured" in r.json()["error"]["message"]


def test_studios_bind_accounts(gw: GatewayProcess, oauth: FakeOAuth) -> None:
    acme, beta = (post(gw, "/v1/studios/create", {"name": n}, ADMIN_KEY).json()["id"] for n in ("A", "B"))
    user = new_user(gw, studio_id=acme)
    oauth.script_google({"sub": f"g-{secrets.token_hex(6)}", "email": user["email"], "email_verified": True,
                         "name": "U"})
    elsewhere, _ = sign_in(gw, oauth, "google", 400, studio_id=beta)  # the account belongs to acme
    assert elsewhere == {"status": "failed", "error": "this account belongs to another studio",
                         "state": elsewhere["state"]}
    assert post(gw, "/v1/studios/pause", {"id": acme}, ADMIN_KEY).status_code == 200
    paused = login(gw, user["email"], "correct horse battery")
    assert paused.status_code == 403 and paused.json()["error"]["code"] == "studio_paused"
    refused = post(gw, "/v1/accounts/oauth/start", {"provider": "google", "studio_id": acme})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "studio_paused"


def test_sign_in_starts_per_client_ip_are_bounded(gw: GatewayProcess) -> None:
    """Each start writes a state row: a guest cannot fill the table."""
    from tollway.dialects.city.accounts import OAUTH_STARTS_PER_MINUTE

    client = ip()
    codes = [post(gw, "/v1/accounts/oauth/start", {"provider": "github"}, client_ip=client).status_code
             for _ in range(OAUTH_STARTS_PER_MINUTE + 1)]
    assert codes[:-1] == [200] * OAUTH_STARTS_PER_MINUTE and codes[-1] == 429
    assert post(gw, "/v1/accounts/oauth/start", {"provider": "github"}).status_code == 200  # another client
