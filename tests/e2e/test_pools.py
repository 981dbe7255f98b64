"""Credential pools through a real gateway: caps, the queue, cooldowns, retries, fallbacks, pins
and disabled credentials, against an upstream scripted per credential."""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import GatewayProcess
from tests.fakes.credential_server import Behavior, CredentialFake


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


def provider(name: str, fake: CredentialFake, creds: list[str], **options: Any) -> dict[str, Any]:
    return {"name": name, "kind": "openai_compatible", "base_url": fake.base_url,
            "credentials": [{"id": c, "api_key": f"secret-{c}"} for c in creds], "options": options}


def start(tmp_path: Path, providers: list[dict[str, Any]], models: list[dict[str, Any]] | None = None,
          **env: str) -> GatewayProcess:
    config: dict[str, Any] = {"providers": providers, "models": models or []}
    tmp_path.mkdir(parents=True, exist_ok=True)
    return GatewayProcess(tmp_path, config=config, env={"TOLLWAY_LOG_FLUSH_INTERVAL": "0.05", **env}).start()


def chat(gw: GatewayProcess, key: str, model: str = "p1/m", *, tag: str | None = None, stream: bool = False,
         headers: dict[str, str] | None = None, timeout: float = 30) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if tag is not None:
        body["user"] = tag
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})})


