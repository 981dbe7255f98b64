"""DeepSeek and Ollama configured by environment variables alone, with --workers 2."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import redis_namespace
from tests.e2e.harness import GatewayProcess
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI


@pytest.fixture(scope="module")
def env_gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory,
                redis_url: str) -> Iterator[GatewayProcess]:
    # two workers share balances, limits and pool caps through Redis (serve refuses workers without it)
    with redis_namespace(redis_url) as redis_prefix:
        yield from _env_gateway(fake, tmp_path_factory, redis_url, redis_prefix)


def _env_gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                 redis_prefix: str) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("envgw"), workers=2, env={
        "TOLLWAY_REDIS_URL": redis_url, "TOLLWAY_REDIS_PREFIX": redis_prefix,
        "DEEPSEEK_API_KEY": UPSTREAM_SECRET, "DEEPSEEK_BASE_URL": fake.base_url,
        "OLLAMA_BASE_URL": fake.base_url.removesuffix("/v1"), "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1",
        "TOLLWAY_DISCOVERY_INTERVAL": "0.3"}).start()
    yield gw
    gw.stop()


def test_deepseek_reasoner_passes_reasoning_and_applies_quirks(env_gateway: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.script("deepseek-reasoner", Behavior(text="42.", reasoning="Six times seven."))
    key = env_gateway.create_key()
    c = openai.OpenAI(api_key=key, base_url=env_gateway.url + "/v1", max_retries=0)
    raw = c.chat.completions.with_raw_response.create(
        model="deepseek-reasoner", max_completion_tokens=30, seed=1, messages=[{"role": "user", "content": "6*7?"}])
    msg = raw.parse().choices[0].message
    assert msg.content == "42." and (msg.model_extra or {})["reasoning_content"] == "Six times seven."
    body = fake.seen("deepseek-reasoner")[-1].body
    assert body["max_tokens"] == 30 and "max_completion_tokens" not in body and "seed" not in body
    deadline = time.time() + 5
    row = None
    while row is None and time.time() < deadline:
        con = sqlite3.connect(env_gateway.db_path)
        row = con.execute("SELECT dropped_params, provider FROM request_logs WHERE id = ?",
                          (raw.headers["x-request-id"],)).fetchone()
        con.close()
        time.sleep(0.05)
    assert row == ("seed", "deepseek")  # a dropped parameter is named in the log
    ids = {m.id for m in c.models.list().data}
    assert {"deepseek-chat", "deepseek-reasoner", "echo"} <= ids and "gpt-4o-mini" not in ids


def test_ollama_models_by_prefix(env_gateway: GatewayProcess, fake: FakeOpenAI) -> None:
    fake.script("llama3.2", Behavior(text="local answer"))
    key = env_gateway.create_key()
    c = openai.OpenAI(api_key=key, base_url=env_gateway.url + "/v1", max_retries=0)
    text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="ollama/llama3.2", stream=True, messages=[{"role": "user", "content": "hi"}]) if ch.choices)
    assert text == "local answer"
    assert fake.seen("llama3.2")[-1].body["model"] == "llama3.2"
    deadline = time.time() + 3  # the server's own model list (GET /v1/models) shows up in ours
    ids: set[str] = set()
    while "ollama/llama3.2" not in ids and time.time() < deadline:
        ids = {m.id for m in c.models.list().data}
        time.sleep(0.1)
    assert "ollama/llama3.2" in ids
    assert next(m for m in c.models.list().data if m.id == "ollama/llama3.2").owned_by == "ollama"


def test_every_worker_sees_key_changes_within_the_poll_interval(env_gateway: GatewayProcess) -> None:
    key = env_gateway.create_key("fresh")  # lands in one worker's cache at once, the other's by polling

    def statuses() -> set[int]:
        # a new connection per request, so the kernel spreads them over both workers
        return {httpx.post(env_gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}",
                                                                              "Connection": "close"},
                           json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}).status_code
                for _ in range(30)}

    time.sleep(1.5)
    assert statuses() == {200}
    with env_gateway.admin() as admin:
        listed = admin.get("/admin/api-key/list", params={"name": "fresh"}).json()["items"]
        assert admin.post("/admin/api-key/delete", json={"id": listed[0]["id"]}).status_code == 200
    time.sleep(1.5)
    assert statuses() == {401}
