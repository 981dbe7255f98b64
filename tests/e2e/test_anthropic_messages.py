"""The Anthropic front door itself: auth headers, paths, pass-through, what the gateway emits
(checked against Anthropic's schemas), errors, count_tokens, models and claude_mapping."""

from __future__ import annotations

import json
import sqlite3
import time
import warnings
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes import anthropic_server, anthropic_spec, openai_server
from tests.fakes.anthropic_server import ANTHROPIC_SECRET, FakeAnthropic
from tests.fakes.openai_server import UPSTREAM_SECRET, FakeOpenAI

VERSION = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, fake_anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("anthropic"), env={
        "ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "ANTHROPIC_BASE_URL": fake_anthropic.base_url,
        "DEEPSEEK_API_KEY": UPSTREAM_SECRET, "DEEPSEEK_BASE_URL": fake.base_url,
        "TOLLWAY_MAX_BODY_BYTES": "200000", "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1", "TOLLWAY_FIRST_BYTE_TIMEOUT": "5",
    }).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayProcess) -> str:
    return gw.create_key("anthropic-front-door")


def post(gw: GatewayProcess, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gw.url + path, content=body if isinstance(body, bytes) else json.dumps(body).encode(),
                      headers={"content-type": "application/json", **VERSION, **headers}, timeout=20)


def ask(model: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}], **kw}


def log_row(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    deadline = time.time() + 5
    while time.time() < deadline:
        con = sqlite3.connect(gw.db_path)
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM request_logs WHERE id = ?", (request_id,)).fetchone()
        con.close()
        if row is not None:
            return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"no request-log row for {request_id}")


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
@pytest.mark.parametrize("path", ["/v1/messages", "/anthropic/v1/messages"])
def test_either_key_header_on_either_path(header: str, path: str, gw: GatewayProcess, key: str,
                                          fake: FakeOpenAI) -> None:
    fake.script("deepseek-chat", openai_server.Behavior(text="Hi there."))
    value = key if header == "x-api-key" else f"Bearer {key}"
    r = post(gw, path, ask("deepseek-chat"), {header: value})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"][0]["text"] == "Hi there." and anthropic_spec.message_errors(body, as_sent=True) == []
    row = log_row(gw, r.headers["x-request-id"])
    assert (row["dialect"], row["provider"], row["status"]) == ("anthropic", "deepseek", 200)


@pytest.mark.parametrize("headers, status, etype", [
    ({}, 401, "authentication_error"),
    ({"x-api-key": "tw-not-a-real-key"}, 401, "authentication_error"),
])
def test_auth_errors_in_anthropics_shape(headers: dict[str, str], status: int, etype: str,
                                         gw: GatewayProcess) -> None:
    r = post(gw, "/v1/messages", ask("deepseek-chat"), headers)
    assert r.status_code == status and r.json()["error"]["type"] == etype
    assert anthropic_spec.error_body_errors(r.json()) == []


