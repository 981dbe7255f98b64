"""``telemetry/tracing.py`` in process, spans to an in-memory exporter: when tracing turns on, the
request span and its children, the traceparent an attempt sends upstream, errors, and a request
the sampler leaves out (its context still goes upstream, nothing is recorded)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tollway.core.catalog import Credential, ModelInfo
from tollway.core.errors import InsufficientCredits, UpstreamError
from tollway.core.request_log import RequestLog
from tollway.telemetry import tracing

TRACE_ID, CLIENT_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
SCOPE = {"method": "POST", "path": "/v1/chat/completions", "path_params": {}}
MODEL = ModelInfo(id="chat", provider="up", upstream_id="up-chat-1")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.setup({}, exporter=exporter)
    yield exporter
    tracing.shutdown()
    assert tracing.TRACER is None


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def row(**fields: object) -> RequestLog:
    return RequestLog(id="req-1", created_at=0.0, path="/v1/chat/completions", dialect="openai", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "x"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
    ({"OTEL_TRACES_EXPORTER": "console"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
])
def test_on_only_when_an_exporter_is_configured(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


def test_setup_without_otel_variables_is_off() -> None:
    assert tracing.setup({}) is False
    assert tracing.TRACER is None
    tracing.shutdown()  # harmless when off


def test_setup_with_an_endpoint_builds_the_otlp_exporter() -> None:
    try:
        assert tracing.setup({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}) is True
        assert tracing.setup({}) is True  # once per process: the second call keeps the first
    finally:
        tracing.shutdown()  # nothing was traced: nothing to send to the closed port
    assert tracing.TRACER is None


def test_a_request_continues_the_client_trace(spans: InMemorySpanExporter) -> None:
    headers = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
    trace = tracing.begin("openai", SCOPE, headers, "req-1")
    trace.admitting()
    trace.admitted()
    sent = trace.attempt("up", MODEL, Credential(id="cred-a", secret="sk-secret"))
    trace.settling(200, None)
    trace.finish(row(status=200, key_prefix="tw-abc", model="chat", upstream_model="up-chat-1", provider="up",
                     prompt_tokens=12, completion_tokens=5, cached_tokens=2, cost_micro=42))

    got = by_name(spans)
    server = got["openai /v1/chat/completions"][0]
    assert server.kind is SpanKind.SERVER and server.parent is not None
    assert f"{server.context.trace_id:032x}" == TRACE_ID and f"{server.parent.span_id:016x}" == CLIENT_SPAN
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST", "url.path": "/v1/chat/completions", "http.route": "/v1/chat/completions",
        "tollway.dialect": "openai", "tollway.request_id": "req-1", "http.response.status_code": 200,
        "tollway.stream": False, "tollway.cost_micro": 42, "tollway.key_prefix": "tw-abc", "gen_ai.system": "up",
        "gen_ai.request.model": "chat", "gen_ai.response.model": "up-chat-1", "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5, "gen_ai.usage.cache_read.input_tokens": 2}
    for name in ("admission", "upstream up", "settlement"):
        child = got[name][0]
        assert child.parent is not None and child.parent.span_id == server.context.span_id, name
    upstream = got["upstream up"][0]
    assert upstream.kind is SpanKind.CLIENT and upstream.status.status_code is StatusCode.UNSET
    assert dict(upstream.attributes or {}) == {"gen_ai.system": "up", "gen_ai.request.model": "up-chat-1",
                                               "tollway.model": "chat", "tollway.credential": "cred-a"}
    assert sent == {"traceparent": f"00-{TRACE_ID}-{upstream.context.span_id:016x}-01"}
    assert got["settlement"][0].attributes == {"tollway.cost_micro": 42}
    assert "sk-secret" not in repr([dict(s.attributes or {}) for s in spans.get_finished_spans()])


def test_a_new_trace_without_a_client_traceparent(spans: InMemorySpanExporter) -> None:
    trace = tracing.begin("anthropic", {"method": "POST", "path": "/v1/responses/resp_1/cancel",
                                        "path_params": {"response_id": "resp_1"}}, {}, "req-2")
    trace.settling(200, None)
    trace.finish(row(status=200))
    server = by_name(spans)["anthropic /v1/responses/{response_id}/cancel"][0]
    assert server.parent is None
    assert server.attributes is not None and server.attributes["url.path"] == "/v1/responses/resp_1/cancel"
    assert "gen_ai.system" not in server.attributes  # no upstream was involved


def test_failed_attempts_and_a_failed_request(spans: InMemorySpanExporter) -> None:
    trace = tracing.begin("openai", SCOPE, {}, "req-3")
    trace.admitting()
    trace.admitted()
    first = trace.attempt("up", MODEL, Credential(id="cred-a", secret="s"))
    trace.attempt_failed(UpstreamError("up returned 500", provider="up", upstream_status=500))
    second = trace.attempt("up", MODEL, Credential(id="cred-b", secret="s"))
    assert first != second
    broke = UpstreamError("up broke the stream", provider="up")
    trace.settling(502, broke)  # the answering attempt broke mid-stream: it ends with the call's error
    trace.finish(row(status=502, error_code=broke.code, provider="up"))

    a, b = by_name(spans)["upstream up"]
    assert a.status.status_code is StatusCode.ERROR and a.status.description == "provider_error"
    assert a.attributes is not None and a.attributes["http.response.status_code"] == 500
    assert a.attributes["tollway.credential"] == "cred-a"
    assert b.status.status_code is StatusCode.ERROR and b.attributes is not None
    assert b.attributes["tollway.credential"] == "cred-b"
    server = by_name(spans)["openai /v1/chat/completions"][0]
    assert server.status.status_code is StatusCode.ERROR and server.attributes is not None
    assert server.attributes["error.type"] == "provider_error"


def test_a_refused_admission(spans: InMemorySpanExporter) -> None:
    trace = tracing.begin("openai", SCOPE, {}, "req-4")
    trace.admitting()
    refused = InsufficientCredits("no credits left")
    trace.settling(refused.http_status, refused)  # admission raised: Call.finish ends its span
    trace.finish(row(status=refused.http_status, error_code=refused.code))
    got = by_name(spans)
    admission = got["admission"][0]
    assert admission.status.status_code is StatusCode.ERROR and admission.attributes is not None
    assert admission.attributes["error.type"] == refused.code
    assert got["openai /v1/chat/completions"][0].status.status_code is StatusCode.UNSET  # a 4xx


def test_a_request_the_sampler_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter = InMemorySpanExporter()
    assert tracing.setup({}, exporter=exporter)
    try:
        trace = tracing.begin("openai", SCOPE, {}, "req-5")
        trace.admitting()
        trace.admitted()
        sent = trace.attempt("up", MODEL, Credential(id="cred-a", secret="s"))
        trace.settling(200, None)
        trace.finish(row(status=200))
    finally:
        tracing.shutdown()
    assert exporter.get_finished_spans() == ()
    assert int(sent["traceparent"].split("-")[3], 16) & 1 == 0  # the context goes upstream, marked not sampled
