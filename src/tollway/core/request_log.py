"""One row per request: what happened, for whom, through which upstream, at what cost."""

from __future__ import annotations

import msgspec


class RequestLog(msgspec.Struct, kw_only=True):
    id: str
    created_at: float
    path: str
    dialect: str
    status: int = 0
    key_id: int | None = None
    key_prefix: str | None = None
    studio_id: str | None = None
    model: str | None = None  # the catalog's model (answers name the one the client asked for)
    upstream_model: str | None = None  # the id the upstream was asked for
    provider: str | None = None
    credential: str | None = None
    stream: bool = False
    error_code: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    units: int = 0  # of the model's price unit (characters, seconds) a media request used
    cost_micro: int = 0  # micro-credits charged
    # a model without an operator price: what the call would cost at its provider's list price, in
    # micro-USD (billing.reference_prices); an estimate, never charged. None: no estimate
    estimated_cost_micro: int | None = None
    dropped_params: str | None = None
    note: str | None = None
    attempts: str | None = None  # JSON list, one entry per upstream attempt, when there was more than one
