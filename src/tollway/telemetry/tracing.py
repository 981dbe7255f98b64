"""OpenTelemetry traces: the optional extra ``tollway[otel]``, configured by the standard ``OTEL_*``
variables (the SDK reads them itself: endpoint, headers, timeout, compression, sampler, batch
processor, resource, propagators).

Tracing is on when the opentelemetry packages import and the operator asked for an exporter the
standard way: ``OTEL_TRACES_EXPORTER=otlp``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set (``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
keep it off). ``setup()`` runs once per process in the app's lifespan (each ``--workers`` process
has its own exporter) and ``shutdown()`` flushes what is left. Spans go out OTLP/HTTP (protobuf)
through a ``BatchSpanProcessor``, off the event loop.

One request's spans (every attribute comes from the request-log row and the routing decisions,
never from a prompt or an answer: no text of either is ever recorded)::

    <dialect> <route>   SERVER    route guard -> Call.finish (a stream: its end); continues a client's
                                  W3C traceparent; method, path, status, request id, key prefix,
                                  gen_ai.system / request.model / response.model / usage.*, cost
      admission         INTERNAL  authorization, RPM/TPM, the credit hold (a refusal: status ERROR)
      upstream <name>   CLIENT    one per attempt: provider, credential id, models; a failed one has
                                  status ERROR and its error code; its traceparent goes upstream
      settlement        INTERNAL  the holds settled, the request-log row written

The hooks (``routing.responses.dialect_endpoint``, ``routing.pipeline``, ``routing.call.Call``) are
one None check each when tracing is off: ``TRACER`` here in the route guard, ``call.trace``
elsewhere. Children name their parent explicitly (the request's context rides on the call as its
``RequestTrace``), so a stream's pump task, or any other task, parents them right; an attempt's
traceparent reaches the upstream through ``providers.http.TRACE_HEADERS``, which the pipeline sets
(providers do not import this module: the layers keep them apart).

Module state, against the style guide's rule, on purpose: ``TRACER`` is the process's one exporter
(like the logging configuration), and a module-level None check is what makes tracing free when off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tollway.core.catalog import Credential, ModelInfo
from tollway.core.errors import TollwayError
from tollway.core.request_log import RequestLog

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Status

log = logging.getLogger("tollway")

SERVICE_NAME = "tollway"  # the resource's service.name unless OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say


class Tracing:
    """The process's tracer and the OpenTelemetry pieces the hooks use, imported by ``setup`` (so a
    process that does not trace never imports opentelemetry)."""

    __slots__ = ("provider", "tracer", "propagator", "in_context", "SERVER", "CLIENT", "INTERNAL", "_status", "_error")

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Status, StatusCode

        self.provider = provider
        self.tracer = provider.get_tracer("tollway")
        self.propagator = propagate.get_global_textmap()  # W3C TraceContext + Baggage unless OTEL_PROPAGATORS
        self.in_context = trace.set_span_in_context
        self.SERVER, self.CLIENT, self.INTERNAL = trace.SpanKind.SERVER, trace.SpanKind.CLIENT, trace.SpanKind.INTERNAL
        self._status, self._error = Status, StatusCode.ERROR

    def error(self, code: str) -> Status:
        return self._status(self._error, code)


TRACER: Tracing | None = None  # set by setup(), once per process; None: tracing is off


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the operator asked for traces the standard way (the packages aside)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()}
    if exporters:
        if exporters - {"otlp", "none"}:
            log.warning("OTEL_TRACES_EXPORTER=%s: tollway exports traces with otlp only",
                        env.get("OTEL_TRACES_EXPORTER"))
        return "otlp" in exporters
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup(env: Mapping[str, str] | None = None, *, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on for this process if the environment asks for it and ``tollway[otel]`` is
    installed: whether it is on. ``exporter`` (tests, embedders): spans go there, synchronously,
    whatever the environment says."""
    global TRACER
    if TRACER is not None:
        return True
    env = os.environ if env is None else env
    if exporter is None and not wanted(env):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        log.warning("OTEL_* asks for traces but tollway[otel] is not installed (pip install 'tollway[otel]'): "
                    "tracing is off")
        return False
    processor: SpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_* asks for traces but opentelemetry-exporter-otlp-proto-http is not installed "
                        "(pip install 'tollway[otel]'): tracing is off")
            return False
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol and protocol != "http/protobuf":
            log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: tollway exports traces over http/protobuf only", protocol)
        processor = BatchSpanProcessor(OTLPSpanExporter())
    named = "OTEL_SERVICE_NAME" in env or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": SERVICE_NAME}))
    provider.add_span_processor(processor)
    TRACER = Tracing(provider)
    return True


def shutdown() -> None:
    """Flush the spans still queued and stop the exporter (the app's shutdown)."""
    global TRACER
    tracing, TRACER = TRACER, None
    if tracing is not None:
        tracing.provider.shutdown()


def begin(dialect: str, scope: Mapping[str, Any], headers: Mapping[str, str], request_id: str) -> RequestTrace:
    """A request's span (call only when ``TRACER`` is set): named for its dialect and route,
    continuing the client's trace when its headers carry one."""
    tracing = TRACER
    assert tracing is not None
    path: str = scope["path"]
    route = _route(path, scope.get("path_params"))
    parent = tracing.propagator.extract(headers)
    span = tracing.tracer.start_span(f"{dialect} {route}", context=parent, kind=tracing.SERVER, attributes={
        "http.request.method": scope["method"], "url.path": path, "http.route": route,
        "tollway.dialect": dialect, "tollway.request_id": request_id})
    return RequestTrace(tracing, span, tracing.in_context(span, parent))


