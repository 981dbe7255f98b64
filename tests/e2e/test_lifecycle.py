"""Process-level behaviour: first start, the CLI beside a running server, SIGTERM under load."""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import GatewayProcess, fake_config
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI


def chat(gw: GatewayProcess, key: str, model: str = "echo", timeout: float = 20) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "ping"}]}, timeout=timeout)


def test_first_start_generates_prints_and_hashes_the_admin_key(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, admin_key=None).start()
    try:
        out = gw.output()
        assert f"Tollway listening on {gw.url}" in out
        match = re.search(r"admin key: (tw-admin-\S+)", out)
        assert match, out
        secret = match.group(1)
        assert chat(gw, secret).status_code == 200
    finally:
        gw.stop()
    con = sqlite3.connect(gw.db_path)
    stored = dict(con.execute("SELECT key, value FROM meta").fetchall())
    con.close()
    assert secret not in str(stored) and len(stored["admin_key_hash"]) == 64  # stored hashed only
    again = GatewayProcess(tmp_path, admin_key=None).start()
    try:
        assert secret not in again.output()  # printed once
        assert chat(again, secret).status_code == 200  # and still valid
    finally:
        again.stop()


def _cli(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tollway.cli", "keys", *args], env=gw.env, cwd=gw.workdir,
                          capture_output=True, text=True, timeout=60)


def _wait_status(gw: GatewayProcess, key: str, status: int, timeout: float = 3.0) -> float:
    started = time.time()
    while time.time() - started < timeout:
        if chat(gw, key).status_code == status:
            return time.time() - started
        time.sleep(0.05)
    raise AssertionError(f"key did not reach status {status} within {timeout}s")


def test_cli_keys_are_seen_by_the_running_server(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path).start()
    try:
        created = _cli(gw, "create", "--name", "cli-user")
        assert created.returncode == 0, created.stderr
        secret = re.search(r"key: (tw-\S+)", created.stdout).group(1)  # type: ignore[union-attr]
        assert _wait_status(gw, secret, 200) < 0.5  # looked up on the first miss, not after the 1 s poll
        listing = _cli(gw, "list")
        assert "cli-user" in listing.stdout and secret[:10] in listing.stdout and secret not in listing.stdout
        revoked = _cli(gw, "revoke", secret[:10])
        assert revoked.returncode == 0, revoked.stderr
        assert _wait_status(gw, secret, 401) < 2.0
        assert _cli(gw, "revoke", secret[:10]).returncode == 1
    finally:
        gw.stop()


def test_sigterm_under_load_flushes_every_log_row(tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script("slow", Behavior(text="slow answer", headers_delay=2.0))
    gw = GatewayProcess(tmp_path, config=fake_config(fake.base_url, UPSTREAM_SECRET),
                        env={"TOLLWAY_LOG_FLUSH_INTERVAL": "600", "TOLLWAY_LOG_BATCH": "100000",
                             "TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL": "100"}).start()  # all 40 at the upstream
    try:
        key = gw.create_key()
        n = 40
        seen_before = len(fake.seen("slow"))
        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(chat, gw, key, "fake/slow") for _ in range(n)]
            deadline = time.time() + 1.8
            while len(fake.seen("slow")) - seen_before < n and time.time() < deadline:
                time.sleep(0.01)
            assert len(fake.seen("slow")) - seen_before == n  # every request is waiting on the upstream
            gw.signal(signal.SIGTERM)
            statuses = [f.result().status_code for f in futures]
        assert gw.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    finally:
        gw.stop()
    assert statuses == [200] * n  # graceful: in-flight requests finish
    con = sqlite3.connect(gw.db_path)
    rows = con.execute("SELECT count(*) FROM request_logs WHERE model = 'fake/slow' AND status = 200").fetchone()[0]
    con.close()
    # the flush interval is 10 minutes: only the shutdown flush can have written these
    assert rows == n


