"""Issue 18: ``GET /metrics`` after scripted traffic, read with prometheus-client's parser (one
worker, and ``--workers 2`` adding up both), its protection, and the JSON request lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import redis_namespace
from tests.e2e.harness import ADMIN_KEY, GatewayProcess, fake_config
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI

TOKEN = "metrics-scraper-token-0123456789"


def scrape(gw: GatewayProcess, token: str = ADMIN_KEY) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, v2) in ls for k, v2 in labels.items()))


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("metrics"), config=fake_config(fake.base_url, UPSTREAM_SECRET),
                             env={"TOLLWAY_METRICS_TOKEN": TOKEN, "TOLLWAY_LOG_FORMAT": "json"}).start()
    yield gateway
    gateway.stop()


def test_counters_after_scripted_traffic(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    key = gw.create_key("metrics")
    before = scrape(gw)
    fake.script("upstream-chat", Behavior(text="one two three", prompt_tokens=7))
    with openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0) as c:
        for _ in range(3):
            c.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "hi"}])
        list(c.chat.completions.create(model="fake-chat", stream=True, messages=[{"role": "user", "content": "hi"}]))
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="no-such-model-anywhere", messages=[{"role": "user", "content": "x"}])
    fake.script("upstream-chat", Behavior(status=500))
    with openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0) as c, pytest.raises(openai.APIError):
        c.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "x"}])
    fake.script("upstream-chat", Behavior())
    after = scrape(gw, TOKEN)
    ok = total(after, "tollway_requests_total", surface="chat", model="fake-chat", status_class="2xx") - \
        total(before, "tollway_requests_total", surface="chat", model="fake-chat", status_class="2xx")
    assert ok == 4
    assert total(after, "tollway_requests_total", model="other", status_class="4xx") >= 1  # unknown names fold
    assert not any("no-such-model" in str(ls) for _, ls in after)
    assert total(after, "tollway_requests_total", status_class="5xx", model="fake-chat") >= 1
    assert total(after, "tollway_tokens_total", direction="in", model="fake-chat") - \
        total(before, "tollway_tokens_total", direction="in", model="fake-chat") == 28
    assert total(after, "tollway_request_duration_seconds_count", surface="chat") >= 6
    assert total(after, "tollway_time_to_first_token_seconds_count", model="fake-chat") >= 1
    assert total(after, "tollway_upstream_duration_seconds_count", provider="fake") >= 4
    assert total(after, "tollway_upstream_attempts_total", provider="fake") >= 1  # the 500
    assert total(after, "tollway_pool_credentials", provider="fake") == 1
    deadline = time.time() + 5  # the request log flushes every half second
    while total(after, "tollway_write_behind_flush_seconds_count", buffer="request log") < 1 and time.time() < deadline:
        time.sleep(0.2)
        after = scrape(gw)
    assert total(after, "tollway_write_behind_flush_seconds_count", buffer="request log") >= 1
    assert ("tollway_info", (("version", "0.1.0"),)) in after
    assert not any("tw-" in str(ls) or k == "key" for _, ls in after for k, _ in ls)  # no key labels


def test_metrics_are_protected(gw: GatewayProcess) -> None:
    assert httpx.get(gw.url + "/metrics", timeout=10).status_code == 401
    key = gw.create_key("nosy")
    assert httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 403
    assert httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401


def test_one_json_line_per_request_without_secrets(gw: GatewayProcess) -> None:
    key = gw.create_key("json-logs")
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                   json={"model": "echo", "messages": [{"role": "user", "content": "a secret prompt"}]})
    rid = r.headers["x-request-id"]
    deadline = time.time() + 5
    line = None
    while time.time() < deadline and line is None:
        for raw in gw.output().splitlines():
            if rid in raw:
                line = json.loads(raw)
        time.sleep(0.05)
    assert line is not None and line["event"] == "request" and line["status"] == 200
    assert line["model"] == "echo" and line["key_prefix"] == key[:10] and line["latency_ms"] >= 0
    assert "a secret prompt" not in gw.output() and key not in gw.output()
    assert all(json.loads(raw) for raw in gw.output().splitlines() if raw.startswith("{"))


def test_workers_add_up(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> None:
    with redis_namespace(redis_url) as prefix:
        gw = GatewayProcess(tmp_path_factory.mktemp("metrics-workers"), workers=2,
                            config=fake_config(fake.base_url, UPSTREAM_SECRET),
                            env={"TOLLWAY_REDIS_URL": redis_url, "TOLLWAY_REDIS_PREFIX": prefix}).start()
        try:
            key = gw.create_key("workers")
            n = 40
            with httpx.Client(timeout=10) as c:  # new connections: spread over both workers
                for _ in range(n):
                    r = c.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}",
                                                                        "Connection": "close"},
                               json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
                    assert r.status_code == 200
            counts = [total(scrape(gw), "tollway_requests_total", surface="chat", model="echo") for _ in range(4)]
            assert all(c == n for c in counts), counts  # whichever worker answers the scrape
        finally:
            gw.stop()


def test_tollway_status_reads_a_running_gateway(gw: GatewayProcess) -> None:
    key = gw.create_key("status")
    httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
               json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
    done = subprocess.run([sys.executable, "-m", "tollway.cli", "status", "--url", gw.url, "--token", TOKEN],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"Tollway 0.1.0 at {gw.url}, up ") and "requests " in out and "/s now" in out
    assert "fake" in out and "in flight" in out and "request log:" in out
    bad = subprocess.run([sys.executable, "-m", "tollway.cli", "status", "--url", gw.url, "--token", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "401" in bad.stderr