def _route(path: str, params: Mapping[str, Any] | None) -> str:
    """The path with its parameters named (``/v1/responses/{response_id}``): bounded span names."""
    if not params:
        return path
    named = {str(v): f"{{{k}}}" for k, v in params.items()}
    return "/".join(named.get(part, part) for part in path.split("/"))


class RequestTrace:
    """One request's spans, carried on its ``Call`` (slot ``trace``) from the route guard to
    ``Call.finish``. Every child is started with the request's context as its parent. A request the
    sampler left out (``OTEL_TRACES_SAMPLER``) has no children: its upstream gets the request's
    context, marked not sampled, so the upstream's trace decision follows the gateway's."""

    __slots__ = ("_t", "span", "_ctx", "_recording", "_admission", "_attempt", "_settlement")

    def __init__(self, tracing: Tracing, span: Span, ctx: Context) -> None:
        self._t = tracing
        self.span = span
        self._ctx = ctx
        self._recording = span.is_recording()
        self._admission: Span | None = None
        self._attempt: Span | None = None
        self._settlement: Span | None = None

    def _child(self, name: str, kind: Any, attributes: dict[str, Any] | None = None) -> Span:
        return self._t.tracer.start_span(name, context=self._ctx, kind=kind, attributes=attributes)

    # admission -------------------------------------------------------------------------------

    def admitting(self) -> None:
        """Admission begins (authorization, limits, the hold): ended by ``admitted``, or by the
        call's end with its error when admission refused it."""
        if self._recording:
            self._admission = self._child("admission", self._t.INTERNAL)

    def admitted(self) -> None:
        if self._admission is not None:
            self._admission.end()
            self._admission = None

    # upstream attempts -----------------------------------------------------------------------

    def attempt(self, provider: str, model: ModelInfo, credential: Credential) -> dict[str, str]:
        """An upstream attempt begins: its span (ended by ``attempt_failed``, or when the call
        finishes, so a stream's span lasts until its end), and the headers that carry its context
        to the upstream (``traceparent``; ``tracestate`` and ``baggage`` when there are any)."""
        carrier: dict[str, str] = {}
        if not self._recording:
            self._t.propagator.inject(carrier, context=self._ctx)
            return carrier
        self._end(self._attempt, None)
        span = self._attempt = self._child(f"upstream {provider}", self._t.CLIENT, {
            "gen_ai.system": provider, "gen_ai.request.model": model.upstream_id, "tollway.model": model.id,
            "tollway.credential": credential.id})
        self._t.propagator.inject(carrier, context=self._t.in_context(span, self._ctx))
        return carrier

    def attempt_failed(self, err: TollwayError) -> None:
        """The attempt failed (another may follow): its span ends with status ERROR."""
        self._end(self._attempt, err, failed=True)
        self._attempt = None

    # settlement and the end ------------------------------------------------------------------

    def settling(self, status: int, error: TollwayError | None) -> None:
        """``Call.finish`` begins: a child still open ends (admission that refused the call, the
        attempt that answered or broke), and the settlement span begins."""
        self._end(self._admission, error, failed=True)
        self._end(self._attempt, error, failed=status >= 500)
        self._admission = self._attempt = None
        if self._recording:
            self._settlement = self._child("settlement", self._t.INTERNAL)

    def finish(self, row: RequestLog) -> None:
        """``Call.finish`` ends: the settlement span, then the request's, with the row's outcome."""
        settlement, span = self._settlement, self.span
        if settlement is not None:
            if settlement.is_recording():
                settlement.set_attribute("tollway.cost_micro", row.cost_micro)
            settlement.end()
            self._settlement = None
        if self._recording:
            span.set_attributes(_outcome(row))
            if row.status >= 500:
                span.set_status(self._t.error(row.error_code or str(row.status)))
        span.end()

    def _end(self, span: Span | None, error: TollwayError | None, *, failed: bool = False) -> None:
        if span is None:
            return
        if error is not None and span.is_recording():
            span.set_attribute("error.type", error.code)
            upstream_status = getattr(error, "upstream_status", None)
            if upstream_status is not None:
                span.set_attribute("http.response.status_code", upstream_status)
            if failed:
                span.set_status(self._t.error(error.code))
        span.end()


def _outcome(row: RequestLog) -> dict[str, Any]:
    """The request span's attributes from its finished log row (no text of the request or answer)."""
    out: dict[str, Any] = {"http.response.status_code": row.status, "tollway.stream": row.stream,
                           "tollway.cost_micro": row.cost_micro}
    if row.key_prefix:
        out["tollway.key_prefix"] = row.key_prefix
    if row.provider:
        out["gen_ai.system"] = row.provider
    if row.model:
        out["gen_ai.request.model"] = row.model
    if row.upstream_model:
        out["gen_ai.response.model"] = row.upstream_model
    if row.provider or row.prompt_tokens or row.completion_tokens:
        out["gen_ai.usage.input_tokens"] = row.prompt_tokens
        out["gen_ai.usage.output_tokens"] = row.completion_tokens
        if row.cached_tokens:
            out["gen_ai.usage.cache_read.input_tokens"] = row.cached_tokens
    if row.error_code:
        out["error.type"] = row.error_code
    if row.ttft_ms is not None:
        out["tollway.ttft_ms"] = row.ttft_ms
    return out
