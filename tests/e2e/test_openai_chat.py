"""The OpenAI dialect end to end: the official openai SDK -> tollway process -> fake upstream."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def client(gw: GatewayProcess, key: str, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.url + prefix, max_retries=0, timeout=20)


def log_rows(gw: GatewayProcess, where: str = "1=1", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    con = sqlite3.connect(gw.db_path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT * FROM request_logs WHERE {where}", args)]
    finally:
        con.close()


def wait_for_row(gw: GatewayProcess, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = log_rows(gw, "id = ?", (request_id,))
        if rows:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"no request-log row for {request_id}")


# --- echo -------------------------------------------------------------------------------


def test_echo_answers_without_any_provider(gateway: GatewayProcess, user_key: str) -> None:
    resp = client(gateway, user_key).chat.completions.create(
        model="echo", messages=[{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "the quick brown fox"}])
    assert resp.choices[0].message.content == "the quick brown fox"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 4 and resp.usage.prompt_tokens == 6


def test_echo_streams_a_tool_call_on_request(gateway: GatewayProcess, user_key: str) -> None:
    stream = client(gateway, user_key).chat.completions.create(
        model="echo", stream=True, tools=[WEATHER_TOOL], stream_options={"include_usage": True},
        messages=[{"role": "user", "content": '/tool get_weather {"city": "Paris, France"}'}])
    args, names, finish, usage = "", [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.function and call.function.name:
                    names.append(call.function.name)
                args += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    assert names == ["get_weather"]
    assert json.loads(args) == {"city": "Paris, France"}
    assert finish == "tool_calls"
    assert usage is not None and usage.completion_tokens > 0


# --- pass-through to an OpenAI-compatible upstream ---------------------------------------


def test_non_stream_passthrough(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(text="Paris is the capital of France."))
    raw = client(gateway, user_key).chat.completions.with_raw_response.create(
        model="fake-chat", messages=[{"role": "user", "content": "capital of France?"}], temperature=0.2,
        max_tokens=50, seed=7, user="u-1")
    resp = raw.parse()
    assert resp.choices[0].message.content == "Paris is the capital of France."
    assert resp.usage is not None and resp.usage.prompt_tokens == 11 and resp.usage.completion_tokens == 6
    sent = fake.seen("upstream-chat")[-1]
    assert sent.body["model"] == "upstream-chat"  # the registry's upstream id, not the public name
    assert sent.body["temperature"] == 0.2 and sent.body["seed"] == 7 and sent.body["user"] == "u-1"
    assert sent.authorization == f"Bearer {UPSTREAM_SECRET}"
    row = wait_for_row(gateway, raw.headers["x-request-id"])
    assert (row["status"], row["model"], row["provider"], row["credential"]) == (200, "fake-chat", "fake", "fake-1")
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (11, 6, 3)
    assert row["key_prefix"] == user_key[:10] and row["stream"] == 0
    # the answer names the model asked for, as a translated one does; the upstream's id is beside it
    assert resp.model == "fake-chat" and raw.headers["x-tollway-upstream-model"] == "upstream-chat"
    assert row["upstream_model"] == "upstream-chat"


def test_every_path_answers_with_the_model_name_the_client_asked_for(
        gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    """Seed 004: the answer's model is the name in the request, pass-through or translated,
    stream or not."""
    fake.script("upstream-chat", Behavior(text="one two three"))
    sdk = client(gateway, user_key)
    for model in ("fake-chat", "echo"):  # pass-through, translated
        chunks = list(sdk.chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": "one two three"}]))
        assert chunks and {c.model for c in chunks} == {model}, (model, {c.model for c in chunks})
    claude = anthropic.Anthropic(api_key=user_key, base_url=gateway.url)
    whole = claude.messages.with_raw_response.create(model="fake-chat", max_tokens=20,
                                                     messages=[{"role": "user", "content": "hi"}])
    assert whole.parse().model == "fake-chat" and whole.headers["x-tollway-upstream-model"] == "upstream-chat"
    events = list(claude.messages.create(model="fake-chat", max_tokens=20, stream=True,
                                         messages=[{"role": "user", "content": "hi"}]))
    assert events[0].type == "message_start" and events[0].message.model == "fake-chat"


def test_alias_and_env_catalog_route_to_the_upstream(gateway: GatewayProcess, user_key: str,
                                                      fake: FakeOpenAI) -> None:
    fake.script("gpt-4o-mini", Behavior(text="from the openai catalog"))
    c = client(gateway, user_key)
    assert c.chat.completions.create(model="gpt-4o-mini", max_tokens=9,
                                     messages=[{"role": "user", "content": "x"}]).choices[0].message.content \
        == "from the openai catalog"
    sent = fake.seen("gpt-4o-mini")[-1].body
    assert sent["max_completion_tokens"] == 9 and "max_tokens" not in sent  # OpenAI quirk: renamed
    fake.script("upstream-chat", Behavior(text="via alias"))
    assert c.chat.completions.create(model="my-alias", messages=[{"role": "user", "content": "x"}]) \
        .choices[0].message.content == "via alias"


def test_stream_passthrough_assembles_upstream_text_with_usage(gateway: GatewayProcess, user_key: str,
                                                               fake: FakeOpenAI) -> None:
    text = "Streaming works when every word arrives in its own chunk."
    fake.script("upstream-chat", Behavior(text=text))
    stream = client(gateway, user_key).chat.completions.create(
        model="fake-chat", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "go"}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())
    assert fake.seen("upstream-chat")[-1].body["stream_options"] == {"include_usage": True}


def test_stream_without_include_usage_hides_the_usage_chunk_but_bills_it(
        gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(text="one two three"))
    raw = client(gateway, user_key).chat.completions.with_raw_response.create(
        model="fake-chat", stream=True, messages=[{"role": "user", "content": "go"}])
    chunks = list(raw.parse())
    assert all(c.choices for c in chunks)  # no usage-only chunk the client did not ask for
    # the gateway still asked the upstream for usage and logged it
    assert fake.seen("upstream-chat")[-1].body["stream_options"] == {"include_usage": True}
    row = wait_for_row(gateway, raw.headers["x-request-id"])
    assert row["completion_tokens"] == 3 and row["stream"] == 1 and row["ttft_ms"] is not None


def test_stream_parallel_tool_calls_and_reasoning(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    calls = [("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "Tokyo"}')]
    fake.script("upstream-chat", Behavior(text="", tool_calls=calls, reasoning="Two cities, two calls."))
    stream = client(gateway, user_key).chat.completions.create(
        model="fake-chat", stream=True, tools=[WEATHER_TOOL], parallel_tool_calls=True, tool_choice="auto",
        messages=[{"role": "user", "content": "weather in Paris and Tokyo"}])
    args: dict[int, str] = {}
    ids: dict[int, str] = {}
    reasoning = ""
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            for call in choice.delta.tool_calls or ():
                if call.id:
                    ids[call.index] = call.id
                args[call.index] = args.get(call.index, "") + ((call.function.arguments or "") if call.function else "")
            finish = choice.finish_reason or finish
    assert [json.loads(args[i]) for i in sorted(args)] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert ids == {0: "call_0", 1: "call_1"}
    assert reasoning == "Two cities, two calls."
    assert finish == "tool_calls"
    sent = fake.seen("upstream-chat")[-1].body
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["parallel_tool_calls"] is True


def test_usage_on_the_finish_chunk_is_read_too(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(text="a b", usage_in_final_chunk=True, completion_tokens=42))
    raw = client(gateway, user_key).chat.completions.with_raw_response.create(
        model="fake-chat", stream=True, messages=[{"role": "user", "content": "go"}])
    list(raw.parse())
    assert wait_for_row(gateway, raw.headers["x-request-id"])["completion_tokens"] == 42


# --- errors -------------------------------------------------------------------------------


def test_bad_key_is_401_in_openai_shape(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as exc:
        client(gateway, "tw-not-a-real-key").chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 401
    assert exc.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert exc.value.body["type"] == "authentication_error"  # type: ignore[index]


def test_unknown_model_is_404(gateway: GatewayProcess, user_key: str) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client(gateway, user_key).chat.completions.create(model="no-such-model",
                                                          messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["code"] == "model_not_available"  # type: ignore[index]


def test_upstream_500_is_502_without_the_upstream_secret(gateway: GatewayProcess, user_key: str,
                                                         fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(status=500, echo_secret_in_error=True, error_message="it broke"))
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway, user_key).chat.completions.create(model="fake-chat",
                                                          messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 502
    body = json.dumps(exc.value.body)
    assert "it broke" in body and UPSTREAM_SECRET not in body
    assert exc.value.body["code"] == "provider_error"  # type: ignore[index]


def test_upstream_429_keeps_status_and_retry_after(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(status=429, retry_after="7", error_message="slow down"))
    with pytest.raises(openai.RateLimitError) as exc:
        client(gateway, user_key).chat.completions.create(model="fake-chat",
                                                          messages=[{"role": "user", "content": "x"}])
    assert exc.value.response.headers["retry-after"] == "7"


def test_upstream_timeout_is_504(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(headers_delay=3.0))
    started = time.time()
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway, user_key).chat.completions.create(model="fake-chat",
                                                          messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 504
    assert exc.value.body["code"] == "provider_timeout"  # type: ignore[index]
    assert time.time() - started < 3.0  # the first-byte timeout (1.5 s), not the upstream's delay


def test_stream_timeout_before_headers_is_a_plain_504(gateway: GatewayProcess, user_key: str,
                                                      fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(headers_delay=3.0))
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway, user_key).chat.completions.create(model="fake-chat", stream=True,
                                                          messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 504


def test_connection_dropped_mid_stream_becomes_an_in_stream_error(gateway: GatewayProcess, user_key: str,
                                                                  fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(text="one two three four five six", drop_after=3))
    received = ""
    raw = client(gateway, user_key).chat.completions.with_raw_response.create(
        model="fake-chat", stream=True, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIError) as exc:
        for chunk in raw.parse():
            received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert received == "one two three "  # the role frame and three words arrived before the cut
    assert "before it finished" in exc.value.message or "broke" in exc.value.message
    row = wait_for_row(gateway, raw.headers["x-request-id"])
    assert row["status"] == 502 and row["error_code"] == "provider_error"


def test_upstream_error_frame_mid_stream_is_rendered_redacted_and_logged(
        gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("upstream-chat", Behavior(text="one two three four", error_in_stream_after=2))
    raw = client(gateway, user_key).chat.completions.with_raw_response.create(
        model="fake-chat", stream=True, messages=[{"role": "user", "content": "x"}])
    received = ""
    with pytest.raises(openai.APIError) as exc:
        for chunk in raw.parse():
            received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert received == "one two "
    assert "overloaded mid-stream" in exc.value.message and UPSTREAM_SECRET not in exc.value.message
    row = wait_for_row(gateway, raw.headers["x-request-id"])
    assert row["status"] == 502 and row["error_code"] == "provider_error"


def test_stalled_stream_hits_the_idle_timeout(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("stall", Behavior(text="a b c d e", hang_after=2))
    fake.disconnects.pop("stall", None)
    with pytest.raises(openai.APIError) as exc:
        for _ in client(gateway, user_key).chat.completions.create(
                model="fake/stall", stream=True, messages=[{"role": "user", "content": "x"}]):
            pass
    assert "idle" in exc.value.message


def test_client_disconnect_cancels_the_upstream_within_a_second(gateway: GatewayProcess, user_key: str,
                                                                fake: FakeOpenAI) -> None:
    fake.script("hang", Behavior(text="a b c d e f", hang_after=2))
    fake.disconnects.pop("hang", None)
    with httpx.Client(timeout=10) as http, http.stream(
            "POST", gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {user_key}"},
            json={"model": "fake/hang", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        closed_at = time.time()
    deadline = closed_at + 1.0
    while "hang" not in fake.disconnects and time.time() < deadline + 0.5:
        time.sleep(0.02)
    assert "hang" in fake.disconnects, "upstream never saw the cancel"
    assert fake.disconnects["hang"] - closed_at < 1.0
    rows: list[dict[str, Any]] = []
    while time.time() < deadline + 3 and not rows:
        rows = log_rows(gateway, "model = ? AND status = 499", ("fake/hang",))
        time.sleep(0.05)
    assert rows and rows[-1]["note"] == "client disconnected"


def test_body_size_limit(gateway: GatewayProcess, user_key: str) -> None:
    big = "x" * 300_000
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {user_key}"},
                   json={"model": "echo", "messages": [{"role": "user", "content": big}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