def test_cli_models_shows_what_is_callable_and_what_it_needs(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path)  # only for its clean environment; not started

    def models(*args: str, **env: str) -> str:
        out = subprocess.run([sys.executable, "-m", "tollway.cli", "models", *args], env={**gw.env, **env},
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    plain = models()
    assert "echo" in plain and "gpt-4o-mini" not in plain
    everything = models("--all")
    row = next(line.split() for line in everything.splitlines() if line.startswith("deepseek-chat "))
    assert row[1:] == ["deepseek", "no", "DEEPSEEK_API_KEY"]
    configured = models(DEEPSEEK_API_KEY="x")
    assert next(line.split() for line in configured.splitlines() if line.startswith("deepseek-chat "))[2] == "yes"


def test_requests_cut_by_the_shutdown_grace_still_leave_a_row(tmp_path: Path, fake: FakeOpenAI) -> None:
    fake.script("forever", Behavior(headers_delay=8.0))
    gw = GatewayProcess(tmp_path, config=fake_config(fake.base_url, UPSTREAM_SECRET),
                        env={"TOLLWAY_SHUTDOWN_GRACE": "1", "TOLLWAY_LOG_FLUSH_INTERVAL": "600"}).start()
    key = gw.create_key()
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(chat, gw, key, "fake/forever"), pool.submit(chat, gw, key, "echo")]
        time.sleep(0.5)
        gw.signal(signal.SIGTERM)
        gw.wait(20)
        for f in futures:
            with contextlib.suppress(httpx.HTTPError):
                f.result()
    con = sqlite3.connect(gw.db_path)
    rows = dict(con.execute("SELECT model, status FROM request_logs WHERE model IN ('fake/forever', 'echo')"))
    con.close()
    assert rows == {"fake/forever": 503, "echo": 200}  # cut by the server, not by its client


