"""A fake OpenTelemetry collector: OTLP/HTTP traces on 127.0.0.1, one aiohttp server in its own thread.

``POST /v1/traces`` takes an ``ExportTraceServiceRequest`` as protobuf (``application/x-protobuf``,
what ``opentelemetry-exporter-otlp-proto-http`` sends) or as OTLP/JSON (``application/json``),
gzip or not, decoded with ``opentelemetry-proto``'s own messages, and answers an empty
``ExportTraceServiceResponse`` in the same encoding. Every span is recorded flat in ``spans`` (name,
ids in hex, parent, kind, status, attributes as Python values, events, the resource's attributes);
``exports`` counts the requests. A body that does not decode is a 400 and lands in ``errors``.

``wait(predicate)`` polls until the recorded spans satisfy it (the exporter sends in batches, off the
gateway's event loop), ``trace(trace_id)`` is one trace's spans, ``children(span)`` a span's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.fakes.serving import InThread

KINDS = {Span.SPAN_KIND_UNSPECIFIED: "unspecified", Span.SPAN_KIND_INTERNAL: "internal",
         Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
         Span.SPAN_KIND_PRODUCER: "producer", Span.SPAN_KIND_CONSUMER: "consumer"}
STATUSES = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


@dataclass
class Recorded:
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str  # 16 hex digits; "" for a root span
    kind: str  # "server", "client", "internal", ...
    status: str  # "unset", "ok", "error"
    status_message: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    start_ns: int
    end_ns: int


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    return getattr(v, which) if which else None


def _attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = _value(kv.value)
    return out


@dataclass
class FakeOTLP(InThread):
    spans: list[Recorded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exports: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # queries ---------------------------------------------------------------------------------

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[Recorded]:
        return [s for s in self.snapshot() if s.trace_id == trace_id]

    def children(self, parent: Recorded) -> list[Recorded]:
        return sorted((s for s in self.snapshot() if s.trace_id == parent.trace_id and s.parent_id == parent.span_id),
                      key=lambda s: s.start_ns)

    def wait(self, done: Callable[[list[Recorded]], bool], timeout: float = 10.0) -> list[Recorded]:
        """The spans once ``done(spans)`` holds; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for spans; have {[(s.name, s.trace_id) for s in spans]}")
            time.sleep(0.02)

    # server ----------------------------------------------------------------------------------

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp undoes a Content-Encoding: gzip itself
        as_json = request.content_type == "application/json"
        message = ExportTraceServiceRequest()
        try:
            if as_json:
                json_format.Parse(body, message)
            else:
                message.ParseFromString(body)
        except Exception as exc:  # any decode failure is the exporter's fault: recorded
            self.errors.append(f"{request.content_type}: {type(exc).__name__}: {exc}")
            return web.Response(status=400, text="undecodable ExportTraceServiceRequest")
        recorded: list[Recorded] = []
        for rs in message.resource_spans:
            resource = _attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    recorded.append(Recorded(
                        name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(), kind=KINDS.get(span.kind, str(span.kind)),
                        status=STATUSES.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message, attributes=_attributes(span.attributes),
                        events=[(e.name, _attributes(e.attributes)) for e in span.events], resource=resource,
                        start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano))
        with self._lock:
            self.spans.extend(recorded)
            self.exports += 1
        reply = ExportTraceServiceResponse()
        if as_json:
            return web.Response(text=json_format.MessageToJson(reply), content_type="application/json")
        return web.Response(body=reply.SerializeToString(), content_type="application/x-protobuf")

    def start(self) -> FakeOTLP:
        self.serve("fake-otlp", self._app)
        return self

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        return app
