"""The fake Anthropic upstream, driven by the official ``anthropic`` SDK and by raw HTTP.

Every good path also asserts that the fake found nothing against the official schemas (``spec_errors``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2  # the anthropic SDK's HTTP client: a cut stream surfaces as its RemoteProtocolError
import pytest

from tests.fakes import anthropic_spec
from tests.fakes.anthropic_server import ANTHROPIC_SECRET, Behavior, FakeAnthropic

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
SHARED_SPEC = Path(__file__).parents[3] / "shared" / "specs" / "anthropic-openapi.json"
HI = [{"role": "user", "content": "Hi"}]
HEADERS = {"x-api-key": ANTHROPIC_SECRET, "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    fake.spec_errors.clear()
    with anthropic.Anthropic(base_url=fake.base_url, api_key=ANTHROPIC_SECRET, max_retries=0, timeout=10) as c:
        yield c


def _post(fake: FakeAnthropic, body: dict[str, Any], headers: dict[str, str] | None = None,
          path: str = "/v1/messages") -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        return http.post(fake.base_url + path, json=body, headers=HEADERS if headers is None else headers)


def _blocks(message: Any) -> list[dict[str, Any]]:
    # A streamed message's text blocks are ParsedTextBlock, with an extra parsed_output (None without a format).
    return [{k: v for k, v in b.model_dump().items() if k != "parsed_output"} for b in message.content]


# --- non-streamed ----------------------------------------------------------------------------------------


def test_base_url_has_no_v1_and_requests_are_recorded_exactly(fake: FakeAnthropic,
                                                              client: anthropic.Anthropic) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:") and not fake.base_url.endswith(("/v1", "/"))
    fake.script("m-record", Behavior())
    client.messages.create(model="m-record", max_tokens=64, messages=HI, system="Be brief.",
                           extra_headers={"anthropic-beta": "fake-beta-2026-01-01"})
    seen = fake.seen("m-record")[-1]
    assert seen.path == "/v1/messages"
    assert json.loads(seen.raw) == seen.body == {"model": "m-record", "max_tokens": 64, "messages": HI,
                                                 "system": "Be brief."}
    assert seen.authorization == f"Bearer {ANTHROPIC_SECRET}"  # what SDK 2.x sends for api_key
    assert seen.anthropic_version  # the SDK always sends one
    assert seen.anthropic_beta == "fake-beta-2026-01-01"
    assert fake.spec_errors == []


def test_non_stream_text(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-text", Behavior(text="Hello there, general.", input_tokens=21, output_tokens=4,
                                   cache_read_input_tokens=5, cache_creation_input_tokens=7))
    msg = client.messages.create(model="m-text", max_tokens=64, messages=HI)
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "m-text"
    assert msg.id.startswith("msg_")
    assert [(b.type, getattr(b, "text", None)) for b in msg.content] == [("text", "Hello there, general.")]
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
    u = msg.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (21, 4, 5, 7)
    assert u.cache_creation is not None and u.cache_creation.ephemeral_5m_input_tokens == 7
    assert fake.spec_errors == []


def test_non_stream_tool_use(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-tools", Behavior(text="", tool_uses=[("get_weather", '{"city": "Paris", "days": [1, 2]}'),
                                                         ("get_time", '{"tz": "CET"}')]))
    tools = [{"name": n, "input_schema": {"type": "object"}} for n in ("get_weather", "get_time")]
    msg = client.messages.create(model="m-tools", max_tokens=64, messages=HI, tools=tools)
    assert [b.type for b in msg.content] == ["tool_use", "tool_use"]
    first, second = msg.content
    assert first.type == "tool_use" and second.type == "tool_use"
    assert (first.name, first.input) == ("get_weather", {"city": "Paris", "days": [1, 2]})
    assert (second.name, second.input) == ("get_time", {"tz": "CET"})
    assert first.id != second.id
    assert msg.stop_reason == "tool_use"
    assert fake.spec_errors == []


def test_non_stream_thinking_has_a_signature(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-think", Behavior(text="42.", thinking="Six times seven.", signature="sig-abc==",
                                    redacted_thinking="ENCRYPTED"))
    msg = client.messages.create(model="m-think", max_tokens=2048, messages=HI,
                                 thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text"]
    thinking, redacted, text = msg.content
    assert thinking.type == "thinking" and (thinking.thinking, thinking.signature) == ("Six times seven.", "sig-abc==")
    assert redacted.type == "redacted_thinking" and redacted.data == "ENCRYPTED"
    assert text.type == "text" and text.text == "42."
    assert msg.usage.output_tokens_details is not None and msg.usage.output_tokens_details.thinking_tokens == 3
    assert fake.spec_errors == []


@pytest.mark.parametrize(("behavior", "reason", "sequence"), [
    (Behavior(stop_reason="max_tokens"), "max_tokens", None),
    (Behavior(stop_reason="stop_sequence", stop_sequence="\n\nHuman:"), "stop_sequence", "\n\nHuman:"),
])
def test_stop_reason_override(fake: FakeAnthropic, client: anthropic.Anthropic, behavior: Behavior,
                              reason: str, sequence: str | None) -> None:
    fake.script("m-stop", behavior)
    msg = client.messages.create(model="m-stop", max_tokens=5, messages=HI)
    assert (msg.stop_reason, msg.stop_sequence) == (reason, sequence)
    with client.messages.stream(model="m-stop", max_tokens=5, messages=HI) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == (reason, sequence)
    assert fake.spec_errors == []


# --- streamed --------------------------------------------------------------------------------------------

STREAM_CASES = {
    "text": Behavior(text="One two three four five."),
    "tools": Behavior(text="Let me look.", tool_uses=[("lookup", '{"query": "weather in Paris", "n": 3}'),
                                                      ("noop", "{}")]),
    "thinking": Behavior(text="Done.", thinking="First this, then that.", redacted_thinking="opaque==",
                         tool_uses=[("f", '{"a": [1, {"b": null}]}')], ping_every=2),
    "usage": Behavior(text="Cached.", input_tokens=50, output_tokens=9, cache_read_input_tokens=40,
                      cache_creation_input_tokens=3),
}


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_stream_final_message_equals_non_stream(fake: FakeAnthropic, client: anthropic.Anthropic, case: str) -> None:
    model = f"m-same-{case}"
    fake.script(model, STREAM_CASES[case])
    plain = client.messages.create(model=model, max_tokens=64, messages=HI)
    with client.messages.stream(model=model, max_tokens=64, messages=HI) as s:
        streamed = s.get_final_message()
    assert _blocks(streamed) == _blocks(plain)
    assert len(plain.content) >= 1
    assert (streamed.stop_reason, streamed.stop_sequence) == (plain.stop_reason, plain.stop_sequence)
    assert streamed.usage == plain.usage
    assert fake.spec_errors == []


def test_stream_wire_format(fake: FakeAnthropic) -> None:
    fake.spec_errors.clear()
    fake.script("m-wire", Behavior(text="Alpha beta gamma.", thinking="Hmm, well.", signature="sig==",
                                   tool_uses=[("calc", '{"expression": "2 + 2 * 10"}')], output_tokens=12))
    r = _post(fake, {"model": "m-wire", "max_tokens": 64, "messages": HI, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith("event: message_start\ndata: {")
    events = anthropic_spec.parse_sse(r.text)
    assert anthropic_spec.stream_errors(events) == []
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-3:] == ["ping", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] == 11

    def deltas(index: int) -> list[dict[str, Any]]:
        return [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == index]

    starts = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    assert [d["type"] for d in deltas(0)] == ["thinking_delta"] * 2 + ["signature_delta"]
    assert "".join(d.get("thinking", "") for d in deltas(0)) == "Hmm, well." and deltas(0)[-1]["signature"] == "sig=="
    assert len(deltas(1)) == 3 and "".join(d["text"] for d in deltas(1)) == "Alpha beta gamma."
    pieces = [d["partial_json"] for d in deltas(2)]
    assert len(pieces) >= 3 and pieces[0] == "" and "".join(pieces) == '{"expression": "2 + 2 * 10"}'
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "tool_use" and message_delta["usage"]["output_tokens"] == 12
    assert fake.spec_errors == []


def test_stream_error_event_after_n_deltas(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-midfail", Behavior(text="one two three four five", error_in_stream_after=2,
                                      error_message="Overloaded"))
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info, \
            client.messages.stream(model="m-midfail", max_tokens=64, messages=HI) as s:
        got.extend(s.text_stream)
    assert got == ["one ", "two "]
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "overloaded_error"
    r = _post(fake, {"model": "m-midfail", "max_tokens": 64, "messages": HI, "stream": True})
    events = anthropic_spec.parse_sse(r.text)
    assert [n for n, _ in events][-2:] == ["content_block_delta", "error"]
    assert anthropic_spec.event_errors(*events[-1]) == []
    assert fake.spec_errors == []


def test_stream_drop_after_n_deltas(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-drop", Behavior(text="one two three four five", drop_after=3))
    got: list[str] = []
    # the SDK raises the transport's error, or (anthropic >= 2.17) wraps it in APIConnectionError
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)) as info, \
            client.messages.stream(model="m-drop", max_tokens=64, messages=HI) as s:
        got.extend(s.text_stream)
    assert "peer closed connection" in str(info.value)
    assert got == ["one ", "two ", "three "]


def test_hang_after_and_headers_delay_record_the_disconnect(fake: FakeAnthropic) -> None:
    fake.script("m-hang", Behavior(text="one two three", hang_after=1))
    fake.script("m-slow", Behavior(headers_delay=5))
    with anthropic.Anthropic(base_url=fake.base_url, api_key=ANTHROPIC_SECRET, max_retries=0, timeout=0.5) as c:
        got: list[str] = []
        with pytest.raises((httpx2.ReadTimeout, anthropic.APITimeoutError)), \
                c.messages.stream(model="m-hang", max_tokens=64, messages=HI) as s:
            got.extend(s.text_stream)
        assert got == ["one "]
        began = time.monotonic()
        with pytest.raises(anthropic.APITimeoutError):
            c.messages.create(model="m-slow", max_tokens=64, messages=HI)
        assert time.monotonic() - began < 3
    deadline = time.monotonic() + 3
    while not {"m-hang", "m-slow"} <= fake.disconnects.keys() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {"m-hang", "m-slow"} <= fake.disconnects.keys()


def test_chunk_delay_spaces_the_events(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-paced", Behavior(text="a b c", chunk_delay=0.1))
    began = time.monotonic()
    with client.messages.stream(model="m-paced", max_tokens=64, messages=HI) as s:
        s.get_final_message()
    assert time.monotonic() - began >= 0.9  # 10 events, 0.1 s after each


# --- errors ----------------------------------------------------------------------------------------------


def test_rate_limit_is_a_typed_sdk_error_with_retry_after(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-429", Behavior(status=429, retry_after="7", error_message="Number of request tokens exceeded"))
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="m-429", max_tokens=64, messages=HI)
    err = info.value
    assert err.status_code == 429 and err.response.headers["retry-after"] == "7"
    assert isinstance(err.body, dict)
    assert err.body["type"] == "error" and err.body["error"] == {"type": "rate_limit_error",
                                                                 "message": "Number of request tokens exceeded"}
    assert err.request_id and err.request_id.startswith("req_")
    assert fake.spec_errors == []


def test_overloaded_529(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-529", Behavior(status=529, error_message="Overloaded"))
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="m-529", max_tokens=64, messages=HI)
    assert info.value.status_code == 529 and isinstance(info.value, anthropic.InternalServerError)
    assert isinstance(info.value, anthropic.OverloadedError)  # SDK 2.x: a subclass of InternalServerError
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.InternalServerError), \
            client.messages.stream(model="m-529", max_tokens=64, messages=HI) as s:
        s.get_final_message()
    assert fake.spec_errors == []


@pytest.mark.parametrize(("status", "exc", "error_type"), [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
    (404, anthropic.NotFoundError, "not_found_error"),
    (500, anthropic.InternalServerError, "api_error"),
    (504, anthropic.GatewayTimeoutError, "timeout_error"),
])
def test_scripted_statuses_map_to_sdk_exceptions(fake: FakeAnthropic, client: anthropic.Anthropic, status: int,
                                                 exc: type[anthropic.APIStatusError], error_type: str) -> None:
    fake.script(f"m-{status}", Behavior(status=status))
    with pytest.raises(exc) as info:
        client.messages.create(model=f"m-{status}", max_tokens=64, messages=HI)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == error_type
    assert fake.spec_errors == []


def test_wrong_key_is_an_authentication_error(fake: FakeAnthropic) -> None:
    fake.spec_errors.clear()
    with anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-wrong", max_retries=0) as c, \
            pytest.raises(anthropic.AuthenticationError) as info:
        c.messages.create(model="m-any", max_tokens=64, messages=HI)
    assert info.value.status_code == 401
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "authentication_error"
    wrong_header = _post(fake, {"model": "m", "max_tokens": 1, "messages": HI},
                         headers={**HEADERS, "x-api-key": "nope", "authorization": f"Bearer {ANTHROPIC_SECRET}"})
    assert wrong_header.status_code == 401  # x-api-key, when sent, decides
    assert fake.spec_errors == []


def test_x_api_key_only_mode_rejects_bearer() -> None:
    with FakeAnthropic(accept_bearer=False) as strict:
        body = {"model": "m", "max_tokens": 8, "messages": HI}
        bearer = _post(strict, body, headers={"authorization": f"Bearer {ANTHROPIC_SECRET}",
                                              "anthropic-version": "2023-06-01"})
        assert bearer.status_code == 401 and bearer.json()["error"]["type"] == "authentication_error"
        ok = _post(strict, body)
        assert ok.status_code == 200 and ok.json()["type"] == "message"
        assert strict.requests[-1].x_api_key == ANTHROPIC_SECRET and strict.requests[-1].authorization is None
        assert strict.spec_errors == []


def test_anthropic_version_header_is_required(fake: FakeAnthropic) -> None:
    r = _post(fake, {"model": "m", "max_tokens": 8, "messages": HI}, headers={"x-api-key": ANTHROPIC_SECRET})
    assert r.status_code == 400
    body = r.json()
    assert body["error"]["type"] == "invalid_request_error" and "anthropic-version" in body["error"]["message"]
    assert anthropic_spec.error_body_errors(body) == []


# --- count_tokens, models --------------------------------------------------------------------------------


def test_count_tokens_and_models(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-count", Behavior(input_tokens=1234))
    assert client.messages.count_tokens(model="m-count", messages=HI).input_tokens == 1234
    assert fake.requests[-1].path == "/v1/messages/count_tokens"
    ids = [m.id for m in client.models.list()]
    assert "m-count" in ids and ids == list(fake.behaviors)
    page = client.models.list(limit=1)
    assert len(page.data) == 1 and page.has_more and page.first_id == page.last_id == ids[0]
    info = client.models.retrieve("m-count")
    assert (info.id, info.type, info.max_tokens) == ("m-count", "model", 64000)
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("m-nobody-scripted")
    assert fake.spec_errors == []


# --- the validator, on the fake's input ------------------------------------------------------------------

GOOD_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": "What's the weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Use the tool.", "signature": "sig=="},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny"},
                                     {"type": "text", "text": "Thanks."}]},
    ],
    "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
    "tool_choice": {"type": "auto"}, "thinking": {"type": "enabled", "budget_tokens": 1024},
    "stop_sequences": ["\n\nHuman:"], "metadata": {"user_id": "u-1"},
}


def test_validator_accepts_a_good_request() -> None:
    assert anthropic_spec.request_errors(GOOD_REQUEST) == []


@pytest.mark.parametrize(("change", "expected"), [
    (lambda r: r.pop("max_tokens"), "'max_tokens' is a required property"),
    (lambda r: r["messages"].append({"role": "user", "content": [{"type": "text"}]}),
     "messages/3/content/0: 'text' is a required property"),
    (lambda r: r["messages"].append({"role": "user", "content": [{"type": "txt", "text": "x"}]}),
     "messages/3/content/0/type: 'txt' is not one of"),
    (lambda r: r["messages"][1]["content"][0].pop("signature"), "'signature' is a required property"),
    (lambda r: r.update(temperature=2), "temperature: 2 is greater than the maximum of 1"),
    (lambda r: r.update(tool_choice={"type": "tool"}), "tool_choice: 'name' is a required property"),
    (lambda r: r.update(stream_options={"include_usage": True}), "'stream_options' was unexpected"),
])
def test_validator_rejects_a_malformed_request(change: Any, expected: str) -> None:
    request = json.loads(json.dumps(GOOD_REQUEST))
    change(request)
    problems = anthropic_spec.request_errors(request)
    assert any(expected in p for p in problems), problems


def test_fake_records_a_malformed_request_and_can_reject_it(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script("m-lax", Behavior())
    client.messages.create(model="m-lax", max_tokens=8, messages=HI, extra_body={"top_k": "ten"})
    assert any("top_k" in p for p in fake.spec_errors), fake.spec_errors
    with FakeAnthropic(reject_invalid=True) as strict, \
            anthropic.Anthropic(base_url=strict.base_url, api_key=ANTHROPIC_SECRET, max_retries=0) as c:
        with pytest.raises(anthropic.BadRequestError) as info:
            c.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": [{"type": "text"}]}])
        body = info.value.body
        assert isinstance(body, dict) and "'text' is a required property" in body["error"]["message"]
        assert c.messages.create(model="m", max_tokens=8, messages=HI).type == "message"
        assert len(strict.spec_errors) == 1


def test_validator_on_responses_and_events() -> None:
    assert anthropic_spec.message_errors({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                                          "content": [], "stop_reason": "end_turn", "stop_sequence": None,
                                          "usage": {"input_tokens": 1, "output_tokens": 1}})  # keys missing
    assert any("'caller' is a required property" in p for p in anthropic_spec.event_errors(
        "content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}))
    assert anthropic_spec.event_errors("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                               "delta": {"type": "text_delta", "text": "x"}}) == []
    assert anthropic_spec.event_errors("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                               "delta": {"type": "text_delta"}})
    assert anthropic_spec.event_errors("message_stop", {"type": "ping"})  # the data's type must match
    assert anthropic_spec.event_errors("done", {"type": "done"})
    assert anthropic_spec.error_body_errors({"type": "error", "error": {"type": "teapot_error", "message": "x"},
                                             "request_id": None})


def test_stream_order_rules() -> None:
    start = ("message_start", {"type": "message_start", "message": {"content": []}})
    block = ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": "", "citations": None}})
    thinking_delta = ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "thinking_delta", "thinking": "x"}})
    stop = ("content_block_stop", {"type": "content_block_stop", "index": 0})
    stop_msg = ("message_stop", {"type": "message_stop"})

    def order_problems(events: list[tuple[str, Any]]) -> list[str]:  # schema problems left aside
        return [p for p in anthropic_spec.stream_errors(events) if ": event '" not in p and not p.startswith("event '")]

    assert any("a thinking_delta inside a text block" in p for p in order_problems([start, block, thinking_delta]))
    assert any("without a message_delta" in p for p in order_problems([start, block, stop, stop_msg]))
    assert any("does not begin with message_start" in p for p in order_problems([block, stop]))
    assert any("ends without message_stop" in p for p in order_problems([start, block]))
    second = ("content_block_start", {**block[1], "index": 1})
    assert any("index 1, expected 0" in p for p in order_problems([start, second]))
    assert any("while another is open" in p for p in order_problems([start, block, block]))


# --- the extracted subset --------------------------------------------------------------------------------


def test_subset_has_every_schema_the_fake_needs_and_no_beta() -> None:
    names = set(anthropic_spec.schema_names())
    needed = {"CreateMessageParams", "Message", "ErrorResponse", "CountMessageTokensParams",
              "CountMessageTokensResponse", "ListResponse_ModelInfo_", "ModelInfo", "MessageStreamEvent",
              *anthropic_spec.EVENT_SCHEMAS.values()}
    assert needed <= names
    assert not [n for n in names if n.startswith("Beta")]
    assert (SPECS / "NOTE-anthropic-openapi.txt").read_text().count("8edfc751885d5065bef2541e16678cf942271a9f") == 1


@pytest.mark.skipif(not SHARED_SPEC.exists(), reason="../shared/specs exists only on the development machine")
def test_subset_is_what_the_extract_script_writes(tmp_path: Path) -> None:
    import importlib.util
    import shutil

    script = tmp_path / "extract_anthropic.py"
    shutil.copy(SPECS / "extract_anthropic.py", script)
    spec = importlib.util.spec_from_file_location("extract_anthropic_copy", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(str(SHARED_SPEC))
    assert (tmp_path / "anthropic-messages-schemas.json").read_text() == \
        (SPECS / "anthropic-messages-schemas.json").read_text()
