"""Issue 13 end to end: ``GET``/``HEAD /``, ``GET /v1/models/{id}`` (OpenAI's and Anthropic's
shape), ``POST /v1/completions`` (forwarded to an upstream with the endpoint, translated to chat
for any other) and ``POST /v1/moderations``, with the official ``openai`` and ``anthropic`` SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.test_openai_chat import wait_for_row
from tests.fakes import bedrock_server, gemini_server
from tests.fakes.anthropic_server import ANTHROPIC_SECRET, FakeAnthropic
from tests.fakes.anthropic_server import Behavior as AnthropicBehavior
from tests.fakes.bedrock_server import ACCESS_KEY_ID, SECRET_KEY, FakeBedrock
from tests.fakes.gemini_server import GEMINI_KEY, FakeGemini
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tests.fakes.spec import errors as spec_errors

TEXT = "one two three four"


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini, fake_bedrock: FakeBedrock,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    credentials = [{"id": "cred-1", "api_key": UPSTREAM_SECRET}]
    config = {
        "providers": [
            # chat only: completions are translated to chat, moderations refused
            {"name": "chatonly", "kind": "openai_compatible", "base_url": fake.base_url, "credentials": credentials},
            # a vLLM-like server with the legacy completions and moderations endpoints
            {"name": "vllm", "kind": "openai_compatible", "base_url": fake.base_url, "credentials": credentials,
             "options": {"completions_path": "/completions", "moderations_path": "/moderations"}},
        ],
        "models": [
            {"id": "plain-chat", "provider": "chatonly", "upstream_id": "upstream-plain"},
            {"id": "team/instruct", "provider": "vllm", "upstream_id": "upstream-instruct",
             "display_name": "Team instruct"},
        ],
        "aliases": {"instruct": "team/instruct"},
    }
    gateway = GatewayProcess(tmp_path_factory.mktemp("issue13"), config=config, env={
        "OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url,
        "ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "ANTHROPIC_BASE_URL": fake_anthropic.base_url,
        "GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": fake_gemini.base_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
        "BEDROCK_BASE_URL": fake_bedrock.base_url,
        "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1", "TOLLWAY_DISCOVERY_INTERVAL": "3600"}).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayProcess) -> str:
    return gw.create_key("issue13")


def sdk(gw: GatewayProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def client(gw: GatewayProcess, key: str) -> Iterator[openai.OpenAI]:
    with sdk(gw, key) as c:  # closed: no socket left for the collector to warn about
        yield c


@pytest.fixture(scope="module")
def claude(gw: GatewayProcess, key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0) as c:
        yield c


def post(gw: GatewayProcess, path: str, key: str, body: Any) -> httpx.Response:
    return httpx.post(gw.url + path, headers={"Authorization": f"Bearer {key}"}, json=body, timeout=20)


# --- GET / and HEAD / --------------------------------------------------------------------------


def test_the_root_names_the_gateway_without_a_key(gw: GatewayProcess) -> None:
    got = httpx.get(gw.url + "/")
    assert got.status_code == 200 and got.json()["name"] == "Tollway" and got.json()["version"]
    head = httpx.head(gw.url + "/")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"] == "application/json"
    assert httpx.post(gw.url + "/").status_code == 405


# --- GET /v1/models/{id} ---------------------------------------------------------------------------


def test_the_openai_sdk_retrieves_a_model_and_gets_404_for_one_it_cannot_call(gw: GatewayProcess, key: str,
                                                                               client: openai.OpenAI) -> None:
    m = client.models.retrieve("gpt-4o")
    assert (m.id, m.object, m.owned_by) == ("gpt-4o", "model", "openai") and m.created > 0
    slashed = client.models.retrieve("team/instruct")  # the SDK sends team%2Finstruct
    assert (slashed.id, slashed.owned_by) == ("team/instruct", "vllm")
    assert client.models.retrieve("instruct").id == "instruct"  # an alias answers under its own name
    for name in ("no-such-model", "deepseek-chat", "vllm/anything-at-all"):  # unknown, unconfigured, only routable
        with pytest.raises(openai.NotFoundError) as err:
            client.models.retrieve(name)
        assert err.value.body["code"] == "model_not_found"  # type: ignore[index]
        assert err.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    platform = httpx.get(gw.url + "/api/v1/models/team/instruct", headers={"Authorization": f"Bearer {key}"})
    assert platform.status_code == 200 and platform.json()["display_name"] == "Team instruct"
    missing = httpx.get(gw.url + "/api/v1/models/nope", headers={"Authorization": f"Bearer {key}"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "model_not_found"
    assert httpx.get(gw.url + "/v1/models/gpt-4o").status_code == 401


def test_a_key_retrieves_only_the_models_it_is_authorized_for(gw: GatewayProcess) -> None:
    with gw.admin() as admin:
        limited = admin.post("/admin/api-key/apply", json={"name": "echo-only", "models": ["echo"]}).json()["api_key"]
    with sdk(gw, limited) as client:
        assert client.models.retrieve("echo").id == "echo"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-4o")  # listed for others, not for this key (as /v1/models filters)
    with anthropic.Anthropic(api_key=limited, base_url=gw.url, max_retries=0) as claude, \
            pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("claude-sonnet-4-5")


def test_the_anthropic_sdk_retrieves_anthropic_s_model_info(gw: GatewayProcess, claude: anthropic.Anthropic) -> None:
    raw = claude.models.with_raw_response.retrieve("claude-sonnet-4-5")
    info = raw.parse()
    assert (info.type, info.id, info.display_name) == ("model", "claude-sonnet-4-5", "Claude Sonnet 4.5")
    assert info.created_at.year >= 2023 and raw.headers["request-id"]
    assert claude.models.retrieve("team/instruct").id == "team/instruct"
    with pytest.raises(anthropic.NotFoundError) as err:
        claude.models.retrieve("claude-nope-9")
    assert err.value.body["type"] == "error"  # type: ignore[index]
    assert err.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    # /anthropic/v1/models/{id} needs no key, like the list there
    open_route = httpx.get(gw.url + "/anthropic/v1/models/claude-haiku-4-5")
    assert open_route.status_code == 200 and open_route.json()["created_at"].endswith("Z")


# --- POST /v1/completions: forwarded ---------------------------------------------------------------


def test_a_completion_is_forwarded_to_an_upstream_with_the_endpoint(gw: GatewayProcess, client: openai.OpenAI,
                                                                     fake: FakeOpenAI) -> None:
    fake.script("upstream-instruct", Behavior(text=TEXT))
    raw = client.completions.with_raw_response.create(model="instruct", prompt="Count:", max_tokens=3,
                                                            temperature=0.5, suffix="five", n=2)
    resp = raw.parse()
    assert resp.object == "text_completion" and resp.model == "instruct"
    assert [c.text for c in resp.choices] == ["one two three ", "one two three "]  # n=2: the upstream's own
    assert resp.usage is not None and resp.usage.prompt_tokens == 11 and resp.usage.completion_tokens == 6
    sent = fake.seen("upstream-instruct", "/v1/completions")[-1]
    assert sent.body == {"model": "upstream-instruct", "prompt": "Count:", "max_tokens": 3, "temperature": 0.5,
                         "suffix": "five", "n": 2}
    assert sent.authorization == f"Bearer {UPSTREAM_SECRET}"
    row = wait_for_row(gw, raw.headers["x-request-id"])
    assert (row["status"], row["dialect"], row["model"], row["provider"]) == (200, "completions", "team/instruct",
                                                                              "vllm")
    assert (row["upstream_model"], row["prompt_tokens"], row["completion_tokens"]) == ("upstream-instruct", 11, 6)


def test_a_forwarded_stream_asks_for_usage_and_drops_the_chunk_the_client_did_not_ask_for(
        gw: GatewayProcess, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script("gpt-3.5-turbo-instruct", Behavior(text=TEXT))
    stream = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Count:",
                                                         stream=True)
    chunks = list(stream.parse())
    assert "".join(c.choices[0].text for c in chunks if c.choices) == TEXT
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    assert {c.model for c in chunks} == {"gpt-3.5-turbo-instruct"}
    sent = fake.seen("gpt-3.5-turbo-instruct", "/v1/completions")[-1].body
    assert sent["stream_options"] == {"include_usage": True}  # for the log, whatever the client asked
    row = wait_for_row(gw, stream.headers["x-request-id"])
    assert (row["stream"], row["prompt_tokens"], row["completion_tokens"]) == (1, 11, 4)
    with_usage = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Count:", stream=True,
                                                stream_options={"include_usage": True}))
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == 4


# --- POST /v1/completions: translated to chat -----------------------------------------------------


def test_a_completion_on_a_chat_only_upstream_is_translated(gw: GatewayProcess, key: str, fake: FakeOpenAI) -> None:
    fake.script("upstream-plain", Behavior(text="Paris is the capital."))
    raw = httpx.post(gw.url + "/v1/completions", headers={"Authorization": f"Bearer {key}"},
                     json={"model": "plain-chat", "prompt": ["The capital of France:"], "temperature": 0,
                           "stop": ["\n"], "presence_penalty": 0.5})
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert spec_errors("CreateCompletionResponse", body) == []
    assert body["object"] == "text_completion" and body["model"] == "plain-chat"
    assert body["choices"] == [{"text": "Paris is the capital.", "index": 0, "logprobs": None,
                                "finish_reason": "stop"}]
    assert body["usage"]["prompt_tokens"] == 11
    sent = fake.seen("upstream-plain", "/v1/chat/completions")[-1].body
    assert sent["messages"] == [{"role": "user", "content": "The capital of France:"}]
    assert sent["max_tokens"] == 16 and sent["stop"] == ["\n"] and sent["presence_penalty"] == 0.5  # OpenAI's default
    assert fake.seen("upstream-plain", "/v1/completions") == []


def test_a_streamed_completion_on_anthropic_is_translated(gw: GatewayProcess, client: openai.OpenAI,
                                                          fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script("claude-sonnet-4-5", AnthropicBehavior(text="Bonjour tout le monde"))
    chunks = list(client.completions.create(model="claude-sonnet-4-5", prompt="Say hello in French",
                                                   max_tokens=40, stream=True,
                                                   stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.model == "claude-sonnet-4-5" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Bonjour tout le monde"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    sent = fake_anthropic.seen("claude-sonnet-4-5")[-1].body
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hello in French"}]}]
    assert sent["max_tokens"] == 40


def test_echo_answers_a_completion_and_cuts_it_at_max_tokens(gw: GatewayProcess, client: openai.OpenAI) -> None:
    whole = client.completions.create(model="echo", prompt="the quick brown fox")
    assert whole.choices[0].text == "the quick brown fox" and whole.choices[0].finish_reason == "stop"
    cut = client.completions.create(model="echo", prompt="one two three four five", max_tokens=2)
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].text.split() == ["one", "two"]
    streamed = list(client.completions.create(model="echo", prompt="a b c", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "a b c"


# every upstream kind: (the name a client sends, how its fake is scripted, the prompt it received)
UPSTREAMS: dict[str, Any] = {
    "openai": lambda f, up, text: f.script(up, Behavior(text=text)),  # OpenAI's completions endpoint
    "chatonly": lambda f, up, text: f.script(up, Behavior(text=text)),  # translated to chat
    "anthropic": lambda f, up, text: f.script(up, AnthropicBehavior(text=text)),
    "gemini": lambda f, up, text: f.script(up, gemini_server.Behavior(text=text)),
    "bedrock": lambda f, up, text: f.script(up, bedrock_server.Behavior(text=text)),
}


def _prompt_received(kind: str, body: dict[str, Any]) -> Any:
    if kind == "openai":
        return body["prompt"]
    if kind == "chatonly":
        return body["messages"]
    if kind == "anthropic":
        return body["messages"][0]["content"][0]["text"]
    if kind == "gemini":
        return body["contents"][0]["parts"][0]["text"]
    return body["messages"][0]["content"][0]["text"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", list(UPSTREAMS))
def test_a_completion_on_every_upstream_kind(gw: GatewayProcess, client: openai.OpenAI, fake: FakeOpenAI,
                                             fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini,
                                             fake_bedrock: FakeBedrock, kind: str, stream: bool) -> None:
    fakes = {"openai": fake, "chatonly": fake, "anthropic": fake_anthropic, "gemini": fake_gemini,
             "bedrock": fake_bedrock}
    upstream = f"c13-{kind}-instruct-{'s' if stream else 'j'}"  # OpenAI's completions serve instruct models
    UPSTREAMS[kind](fakes[kind], upstream, "The answer is four.")
    model = f"{kind}/{upstream}"
    if stream:
        chunks = list(client.completions.create(model=model, prompt="Two plus two:", max_tokens=30, stream=True,
                                                stream_options={"include_usage": True}))
        assert {c.model for c in chunks} == {model}
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        usage = chunks[-1].usage
    else:
        resp = client.completions.create(model=model, prompt="Two plus two:", max_tokens=30)
        assert resp.model == model and resp.object == "text_completion"
        text, finish, usage = resp.choices[0].text, resp.choices[0].finish_reason, resp.usage
    assert (text, finish) == ("The answer is four.", "stop")
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0
    seen = fakes[kind].seen(upstream)[-1]
    assert _prompt_received(kind, seen.body) in ("Two plus two:", [{"role": "user", "content": "Two plus two:"}])
    if kind in ("openai", "chatonly"):
        assert seen.path == ("/v1/completions" if kind == "openai" else "/v1/chat/completions")


@pytest.mark.parametrize(("extra", "param"), [
    ({"suffix": "return x"}, "suffix"), ({"n": 2}, "n"), ({"best_of": 3}, "best_of"), ({"echo": True}, "echo"),
    ({"logprobs": 1}, "logprobs"), ({"prompt": ["one", "two"]}, "prompt"), ({"prompt": [1, 2, 3]}, "prompt"),
])
def test_what_only_a_completions_endpoint_can_do_is_a_400_when_translated(
        gw: GatewayProcess, key: str, client: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(**{"model": "echo", "prompt": "x", **extra})  # type: ignore[call-overload]
    body: Any = err.value.body
    assert body["param"] == param and "legacy completions endpoint" in body["message"]
    platform = post(gw, "/api/v1/completions", key, {"model": "echo", "prompt": "x", **extra})
    assert platform.status_code == 400 and platform.json()["error"]["type"] == "invalid_request"


@pytest.mark.parametrize(("body", "param"), [({"prompt": "x"}, "model"), ({"model": "echo"}, "prompt"),
                                             ({"model": "echo", "prompt": {"a": 1}}, "prompt"),
                                             ({"model": "echo", "prompt": "x", "max_tokens": "ten"}, None)])
def test_a_malformed_completion_is_a_400(gw: GatewayProcess, key: str, body: dict[str, Any],
                                         param: str | None) -> None:
    r = post(gw, "/v1/completions", key, body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    if param is not None:
        assert r.json()["error"]["param"] == param


def test_a_completion_needs_a_key(gw: GatewayProcess) -> None:
    r = httpx.post(gw.url + "/v1/completions", json={"model": "echo", "prompt": "x"})
    assert r.status_code == 401


# --- POST /v1/moderations -------------------------------------------------------------------------


def test_a_moderation_goes_to_openai_with_its_default_model(gw: GatewayProcess, client: openai.OpenAI,
                                                             fake: FakeOpenAI) -> None:
    raw = client.moderations.with_raw_response.create(input="I will kill the process")
    resp = raw.parse()
    assert resp.model == "omni-moderation-latest" and resp.results[0].flagged
    assert resp.results[0].categories.violence is True
    sent = fake.seen("omni-moderation-latest", "/v1/moderations")[-1]
    assert sent.body == {"input": "I will kill the process", "model": "omni-moderation-latest"}
    row = wait_for_row(gw, raw.headers["x-request-id"])
    assert (row["status"], row["model"], row["provider"], row["dialect"]) == (200, "omni-moderation-latest", "openai",
                                                                              "openai")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (0, 0)  # OpenAI's answer carries no usage
    several = client.moderations.create(model="text-moderation-latest", input=["hello", "kill"])
    assert [r.flagged for r in several.results] == [False, True] and several.model == "text-moderation-latest"


def test_a_moderation_through_an_openai_compatible_server_with_the_endpoint(gw: GatewayProcess, key: str,
                                                                          fake: FakeOpenAI) -> None:
    r = post(gw, "/api/v1/moderations", key, {"model": "vllm/guard-1", "input": "fine words"})
    assert r.status_code == 200 and r.json()["model"] == "vllm/guard-1" and r.json()["results"][0]["flagged"] is False
    assert fake.seen("guard-1", "/v1/moderations")[-1].body["model"] == "guard-1"


@pytest.mark.parametrize("model", ["echo", "plain-chat", "claude-sonnet-4-5"])
def test_a_model_that_cannot_moderate_is_a_400_naming_those_that_can(gw: GatewayProcess, client: openai.OpenAI,
                                                                     model: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.moderations.create(model=model, input="hello")
    body: Any = err.value.body
    assert body["param"] == "model" and body["code"] == "model_cannot_moderate"
    assert model in body["message"] and "omni-moderation-latest, text-moderation-latest" in body["message"]


def test_a_moderation_needs_an_input_and_a_model_that_exists(gw: GatewayProcess, key: str) -> None:
    r = post(gw, "/v1/moderations", key, {"model": "omni-moderation-latest"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = post(gw, "/v1/moderations", key, {"model": "no-such-model", "input": "x"})
    assert r.status_code == 404
    assert httpx.post(gw.url + "/v1/moderations", json={"input": "x"}).status_code == 401


def test_the_upstream_error_of_a_moderation_is_passed_on(gw: GatewayProcess, key: str, fake: FakeOpenAI) -> None:
    fake.script("guard-broken", Behavior(status=400, error_message="bad input for moderation"))
    r = post(gw, "/v1/moderations", key, {"model": "vllm/guard-broken", "input": "x"})
    assert r.status_code == 400 and "bad input for moderation" in json.dumps(r.json())


def test_a_moderation_is_admitted_and_billed_like_a_generation(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    """A priced moderation model: a key that cannot cover it is refused before any upstream call
    (402); one that can pays the per-request price, for 0 tokens (the answer carries no usage)."""
    with gw.admin() as admin:
        r = admin.post("/admin/model/save", json={"name": "priced-guard", "provider": "vllm", "upstream_id": "guard-2",
                                                  "capabilities": ["moderation"], "credit_cost": 0.01})
        assert r.status_code == 200, r.text
        broke = admin.post("/admin/api-key/apply", json={"name": "broke"}).json()["api_key"]
        paying = admin.post("/admin/api-key/apply", json={"name": "paying", "balance": "0.05"}).json()["api_key"]
    before = len(fake.seen("guard-2", "/v1/moderations"))
    refused = post(gw, "/v1/moderations", broke, {"model": "priced-guard", "input": "x"})
    assert refused.status_code == 402 and len(fake.seen("guard-2", "/v1/moderations")) == before
    ok = post(gw, "/v1/moderations", paying, {"model": "priced-guard", "input": "x"})
    assert ok.status_code == 200 and ok.json()["model"] == "priced-guard"
    row = wait_for_row(gw, ok.headers["x-request-id"])
    assert (row["cost_micro"], row["prompt_tokens"], row["completion_tokens"]) == (10_000, 0, 0)
    # a model that cannot moderate names the priced one too, now that it is listed
    r = post(gw, "/v1/moderations", paying, {"model": "echo", "input": "x"})
    assert "priced-guard" in r.json()["error"]["message"]


def test_a_completion_for_an_openai_chat_model_is_translated_to_chat(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    """OpenAI's legacy endpoint serves its instruct and base models only: a chat model's completion
    goes to its chat endpoint, as LiteLLM does, instead of OpenAI's 404."""
    fake.script("c13-chat-model", Behavior(text="Four."))
    resp = client.completions.create(model="openai/c13-chat-model", prompt="Two plus two:", max_tokens=10)
    assert resp.choices[0].text == "Four." and resp.object == "text_completion"
    assert fake.seen("c13-chat-model", "/v1/completions") == []
    assert fake.seen("c13-chat-model", "/v1/chat/completions")[-1].body["messages"][-1]["content"] == "Two plus two:"
