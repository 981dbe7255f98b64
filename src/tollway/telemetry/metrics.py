"""Prometheus metrics: counted as calls finish, served by ``GET /metrics``.

Counters and histograms live in prometheus-client's registry; under ``tollway serve --workers N``
they are its multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by ``serve``), so a scrape of
any worker adds up every worker's. What is read at scrape time from live objects (credential
pools, wallet holds, write-behind buffers, tasks) is the scraped worker's view, and is shared
across workers where the state itself is shared (pools and wallets in Redis).

Labels are bounded: ``model`` is a catalog model's id (a name no catalog lists folds into
``other`` unless ``TOLLWAY_METRICS_RAW_MODELS`` is on), ``provider`` a configured provider,
``surface`` one of ``SURFACES``; no key id or prefix is ever a label.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from tollway.core.request_log import RequestLog

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FLUSH_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
OTHER: Final = "other"
# the path families requests are counted by (their first matching prefix)
SURFACES: Final = (
    ("/v1/chat/completions", "chat"), ("/api/v1/chat/completions", "chat"), ("/v1/ai/chat/completions", "chat"),
    ("/v1/responses", "responses"), ("/api/v1/responses", "responses"), ("/v1/completions", "completions"),
    ("/v1/messages", "messages"), ("/anthropic/v1/messages", "messages"), ("/v1/embeddings", "embeddings"),
    ("/v1/images", "images"), ("/api/v1/images", "images"), ("/v1/audio/speech", "speech"),
    ("/v1/audio/transcriptions", "transcriptions"), ("/v1/videos", "videos"), ("/api/v1/videos", "videos"),
    ("/v1/moderations", "moderations"), ("/tasks/", "tasks"), ("/bots/", "bots"), ("/v1/ai/", "city"),
    ("/api/v1/", "platform"), ("/v1/models", "models"),
)
MAX_CHILDREN: Final = 20_000  # memoised label sets (bounded labels stay far below it)
_CLASSES: Final = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
REFUSALS: Final = frozenset({"rate_limited", "tpm_exceeded", "insufficient_credits", "insufficient_quota",
                             "quota_exceeded", "pool_exhausted", "billing_unavailable", "model_not_available",
                             "permission_denied", "api_disabled"})


def surface_of(path: str) -> str:
    for prefix, name in SURFACES:
        if path.startswith(prefix):
            return name
    return OTHER


class Metrics:
    """The counters of one process (or of every worker, in multiprocess mode)."""

    def __init__(self, *, known_models: Callable[[str], bool] | None = None, raw_models: bool = False,
                 registry: CollectorRegistry | None = None) -> None:
        self.known_models = known_models or (lambda _: True)
        self.raw_models = raw_models
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        reg = registry if registry is not None else (None if self.multiprocess else CollectorRegistry())
        kw: dict[str, Any] = {"registry": reg} if reg is not None else {}
        self.registry = reg
        self.requests = Counter("tollway_requests", "Requests finished", ["surface", "dialect", "model", "provider",
                                                                         "status_class"], **kw)
        self.latency = Histogram("tollway_request_duration_seconds", "Whole request, first byte in to last out",
                                 ["surface", "model"], buckets=LATENCY_BUCKETS, **kw)
        self.ttft = Histogram("tollway_time_to_first_token_seconds", "Streams: request start to the first event",
                              ["surface", "model"], buckets=LATENCY_BUCKETS, **kw)
        self.upstream = Histogram("tollway_upstream_duration_seconds", "An upstream attempt, until it answered",
                                  ["provider"], buckets=LATENCY_BUCKETS, **kw)
        self.tokens = Counter("tollway_tokens", "Tokens", ["direction", "model"], **kw)
        self.cost = Counter("tollway_cost_micro_credits", "Micro-credits charged", ["model"], **kw)
        self.attempts = Counter("tollway_upstream_attempts", "Upstream attempts that failed, by reason (a retry "
                                "or a fallback follows when another credential or model was left)",
                                ["provider", "reason"], **kw)
        self.fallbacks = Counter("tollway_fallbacks", "Requests answered by a fallback model", ["model"], **kw)
        self.refusals = Counter("tollway_refusals", "Requests refused before any upstream call", ["reason"], **kw)
        self.flush = Histogram("tollway_write_behind_flush_seconds", "One flush of a write-behind buffer",
                               ["buffer"], buckets=FLUSH_BUCKETS, **kw)
        self.flush_failures = Counter("tollway_write_behind_failures", "Flushes that failed (rows kept)",
                                      ["buffer"], **kw)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._surfaces: dict[str, str] = {}

    def model_label(self, model: str | None) -> str:
        if not model:
            return OTHER
        return model if self.raw_models or self.known_models(model) else OTHER

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        """``metric.labels(*labels)``, memoised (prometheus-client validates labels on every call)."""
        cache = self._children
        key = (id(metric), labels)
        child = cache.get(key)
        if child is None:
            child = metric.labels(*labels)
            if len(cache) < MAX_CHILDREN:
                cache[key] = child
        return child

    def _surface(self, path: str) -> str:
        found = self._surfaces.get(path)
        if found is None:
            found = surface_of(path)
            if len(self._surfaces) < MAX_CHILDREN:
                self._surfaces[path] = found
        return found

    def observe(self, row: RequestLog, attempts: Sequence[dict[str, Any]], upstream_seconds: float | None) -> None:
        """One finished call (its log row): a handful of counter and histogram updates (a few
        microseconds: the labelled children are memoised)."""
        surface = self._surface(row.path)
        model = self.model_label(row.model)
        provider = row.provider or OTHER
        status = row.status
        child = self._child
        child(self.requests, (surface, row.dialect, model, provider, _CLASSES.get(status // 100, "other"))).inc()
        child(self.latency, (surface, model)).observe(row.latency_ms / 1000.0)
        if row.ttft_ms is not None and row.stream:
            child(self.ttft, (surface, model)).observe(row.ttft_ms / 1000.0)
        if upstream_seconds is not None:
            child(self.upstream, (provider,)).observe(upstream_seconds)
        if row.prompt_tokens:
            child(self.tokens, ("in", model)).inc(row.prompt_tokens)
        if row.completion_tokens:
            child(self.tokens, ("out", model)).inc(row.completion_tokens)
        if row.cost_micro:
            child(self.cost, (model,)).inc(row.cost_micro)
        if attempts:
            first = attempts[0]["model"]
            for a in attempts:
                if a["error"] is not None:
                    child(self.attempts, (a["provider"] or OTHER, a["error"])).inc()
            if status < 400 and attempts[-1]["model"] != first:
                child(self.fallbacks, (model,)).inc()
        if row.error_code in REFUSALS:
            child(self.refusals, (row.error_code,)).inc()

    def flushed(self, buffer: str, seconds: float, failed: bool) -> None:
        self.flush.labels(buffer).observe(seconds)
        if failed:
            self.flush_failures.labels(buffer).inc()

    def render(self, live: Iterable[GaugeMetricFamily]) -> bytes:
        """The exposition: the counters (every worker's, in multiprocess mode) and ``live`` gauges."""
        registry = CollectorRegistry()
        if self.multiprocess:
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            assert self.registry is not None
            registry.register(_Forward(self.registry))
        families = list(live)
        registry.register(_Static(families))
        return generate_latest(registry)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        return self.registry.collect()


class _Static(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[Any]:
        return self.families


def gauge(name: str, doc: str, labels: Sequence[str],
          samples: Iterable[tuple[Sequence[str], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


START = time.time()
