"""Issue 18: OpenTelemetry traces (``tollway[otel]``) from ``tollway serve`` to a fake OTLP/HTTP
collector, configured only by the standard ``OTEL_*`` variables: the request span continues the
client's ``traceparent``, has admission / upstream / settlement children and the GenAI attributes,
and the upstream receives the attempt's ``traceparent``; a stream's span ends with its usage; a
retried attempt is two upstream spans; no prompt or answer text anywhere; with ``OTEL_*`` unset,
nothing is traced."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.harness import GatewayProcess, fake_config
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tests.fakes.otlp_server import FakeOTLP, Recorded

pytestmark = pytest.mark.e2e

BAD_SECRET = "sk-fake-flaky-credential-always-500"
UPSTREAM = "upstream-trace"  # this module's upstream model on the session's fake
PROMPT = "zebra-prompt-text-never-in-a-span"
ANSWER = "quokka answer words never traced"
CHAT = "openai /v1/chat/completions"


def config(base_url: str) -> dict[str, Any]:
    cfg = fake_config(base_url, UPSTREAM_SECRET)
    cfg["providers"].append({"name": "flaky", "kind": "openai_compatible", "base_url": base_url,
                             "credentials": [{"id": "flaky-bad", "api_key": BAD_SECRET},
                                             {"id": "flaky-good", "api_key": UPSTREAM_SECRET}]})
    cfg["models"] += [{"id": "trace-chat", "provider": "fake", "upstream_id": UPSTREAM},
                      {"id": "flaky-chat", "provider": "flaky", "upstream_id": UPSTREAM}]
    return cfg


@pytest.fixture(scope="module")
def otlp() -> Iterator[FakeOTLP]:
    server = FakeOTLP().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, otlp: FakeOTLP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    fake.script(UPSTREAM, Behavior(text=ANSWER, prompt_tokens=9))
    fake.script_secret(BAD_SECRET, Behavior(status=500))
    gateway = GatewayProcess(tmp_path_factory.mktemp("tracing"), config=config(fake.base_url),
                             env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url, "OTEL_BSP_SCHEDULE_DELAY": "100",
                                  "OTEL_SERVICE_NAME": "tollway"})
    gateway.start()
    yield gateway
    gateway.stop()
    assert "Traceback" not in gateway.output()


@pytest.fixture(scope="module")
def key(gw: GatewayProcess) -> str:
    return gw.create_key("tracing")


def traceparent() -> tuple[str, str, str]:
    """A client's W3C traceparent: (header, trace id, its span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def chat(gw: GatewayProcess, key: str, model: str, header: str | None, *, stream: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if header is not None:
        headers["traceparent"] = header
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=20)
    return r


def request_span(otlp: FakeOTLP, trace_id: str, children: int) -> tuple[Recorded, list[Recorded]]:
    """The trace's server span once it and ``children`` children have arrived."""

    def done(spans: list[Recorded]) -> bool:
        server = [s for s in spans if s.trace_id == trace_id and s.kind == "server"]
        return bool(server) and len(otlp.children(server[0])) >= children

    otlp.wait(done)
    server = next(s for s in otlp.trace(trace_id) if s.kind == "server")
    return server, otlp.children(server)


def no_text(spans: list[Recorded]) -> None:
    for span in spans:
        values = [*span.attributes.values(), *(v for _, attrs in span.events for v in attrs.values())]
        for value in values:
            assert PROMPT not in str(value) and "quokka" not in str(value), (span.name, value)


def test_chat_continues_the_client_trace_and_reaches_the_upstream(gw: GatewayProcess, key: str,
                                                                  fake: FakeOpenAI, otlp: FakeOTLP) -> None:
    header, trace_id, client_span = traceparent()
    r = chat(gw, key, "trace-chat", header)
    assert r.status_code == 200, r.text
    server, children = request_span(otlp, trace_id, 3)

    assert server.name == CHAT and server.parent_id == client_span
    assert server.resource["service.name"] == "tollway"
    a = server.attributes
    assert a["http.request.method"] == "POST" and a["url.path"] == "/v1/chat/completions"
    assert a["http.response.status_code"] == 200 and a["tollway.request_id"] == r.headers["x-request-id"]
    assert a["gen_ai.system"] == "fake" and a["gen_ai.request.model"] == "trace-chat"
    assert a["gen_ai.response.model"] == UPSTREAM
    assert a["gen_ai.usage.input_tokens"] == 9 and a["gen_ai.usage.output_tokens"] == len(ANSWER.split())
    assert isinstance(a["tollway.cost_micro"], int)
    assert key.startswith(a["tollway.key_prefix"]) and a["tollway.key_prefix"] != key
    assert server.status == "unset" and "error.type" not in a

    assert [c.name for c in children] == ["admission", "upstream fake", "settlement"]
    admission, upstream, settlement = children
    assert admission.kind == "internal" and settlement.kind == "internal"
    assert upstream.kind == "client" and upstream.status == "unset"
    assert upstream.attributes["tollway.credential"] == "fake-1"
    assert upstream.attributes["gen_ai.request.model"] == UPSTREAM
    assert server.start_ns <= admission.start_ns <= admission.end_ns <= upstream.start_ns
    assert upstream.end_ns <= settlement.start_ns <= settlement.end_ns <= server.end_ns

    sent = [s for s in fake.seen(UPSTREAM) if s.body["messages"][0]["content"] == PROMPT][-1]
    version, upstream_trace, parent, flags = sent.headers["traceparent"].split("-")
    assert (version, upstream_trace, parent, flags) == ("00", trace_id, upstream.span_id, "01")
    no_text(otlp.trace(trace_id))


