"""In-flight caps per credential through a real gateway (issue 17, item 11): out of the box one
API key serves a burst of calls at once, while an account added with a login through the DS2API
admin API keeps seed 002's cap of 2."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_pools import chat, provider, start
from tests.fakes.credential_server import Behavior, CredentialFake

BURST = 110  # past the old 2 in flight + 100 queued


@pytest.fixture(scope="module")
def upstream() -> Iterator[CredentialFake]:
    fake = CredentialFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _clean(upstream: CredentialFake) -> Iterator[None]:
    upstream.reset()
    yield
    assert upstream.spec_errors == []


def test_one_api_key_serves_a_burst_at_once_out_of_the_box(tmp_path: Path, upstream: CredentialFake) -> None:
    """Before: 2 calls at a time on the key, and every call past 102 got 429 pool_exhausted."""
    gw = start(tmp_path, [provider("p1", upstream, ["a"])])
    try:
        key = gw.create_key()
        upstream.script("secret-a", Behavior(delay=1.0))
        with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
            results = list(pool.map(lambda i: chat(gw, key, tag=str(i)), range(BURST)))
        assert [r.status_code for r in results] == [200] * BURST, {r.text for r in results if r.status_code != 200}
        assert upstream.max_in_flight["secret-a"] > 50  # served together, not 2 by 2
        with gw.admin() as admin:
            status = admin.get("/admin/queue/status", params={"provider": "p1"}).json()
        assert status["max_inflight"] == {"a": 1000} and status["recommended_concurrency"] == 1000
        assert status["recommended_concurrency"] == status["total"] * status["max_inflight_per_account"]
    finally:
        gw.stop()


def test_an_account_with_a_login_keeps_the_cap_of_two(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a"])])
    try:
        key = gw.create_key()
        with gw.admin() as admin:
            r = admin.post("/admin/accounts", json={"provider": "p1", "email": "acct@example.com",
                                                    "token": "secret-acct"})
            assert r.status_code == 200, r.text
        upstream.script("secret-acct", Behavior(delay=0.5))
        upstream.script("secret-a", Behavior(delay=0.5))
        pinned = {"X-Tollway-Credential": "acct@example.com"}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            on_account = [pool.submit(chat, gw, key, tag=f"acct-{i}", headers=pinned) for i in range(6)]
            on_key = [pool.submit(chat, gw, key, tag=f"key-{i}", headers={"X-Tollway-Credential": "a"})
                      for i in range(10)]
            assert [f.result().status_code for f in on_account + on_key] == [200] * 16
        assert upstream.max_in_flight["secret-acct"] == 2  # reached, never passed: the rest queued
        assert upstream.max_in_flight["secret-a"] == 10
        with gw.admin() as admin:
            status = admin.get("/admin/queue/status", params={"provider": "p1"}).json()
        assert status["max_inflight"] == {"a": 1000, "acct@example.com": 2}
        assert status["max_inflight_per_account"] == 2 and status["recommended_concurrency"] == 1002
    finally:
        gw.stop()


def test_the_caps_are_configurable(tmp_path: Path, upstream: CredentialFake) -> None:
    """TOLLWAY_MAX_INFLIGHT_PER_API_KEY for every provider's keys; a credential's own max_inflight."""
    p1 = provider("p1", upstream, ["a", "b"])
    p1["credentials"][1]["max_inflight"] = 1
    gw = start(tmp_path, [p1], TOLLWAY_MAX_INFLIGHT_PER_API_KEY="3")
    try:
        key = gw.create_key()
        for c in "ab":
            upstream.script(f"secret-{c}", Behavior(delay=0.4))
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda i: chat(gw, key, tag=str(i)), range(12)))
        assert [r.status_code for r in results] == [200] * 12
        assert upstream.max_in_flight["secret-a"] == 3 and upstream.max_in_flight["secret-b"] == 1
        with gw.admin() as admin:
            status = admin.get("/admin/queue/status", params={"provider": "p1"}).json()
        assert status["max_inflight"] == {"a": 3, "b": 1} and status["recommended_concurrency"] == 4
    finally:
        gw.stop()