@pytest.mark.parametrize(("path", "model", "body"), [
    ("/v1/chat/completions", "fake/slow", {}),  # an OpenAI pass-through stream
    ("/v1/messages", "fake/slow", {"max_tokens": 50}),  # an Anthropic client, translated
])
def test_a_stream_cut_by_the_shutdown_grace_ends_with_an_error_frame_and_pays_what_it_delivered(
        tmp_path: Path, fake: FakeOpenAI, path: str, model: str, body: dict[str, object]) -> None:
    fake.script("slow", Behavior(text=" ".join(["word"] * 40), chunk_delay=0.25))
    gw = GatewayProcess(tmp_path, config=fake_config(fake.base_url, UPSTREAM_SECRET),
                        env={"TOLLWAY_SHUTDOWN_GRACE": "1"}).start()
    with gw.admin() as admin:  # a price and a balance, so that what is charged shows
        admin.post("/admin/model/save", json={"name": "fake/slow", "provider": "fake", "upstream_id": "slow",
                                              "price_in": "1", "price_out": "1000"}).raise_for_status()
        applied = admin.post("/admin/api-key/apply", json={"name": "cut", "role": "user", "balance": "10"})
        applied.raise_for_status()
        key = applied.json()["api_key"]
    received: list[bytes] = []

    def read() -> None:
        with httpx.stream("POST", gw.url + path, timeout=20,
                          headers={"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
                          json={"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}],
                                **body}) as r:
            for chunk in r.iter_bytes():
                received.append(chunk)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(read)
        time.sleep(1.5)  # a few chunks in, far from the end
        gw.signal(signal.SIGTERM)
        gw.wait(20)
        with contextlib.suppress(httpx.HTTPError):
            future.result()
    text = b"".join(received)
    assert b"word" in text and b"The gateway is shutting down" in text, text[-300:]
    assert text.rstrip().endswith(b"}")  # the error frame is the stream's last event
    con = sqlite3.connect(gw.db_path)
    status, code, note, completion, cost = con.execute(
        "SELECT status, error_code, note, completion_tokens, cost_micro FROM request_logs WHERE model = ?",
        (model,)).fetchone()
    con.close()
    assert (status, code, note) == (503, "server_shutdown", "cut by the server's shutdown")
    assert 0 < completion < 40 and cost > 0  # charged for what was delivered, not refunded, not all of it


@pytest.mark.parametrize(("yaml_text", "env", "message"), [
    ("providers:\n  - name: x\n    kind: nope\n", {}, "kind must be one of"),
    ("providers: [\n", {}, "not valid YAML"),
    ("providers:\n  - name: v\n    kind: openai_compatible\n", {}, "needs base_url"),
    ("models:\n  - id: m\n    provider: ghost\n", {}, "provider 'ghost' is neither configured nor known"),
    ("aliases:\n  a: no-such-model\n", {}, "alias 'a'"),
    ("- just\n- a list\n", {}, "must hold a mapping"),
    (None, {"TOLLWAY_CONFIG": "/nonexistent/tollway.yaml"}, "cannot read it"),
    ("", {"TOLLWAY_FIRST_BYTE_TIMEOUT": "soon"}, "TOLLWAY_FIRST_BYTE_TIMEOUT must be a number"),
    ("", {"TOLLWAY_PORT": "abc"}, "TOLLWAY_PORT must be an integer"),
    ("", {"TOLLWAY_PORT": "99999"}, "TOLLWAY_PORT must be between 1 and 65535"),
    ("", {"TOLLWAY_LOG_BATCH": "0"}, "TOLLWAY_LOG_BATCH must be between 1"),
    ("", {"TOLLWAY_MAX_BODY_BYTES": "-1"}, "TOLLWAY_MAX_BODY_BYTES must be between 1"),
    ("", {"TOLLWAY_WORKERS": "0"}, "TOLLWAY_WORKERS must be between 1"),
    ("", {"TOLLWAY_SHUTDOWN_GRACE": "inf"}, "TOLLWAY_SHUTDOWN_GRACE must be a number greater than 0"),
    ("providers: 5\n", {}, "providers must be a list"),
    ("providers:\n  - name: v\n    kind: openai_compatible\n    base_url: http://127.0.0.1:1/v1\n"
     "    credentials: [sk-abc]\n", {}, "must be a mapping with api_key"),
    ("providers:\n  - name: v\n    kind: openai_compatible\n    base_url: http://127.0.0.1:1/v1\n"
     "    credentials: [{api_key_env: TOLLWAY_TEST_UNSET_VAR}]\n", {}, "TOLLWAY_TEST_UNSET_VAR is not set"),
    ("providers:\n  - name: v\n    kind: openai_compatible\n    base_url: http://127.0.0.1:1/v1\n"
     "    credentials: [{api_key: 5}]\n", {}, "an api_key must be a non-empty string"),
    ("providers:\n  - name: echo\n    kind: openai_compatible\n    base_url: http://127.0.0.1:1/v1\n", {},
     "'echo' is reserved"),
    ("providers:\n  - name: v\n    kind: openai_compatible\n    base_url: not a url\n", {},
     "base_url must be an http(s) URL"),
    ("", {"TOLLWAY_DATABASE_URL": "mysql://127.0.0.1/x"}, "database (mysql) is not usable"),
    ("", {"TOLLWAY_DATA_DIR": "/proc/tollway-cannot-be-here"}, "database (sqlite+aiosqlite) is not usable"),
])
def test_a_config_that_cannot_work_fails_fast_with_one_line(tmp_path: Path, yaml_text: str | None,
                                                            env: dict[str, str], message: str) -> None:
    gw = GatewayProcess(tmp_path)
    run_env = dict(gw.env)
    if yaml_text is not None:
        (tmp_path / "bad.yaml").write_text(yaml_text)
        run_env["TOLLWAY_CONFIG"] = str(tmp_path / "bad.yaml")
    run_env.update(env)
    out = subprocess.run([sys.executable, "-m", "tollway.cli", "serve"], env=run_env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