@pytest.mark.parametrize("body, status, etype", [
    (b"{not json", 400, "invalid_request_error"),
    ({"model": "deepseek-chat", "max_tokens": 5}, 400, "invalid_request_error"),
    ({"model": "deepseek-chat", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
     400, "invalid_request_error"),
    (ask("no-such-model"), 404, "not_found_error"),
    (ask("deepseek-chat", system="x" * 300_000), 413, "invalid_request_error"),
])
def test_bad_requests_get_clear_errors(body: Any, status: int, etype: str, gw: GatewayProcess, key: str) -> None:
    r = post(gw, "/v1/messages", body, {"x-api-key": key})
    assert r.status_code == status, r.text
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == etype and r.json()["error"]["message"]
    assert anthropic_spec.error_body_errors(r.json()) == []


def test_unknown_paths_answer_in_anthropics_shape(gw: GatewayProcess, key: str) -> None:
    r = httpx.get(gw.url + "/anthropic/v1/nothing", headers={"x-api-key": key})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(gw.url + "/v1/messages", headers={"x-api-key": key})
    assert r.status_code == 405 and r.json()["type"] == "error"


def test_pass_through_rewrites_only_the_model(gw: GatewayProcess, key: str, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("claude-sonnet-4-5", anthropic_server.Behavior(text="Cached answer."))
    body = ask("claude-3-7-sonnet-latest", system=[{"type": "text", "text": "long system prompt",
                                                      "cache_control": {"type": "ephemeral"}}],
               metadata={"user_id": "u-1"}, service_tier="auto")
    r = post(gw, "/v1/messages", body, {"x-api-key": key, "anthropic-beta": "prompt-caching-2024-07-31"})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "Cached answer."
    seen = fake_anthropic.seen("claude-sonnet-4-5")[-1]
    assert seen.body == {**body, "model": "claude-sonnet-4-5"}  # the alias resolved; nothing else touched
    assert seen.x_api_key == ANTHROPIC_SECRET and key not in json.dumps(seen.headers)
    assert seen.anthropic_beta == "prompt-caching-2024-07-31"


def test_translated_stream_conforms_to_the_spec(gw: GatewayProcess, key: str, fake: FakeOpenAI) -> None:
    fake.script("deepseek-reasoner", openai_server.Behavior(text="Four.", reasoning="Two plus two.",
                                                            tool_calls=[("calc", '{"x": 2}')]))
    tools = [{"name": "calc", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}]
    r = post(gw, "/v1/messages", ask("deepseek-reasoner", stream=True, tools=tools), {"x-api-key": key})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = anthropic_spec.parse_sse(r.content)
    assert anthropic_spec.stream_errors(events, as_sent=True) == []
    assert [e for e, _ in events][0] == "message_start" and events[-1][0] == "message_stop"
    deltas = [d["delta"]["type"] for e, d in events if e == "content_block_delta"]
    assert "thinking_delta" in deltas and "input_json_delta" in deltas
    full = post(gw, "/v1/messages", ask("deepseek-reasoner", tools=tools), {"x-api-key": key}).json()
    assert anthropic_spec.message_errors(full, as_sent=True) == []
    assert [b["type"] for b in full["content"]] == ["thinking", "tool_use"]  # no text: the fake sends none with calls


def nulls(node: Any, path: str = "") -> set[str]:
    """The paths of every null in a JSON document (list indexes left out)."""
    if isinstance(node, dict):
        return {p for k, v in node.items() for p in nulls(v, f"{path}.{k}" if path else k)}
    if isinstance(node, list):
        return {p for v in node for p in nulls(v, path)}
    return {path} if node is None else set()


def test_translated_answers_leave_out_the_nulls_anthropic_leaves_out(gw: GatewayProcess, key: str,
                                                                     fake: FakeOpenAI) -> None:
    """Issue 17 #15: a text block's ``"citations": null`` made the Vercel AI SDK refuse every translated
    answer ("Invalid JSON response": its schema is ``z.array(...).optional()``). Anthropic's recorded
    responses carry null only in stop_reason / stop_sequence / stop_details; the rest it leaves out."""
    fake.script("deepseek-reasoner", openai_server.Behavior(text="Four.", reasoning="Two plus two."))
    r = post(gw, "/v1/messages", ask("deepseek-reasoner"), {"x-api-key": key})
    whole = r.json()
    assert [b["type"] for b in whole["content"]] == ["thinking", "text"]
    assert whole["content"][1] == {"type": "text", "text": "Four."}
    assert nulls(whole) <= {"stop_sequence", "stop_details"}, nulls(whole)
    assert anthropic_spec.message_errors(whole, as_sent=True) == []
    assert {"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"} <= set(
        whole["usage"])
    r = post(gw, "/v1/messages", ask("deepseek-reasoner", stream=True), {"x-api-key": key})
    assert r.headers["request-id"] == r.headers["x-request-id"]  # a stream names its request too
    events = anthropic_spec.parse_sse(r.content)
    assert anthropic_spec.stream_errors(events, as_sent=True) == []
    allowed = {"message_start": {"message.stop_reason", "message.stop_sequence", "message.stop_details"},
               "message_delta": {"delta.stop_sequence", "delta.stop_details"}}
    for name, data in events:
        assert nulls(data) <= allowed.get(name, set()), (name, data)
    starts = [d["content_block"] for e, d in events if e == "content_block_start"]
    assert {"type": "text", "text": ""} in starts
    client = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0)  # the SDK still reads both
    msg = client.messages.create(model="deepseek-reasoner", max_tokens=64, messages=[{"role": "user", "content": "?"}])
    assert msg.content[1].text == "Four." and msg.content[1].citations is None  # type: ignore[union-attr]
    with client.messages.stream(model="deepseek-reasoner", max_tokens=64,
                                messages=[{"role": "user", "content": "?"}]) as stream:
        assert stream.get_final_message().content[1].text == "Four."  # type: ignore[union-attr]


def test_errors_name_their_request_and_say_whether_to_retry(gw: GatewayProcess, key: str) -> None:
    """Issue 17 #16: Anthropic's errors carry the request's id (body and ``request-id`` header, which
    the SDK reads), and a refusal no retry can mend says ``x-should-retry: false`` (Claude Code retried
    a bad key for minutes)."""
    bad = anthropic.Anthropic(api_key="tw-not-a-real-key", base_url=gw.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as exc:
        bad.messages.create(model="deepseek-chat", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    rid = exc.value.response.headers["x-request-id"]
    assert exc.value.request_id == rid and rid.startswith("req_")
    assert isinstance(exc.value.body, dict) and exc.value.body["request_id"] == rid
    assert exc.value.response.headers["x-should-retry"] == "false"
    client = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert missing.value.request_id == missing.value.response.headers["x-request-id"]
    assert missing.value.response.headers["x-should-retry"] == "false"
    r = post(gw, "/v1/messages", b"{not json", {"x-api-key": key})
    assert r.status_code == 400 and r.json()["request_id"] == r.headers["request-id"] == r.headers["x-request-id"]
    assert anthropic_spec.error_body_errors(r.json()) == [] and r.headers["x-should-retry"] == "false"
    ok = client.messages.with_raw_response.create(model="deepseek-chat", max_tokens=8,
                                                  messages=[{"role": "user", "content": "x"}])
    assert ok.request_id == ok.headers["x-request-id"] and ok.parse()._request_id == ok.request_id
    count = client.messages.count_tokens(model="deepseek-chat", messages=[{"role": "user", "content": "x"}])
    assert count._request_id is not None and count._request_id.startswith("req_")
    models = httpx.get(gw.url + "/v1/models", headers={**VERSION, "x-api-key": key})
    assert models.headers["request-id"] == models.headers["x-request-id"]


def test_unknown_paths_answer_in_the_callers_shape_and_are_logged(gw: GatewayProcess, key: str) -> None:
    """Issue 17 #16: an Anthropic client (``anthropic-version``) on a path the gateway lacks gets
    Anthropic's error, with its request id, and the request is in the log like any other."""
    client = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as exc:
        client.beta.files.list()  # GET /v1/files: not served here
    rid = exc.value.response.headers["x-request-id"]
    assert exc.value.request_id == rid and exc.value.body == {
        "type": "error", "error": {"type": "not_found_error", "message": "Unknown path /v1/files"}, "request_id": rid}
    assert exc.value.response.headers["x-should-retry"] == "false"
    row = log_row(gw, rid)
    assert (row["status"], row["dialect"], row["path"], row["error_code"]) == (
        404, "anthropic", "/v1/files", "not_found")
    plain = httpx.get(gw.url + "/v1/nope")  # no anthropic-version: OpenAI's shape, logged too
    assert plain.status_code == 404 and plain.json()["error"]["code"] == "not_found" and "type" in plain.json()["error"]
    assert log_row(gw, plain.headers["x-request-id"])["dialect"] == "openai"
    wrong = httpx.put(gw.url + "/anthropic/v1/messages", headers=VERSION)
    assert wrong.status_code == 405 and wrong.json()["request_id"] == wrong.headers["x-request-id"]
    assert log_row(gw, wrong.headers["x-request-id"])["status"] == 405


@pytest.mark.parametrize("model, behavior_of", [
    ("claude-haiku-4-5", lambda: anthropic_server.Behavior(error_in_stream_after=2, echo_secret_in_error=True)),
    ("deepseek-chat", lambda: openai_server.Behavior(error_in_stream_after=2, text="one two three four five",
                                                     echo_secret_in_error=True)),
])
def test_an_upstream_error_mid_stream_becomes_an_error_event(model: str, behavior_of: Any, gw: GatewayProcess,
                                                            key: str, fake: FakeOpenAI,
                                                            fake_anthropic: FakeAnthropic) -> None:
    (fake_anthropic if model.startswith("claude") else fake).script(model, behavior_of())
    client = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as exc, client.messages.stream(
            model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
        for _ in s:
            pass
    assert "mid-stream" in str(exc.value)
    r = post(gw, "/v1/messages", ask(model, stream=True), {"x-api-key": key})
    events = anthropic_spec.parse_sse(r.content)
    assert events[-1][0] == "error" and anthropic_spec.error_body_errors(events[-1][1]) == []
    assert ANTHROPIC_SECRET not in r.text and UPSTREAM_SECRET not in r.text
    if model.startswith("claude"):  # Anthropic said overloaded: a Claude client must see that type to retry
        assert events[-1][1]["error"]["type"] == "overloaded_error"


def test_count_tokens_locally(gw: GatewayProcess, key: str) -> None:
    def count(**kw: Any) -> int:
        body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hello"}], **kw}
        r = post(gw, "/v1/messages/count_tokens", body, {"x-api-key": key})
        assert r.status_code == 200, r.text
        assert anthropic_spec.errors("CountMessageTokensResponse", r.json()) == []
        return int(r.json()["input_tokens"])

    short = count()
    longer = count(messages=[{"role": "user", "content": "hello " * 200}])
    with_tools = count(tools=[{"name": "lookup", "description": "look things up",
                               "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}])
    assert 0 < short < longer and with_tools > short
    assert 190 <= longer - short <= 230  # "hello " is one token in o200k_base and in the estimate
    client = anthropic.Anthropic(api_key=key, base_url=gw.url + "/anthropic", max_retries=0)
    assert client.messages.count_tokens(model="deepseek-chat", messages=[
        {"role": "user", "content": "hello"}]).input_tokens == short
    r = post(gw, "/v1/messages/count_tokens", {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
             {"x-api-key": key})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    bad = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}],
           "tools": [{"name": "x", "description": 5, "input_schema": {}}]}
    assert post(gw, "/v1/messages/count_tokens", bad, {"x-api-key": key}).status_code == 400


def test_count_tokens_on_anthropic_is_anthropics_own(gw: GatewayProcess, key: str,
                                                     fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("claude-opus-4-6", anthropic_server.Behavior(input_tokens=1234))
    body = {"model": "claude-opus-4-1", "messages": [{"role": "user", "content": "search the web"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}  # a server tool: only Anthropic counts it
    r = post(gw, "/v1/messages/count_tokens", {**body, "max_tokens": 99}, {"x-api-key": key})
    assert r.status_code == 200 and r.json() == {"input_tokens": 1234}
    seen = fake_anthropic.requests[-1]  # max_tokens is not part of a count request: not forwarded
    assert seen.path == "/v1/messages/count_tokens" and seen.body == {**body, "model": "claude-opus-4-6"}


def test_count_tokens_falls_back_to_the_local_count_when_the_upstream_has_none(tmp_path: Any) -> None:
    """Issue 17 #17: an Anthropic-compatible upstream without count_tokens answers 404 there; Claude
    Code calls it before every turn, so the gateway counts locally instead of passing the 404 on."""
    with FakeAnthropic(count_tokens=False) as compat:
        compat.script("compat-up", anthropic_server.Behavior(text="still here"))
        g = GatewayProcess(tmp_path, config={
            "providers": [{"name": "compat", "kind": "anthropic", "base_url": compat.base_url,
                           "credentials": [{"id": "c1", "api_key": ANTHROPIC_SECRET}]}],
            "models": [{"id": "compat-model", "provider": "compat", "upstream_id": "compat-up"}],
            "aliases": {"local-alias": "echo"}}).start()
        try:
            key = g.create_key("counts")
            client = anthropic.Anthropic(api_key=key, base_url=g.url, max_retries=0)
            messages: list[Any] = [{"role": "user", "content": "hello " * 50}]
            counted = client.messages.count_tokens(model="compat-model", messages=messages)
            assert compat.requests[-1].path == "/v1/messages/count_tokens"  # asked first: it may count itself
            local = client.messages.count_tokens(model="local-alias", messages=messages)  # echo: counted here
            assert counted.input_tokens == local.input_tokens > 50
            msg = client.messages.create(model="compat-model", max_tokens=16, messages=messages)
            assert msg.content[0].text == "still here"  # type: ignore[union-attr]  # the credential is not cooled
            assert compat.spec_errors == []
        finally:
            g.stop()


def test_dated_claude_ids_reach_the_anthropic_upstream(gw: GatewayProcess, key: str,
                                                       fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("claude-opus-4-1-20250805", anthropic_server.Behavior(text="dated"))
    r = post(gw, "/v1/messages", ask("claude-opus-4-1-20250805"), {"x-api-key": key})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "dated"


def test_translation_names_what_it_drops(gw: GatewayProcess, key: str, fake: FakeOpenAI) -> None:
    fake.script("deepseek-chat", openai_server.Behavior(text="ok"))
    body = ask("deepseek-chat", system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
               service_tier="auto")
    r = post(gw, "/v1/messages", body, {"x-api-key": key})
    assert r.status_code == 200
    assert log_row(gw, r.headers["x-request-id"])["dropped_params"] == "service_tier,system[].cache_control"


def test_models_in_anthropics_page_shape(gw: GatewayProcess, key: str) -> None:
    open_page = httpx.get(gw.url + "/anthropic/v1/models?limit=1000").json()  # seed 002: no key needed
    ids = [m["id"] for m in open_page["data"]]
    assert {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-6", "deepseek-chat"} <= set(ids)
    assert open_page["object"] == "list" and anthropic_spec.errors("ListResponse_ModelInfo_", open_page) == []
    client = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0)
    assert [m.id for m in client.models.list(limit=2)] == ids  # the SDK follows has_more/after_id to the end
    first = httpx.get(gw.url + "/anthropic/v1/models?limit=2").json()
    assert first["has_more"] is True and first["last_id"] == ids[1]
    nxt = httpx.get(gw.url + f"/anthropic/v1/models?limit=2&after_id={ids[1]}").json()
    assert nxt["data"][0]["id"] == ids[2]
    oa = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {key}"}).json()
    assert "first_id" not in oa and oa["data"][0]["object"] == "model"  # no anthropic-version: OpenAI's list
    assert httpx.get(gw.url + "/v1/models", headers=VERSION).status_code == 401  # /v1 keeps its key


@pytest.fixture(scope="module")
def mapped(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("mapped"), env={
        "DEEPSEEK_API_KEY": UPSTREAM_SECRET, "DEEPSEEK_BASE_URL": fake.base_url},
        config={"claude_mapping": {"fast": "deepseek-chat", "slow": "deepseek-reasoner"}}).start()
    yield g
    g.stop()


@pytest.mark.parametrize("asked, upstream", [
    ("claude-3-5-haiku-latest", "deepseek-chat"),
    ("claude-sonnet-4-5", "deepseek-chat"),
    ("claude-some-future-model", "deepseek-chat"),
    ("claude-opus-4-6", "deepseek-reasoner"),
])
def test_claude_names_map_to_the_fast_and_slow_models(asked: str, upstream: str, mapped: GatewayProcess,
                                                      fake: FakeOpenAI) -> None:
    fake.script(upstream, openai_server.Behavior(text=f"I am {upstream}."))
    client = anthropic.Anthropic(api_key=mapped.create_key("claude-code"), base_url=mapped.url, max_retries=0)
    with warnings.catch_warnings():  # the SDK warns about retired Claude names: they are the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        msg = client.messages.create(model=asked, max_tokens=32, messages=[{"role": "user", "content": "who?"}])
    assert msg.content[0].text == f"I am {upstream}." and msg.model == asked  # type: ignore[union-attr]
    assert fake.seen(upstream)[-1].body["model"] == upstream
    ids = [m.id for m in client.models.list(limit=1000)]
    assert "claude-sonnet-4-5" in ids and "deepseek-chat" in ids
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="gpt-nothing", max_tokens=8, messages=[{"role": "user", "content": "x"}])


def test_admin_key_is_not_forwarded_and_is_accepted(gw: GatewayProcess, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("claude-haiku-4-5", anthropic_server.Behavior(text="ok"))
    r = post(gw, "/v1/messages", ask("claude-haiku-4-5"), {"x-api-key": ADMIN_KEY})
    assert r.status_code == 200
    assert ADMIN_KEY not in json.dumps(fake_anthropic.seen("claude-haiku-4-5")[-1].headers)


def test_too_many_document_urls_are_refused_before_any_fetch(gw: GatewayProcess, key: str, fake: FakeOpenAI) -> None:
    """The upstream needs bytes, so the gateway would fetch: at most 16 distinct URLs per request."""
    fake.script("deepseek-chat", openai_server.Behavior(text="never"))
    before = len(fake.seen("deepseek-chat"))
    docs = [{"type": "document", "source": {"type": "url", "url": f"https://docs.example.com/{i}.pdf"}}
            for i in range(17)]
    body = ask("deepseek-chat", messages=[{"role": "user", "content": [{"type": "text", "text": "read"}, *docs]}])
    r = post(gw, "/v1/messages", body, {"x-api-key": key})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "16" in r.json()["error"]["message"] and len(fake.seen("deepseek-chat")) == before
