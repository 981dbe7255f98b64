"""One request's bookkeeping, from arrival to its request-log row.

A ``Call`` is begun by the route guard (``routing.responses.dialect_endpoint``) and filled in by
the request pipeline (``routing.pipeline``) alone: who called, which model, provider and
credential served, each attempt, when the first token left, the usage, the holds admission took.
``finish`` settles the holds and writes the row, once. A dialect passes its call along and never
reads or writes its fields.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Protocol

import msgspec

from tollway.auth.keys import Identity
from tollway.billing.admission import Billing, Ticket
from tollway.core.catalog import Credential, ModelInfo
from tollway.core.chat import Usage
from tollway.core.errors import TollwayError
from tollway.core.request_log import RequestLog
from tollway.records.recorder import ChatRecorder, Recording
from tollway.routing.catalog import Route
from tollway.routing.pools import CredentialPool, Lease
from tollway.telemetry.logs import ACCESS as _access
from tollway.telemetry.logs import log_request
from tollway.telemetry.metrics import Metrics
from tollway.telemetry.tracing import RequestTrace

log = logging.getLogger("tollway")
_json = msgspec.json.Encoder()


class RowSink(Protocol):
    def add(self, row: RequestLog) -> None: ...


class Call:
    """One request's bookkeeping. ``finish`` is idempotent and writes the log row once."""

    __slots__ = ("_logs", "_billing", "row", "t0", "lease", "pool", "pin", "attempts", "direct", "_done",
                 "identity", "ticket", "served", "produced", "_usage", "count", "recording", "_records", "_metrics",
                 "upstream_s", "trace")

    def __init__(self, logs: RowSink, row: RequestLog, billing: Billing | None = None,
                 records: ChatRecorder | None = None, metrics: Metrics | None = None) -> None:
        self._logs = logs
        self._metrics = metrics
        self.upstream_s: float | None = None  # the answering attempt's time to the upstream's answer
        self._billing = billing
        self._records = records
        self.recording: Recording | None = None  # set when this call's chat is recorded
        self.row = row
        self.t0 = time.perf_counter()
        self.lease: Lease | None = None
        self.pool: CredentialPool | None = None
        self.pin: str | None = None  # X-Tollway-Credential / X-Ds2-Target-Account
        self.attempts: list[dict[str, Any]] = []
        self.direct: Credential | None = None  # direct-token mode: the caller's own upstream credential
        self._done = False
        self.identity: Identity | None = None
        self.ticket: Ticket | None = None  # what admission held for this call (credits, limits)
        self.served: ModelInfo | None = None  # the model of the attempt that answered
        self.produced = 0  # stream events sent to the client (bills a stream cut without usage)
        self._usage = False  # whether the upstream reported usage
        self.count = 1  # things made that the model prices each (images); units go in row.units
        self.trace: RequestTrace | None = None  # tracing (telemetry/tracing.py): this request's spans, when on

    @property
    def credential(self) -> Credential | None:
        return self.lease.credential if self.lease is not None else None

    @property
    def done(self) -> bool:
        return self._done

    def identify(self, identity: Identity) -> None:
        self.identity = identity
        if identity.direct_token is not None:
            digest = hashlib.sha256(identity.direct_token.encode()).hexdigest()[:12]
            self.direct = Credential(id=f"direct:{digest}", secret=identity.direct_token)
        self.row.key_id = identity.key_id
        self.row.key_prefix = identity.key_prefix
        self.row.studio_id = identity.key.studio_id if identity.key else None

    def serving(self, route: Route, credential: Credential, lease: Lease | None = None,
                pool: CredentialPool | None = None) -> None:
        """An attempt begins on ``route`` with ``credential`` (held as ``lease`` of ``pool``)."""
        self.lease, self.pool = lease, pool
        self.row.model, self.row.provider, self.row.credential = route.model.id, route.provider, credential.id
        self.row.upstream_model = route.model.upstream_id

    def attempt(self, route: Route, lease: Lease | None, err: TollwayError | None) -> None:
        self.attempts.append({
            "model": route.model.id, "provider": route.provider,
            "credential": lease.credential.id if lease is not None else None,
            "status": err.http_status if err is not None else 200,
            "upstream_status": getattr(err, "upstream_status", None),
            "error": err.code if err is not None else None,
            "message": err.message[:200] if err is not None else None,
        })

    def release(self) -> None:
        if self.pool is not None and self.lease is not None:
            self.pool.release_nowait(self.lease)
        self.lease = None

    def first_token(self, events: int = 1) -> None:
        """``events`` stream events went to the client (the first of them sets the TTFT)."""
        self.produced += events
        if self.row.ttft_ms is None:
            self.row.ttft_ms = (time.perf_counter() - self.t0) * 1000.0

    def usage(self, usage: Usage) -> None:
        self._usage = True
        self.row.prompt_tokens = usage.input_tokens
        self.row.completion_tokens = usage.output_tokens
        self.row.cached_tokens = usage.cached_tokens
        self.row.reasoning_tokens = usage.reasoning_tokens

    def sized(self, answer_bytes: int) -> None:
        """A whole answer without usage: billed for about a token per four bytes of it."""
        self.produced = max(self.produced, answer_bytes // 4)

    def made(self, count: int = 1, units: int = 0) -> None:
        """A media answer: ``count`` things made (images), ``units`` of the model's price unit used
        (characters spoken, seconds heard or generated): what it is charged for, with its tokens."""
        self.count = count
        self.row.units = units

    def dropped(self, params: list[str]) -> None:
        if params:
            self.row.dropped_params = ",".join(sorted(params))

    def _settle(self, status: int, delivered_only: bool = False) -> int:
        """Charge what the call used: a success, or a stream the client (or the server's shutdown:
        ``delivered_only``) cut once it had begun, pays for its tokens (estimated when the upstream
        reported none); anything else is refunded."""
        ticket = self.ticket
        assert ticket is not None and self._billing is not None
        self.ticket = None
        tokens: tuple[int, int] | None = None
        row = self.row
        if status == 200 and self._usage:
            tokens = (row.prompt_tokens, row.completion_tokens)
        elif status == 200 or ((status == 499 or delivered_only) and self.produced):
            # a stream cut short (or an upstream that reported no usage): what was reported, else the
            # request's size; and at least one token per event the client received
            tokens = (row.prompt_tokens or ticket.bound.input_tokens, max(row.completion_tokens, self.produced))
            row.prompt_tokens, row.completion_tokens = tokens
        return self._billing.settle(ticket, self.served, tokens, self.row.id, self.row, count=self.count,
                                    units=row.units if tokens is not None else 0)

    def finish(self, status: int, error: TollwayError | None = None, note: str | None = None, *,
               delivered_only: bool = False) -> None:
        """Settle and write the log row (once). ``delivered_only``: a stream the server cut is
        billed for what reached the client, like one the client cut."""
        if self._done:
            return
        self._done = True
        if self.trace is not None:  # tracing (telemetry/tracing.py): open children end, the settlement span begins
            self.trace.settling(status, error)
        self.release()
        row = self.row
        if self.ticket is not None:
            row.cost_micro = self._settle(status, delivered_only)
        elif status == 200 and self._billing is not None:  # not billed (the admin key): the estimate alone
            row.estimated_cost_micro = self._billing.estimated(self.served, (row.prompt_tokens, row.completion_tokens),
                                                               count=self.count, units=row.units)
        row.status = status
        row.latency_ms = (time.perf_counter() - self.t0) * 1000.0
        if self.attempts:
            row.attempts = _json.encode(self.attempts).decode()
        if error is not None:
            row.error_code = error.code
            row.note = error.message[:500]
            if status >= 500:
                log.warning("request %s failed: %s %s (key=%s provider=%s)", row.id, status, error.code,
                            row.key_prefix, row.provider)
        if note:
            row.note = note
        self._logs.add(row)
        if self._metrics is not None:
            self._metrics.observe(row, self.attempts, self.upstream_s)
        if _access.level <= logging.INFO:  # TOLLWAY_LOG_FORMAT=json: the request's line
            log_request(row)
        if self.recording is not None and self._records is not None:
            self._records.add(self.identity, row, self.recording)
        if self.trace is not None:  # tracing: the settlement span, then the request's span, end
            self.trace.finish(row)