def test_a_stream_span_ends_with_its_usage(gw: GatewayProcess, key: str, otlp: FakeOTLP) -> None:
    header, trace_id, _ = traceparent()
    r = chat(gw, key, "trace-chat", header, stream=True)
    assert r.status_code == 200 and "[DONE]" in r.text
    server, children = request_span(otlp, trace_id, 3)
    assert [c.name for c in children] == ["admission", "upstream fake", "settlement"]
    a = server.attributes
    assert a["tollway.stream"] is True and a["http.response.status_code"] == 200
    assert a["gen_ai.usage.input_tokens"] == 9 and a["gen_ai.usage.output_tokens"] == len(ANSWER.split())
    upstream = children[1]
    assert upstream.end_ns <= children[2].start_ns  # the upstream span lasts as long as the stream
    no_text(otlp.trace(trace_id))


def test_a_retried_attempt_is_two_upstream_spans(gw: GatewayProcess, key: str, fake: FakeOpenAI,
                                                 otlp: FakeOTLP) -> None:
    header, trace_id, _ = traceparent()
    before = len(fake.requests)
    r = chat(gw, key, "flaky-chat", header)  # the pool's first request: the bad credential first
    assert r.status_code == 200, r.text
    server, children = request_span(otlp, trace_id, 4)
    upstreams = [c for c in children if c.name == "upstream flaky"]
    assert [c.name for c in children] == ["admission", "upstream flaky", "upstream flaky", "settlement"]
    failed, answered = upstreams
    assert failed.status == "error" and failed.status_message == "provider_error"
    assert failed.attributes["tollway.credential"] == "flaky-bad"
    assert failed.attributes["error.type"] == "provider_error"
    assert failed.attributes["http.response.status_code"] == 500
    assert answered.status == "unset" and answered.attributes["tollway.credential"] == "flaky-good"
    assert server.status == "unset" and server.attributes["gen_ai.system"] == "flaky"
    sent = [s.headers["traceparent"].split("-")[2] for s in fake.requests[before:]
            if s.headers.get("traceparent", "").split("-")[1:2] == [trace_id]]
    assert sent == [failed.span_id, answered.span_id]


def test_a_refused_request_is_traced_with_its_error(gw: GatewayProcess, key: str, otlp: FakeOTLP) -> None:
    header, trace_id, _ = traceparent()
    r = chat(gw, key, "no-such-model-for-tracing", header)
    assert r.status_code == 404
    code = r.json()["error"]["code"]
    server, children = request_span(otlp, trace_id, 2)
    assert [c.name for c in children] == ["admission", "settlement"]
    assert children[0].status == "error" and children[0].status_message == code
    assert children[0].attributes["error.type"] == code and server.attributes["error.type"] == code
    assert server.attributes["http.response.status_code"] == 404
    assert server.status == "unset"  # a 4xx is the client's, not a server span's error


def test_without_otel_nothing_is_traced(fake: FakeOpenAI, otlp: FakeOTLP,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    gateway = GatewayProcess(tmp_path_factory.mktemp("untraced"), config=config(fake.base_url))
    for name in [k for k in gateway.env if k.startswith("OTEL_")]:
        del gateway.env[name]
    gateway.start()
    try:
        exports = otlp.exports
        header, trace_id, _ = traceparent()
        r = chat(gateway, gateway.create_key("untraced"), "trace-chat", header)
        assert r.status_code == 200, r.text
        sent = [s for s in fake.seen(UPSTREAM) if s.body["messages"][0]["content"] == PROMPT][-1]
        assert "traceparent" not in sent.headers
        time.sleep(0.5)
        assert otlp.trace(trace_id) == [] and otlp.exports == exports
    finally:
        gateway.stop()
    log = gateway.output()
    assert "Traceback" not in log and "opentelemetry" not in log.lower() and "tracing" not in log.lower()
