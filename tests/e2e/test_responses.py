"""The Responses API end to end: the official ``openai`` SDK -> a tollway process -> the fakes.

A function-tool round trip continued with ``previous_response_id`` over OpenAI (its Responses
API, passed through), Anthropic, Gemini and Bedrock (translated); the stored responses
(retrieve, delete, input items, another key's ids); background responses and their cancel;
built-in tools; an upstream failure mid-stream; the request log and what is billed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.test_pairing_matrix import SIGNATURE, Script, Upstream
from tests.fakes import anthropic_server
from tests.fakes.anthropic_server import ANTHROPIC_SECRET, FakeAnthropic
from tests.fakes.bedrock_server import ACCESS_KEY_ID, SECRET_KEY, FakeBedrock
from tests.fakes.gemini_server import GEMINI_KEY, FakeGemini
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tests.fakes.spec import parse_sse, response_stream_errors

WEATHER = {"type": "function", "name": "weather", "description": "the weather in a city", "strict": False,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
KINDS = ("openai", "anthropic", "gemini", "bedrock")


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini, fake_bedrock: FakeBedrock,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("responses"), env={
        "OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url,
        "ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "ANTHROPIC_BASE_URL": fake_anthropic.base_url,
        "GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": fake_gemini.base_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
        "BEDROCK_BASE_URL": fake_bedrock.base_url, "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1",
    }).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayProcess) -> str:
    return gw.create_key("responses")


@pytest.fixture
def fakes(fake: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini,
          fake_bedrock: FakeBedrock) -> dict[str, Any]:
    return {"openai": fake, "anthropic": fake_anthropic, "gemini": fake_gemini, "bedrock": fake_bedrock}


def sdk(gw: GatewayProcess, key: str, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.url + prefix, max_retries=0, timeout=20)


def rows(gw: GatewayProcess, where: str, args: tuple[Any, ...] = (), timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.time() + timeout
    while True:
        con = sqlite3.connect(gw.db_path)
        con.row_factory = sqlite3.Row
        found = [dict(r) for r in con.execute(f"SELECT * FROM request_logs WHERE {where}", args)]
        con.close()
        if found or time.time() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_tool_round_trip_continues_from_the_stored_response(kind: str, stream: bool, gw: GatewayProcess, key: str,
                                                            fakes: dict[str, Any]) -> None:
    up = Upstream(kind, fakes[kind])
    client = sdk(gw, key)
    model, upstream = up.model("resp-tool")
    up.script(upstream, Script(reasoning="Need the weather.", tool_calls=[("weather", {"city": "Oslo"})]))
    ask: dict[str, Any] = {"model": model, "instructions": "Be brief.", "tools": [WEATHER],
                           "reasoning": {"summary": "auto"}, "input": "Weather in Oslo?"}
    if stream:
        with client.responses.stream(**ask) as s:
            types = [e.type for e in s]
            first = s.get_final_response()
        assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    else:
        first = client.responses.create(**ask)
    assert first.model == model and first.status == "completed"
    call = next(i for i in first.output if i.type == "function_call")
    assert (call.name, json.loads(call.arguments)) == ("weather", {"city": "Oslo"})
    assert any(i.type == "reasoning" for i in first.output)

    up.script(upstream, Script(text="Sunny in Oslo."))
    second = client.responses.create(model=model, previous_response_id=first.id, tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert second.output_text == "Sunny in Oslo." and second.previous_response_id == first.id
    got = up.received(upstream)
    assert got.roles[:2] == ["user", "assistant"] and got.text == "Weather in Oslo?"
    assert [r[1:] for r in got.results] == [("sunny, 21C", False)]
    assert got.system == ""  # instructions are not carried over to the next response (as OpenAI)
    if kind in ("anthropic", "bedrock", "gemini"):
        assert SIGNATURE in got.signatures  # the reasoning's signature went back, through the stored response
    if kind == "openai":  # passed through: the gateway expanded the history; the upstream stores nothing
        body = up.fake.seen(upstream, "/v1/responses")[-1].body
        assert "previous_response_id" not in body and body["store"] is False

    again = client.responses.retrieve(second.id)
    assert again.output_text == "Sunny in Oslo." and again.id == second.id
    items = client.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["function_call_output"]


def test_stored_responses_belong_to_their_key(gw: GatewayProcess, key: str) -> None:
    mine, other = sdk(gw, key), sdk(gw, gw.create_key("other"))
    resp = mine.responses.create(model="echo", input=[{"role": "user", "content": "one"},
                                                      {"role": "user", "content": "two"},
                                                      {"role": "user", "content": "three"}])
    for attempt in (lambda: other.responses.retrieve(resp.id), lambda: other.responses.delete(resp.id),
                    lambda: other.responses.input_items.list(resp.id),
                    lambda: other.responses.create(model="echo", input="x", previous_response_id=resp.id)):
        with pytest.raises(openai.NotFoundError):
            attempt()
    page = mine.responses.input_items.list(resp.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["one", "two"] and page.has_more  # type: ignore[union-attr]
    rest = mine.responses.input_items.list(resp.id, limit=2, order="asc", after=page.data[-1].id)
    assert [i.content[0].text for i in rest.data] == ["three"] and not rest.has_more  # type: ignore[union-attr]
    newest = mine.responses.input_items.list(resp.id, limit=1)
    assert newest.data[0].content[0].text == "three"  # type: ignore[union-attr]
    mine.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(resp.id)
    unstored = mine.responses.create(model="echo", input="x", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(unstored.id)


def test_a_response_is_billed_once_and_reading_it_costs_nothing(gw: GatewayProcess, key: str,
                                                                fake: FakeOpenAI) -> None:
    client = sdk(gw, key)
    fake.script("bill-me", Behavior(text="four words in all", prompt_tokens=20, cached_tokens=0))
    raw = client.responses.with_raw_response.create(model="openai/bill-me", input="hi")
    resp = raw.parse()
    request_id = raw.headers["x-request-id"]
    row = rows(gw, "id = ?", (request_id,))[0]
    assert (row["dialect"], row["status"], row["prompt_tokens"], row["completion_tokens"]) == (
        "responses", 200, 20, resp.usage.output_tokens)  # type: ignore[union-attr]
    before = len(rows(gw, "1=1"))
    client.responses.retrieve(resp.id)
    client.responses.input_items.list(resp.id)
    time.sleep(0.3)
    after = rows(gw, "1=1")
    assert all(r["prompt_tokens"] == 0 and r["completion_tokens"] == 0 for r in after[before:])


def test_built_in_tools_are_refused_by_name_where_the_upstream_cannot_run_them(gw: GatewayProcess, key: str,
                                                                              fake: FakeOpenAI,
                                                                              fake_anthropic: FakeAnthropic) -> None:
    client = sdk(gw, key)
    fake_anthropic.script("builtin", anthropic_server.Behavior(text="no search"))
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="anthropic/builtin", input="news?", tools=[{"type": "web_search"}])
    assert "web_search" in err.value.message and err.value.body["param"] == "tools[0]"  # type: ignore[index]
    assert fake_anthropic.seen("builtin") == []
    dropped = client.responses.with_raw_response.create(model="anthropic/builtin", input="news?",
                                                        tools=[{"type": "web_search"}],
                                                        extra_body={"drop_params": True})
    assert dropped.parse().output_text == "no search"
    row = rows(gw, "id = ?", (dropped.headers["x-request-id"],))[0]
    assert "tools[0].web_search" in row["dropped_params"]
    # OpenAI runs its own tools: passed through as they came
    fake.script("builtin-openai", Behavior(text="searched"))
    assert client.responses.create(model="openai/builtin-openai", input="news?",
                                   tools=[{"type": "web_search"}]).output_text == "searched"
    assert fake.seen("builtin-openai", "/v1/responses")[-1].body["tools"] == [{"type": "web_search"}]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_an_upstream_failure_mid_stream_is_the_error_event_then_response_failed(kind: str, gw: GatewayProcess,
                                                                               key: str, fakes: dict[str, Any]) -> None:
    model = f"{kind}/midstream-{kind}"
    if kind == "openai":
        fakes["openai"].script(f"midstream-{kind}", Behavior(text="one two three four", error_in_stream_after=2))
    else:
        fakes["anthropic"].script(f"midstream-{kind}", anthropic_server.Behavior(text="one two three four",
                                                                                 drop_after=2))
    with httpx.stream("POST", gw.url + "/v1/responses", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": model, "input": "count", "stream": True}) as r:
        text = r.read().decode()
    assert response_stream_errors(parse_sse(text)) == []
    events = [data for _, data in parse_sse(text)]
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert sdk(gw, key).responses.retrieve(failed["id"]).status == "failed"


def test_background_responses_are_polled_and_cancelled(gw: GatewayProcess, key: str, fake: FakeOpenAI) -> None:
    client = sdk(gw, key)
    fake.script("bg-quick", Behavior(text="done in the background"))
    queued = client.responses.create(model="openai/bg-quick", input="go", background=True)
    assert queued.status == "queued" and queued.background
    deadline = time.time() + 10
    while (got := client.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
        assert time.time() < deadline
        time.sleep(0.05)
    assert got.status == "completed" and got.output_text == "done in the background"

    fake.script("bg-slow", Behavior(text="never", headers_delay=30))
    slow = client.responses.create(model="openai/bg-slow", input="go", background=True)
    cancelled = client.responses.cancel(slow.id)
    assert cancelled.status == "cancelled"
    time.sleep(0.3)
    assert client.responses.retrieve(slow.id).status == "cancelled"  # the task's end did not overwrite it
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(client.responses.create(model="echo", input="x").id)  # not a background one
    rows_ = rows(gw, "model = ? AND status = 499", ("openai/bg-slow",))
    assert rows_ and rows_[0]["dialect"] == "responses"


def test_other_prefixes_and_the_platform_error_body(gw: GatewayProcess, key: str) -> None:
    assert sdk(gw, key, "/v1/ai").responses.create(model="echo", input="city").output_text == "city"
    assert sdk(gw, key, "/api/v1").responses.create(model="echo", input="platform").output_text == "platform"
    r = httpx.post(gw.url + "/api/v1/responses", headers={"Authorization": f"Bearer {key}"}, json={"input": "x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == r.json()["error"]["code"]
    r = httpx.post(gw.url + "/v1/responses", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "echo", "input": "x", "previous_response_id": "resp_missing"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "previous_response_not_found"


def test_input_tokens_are_counted(gw: GatewayProcess, key: str) -> None:
    client = sdk(gw, key)
    small = client.responses.input_tokens.count(model="echo", input="hi")
    large = client.responses.input_tokens.count(model="echo", input="hi " * 200, instructions="be brief",
                                                tools=[WEATHER])  # type: ignore[list-item]
    assert 0 < small.input_tokens < large.input_tokens
    with pytest.raises(openai.NotFoundError):
        client.responses.input_tokens.count(model="no-such-model", input="hi")


def test_stored_responses_expire(tmp_path_factory: pytest.TempPathFactory) -> None:
    gateway = GatewayProcess(tmp_path_factory.mktemp("retention"),
                             env={"TOLLWAY_RESPONSE_RETENTION_DAYS": "0.00001"}).start()  # under a second
    try:
        client = sdk(gateway, gateway.create_key())
        resp = client.responses.create(model="echo", input="short-lived")
        assert client.responses.retrieve(resp.id).output_text == "short-lived"
        time.sleep(1.2)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(resp.id)
    finally:
        gateway.stop()


def test_an_item_reference_names_an_item_the_gateway_stored(gw: GatewayProcess, key: str, fake: FakeOpenAI) -> None:
    client = sdk(gw, key)
    fake.script("ref-openai", Behavior(text="first answer"))
    first = client.responses.create(model="openai/ref-openai", input="hi")  # passed through: the upstream's item ids
    message = first.output[0]
    fake.script("ref-openai", Behavior(text="second answer"))
    second = client.responses.create(model="openai/ref-openai", input=[
        {"role": "user", "content": "hi"}, {"type": "item_reference", "id": message.id},
        {"role": "user", "content": "and?"}])
    assert second.output_text == "second answer"
    sent = fake.seen("ref-openai", "/v1/responses")[-1].body["input"]
    assert [i.get("type", "message") for i in sent] == ["message", "message", "message"]
    assert sent[1]["role"] == "assistant" and "id" not in sent[1]  # the item itself, without an id it never stored
    echo = client.responses.create(model="echo", input="stored here")
    again = client.responses.create(model="echo", input=[{"type": "item_reference", "id": echo.output[0].id}])
    assert again.status == "completed"
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="echo", input=[{"type": "item_reference", "id": "msg_nowhere"}])
    assert err.value.body["code"] == "item_not_found"  # type: ignore[index]
    other = sdk(gw, gw.create_key("no-refs"))
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="echo", input=[{"type": "item_reference", "id": echo.output[0].id}])


@pytest.mark.parametrize("kind", KINDS)
def test_every_stream_is_the_documented_sequence(kind: str, gw: GatewayProcess, key: str,
                                                 fakes: dict[str, Any]) -> None:
    """Reasoning, text and two tool calls, passed through (openai) or translated: each event valid, the
    order and sequence numbers as documented, the deltas adding up to what the final response holds."""
    up = Upstream(kind, fakes[kind])
    model, upstream = up.model("resp-seq")
    up.script(upstream, Script(text="", reasoning="Think first.", tool_calls=[("weather", {"city": "Oslo"}),
                                                                               ("weather", {"city": "Rome"})]))
    with httpx.stream("POST", gw.url + "/v1/responses", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": model, "input": "Weather?", "stream": True, "tools": [WEATHER],
                            "reasoning": {"summary": "auto"}}) as r:
        text = r.read().decode()
    assert response_stream_errors(parse_sse(text)) == []
    final = parse_sse(text)[-1][1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "function_call", "function_call"]


def test_a_continued_conversation_is_held_for_all_its_input(gw: GatewayProcess) -> None:
    """Admission holds credits for the stored conversation a request continues, not only its body:
    a key that can pay for the new turn alone but not for the history it drags along is refused."""
    with gw.admin() as admin:
        assert admin.post("/admin/model/save", json={"name": "priced-echo", "provider": "echo", "upstream_id": "echo",
                                                     "price_in": 1000, "price_out": 1000}).status_code == 200
        r = admin.post("/admin/api-key/apply", json={"name": "held", "role": "user", "balance": 0.2})
        assert r.status_code == 200, r.text
        key = r.json()["api_key"]
    deadline = time.time() + 5
    client = sdk(gw, key)
    while True:  # the registry change reaches the serving process within its poll
        try:
            first = client.responses.create(model="priced-echo", input="word " * 15, max_output_tokens=20)
            break
        except openai.NotFoundError:
            assert time.time() < deadline
            time.sleep(0.1)
    with gw.admin() as admin:  # enough for a small turn (about 30 tokens held), not for 20 000 bytes of history
        admin.post("/admin/api-key/recharge", json={"api_key": key, "balance": 0.1})
        big = client.responses.create(model="echo", input="x " * 10_000, store=True)  # echo: free, stored
    small = client.responses.create(model="priced-echo", input="hi", max_output_tokens=5)
    assert small.status == "completed" and first.status == "completed"
    with pytest.raises(openai.APIStatusError) as err:
        client.responses.create(model="priced-echo", input="hi", max_output_tokens=5, previous_response_id=big.id)
    assert err.value.status_code == 402


def test_item_references_and_background_responses_are_bounded(fake: FakeOpenAI,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    gateway = GatewayProcess(tmp_path_factory.mktemp("bounded"), env={
        "OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url, "TOLLWAY_MAX_BACKGROUND": "1"}).start()
    try:
        client = sdk(gateway, gateway.create_key())
        refs = [{"type": "item_reference", "id": f"msg_{i}"} for i in range(101)]
        with pytest.raises(openai.BadRequestError) as err:
            client.responses.create(model="echo", input=refs)  # type: ignore[arg-type]
        assert "at most 100" in err.value.message
        fake.script("bg-hold", Behavior(text="late", headers_delay=30))
        slow = client.responses.create(model="openai/bg-hold", input="go", background=True)
        with pytest.raises(openai.RateLimitError) as busy:
            client.responses.create(model="echo", input="go", background=True)
        assert busy.value.body["code"] == "background_busy"  # type: ignore[index]
        client.responses.cancel(slow.id)
        deadline = time.time() + 5
        while True:  # the cancelled task is gone: room for another
            try:
                assert client.responses.create(model="echo", input="go", background=True).status == "queued"
                break
            except openai.RateLimitError:
                assert time.time() < deadline
                time.sleep(0.05)
    finally:
        gateway.stop()