def row(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    deadline = time.time() + 5
    while time.time() < deadline:
        con = sqlite3.connect(gw.db_path)
        con.row_factory = sqlite3.Row
        found = con.execute("SELECT * FROM request_logs WHERE id = ?", (request_id,)).fetchone()
        con.close()
        if found is not None:
            return dict(found)
        time.sleep(0.05)
    raise AssertionError(f"no log row {request_id}")


def test_the_cap_per_credential_is_never_exceeded(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a", "b", "c"], max_inflight=2, queue_size=100)])
    try:
        key = gw.create_key()
        for c in "abc":
            upstream.script(f"secret-{c}", Behavior(delay=0.2))
        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            results = list(pool.map(lambda i: chat(gw, key, tag=str(i)), range(30)))
        assert [r.status_code for r in results] == [200] * 30
        assert max(upstream.max_in_flight.values()) == 2  # reached, never passed
        assert sum(len(upstream.calls(f"secret-{c}")) for c in "abc") == 30
    finally:
        gw.stop()


def test_the_queue_is_fifo_and_bounded(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a"], max_inflight=1, queue_size=3, queue_timeout=20)])
    try:
        key = gw.create_key()
        upstream.script("secret-a", Behavior(delay=1.0))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = []
            for i in range(4):  # one in flight, three queued, in this order
                futures.append(pool.submit(chat, gw, key, tag=str(i)))
                time.sleep(0.1)
            full = chat(gw, key, tag="overflow")  # the queue holds 3: a fifth is refused at once
            assert full.status_code == 429
            err = full.json()["error"]
            assert err["code"] == "pool_exhausted" and "in-flight plus queue capacity" in err["message"]
            assert full.headers.get("retry-after")
            assert [f.result().status_code for f in futures] == [200] * 4
        assert [a.tag for a in upstream.calls()] == ["0", "1", "2", "3"]  # served in arrival order
    finally:
        gw.stop()


def test_a_wait_past_the_queue_timeout_is_a_429(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a"], max_inflight=1, queue_size=5, queue_timeout=0.5)])
    try:
        key = gw.create_key()
        upstream.script("secret-a", Behavior(delay=2.0))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            busy = pool.submit(chat, gw, key)
            time.sleep(0.2)
            t0 = time.time()
            waited = chat(gw, key)
            assert waited.status_code == 429 and 0.4 < time.time() - t0 < 1.5
            assert "stayed at capacity" in waited.json()["error"]["message"]
            assert busy.result().status_code == 200
        assert len(upstream.calls()) == 1
    finally:
        gw.stop()


def test_retry_on_another_credential_then_cooldown_and_recovery(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a", "b"], cooldown_base=1.0)])
    try:
        key = gw.create_key()
        upstream.script("secret-a", Behavior(status=503))
        first = [chat(gw, key) for _ in range(2)]
        assert [r.status_code for r in first] == [200, 200]
        attempts = [json.loads(row(gw, r.headers["x-request-id"])["attempts"] or "[]") for r in first]
        failed_over = [a for a in attempts if a]  # the call that met credential a first tried both
        assert failed_over and [(x["credential"], x["upstream_status"]) for x in failed_over[0]] == [
            ("a", 503), ("b", None)]
        a_calls = len(upstream.calls("secret-a"))
        for _ in range(4):  # a is cooling down: b serves
            assert chat(gw, key).status_code == 200
        assert len(upstream.calls("secret-a")) == a_calls
        upstream.script("secret-a", Behavior())  # a recovers ...
        time.sleep(1.5)  # ... and its cooldown (1 s, +-20 %) ends
        for _ in range(4):
            assert chat(gw, key).status_code == 200
        assert len(upstream.calls("secret-a")) > a_calls
    finally:
        gw.stop()


def test_no_retry_once_the_first_streamed_byte_is_out(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a", "b"])])
    try:
        key = gw.create_key()
        for c in "ab":
            upstream.script(f"secret-{c}", Behavior(cut_after_first_chunk=True))
        r = chat(gw, key, stream=True)
        assert r.status_code == 200 and '"error"' in r.text  # an in-stream error frame, after the first chunk
        assert len(upstream.calls()) == 1  # and no second attempt
    finally:
        gw.stop()


def test_a_401_disables_the_credential(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a", "b"], cooldown_base=0.2)])
    try:
        key = gw.create_key()
        upstream.script("secret-a", Behavior(status=401))
        assert all(chat(gw, key).status_code == 200 for _ in range(3))
        time.sleep(0.5)  # longer than any cooldown: a disabled credential stays out anyway
        upstream.script("secret-a", Behavior())
        before = len(upstream.calls("secret-a"))
        assert all(chat(gw, key).status_code == 200 for _ in range(4))
        assert len(upstream.calls("secret-a")) == before == 1
        upstream.script("secret-b", Behavior(status=401))
        r = chat(gw, key)  # b is disabled by this call; a was already: nothing is left
        assert r.status_code == 503 and r.json()["error"]["code"] == "credentials_disabled"
    finally:
        gw.stop()


def test_a_403_is_the_requests_failure_and_disables_nothing(tmp_path: Path, upstream: CredentialFake) -> None:
    """A user key cannot switch a shared pool off: requests the upstream refuses with 403 (a model
    this key may not use, refused content) fail, and every credential keeps serving."""
    gw = start(tmp_path, [provider("p1", upstream, ["a", "b", "c"])])
    try:
        key = gw.create_key()
        for c in "abc":
            upstream.script(f"secret-{c}", Behavior(status=403))
        for _ in range(2):
            refused = chat(gw, key)
            assert refused.status_code == 403, refused.text
            assert "all 3 attempts failed" in refused.json()["error"]["message"]
        for c in "abc":
            upstream.script(f"secret-{c}", Behavior())
        assert all(chat(gw, key).status_code == 200 for _ in range(6))
        assert {a.credential for a in upstream.calls()[-6:]} == {"secret-a", "secret-b", "secret-c"}
    finally:
        gw.stop()


def test_pin_a_credential(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a", "b", "c"])])
    try:
        key = gw.create_key()
        for _ in range(3):
            assert chat(gw, key, headers={"X-Tollway-Credential": "b"}).status_code == 200
            assert chat(gw, key, headers={"X-Ds2-Target-Account": "c"}).status_code == 200
        assert {a.credential for a in upstream.calls()} == {"secret-b", "secret-c"}
        assert len(upstream.calls("secret-b")) == 3
        upstream.script("secret-b", Behavior(status=503))
        failed = chat(gw, key, headers={"X-Tollway-Credential": "b"})
        assert failed.status_code == 502 and len(upstream.calls("secret-b")) == 4  # pinned: no other credential
        unknown = chat(gw, key, headers={"X-Tollway-Credential": "nobody"})
        assert unknown.status_code == 403 and unknown.json()["error"]["code"] == "unknown_credential"
    finally:
        gw.stop()


def test_fallback_chain(tmp_path: Path, upstream: CredentialFake) -> None:
    models = [{"id": "primary", "provider": "p1", "upstream_id": "m1", "fallbacks": ["second", "third"]},
              {"id": "second", "provider": "p2", "upstream_id": "m2"},
              {"id": "third", "provider": "p3", "upstream_id": "m3"}]
    gw = start(tmp_path, [provider("p1", upstream, ["a1", "a2"]), provider("p2", upstream, ["b1"]),
                          provider("p3", upstream, ["c1"])], models)
    try:
        key = gw.create_key()
        for c in ("a1", "a2", "b1"):
            upstream.script(f"secret-{c}", Behavior(status=500))
        r = chat(gw, key, "primary")
        # the answer names the model asked for; which upstream model served it is in a header and the log
        assert r.status_code == 200 and r.json()["model"] == "primary"
        assert r.headers["x-tollway-upstream-model"] == "m3"
        assert row(gw, r.headers["x-request-id"])["upstream_model"] == "m3"
        attempts = json.loads(row(gw, r.headers["x-request-id"])["attempts"])
        assert [(a["model"], a["credential"], a["status"]) for a in attempts] == [
            ("primary", "a1", 502), ("primary", "a2", 502), ("second", "b1", 502), ("third", "c1", 200)] or [
            (a["model"], a["credential"], a["status"]) for a in attempts] == [
            ("primary", "a2", 502), ("primary", "a1", 502), ("second", "b1", 502), ("third", "c1", 200)]
        assert row(gw, r.headers["x-request-id"])["provider"] == "p3"
        upstream.script("secret-c1", Behavior(status=500))
        every = chat(gw, key, "primary")
        assert every.status_code == 502  # the last attempt's error, every attempt in the log
        assert len(json.loads(row(gw, every.headers["x-request-id"])["attempts"])) >= 3
        # one error for the caller that names every attempt, in the order they were made
        message = every.json()["error"]["message"]
        assert "all 4 attempts failed" in message and every.json()["error"]["code"] == "provider_error"
        named = [f"{m} via {p}/{c}: 502" for m, p, c in
                 (("primary", "p1", "a1"), ("primary", "p1", "a2"), ("second", "p2", "b1"), ("third", "p3", "c1"))]
        assert all(n in message for n in named), message
        assert message.index("second via p2/b1") < message.index("third via p3/c1")
    finally:
        gw.stop()


def test_a_fallback_model_keeps_its_own_rate_limit(tmp_path: Path, upstream: CredentialFake) -> None:
    models = [{"id": "primary", "provider": "p1", "upstream_id": "m1", "fallbacks": ["second", "third"]},
              {"id": "second", "provider": "p2", "upstream_id": "m2"},
              {"id": "third", "provider": "p3", "upstream_id": "m3"}]
    gw = start(tmp_path, [provider("p1", upstream, ["a1"]), provider("p2", upstream, ["b1"]),
                          provider("p3", upstream, ["c1"])], models)
    try:
        with gw.admin() as admin:
            admin.post("/admin/model/save", json={"name": "second", "provider": "p2", "rpm": 1}).raise_for_status()
        key = gw.create_key()
        upstream.script("secret-a1", Behavior(status=500))
        first = chat(gw, key, "primary")
        assert first.status_code == 200 and first.headers["x-tollway-upstream-model"] == "m2"
        again = chat(gw, key, "primary")  # "second" had its one request this minute: on to "third"
        assert again.status_code == 200 and again.headers["x-tollway-upstream-model"] == "m3"
        attempts = json.loads(row(gw, again.headers["x-request-id"])["attempts"])
        assert [(a["model"], a["credential"], a["status"], a["error"]) for a in attempts] == [
            ("primary", "a1", 502, attempts[0]["error"]), ("second", None, 429, "rate_limited"),
            ("third", "c1", 200, None)]
        assert len(upstream.calls("secret-b1")) == 1  # the limited model was not called again
    finally:
        gw.stop()


def test_direct_token_mode_is_opt_in_per_provider(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a"], direct_token=True), provider("p2", upstream, ["b"])])
    try:
        r = chat(gw, "my-own-upstream-token", "p1/m")  # not a Tollway key: p1 takes it as its credential
        assert r.status_code == 200
        assert [a.credential for a in upstream.calls()] == ["my-own-upstream-token"]
        logged = row(gw, r.headers["x-request-id"])
        assert logged["credential"].startswith("direct:") and logged["key_prefix"] == "direct"
        assert "my-own-upstream-token" not in json.dumps(logged)  # used, never stored
        refused = chat(gw, "my-own-upstream-token", "p2/m")  # p2 did not opt in
        assert refused.status_code == 401 and len(upstream.calls()) == 1
        assert chat(gw, gw.create_key(), "p1/m").status_code == 200  # Tollway keys still use the pool
        assert upstream.calls()[-1].credential == "secret-a"
    finally:
        gw.stop()


def test_the_cap_holds_across_two_gateways_sharing_redis(tmp_path: Path, upstream: CredentialFake,
                                                         redis_url: str) -> None:
    """Two replicas, one Redis: 2 credentials x max_inflight 2 means 4 calls at once in all, never more."""
    import secrets as _secrets

    name = f"p{_secrets.token_hex(4)}"  # its own keys in the shared Redis
    providers = [provider(name, upstream, ["a", "b"], max_inflight=2, queue_size=100, queue_timeout=30)]
    gws = [start(tmp_path / f"r{i}", providers, TOLLWAY_REDIS_URL=redis_url) for i in range(2)]
    try:
        keys = [gw.create_key() for gw in gws]
        for c in "ab":
            upstream.script(f"secret-{c}", Behavior(delay=0.15))
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            results = list(pool.map(lambda i: chat(gws[i % 2], keys[i % 2], f"{name}/m"), range(24)))
        assert [r.status_code for r in results] == [200] * 24
        assert upstream.max_in_flight["secret-a"] == 2 and upstream.max_in_flight["secret-b"] == 2
        # a slot held by a replica that dies comes back when its lease expires, not by hand (unit-tested
        # in tests/unit/test_redis_state.py); here: both replicas still serve after the burst
        assert all(chat(gw, key, f"{name}/m").status_code == 200 for gw, key in zip(gws, keys, strict=True))
    finally:
        for gw in gws:
            gw.stop()


def test_a_crashed_replicas_slots_come_back_by_lease_expiry(tmp_path: Path, upstream: CredentialFake,
                                                            redis_url: str) -> None:
    import secrets as _secrets
    import signal

    name = f"p{_secrets.token_hex(4)}"
    providers = [provider(name, upstream, ["a"], max_inflight=1, queue_size=10, queue_timeout=15)]
    env = {"TOLLWAY_REDIS_URL": redis_url, "TOLLWAY_LEASE_TTL": "2"}
    doomed, survivor = (start(tmp_path / f"r{i}", providers, **env) for i in range(2))
    try:
        keys = [doomed.create_key(), survivor.create_key()]
        upstream.script("secret-a", Behavior(delay=60))  # the doomed replica's call holds the only slot
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(chat, doomed, keys[0], f"{name}/m", timeout=5)
            deadline = time.time() + 5
            while not upstream.calls() and time.time() < deadline:
                time.sleep(0.05)
            doomed.signal(signal.SIGKILL)  # no release, no renewal from now on
            doomed.wait(10)
            upstream.script("secret-a", Behavior())
            t0 = time.time()
            r = chat(survivor, keys[1], f"{name}/m")
            waited = time.time() - t0
        assert r.status_code == 200 and 0.5 < waited < 6  # queued until the dead lease expired (2 s ttl)
    finally:
        doomed.stop()
        survivor.stop()


def test_a_pinned_call_never_falls_back(tmp_path: Path, upstream: CredentialFake) -> None:
    models = [{"id": "primary", "provider": "p1", "upstream_id": "m1", "fallbacks": ["second"]},
              {"id": "second", "provider": "p2", "upstream_id": "m2"}]
    gw = start(tmp_path, [provider("p1", upstream, ["a"]), provider("p2", upstream, ["a"])], models)
    try:
        key = gw.create_key()
        upstream.script("secret-a", Behavior(status=500))
        r = chat(gw, key, "primary", headers={"X-Tollway-Credential": "a"})
        assert r.status_code == 502 and {a.model for a in upstream.calls()} == {"m1"}
    finally:
        gw.stop()


def test_direct_token_mode_never_takes_what_looks_like_ours(tmp_path: Path, upstream: CredentialFake) -> None:
    gw = start(tmp_path, [provider("p1", upstream, ["a"], direct_token=True)])
    try:
        revoked_style = "tw-" + "x" * 43  # a mistyped or revoked Tollway key stays a 401, never goes upstream
        assert chat(gw, revoked_style).status_code == 401
        jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2ln"
        assert chat(gw, jwt_like).status_code == 401
        assert upstream.calls() == []
        admin = httpx.get(gw.url + "/admin/accounts", headers={"Authorization": "Bearer not-the-admin-key"})
        assert admin.status_code == 401  # admin routes never treat a bearer as a direct token
    finally:
        gw.stop()
