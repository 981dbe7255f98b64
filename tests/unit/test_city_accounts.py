"""The accounts service's pure parts (provider settings, authorize URLs, login limits, password
checks) and its repositories on SQLite and PostgreSQL (claim and collect happen once)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from tollway.core.errors import ConfigError, RateLimited
from tollway.dialects.city.accounts import (
    Passwords,
    ProviderUser,
    accounts_service,
    authorize_url,
    callback_url,
    find_or_create,
    oauth_config,
    state_ttl,
)
from tollway.dialects.city.login_limits import Backoff, FailureWindow, LoginGuard
from tollway.store.users import FAILED, PENDING, SUCCEEDED, OAuthStateRepository, UserRepository

GH = {"TOLLWAY_OAUTH_GITHUB_CLIENT_ID": "id", "TOLLWAY_OAUTH_GITHUB_CLIENT_SECRET": "secret"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(host: str = "127.0.0.1:4000", scheme: str = "http") -> Request:
    return Request({"type": "http", "scheme": scheme, "server": ("127.0.0.1", 4000), "path": "/", "root_path": "",
                    "query_string": b"", "headers": [(b"host", host.encode())]})


# settings -------------------------------------------------------------------------------------


def test_a_provider_needs_its_client_id_and_secret() -> None:
    assert oauth_config({}) == {}
    assert oauth_config({"TOLLWAY_OAUTH_GITHUB_CLIENT_ID": "id"}) == {}
    assert set(oauth_config(GH)) == {"github"}


def test_provider_endpoints_default_to_the_real_ones_and_can_be_moved() -> None:
    gh = oauth_config(GH)["github"]
    assert (gh.authorize_url, gh.token_url, gh.api_url) == (
        "https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token",
        "https://api.github.com")
    google = oauth_config({"TOLLWAY_OAUTH_GOOGLE_CLIENT_ID": "g", "TOLLWAY_OAUTH_GOOGLE_CLIENT_SECRET": "s",
                           "TOLLWAY_OAUTH_GOOGLE_TOKEN_URL": "http://127.0.0.1:9/token/"})["google"]
    assert google.token_url == "http://127.0.0.1:9/token"
    assert google.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert google.api_url == "https://openidconnect.googleapis.com/v1/userinfo"
    with pytest.raises(ConfigError, match="TOLLWAY_OAUTH_GITHUB_API_URL"):
        oauth_config(GH | {"TOLLWAY_OAUTH_GITHUB_API_URL": "ftp://x"})


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "inf", "nan", "86401"])
def test_a_state_ttl_must_be_a_sane_number_of_seconds(raw: str) -> None:
    with pytest.raises(ConfigError, match="TOLLWAY_OAUTH_STATE_TTL"):
        state_ttl({"TOLLWAY_OAUTH_STATE_TTL": raw})


def test_state_ttl_defaults_to_ten_minutes() -> None:
    assert state_ttl({}) == 600.0 and state_ttl({"TOLLWAY_OAUTH_STATE_TTL": "2.5"}) == 2.5


def test_the_callback_is_under_the_public_url_else_the_requests_own() -> None:
    assert callback_url({}, request()) == "http://127.0.0.1:4000/v1/accounts/oauth/callback"
    public = {"TOLLWAY_PUBLIC_URL": "https://gw.example.com/base/"}
    assert callback_url(public, request()) == "https://gw.example.com/base/v1/accounts/oauth/callback"
    with pytest.raises(ConfigError):
        callback_url({"TOLLWAY_PUBLIC_URL": "gw.example.com"}, request())


def test_the_authorize_url_carries_an_s256_challenge_of_the_verifier() -> None:
    gh = oauth_config(GH)["github"]
    verifier = "v" * 64
    url = authorize_url(gh, redirect_uri="https://gw/cb", state="s" * 43, code_verifier=verifier)
    assert url.startswith("https://github.com/login/oauth/authorize?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert q == {"response_type": "code", "client_id": "id", "redirect_uri": "https://gw/cb",
                 "scope": "read:user user:email", "state": "s" * 43, "code_challenge": challenge,
                 "code_challenge_method": "S256"}
    assert verifier not in url


def test_the_service_declares_its_actions_identities_and_env() -> None:
    service = accounts_service()
    declared = {a.name: (a.methods, a.allow) for a in service.actions.values()}
    assert declared == {"login": (("POST",), ()), "users/create": (("POST",), ("admin",)),
                        "oauth/start": (("POST",), ()), "oauth/callback": (("GET",), ()),
                        "oauth/result": (("GET",), ())}
    assert service.env is not None
    keys = {e.key for e in service.env()}
    assert {"TOLLWAY_OAUTH_GITHUB_CLIENT_ID", "TOLLWAY_OAUTH_GOOGLE_CLIENT_SECRET", "TOLLWAY_PUBLIC_URL"} <= keys


# login limits ---------------------------------------------------------------------------------


def test_a_failure_window_slides() -> None:
    clock = Clock()
    w = FailureWindow(3, 60.0, clock=clock)
    for _ in range(2):
        w.add("a")
        clock.now += 10
    assert w.retry_after("a") is None
    w.add("a")  # failures at 1000, 1010, 1020
    assert w.retry_after("a") == pytest.approx(40.0)  # the first leaves the window at 1060
    assert w.retry_after("b") is None
    clock.now = 1060.0
    assert w.retry_after("a") is None
    w.add("a")
    assert w.retry_after("a") == pytest.approx(10.0)  # now 1010, 1020, 1060
    at = w.add("b")
    w.forget("b", at)
    w.forget("a")
    assert w.retry_after("a") is None and w.retry_after("b") is None


def test_a_failure_window_keeps_at_most_max_keys() -> None:
    clock = Clock()
    w = FailureWindow(1, 60.0, clock=clock, max_keys=3)
    w.add("stale")
    clock.now += 61
    for key in ("a", "b", "c", "d"):
        w.add(key)
    assert w.retry_after("stale") is None and w.retry_after("a") is None  # swept: stale, then the oldest
    assert all(w.retry_after(k) is not None for k in ("b", "c", "d"))


def test_the_login_guard_never_locks_an_email_for_everyone() -> None:
    """Issue 17 item 7: failures from one address slow that address down on that email only."""
    clock = Clock()
    guard = LoginGuard(per_ip=100, free=5, base_delay=1.0, max_delay=300.0, clock=clock)
    for _ in range(5):
        guard.begin("a@x.io", "6.6.6.6")  # an attacker's five wrong passwords
    with pytest.raises(RateLimited):
        guard.begin("a@x.io", "6.6.6.6")
    at = guard.begin("a@x.io", "1.1.1.1")  # the user, from their own address: not held up
    guard.succeeded("a@x.io", "1.1.1.1", at)
    for _ in range(20):  # the attacker keeps going: never a lock for the user
        clock.now += 301
        guard.begin("a@x.io", "6.6.6.6")
    at = guard.begin("a@x.io", "1.1.1.1")
    guard.succeeded("a@x.io", "1.1.1.1", at)
    guard.begin("b@x.io", "6.6.6.6")  # nor for the attacker on another email (the per-IP window aside)


def test_the_login_guard_delays_grow_per_email_and_address_and_a_success_forgives() -> None:
    clock = Clock()
    guard = LoginGuard(per_ip=100, free=2, base_delay=1.0, max_delay=8.0, clock=clock)
    guard.begin("a@x.io", "1.1.1.1")
    guard.begin("a@x.io", "1.1.1.1")
    waits = []
    for _ in range(6):
        with pytest.raises(RateLimited) as limited:
            guard.begin("a@x.io", "1.1.1.1")
        assert limited.value.retry_after is not None
        waits.append(limited.value.retry_after)
        clock.now += limited.value.retry_after
        guard.begin("a@x.io", "1.1.1.1")  # allowed once the delay is over; it failed again
    assert waits == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0, 8.0])  # doubling, capped
    clock.now += 8
    at = guard.begin("a@x.io", "1.1.1.1")
    guard.succeeded("a@x.io", "1.1.1.1", at)  # the right password: the count starts again
    guard.begin("a@x.io", "1.1.1.1")
    guard.begin("a@x.io", "1.1.1.1")
    with pytest.raises(RateLimited):
        guard.begin("a@x.io", "1.1.1.1")


def test_the_login_guard_forgets_after_a_quiet_while_and_still_limits_per_ip() -> None:
    clock = Clock()
    guard = LoginGuard(per_ip=3, window=300.0, free=1, base_delay=10.0, max_delay=60.0, clock=clock)
    guard.begin("a@x.io", "1.1.1.1")
    with pytest.raises(RateLimited):
        guard.begin("a@x.io", "1.1.1.1")
    clock.now += 300  # quiet for max(3 x max_delay, window): forgotten
    assert guard.pairs.retry_after("a@x.io\x001.1.1.1") is None
    guard.begin("b@x.io", "1.1.1.1")
    guard.begin("c@x.io", "1.1.1.1")
    guard.begin("d@x.io", "1.1.1.1")  # the IP's third failure in 5 minutes, each on a new email
    with pytest.raises(RateLimited) as limited:
        guard.begin("e@x.io", "1.1.1.1")
    assert limited.value.retry_after == pytest.approx(300.0)
    guard.begin("e@x.io", "2.2.2.2")


def test_backoff_keeps_at_most_max_keys() -> None:
    clock = Clock()
    backoff = Backoff(free=0, base=100.0, cap=100.0, reset=200.0, clock=clock, max_keys=3)
    backoff.add("stale")
    clock.now += 201
    for key in ("a", "b", "c", "d"):
        backoff.add(key)
    assert backoff.retry_after("stale") is None and backoff.retry_after("a") is None
    assert all(backoff.retry_after(k) is not None for k in ("b", "c", "d"))


# passwords ------------------------------------------------------------------------------------


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified.append(str(hash))
        return super().verify(hash, password)


async def test_a_missing_hash_still_costs_a_verification_and_fails() -> None:
    hasher = CountingHasher()
    passwords = Passwords(hasher)
    assert await passwords.verify(None, "anything") is False
    assert len(hasher.verified) == 1 and hasher.verified[0].startswith("$argon2id$")
    real = await passwords.hash("right password")
    assert real.startswith("$argon2id$") and "right password" not in real
    assert await passwords.verify(real, "right password") is True
    assert await passwords.verify(real, "wrong password") is False
    assert await passwords.verify("not-a-hash", "x") is False
    assert len(hasher.verified) == 4


# repositories ---------------------------------------------------------------------------------


async def test_a_state_is_claimed_once_and_its_token_collected_once(engine: AsyncEngine) -> None:
    states = OAuthStateRepository(engine)
    await states.create(state="s1", provider="github", code_verifier="v" * 43, studio_id=None, ttl=60)
    row = await states.get("s1")
    assert row is not None and row.status == PENDING and not row.claimed and row.code_verifier == "v" * 43
    claims = await asyncio.gather(*(states.claim("s1", time.time()) for _ in range(5)))
    assert sorted(claims) == [False] * 4 + [True]
    claimed = await states.get("s1")
    assert claimed is not None and claimed.claimed and claimed.status == PENDING
    await states.succeed("s1", token="ub_token", user_id=7)
    done = await states.get("s1")
    assert done is not None and done.status == SUCCEEDED and done.has_token
    collected = await asyncio.gather(*(states.collect("s1") for _ in range(5)))
    assert [c for c in collected if c is not None] == [("ub_token", 7)]
    after = await states.get("s1")
    assert after is not None and not after.has_token and after.status == SUCCEEDED


async def test_an_expired_state_cannot_be_claimed_and_is_purged(engine: AsyncEngine) -> None:
    states = OAuthStateRepository(engine)
    await states.create(state="old", provider="google", code_verifier="v" * 43, studio_id="st", ttl=1)
    await states.create(state="new", provider="google", code_verifier="v" * 43, studio_id=None, ttl=600)
    assert await states.claim("old", time.time() + 2) is False
    await states.fail("new", "x" * 600)
    failed = await states.get("new")
    assert failed is not None and failed.status == FAILED and failed.error == "x" * 500
    assert await states.collect("new") is None
    assert await states.purge(time.time() + 2) == 1
    assert await states.get("old") is None and await states.get("new") is not None


async def test_users_have_unique_emails_and_links(engine: AsyncEngine) -> None:
    users = UserRepository(engine)
    ada = await users.create(email="Ada@Example.com", name="Ada", password_hash="$h", studio_id=None)
    assert ada is not None and ada.email == "ada@example.com"
    assert await users.create(email="ADA@example.com", name="Other") is None
    found = await users.for_login(" ada@EXAMPLE.com ")
    assert found is not None and found[0] == ada and found[1] == "$h"
    assert await users.link("github", "1", ada.id) is True
    assert await users.link("github", "1", ada.id) is False
    assert await users.by_link("github", "1") == ada and await users.by_link("google", "1") is None
    assert await users.create_linked(provider="google", subject="g", email="ada@example.com", name="x",
                                     studio_id=None) is None
    assert await users.by_link("google", "g") is None  # the failed insert left no link behind
    twin = await users.create_linked(provider="google", subject="g2", email=None, name="x", studio_id=None)
    assert twin is not None and await users.by_link("google", "g2") == twin


async def test_find_or_create_links_by_verified_email_only(engine: AsyncEngine) -> None:
    users = UserRepository(engine)
    owner = await users.create(email="own@example.com", name="Owner")
    assert owner is not None
    linked = await find_or_create(users, "google", ProviderUser(subject="a", email="own@example.com", name="O"),
                                  None)
    assert linked == owner and await users.by_link("google", "a") == owner
    fresh = await find_or_create(users, "github", ProviderUser(subject="b", email=None, name="New"), "studio_x")
    assert fresh.id != owner.id and fresh.email is None and fresh.studio_id == "studio_x"
    again = await find_or_create(users, "github", ProviderUser(subject="b", email="own@example.com",
                                                                    name="New"), None)
    assert again == fresh
