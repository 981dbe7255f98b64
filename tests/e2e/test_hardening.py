"""Edge cases found in review: slow error bodies, long error texts, odd Retry-After values,
200s that are not completions, clients that leave before the upstream answers, bad input."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.e2e.test_openai_chat import client, log_rows, wait_for_row
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI


def _chat(gw: GatewayProcess, key: str, body: Any, timeout: float = 10) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body,
                      timeout=timeout)


def test_a_stream_whose_error_body_never_comes_times_out(gateway: GatewayProcess, user_key: str,
                                                         fake: FakeOpenAI) -> None:
    fake.script("late-error", Behavior(status=500, error_body_delay=4.0))
    started = time.time()
    r = _chat(gateway, user_key, {"model": "fake/late-error", "stream": True,
                                  "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 504 and time.time() - started < 3.5  # first-byte timeout is 1.5 s


def test_a_long_plain_error_text_never_shows_any_part_of_the_secret(gateway: GatewayProcess, user_key: str,
                                                                    fake: FakeOpenAI) -> None:
    fake.script("plain-error", Behavior(status=500, error_text="A" * 250 + f" got Authorization: Bearer "
                                                                             f"{UPSTREAM_SECRET} end"))
    r = _chat(gateway, user_key, {"model": "fake/plain-error", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert UPSTREAM_SECRET[:12] not in message and "***" in message
    row = wait_for_row(gateway, r.headers["x-request-id"])
    assert UPSTREAM_SECRET[:12] not in (row["note"] or "")


@pytest.mark.parametrize(("value", "expected"), [("inf", None), ("nan", None), ("1e400", None),
                                                 ("-3", "1"), ("86400000", "3600")])
def test_odd_retry_after_values_are_dropped_or_clamped(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI,
                                                       value: str, expected: str | None) -> None:
    fake.script("odd-retry", Behavior(status=429, retry_after=value))
    r = _chat(gateway, user_key, {"model": "fake/odd-retry", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert r.headers.get("retry-after") == expected


def test_a_200_that_is_an_error_object_is_a_502(gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("ok-error", Behavior(ok_but_error_body=True))
    r = _chat(gateway, user_key, {"model": "fake/ok-error", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502 and "quota exhausted" in r.json()["error"]["message"]


def test_a_client_gone_before_the_upstream_answers_cancels_it(gateway: GatewayProcess, user_key: str,
                                                              fake: FakeOpenAI) -> None:
    for model, stream in (("slow-ns", False), ("slow-stream", True)):
        fake.script(model, Behavior(headers_delay=5.0))
        fake.disconnects.pop(model, None)
        left = time.time()
        with pytest.raises(httpx.ReadTimeout):
            _chat(gateway, user_key, {"model": f"fake/{model}", "stream": stream,
                                      "messages": [{"role": "user", "content": "x"}]}, timeout=0.4)
        left += 0.4
        deadline = time.time() + 2
        while model not in fake.disconnects and time.time() < deadline:
            time.sleep(0.02)
        assert model in fake.disconnects and fake.disconnects[model] - left < 1.0
        rows: list[dict[str, Any]] = []
        while not rows and time.time() < deadline + 2:
            rows = log_rows(gateway, "model = ? AND status = 499", (f"fake/{model}",))
            time.sleep(0.05)
        assert rows and rows[-1]["error_code"] == "client_closed_request"


def test_the_stream_ends_for_the_client_at_done_even_if_the_upstream_lingers(
        gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    fake.script("linger", Behavior(text="a b c", linger_after_done=1.5))
    started = time.time()
    text = "".join(ch.choices[0].delta.content or "" for ch in client(gateway, user_key).chat.completions.create(
        model="fake/linger", stream=True, messages=[{"role": "user", "content": "x"}]) if ch.choices)
    assert text == "a b c" and time.time() - started < 0.8


@pytest.mark.parametrize("body", [
    {"model": "echo", "messages": [{"role": "user", "content": "x"}], "stop": 5},
    {"model": "echo", "messages": [{"role": "user", "content": "x"}], "tools": 5},
    {"model": "echo", "messages": [{"role": "assistant", "content": "x", "tool_calls": [5]}]},
    {"model": "echo", "messages": [{"role": "user", "content": [5]}]},
    {"model": "echo", "messages": [5]},
])
def test_malformed_fields_are_400_not_500(gateway: GatewayProcess, user_key: str, body: Any) -> None:
    r = _chat(gateway, user_key, body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_invalid_utf8_is_400(gateway: GatewayProcess, user_key: str) -> None:
    for raw in (b'{"model": "\xff\xfe", "messages": []}',
                b'{"model": "fake-chat", "messages": [{"role": "user", "content": "h\xffi"}]}'):
        r = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {user_key}"},
                       content=raw)
        assert r.status_code == 400, raw


def test_openai_sdk_sees_the_odd_retry_after_as_a_plain_rate_limit(gateway: GatewayProcess, user_key: str,
                                                                   fake: FakeOpenAI) -> None:
    fake.script("odd-retry-sdk", Behavior(status=429, retry_after="inf"))
    with pytest.raises(openai.RateLimitError):
        client(gateway, user_key).chat.completions.create(model="fake/odd-retry-sdk",
                                                          messages=[{"role": "user", "content": "x"}])


# --- issue 17 #2 and #3: bodies no decoder should choke on, on every JSON surface ------------------

_DEEP = b'{"model": "echo", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
_DEEP_OBJECTS = b'{"model": "echo", "x": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}"
_BAD_UTF8 = (b'{"model": "echo", "prompt": "h\xffi", "messages": [{"role": "user", "content": "h\xffi"}], '
             b'"email": "a\xff@example.com", "password": "p\xff", "provider": "github", "admin_key": "k\xff", '
             b'"identifier": "a\xff", "message": "h\xffi"}')


def _openai_shape(body: Any) -> bool:
    return body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_request"


def _anthropic_shape(body: Any) -> bool:
    return body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


def _city_shape(body: Any) -> bool:
    return body["error"]["code"] == "invalid_request"


def _admin_shape(body: Any) -> bool:
    return isinstance(body["detail"], str)


_SURFACES = [  # path, who calls it, the surface's error shape
    ("/admin/login", None, _admin_shape),
    ("/admin/test", "admin", _admin_shape),
    ("/admin/accounts/test", "admin", _admin_shape),
    ("/admin/api-key/apply", "admin", _admin_shape),
    ("/v1/accounts/login", None, _city_shape),
    ("/v1/accounts/oauth/start", None, _city_shape),
    ("/v1/studios/create", "admin", _city_shape),
    ("/v1/ai/text", "user", _city_shape),
    ("/v1/ai/stream", "user", _city_shape),
    ("/v1/chat/completions", "user", _openai_shape),
    ("/api/v1/chat/completions", "user", lambda b: b["error"]["code"] == "invalid_request"),
    ("/v1/messages", "user", _anthropic_shape),
    ("/v1/messages/count_tokens", "user", _anthropic_shape),
]


@pytest.mark.parametrize(("path", "who", "shape"), _SURFACES, ids=[s[0] for s in _SURFACES])
def test_deep_json_and_invalid_utf8_are_400_in_the_surfaces_error_shape(
        gateway: GatewayProcess, user_key: str, path: str, who: str | None, shape: Any) -> None:
    """Issue 17 #2 (JSON nested 1,000 deep was a 500: RecursionError) and #3 (invalid UTF-8 in a
    string was a 500: UnicodeDecodeError), each with a traceback in the log."""
    token = {"admin": ADMIN_KEY, "user": user_key, None: None}[who]
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01",
               "X-Forwarded-For": "10.9.8.7"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    logged = len(gateway.output())
    for raw in (_DEEP, _DEEP_OBJECTS, _BAD_UTF8):
        r = httpx.post(gateway.url + path, content=raw, headers=headers, timeout=10)
        assert r.status_code == 400, (raw[:40], r.text)
        assert shape(r.json()), r.text
    assert "Traceback" not in gateway.output()[logged:]


def test_a_seed_004_doc_part_reaches_an_openai_compatible_upstream_as_a_file_part(
        gateway: GatewayProcess, user_key: str, fake: FakeOpenAI) -> None:
    """Issue 17 #20: the pass-through forwarded the ``doc`` part unchanged, which no OpenAI-wire
    upstream takes (the fake's spec check refused it)."""
    fake.script("doc-reader", Behavior(text="read it"))
    doc = {"type": "doc", "doc": {"name": "tiny.pdf", "format": "pdf", "size": 3,
                                  "source": {"bytes": {"0": 37, "1": 80, "2": 68}}}}
    r = _chat(gateway, user_key, {"model": "fake/doc-reader", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Describe this document."}, doc]}]})
    assert r.status_code == 200, r.text
    content = fake.seen("doc-reader")[-1].body["messages"][0]["content"]
    assert content == [{"type": "text", "text": "Describe this document."},
                       {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                                 "filename": "tiny.pdf"}}]
