"""The fake OpenAI upstream's Responses API, legacy completions and moderations, driven by the official
``openai`` SDK and by raw HTTP; and the spec validator (``tests/fakes/spec.py``) they rest on.

Every good path also asserts that the fake found nothing against the official schemas (``spec_errors``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import spec
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
SHARED_SPEC = Path(__file__).parents[3] / "shared" / "specs" / "openai-openapi.json"
HEADERS = {"Authorization": f"Bearer {UPSTREAM_SECRET}"}
WEATHER = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    fake.spec_errors.clear()
    with openai.OpenAI(base_url=fake.base_url, api_key=UPSTREAM_SECRET, max_retries=0, timeout=10) as c:
        yield c


def _post(fake: FakeOpenAI, path: str, body: Any) -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        if isinstance(body, bytes):  # sent as it is
            return http.post(fake.base_url + path, content=body,
                             headers={**HEADERS, "Content-Type": "application/json"})
        return http.post(fake.base_url + path, json=body, headers=HEADERS)


def _shape(response: Any) -> list[dict[str, Any]]:
    """A response's output without the ids each call makes anew."""
    out = []
    for item in response.output:
        d = item.model_dump(exclude_none=True)
        d.pop("id", None)
        d.pop("call_id", None)
        if d.get("type") == "message":
            d["content"] = [{k: v for k, v in c.items() if k != "parsed"} for c in d["content"]]
        out.append(d)
    return out


# --- non-streamed ----------------------------------------------------------------------------------------


def test_text_answer_echoes_the_request(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("r-text", Behavior(text="Hello there, general.", prompt_tokens=21, cached_tokens=5))
    resp = client.responses.create(
        model="r-text", input="Hi", instructions="Be brief.", temperature=0.3, top_p=0.9, max_output_tokens=500,
        metadata={"case": "echo"}, store=False, parallel_tool_calls=False, truncation="auto",
        text={"format": {"type": "text"}, "verbosity": "low"}, reasoning={"effort": "low"}, user="u-1")
    assert resp.output_text == "Hello there, general."
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.status == "completed"
    assert resp.model == "r-text" and resp.completed_at is not None and resp.created_at <= resp.completed_at
    assert (resp.instructions, resp.temperature, resp.top_p, resp.max_output_tokens) == ("Be brief.", 0.3, 0.9, 500)
    assert (resp.metadata, resp.store, resp.parallel_tool_calls, resp.truncation) == ({"case": "echo"}, False,
                                                                                     False, "auto")
    assert resp.text is not None and resp.text.verbosity == "low"
    assert resp.reasoning is not None and resp.reasoning.effort == "low"
    assert (resp.tool_choice, resp.tools, resp.error, resp.incomplete_details) == ("auto", [], None, None)
    assert resp.previous_response_id is None and resp.user == "u-1"
    [message] = resp.output
    assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
    assert message.role == "assistant" and [c.type for c in message.content] == ["output_text"]
    u = resp.usage
    assert u is not None and (u.input_tokens, u.output_tokens, u.total_tokens) == (21, 3, 24)
    assert u.input_tokens_details.cached_tokens == 5 and u.output_tokens_details.reasoning_tokens == 0
    seen = fake.seen("r-text", "/v1/responses")[-1]
    assert seen.body["input"] == "Hi" and seen.body["instructions"] == "Be brief."
    assert seen.authorization == f"Bearer {UPSTREAM_SECRET}"
    assert fake.spec_errors == []


def test_defaults_are_filled_in(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    resp = client.responses.create(model="r-defaults", input=[{"role": "user", "content": "Hi"}])
    assert (resp.temperature, resp.top_p, resp.parallel_tool_calls, resp.store, resp.truncation) == (
        1.0, 1.0, True, True, "disabled")
    assert resp.metadata == {} and resp.instructions is None and resp.max_output_tokens is None
    assert resp.output_text == Behavior().text
    assert fake.spec_errors == []


def test_function_calls_become_function_call_items(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("r-tools", Behavior(text="", tool_calls=[("get_weather", '{"city": "Paris", "days": [1, 2]}'),
                                                          ("get_weather", '{"city": "Oslo"}')]))
    resp = client.responses.create(model="r-tools", input="Weather in Paris and Oslo?", tools=WEATHER,
                                   tool_choice="required")
    assert [o.type for o in resp.output] == ["function_call", "function_call"]
    first, second = resp.output
    assert first.type == "function_call" and second.type == "function_call"
    assert (first.name, json.loads(first.arguments)) == ("get_weather", {"city": "Paris", "days": [1, 2]})
    assert json.loads(second.arguments) == {"city": "Oslo"}
    assert first.id is not None and first.id.startswith("fc_") and first.call_id.startswith("call_")
    assert first.call_id != second.call_id and first.status == "completed"
    assert resp.output_text == "" and resp.tool_choice == "required"
    [tool] = resp.tools
    assert tool.type == "function" and tool.name == "get_weather" and tool.strict is True  # echoed, filled in
    # the next turn sends the call and its output back, as a client does (not previous_response_id)
    follow = client.responses.create(model="r-text", tools=WEATHER, input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": first.call_id, "name": first.name, "arguments": first.arguments},
        {"type": "function_call_output", "call_id": first.call_id, "output": "Sunny"}])
    assert follow.status == "completed"
    assert fake.spec_errors == []


def test_reasoning_summary_and_encrypted_content_only_when_asked(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("r-think", Behavior(text="42.", reasoning="Six times seven."))
    plain = client.responses.create(model="r-think", input="6*7?")
    reasoning, message = plain.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.summary == [] and reasoning.encrypted_content is None
    assert message.type == "message" and plain.output_text == "42."
    assert plain.usage is not None and plain.usage.output_tokens_details.reasoning_tokens == 3
    assert plain.usage.output_tokens == 4  # reasoning counts in output_tokens
    asked = client.responses.create(model="r-think", input="6*7?", reasoning={"summary": "auto"},
                                    include=["reasoning.encrypted_content"])
    reasoning = asked.output[0]
    assert reasoning.type == "reasoning" and [s.text for s in reasoning.summary] == ["Six times seven."]
    assert reasoning.encrypted_content
    assert fake.spec_errors == []


def test_input_tokens_count(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("r-count", Behavior(prompt_tokens=1234))
    counted = client.responses.input_tokens.count(model="r-count", input="Hi", instructions="Be brief.")
    assert (counted.object, counted.input_tokens) == ("response.input_tokens", 1234)
    assert fake.requests[-1].path == "/v1/responses/input_tokens"
    assert fake.spec_errors == []


# --- streamed --------------------------------------------------------------------------------------------

STREAM_CASES = {
    "text": Behavior(text="One two three four five."),
    "tools": Behavior(text="Let me look.", tool_calls=[("get_weather", '{"city": "Paris, France"}'),
                                                       ("get_weather", "{}")]),
    "reasoning": Behavior(text="Done.", reasoning="First this, then that.",
                          tool_calls=[("get_weather", '{"city": "Rome"}')]),
    "usage": Behavior(text="Cached.", prompt_tokens=50, cached_tokens=40, completion_tokens=9),
}


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_stream_final_response_equals_non_stream(fake: FakeOpenAI, client: openai.OpenAI, case: str) -> None:
    model = f"r-same-{case}"
    fake.script(model, STREAM_CASES[case])
    ask: dict[str, Any] = {"model": model, "input": "Hi", "tools": WEATHER, "reasoning": {"summary": "detailed"}}
    plain = client.responses.create(**ask)
    with client.responses.stream(**ask) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        streamed = s.get_final_response()
    assert "".join(deltas) == plain.output_text == streamed.output_text
    assert _shape(streamed) == _shape(plain) and len(plain.output) >= 1
    assert streamed.usage == plain.usage and streamed.status == plain.status == "completed"
    events = list(client.responses.create(**ask, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed" and _shape(events[-1].response) == _shape(plain)
    assert fake.spec_errors == []


def test_stream_wire_format_and_order(fake: FakeOpenAI) -> None:
    fake.spec_errors.clear()
    fake.script("r-wire", Behavior(text="Alpha beta gamma.", reasoning="Hmm, well.",
                                   tool_calls=[("calc", '{"expression": "2 + 2 * 10"}')]))
    r = _post(fake, "/responses", {"model": "r-wire", "input": "x", "stream": True, "reasoning": {"summary": "auto"}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith("event: response.created\ndata: {") and "[DONE]" not in r.text
    events = spec.parse_sse(r.text)
    assert spec.response_stream_errors(events) == []
    names = [n for n, _ in events]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-1] == "response.completed"
    reasoning_part = names.index("response.reasoning_summary_part.added")
    text_part = names.index("response.content_part.added")
    assert reasoning_part < text_part < names.index("response.function_call_arguments.delta")
    assert names.count("response.output_item.added") == names.count("response.output_item.done") == 3
    assert names.count("response.output_text.delta") == 3 and names.count("response.reasoning_summary_text.delta") == 2
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and "usage" not in created
    pieces = [d["delta"] for n, d in events if n == "response.function_call_arguments.delta"]
    assert len(pieces) >= 3 and "".join(pieces) == '{"expression": "2 + 2 * 10"}'
    done = [d for n, d in events if n == "response.function_call_arguments.done"][0]
    assert done["name"] == "calc" and done["arguments"] == "".join(pieces)
    assert fake.spec_errors == []


def test_max_output_tokens_cap_makes_it_incomplete(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    words = [f"w{i} " for i in range(30)]
    fake.script("r-long", Behavior(text="".join(words).strip(), reasoning="a b c d",
                                   tool_calls=[("get_weather", "{}")]))
    resp = client.responses.create(model="r-long", input="x", max_output_tokens=16, tools=WEATHER)
    assert resp.status == "incomplete" and resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens" and resp.completed_at is None
    assert [o.type for o in resp.output] == ["reasoning", "message"]  # cut there: no tool call
    assert resp.output_text == "".join(words[:12]) and resp.output[1].status == "incomplete"
    assert resp.usage is not None and resp.usage.output_tokens == 16
    events = list(client.responses.create(model="r-long", input="x", max_output_tokens=16, tools=WEATHER,
                                          stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"
    with client.responses.stream(model="r-long", input="x", max_output_tokens=16) as s:
        assert [e.type for e in s][-1] == "response.incomplete"
    fake.script("r-short", Behavior(text="Only five words here, fine."))
    assert client.responses.create(model="r-short", input="x", max_output_tokens=16).status == "completed"
    fake.script("r-filtered", Behavior(text="Nope.", finish_reason="content_filter"))
    filtered = client.responses.create(model="r-filtered", input="x")
    assert filtered.incomplete_details is not None and filtered.incomplete_details.reason == "content_filter"
    assert fake.spec_errors == []


@pytest.mark.parametrize("kind", ["response.failed", "error"])
def test_in_stream_failure(fake: FakeOpenAI, client: openai.OpenAI, kind: str) -> None:
    fake.script("r-midfail", Behavior(text="one two three four", error_in_stream_after=4,
                                      responses_stream_error=kind))
    events = list(client.responses.create(model="r-midfail", input="x", stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.output_item.added",
                                        "response.content_part.added", "response.output_text.delta", kind]
    last = events[-1]
    if last.type == "response.failed":
        assert last.response.status == "failed" and last.response.error is not None
        assert last.response.error.code == "server_error"
    else:
        assert last.type == "error" and last.code == "server_error" and last.sequence_number == 5
    with pytest.raises(RuntimeError, match="response.completed"), \
            client.responses.stream(model="r-midfail", input="x") as s:
        s.get_final_response()
    assert fake.spec_errors == []


def test_dropped_stream_is_a_connection_error(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("r-drop", Behavior(text="one two three four", drop_after=4))
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for event in client.responses.create(model="r-drop", input="x", stream=True):
            got.append(event.type)
    assert got[:2] == ["response.created", "response.in_progress"] and len(got) == 5


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "exc"), [
    (400, openai.BadRequestError), (401, openai.AuthenticationError), (404, openai.NotFoundError),
    (429, openai.RateLimitError), (500, openai.InternalServerError), (503, openai.InternalServerError),
])
def test_scripted_statuses_map_to_sdk_exceptions(fake: FakeOpenAI, client: openai.OpenAI, status: int,
                                                 exc: type[openai.APIStatusError]) -> None:
    fake.script(f"r-{status}", Behavior(status=status, retry_after="7", error_message="scripted failure"))
    for stream in (False, True):
        with pytest.raises(exc) as info:
            client.responses.create(model=f"r-{status}", input="x", stream=stream)
        err = info.value
        assert err.status_code == status and err.response.headers["retry-after"] == "7"
        assert isinstance(err.body, dict) and err.body["message"] == "scripted failure"
    assert fake.spec_errors == []


def test_previous_response_id_is_refused(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="r-text", input="and then?", previous_response_id="resp_earlier")
    err = info.value
    assert (err.code, err.param) == ("previous_response_not_found", "previous_response_id")
    assert "resp_earlier" in err.message
    assert fake.spec_errors == []  # a valid request: refusing it is the fake's choice, not a spec problem


def test_stored_response_endpoints_are_404(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    for call in (lambda: client.responses.retrieve("resp_1"), lambda: client.responses.delete("resp_1"),
                 lambda: client.responses.input_items.list("resp_1"), lambda: client.responses.cancel("resp_1")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert [s.path for s in fake.requests[-4:]] == ["/v1/responses/resp_1", "/v1/responses/resp_1",
                                                    "/v1/responses/resp_1/input_items",
                                                    "/v1/responses/resp_1/cancel"]


def test_invalid_request_bodies_are_rejected(fake: FakeOpenAI) -> None:
    fake.spec_errors.clear()
    missing = _post(fake, "/responses", {"model": "r", "input": [{"type": "function_call", "name": "f"}]})
    assert missing.status_code == 400
    error = missing.json()["error"]
    assert error["type"] == "invalid_request_error" and "'call_id' is a required property" in error["message"]
    assert spec.errors("ErrorResponse", missing.json()) == []
    unknown = _post(fake, "/responses", {"model": "r", "messages": [{"role": "user", "content": "Hi"}]})
    assert unknown.status_code == 400
    assert unknown.json()["error"] | {"message": ""} == {"message": "", "type": "invalid_request_error",
                                                         "param": "messages", "code": "unknown_parameter"}
    hot = _post(fake, "/responses", {"model": "r", "input": "x", "temperature": 3})
    assert hot.status_code == 400 and "3 is greater than the maximum of 2" in hot.json()["error"]["message"]
    assert _post(fake, "/responses", b"{not json").status_code == 400
    assert _post(fake, "/completions", {"model": "c", "prompt": "x", "max_tokens": "ten"}).status_code == 400
    assert _post(fake, "/moderations", {"model": "m"}).status_code == 400  # input is required
    assert len(fake.spec_errors) == 6, fake.spec_errors
    with FakeOpenAI(reject_invalid=False) as lax:
        assert _post(lax, "/responses", {"model": "r", "input": "x", "temperature": 3}).status_code == 200
        assert lax.spec_errors[0].startswith("CreateResponse: temperature: ")  # (then the echo, in the answer)


# --- legacy completions ----------------------------------------------------------------------------------


def test_completions(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("c-text", Behavior(text="one two three four five six", prompt_tokens=4))
    done = client.completions.create(model="c-text", prompt=["Say:", "Tell:"], max_tokens=4, n=2, echo=True,
                                     suffix="!")
    assert done.object == "text_completion" and done.id.startswith("cmpl-") and done.model == "c-text"
    assert [(c.index, c.text, c.finish_reason) for c in done.choices] == [
        (0, "Say:one two three four ", "length"), (1, "Say:one two three four ", "length"),
        (2, "Tell:one two three four ", "length"), (3, "Tell:one two three four ", "length")]
    assert done.usage is not None and (done.usage.prompt_tokens, done.usage.completion_tokens) == (4, 16)
    whole = client.completions.create(model="c-text", prompt="Say:")
    assert [(c.text, c.finish_reason) for c in whole.choices] == [("one two three four five six", "stop")]
    long_text = " ".join(str(i) for i in range(20))
    fake.script("c-long", Behavior(text=long_text))
    capped = client.completions.create(model="c-long", prompt="Count:")  # the API's default max_tokens is 16
    assert capped.choices[0].finish_reason == "length" and len(capped.choices[0].text.split()) == 16
    assert fake.seen("c-text", "/v1/completions")[-1].body == {"model": "c-text", "prompt": "Say:"}
    assert fake.spec_errors == []


def test_completions_stream(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("c-stream", Behavior(text="alpha beta gamma"))
    chunks = list(client.completions.create(model="c-stream", prompt="x", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "alpha beta gamma"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    r = _post(fake, "/completions", {"model": "c-stream", "prompt": "x", "stream": True})
    assert r.text.endswith("data: [DONE]\n\n") and "event:" not in r.text
    frames = spec.parse_sse(r.text)
    assert all(d["object"] == "text_completion" for _, d in frames[:-1]) and frames[-1] == (None, "[DONE]")
    assert fake.spec_errors == []


# --- moderations -----------------------------------------------------------------------------------------


def test_moderations(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.moderations.create(input=["I will kill the process.", "Hello there.", "Skills"])
    assert result.model == "omni-moderation-latest" and result.id.startswith("modr-")
    assert [r.flagged for r in result.results] == [True, False, False]
    first = result.results[0]
    assert first.categories.violence is True and first.categories.sexual is False
    assert first.category_scores.violence > 0.5
    one = client.moderations.create(model="omni-moderation-2024-09-26", input="Kill it!")
    assert one.model == "omni-moderation-2024-09-26" and [r.flagged for r in one.results] == [True]
    image = client.moderations.create(model="omni-moderation-latest", input=[
        {"type": "text", "text": "a cat"}, {"type": "image_url", "image_url": {"url": "https://example.com/c.png"}}])
    [only] = image.results
    assert not only.flagged and only.category_applied_input_types.violence == ["text", "image"]
    assert only.category_applied_input_types.hate == ["text"]
    assert fake.requests[-1].path == "/v1/moderations"
    assert fake.spec_errors == []


def test_chat_is_unchanged_and_paths_are_recorded(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script("both", Behavior(text="Same words."))
    chat = client.chat.completions.create(model="both", messages=[{"role": "user", "content": "Hi"}])
    resp = client.responses.create(model="both", input="Hi")
    assert chat.choices[0].message.content == resp.output_text == "Same words."
    assert [s.path for s in fake.seen("both")] == ["/v1/chat/completions", "/v1/responses"]
    assert len(fake.seen("both", "/v1/responses")) == 1
    assert fake.spec_errors == []


# --- the validator ---------------------------------------------------------------------------------------


def test_stream_event_schemas_come_from_the_union() -> None:
    schemas = spec.event_schemas()
    assert len(schemas) >= 50
    assert schemas["response.output_text.delta"] == "ResponseTextDeltaEvent"
    assert schemas["response.completed"] == "ResponseCompletedEvent" and schemas["error"] == "ResponseErrorEvent"
    good = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "delta": "Hi", "sequence_number": 3, "logprobs": []}
    assert spec.stream_event_errors(good) == []
    assert spec.stream_event_errors({**good, "logprobs": None}) == [
        "ResponseTextDeltaEvent: logprobs: None is not of type 'array'"]
    assert spec.stream_event_errors({k: v for k, v in good.items() if k != "logprobs"}) == [
        "ResponseTextDeltaEvent: : 'logprobs' is a required property"]
    assert spec.stream_event_errors({"type": "response.output_text.delta.v2"}) == [
        "ResponseStreamEvent: unknown event type 'response.output_text.delta.v2'"]
    assert spec.stream_event_errors(["not", "an", "event"])
    # the union itself, by its discriminator, is as precise
    assert spec.errors("ResponseStreamEvent", {**good, "delta": 1}) == [
        "ResponseStreamEvent: delta: 1 is not of type 'string'"]


def test_discriminated_unions_report_the_precise_problem() -> None:
    item = {"id": "fc_1", "type": "function_call", "name": "f", "arguments": "{}", "status": "completed"}
    response = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "error": None,
                "incomplete_details": None, "instructions": None, "model": "m", "tools": [], "output": [item],
                "parallel_tool_calls": True, "metadata": {}, "tool_choice": "auto", "temperature": 1, "top_p": 1}
    assert spec.errors("Response", response) == ["Response: output/0: 'call_id' is a required property"]
    assert spec.errors("Response", {**response, "output": [{**item, "call_id": "call_1"}]}) == []
    no_temperature = {k: v for k, v in response.items() if k != "temperature"}
    assert "Response: : 'temperature' is a required property" in spec.errors("Response", no_temperature)
    assert spec.errors("Response", {**response, "output": [{"type": "telepathy"}]})[0].startswith(
        "Response: output/0/type: 'telepathy' is not one of")


def test_recursive_filters_are_checked_to_any_depth() -> None:
    leaf = {"type": "eq", "key": "kind", "value": "doc"}
    tool = {"type": "file_search", "vector_store_ids": ["vs_1"],
            "filters": {"type": "and", "filters": [leaf, {"type": "or", "filters": [leaf, leaf]}]}}
    request = {"model": "m", "input": "x", "tools": [tool]}
    assert spec.errors("CreateResponse", request) == []
    bad_leaf = {"type": "eq", "key": "kind", "value": {"an": "object"}}
    tool["filters"]["filters"][1]["filters"][1] = bad_leaf  # type: ignore[index]
    assert spec.errors("CreateResponse", request)  # $recursiveRef honoured: the nested filter is checked


def test_request_mode_relaxes_what_only_the_api_fills_in() -> None:
    request = {"model": "m", "tools": [{"type": "function", "name": "f"}], "input": [
        {"role": "user", "content": "Hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]}]}
    strict = spec.errors("CreateResponse", request)
    assert any("'strict' is a required property" in p for p in strict)
    assert spec.errors("CreateResponse", request, request=True) == []
    assert spec.request_errors("CreateResponse", request) == []
    assert spec.request_errors("CreateResponse", {**request, "stream_options": None, "nope": 1}) == [
        "CreateResponse: nope: unknown parameter"]


def test_response_stream_order_rules() -> None:
    def ev(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, **fields}

    resp = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "error": None,
            "incomplete_details": None, "instructions": None, "model": "m", "tools": [], "output": [],
            "parallel_tool_calls": True, "metadata": {}, "tool_choice": "auto", "temperature": 1, "top_p": 1}
    item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    done_part = {**part, "text": "Hi"}
    done_item = {**item, "status": "completed", "content": [done_part]}
    good = [ev("response.created", response=resp), ev("response.in_progress", response=resp),
            ev("response.output_item.added", output_index=0, item=item),
            ev("response.content_part.added", **where, part=part),
            ev("response.output_text.delta", **where, delta="Hi", logprobs=[]),
            ev("response.output_text.done", **where, text="Hi", logprobs=[]),
            ev("response.content_part.done", **where, part=done_part),
            ev("response.output_item.done", output_index=0, item=done_item),
            ev("response.completed", response={**resp, "status": "completed", "output": [done_item]})]

    def problems(events: list[dict[str, Any]]) -> list[str]:
        return spec.response_stream_errors([(e["type"], {**e, "sequence_number": n}) for n, e in enumerate(events)])

    assert problems(good) == []
    assert any("does not begin with response.created" in p for p in problems(good[1:]))
    assert any("ends without" in p for p in problems(good[:-1]))
    assert any("was never done" in p for p in problems(good[:7] + good[8:]))
    assert any("differs from the deltas" in p for p in problems(good[:5] + [{**good[5], "text": "Ho"}] + good[6:]))
    assert any("not open" in p for p in problems(good[:3] + good[4:]))
    assert any("after the stream ended" in p for p in problems(good + [good[4]]))
    assert any("status 'in_progress', expected 'completed'" in p
               for p in problems(good[:-1] + [ev("response.completed", response={**resp, "output": [done_item]})]))
    renumbered = [(e["type"], {**e, "sequence_number": n + 1}) for n, e in enumerate(good)]
    assert any("sequence_number 1, expected 0" in p for p in spec.response_stream_errors(renumbered))
    misnamed = [("message", {**good[0], "sequence_number": 0})]
    assert any("SSE event name 'message'" in p for p in spec.response_stream_errors(misnamed))


def test_deleted_response_shape_is_the_specs_example() -> None:
    assert spec.errors("DeletedResponse", {"id": "resp_1", "object": "response", "deleted": True}) == []
    assert spec.errors("DeletedResponse", {"id": "resp_1", "object": "response", "deleted": False})


# --- the extracted subset --------------------------------------------------------------------------------


def test_subset_has_every_root_the_fakes_and_the_gateway_need() -> None:
    names = set(spec.schema_names())
    needed = {"CreateResponse", "Response", "ResponseStreamEvent", "ResponseItemList", "ModelResponseProperties",
              "TokenCountsBody", "TokenCountsResource", "CreateCompletionRequest", "CreateCompletionResponse",
              "CreateModerationRequest", "CreateModerationResponse", "CreateChatCompletionRequest",
              "ErrorResponse", "Error", *spec.event_schemas().values()}
    assert needed <= names
    assert not [n for n in names if n.startswith("Beta")]
    assert (SPECS / "LICENSE-openai-openapi.txt").read_text().count("f85dbe223d40e1a31cba812ab2d755c7e98a92a3") == 1


@pytest.mark.skipif(not SHARED_SPEC.exists(), reason="../shared/specs exists only on the development machine")
def test_subset_is_what_the_extract_script_writes(tmp_path: Path) -> None:
    import importlib.util
    import shutil

    script = tmp_path / "extract_openai.py"
    shutil.copy(SPECS / "extract_openai.py", script)
    loaded = importlib.util.spec_from_file_location("extract_openai_copy", script)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    module.main(str(SHARED_SPEC))
    assert (tmp_path / "openai-chat-schemas.json").read_text() == (SPECS / "openai-chat-schemas.json").read_text()
