"""Alert rules (``alert_rules``), the firings claimed for them (``alert_firings``), and the
read-only queries the rules are evaluated with.

The repository stores what it is given: a rule's ``webhook`` and ``secret`` arrive sealed
(``tollway.alerts.config`` encrypts them with the gateway's ``SecretBox``). ``claim`` inserts a
firing under the unique (rule, subject, period): the first process to insert it sends the alert,
every other one (a replica, a restart) finds it taken.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import and_, case, delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.tables import (
    alert_firings,
    alert_rules,
    api_keys,
    ledger,
    pending_settlements,
    request_logs,
    tasks,
)

_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()
SENDING, SENT, FAILED, SUPERSEDED = "sending", "sent", "failed", "superseded"
MAX_LATENCIES = 10_000  # latencies read per model for a p99: the top 1% of 1,000,000 requests


class Firing(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    rule_id: int
    subject: str
    period: str
    value: float | None
    message: str
    status: str
    error: str | None
    fired_at: float


class RuleFields(msgspec.Struct, frozen=True, kw_only=True):
    """What a save writes (everything but the id and the times)."""

    name: str
    kind: str
    enabled: bool
    filters: dict[str, Any]
    threshold: str | None
    minutes: int | None
    window: int | None
    min_requests: int | None
    webhook: str
    format: str
    secret: str | None
    debounce: int

    def values(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "enabled": self.enabled,
                "filters": _encoder.encode(self.filters).decode(), "threshold": self.threshold,
                "minutes": self.minutes, "window_minutes": self.window, "min_requests": self.min_requests,
                "webhook": self.webhook, "format": self.format, "secret": self.secret, "debounce": self.debounce}


class AlertRule(RuleFields, frozen=True, kw_only=True):
    """A stored rule: what a save writes, its id and times; ``webhook`` and ``secret`` are SecretBox tokens."""

    id: int
    created_at: float
    updated_at: float


def _rule(r: Any) -> AlertRule:
    return AlertRule(id=r.id, name=r.name, kind=r.kind, enabled=bool(r.enabled), filters=_decoder.decode(r.filters),
                     threshold=r.threshold, minutes=r.minutes, window=r.window_minutes, min_requests=r.min_requests,
                     webhook=r.webhook, format=r.format, secret=r.secret, debounce=r.debounce,
                     created_at=r.created_at, updated_at=r.updated_at)


def _firing(r: Any) -> Firing:
    return Firing(id=r.id, rule_id=r.rule_id, subject=r.subject, period=r.period, value=r.value, message=r.message,
                  status=r.status, error=r.error, fired_at=r.fired_at)


class KeyFigure(msgspec.Struct, frozen=True):
    """A key and one amount of it (micro-credits): spent this month against its quota, or its balance."""

    key_id: int
    name: str
    prefix: str
    amount: int
    quota: int | None = None


class ModelCount(msgspec.Struct, frozen=True):
    model: str
    requests: int
    errors: int


class AlertRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # rules ---------------------------------------------------------------------------------

    async def create(self, fields: RuleFields) -> AlertRule:
        now = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(alert_rules.insert().values(**fields.values(), created_at=now,
                                                                    updated_at=now))
            rule_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            row = (await conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id))).one()
        return _rule(row)

    async def update(self, rule_id: int, fields: RuleFields) -> AlertRule | None:
        async with self.engine.begin() as conn:
            done = await conn.execute(alert_rules.update().where(alert_rules.c.id == rule_id).values(
                **fields.values(), updated_at=time.time()))
            if done.rowcount != 1:
                return None
            row = (await conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id))).one()
        return _rule(row)

    async def get(self, rule_id: int) -> AlertRule | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id))).first()
        return _rule(row) if row is not None else None

    async def page(self, *, limit: int = 10, offset: int = 0,
                   enabled: bool | None = None) -> tuple[list[AlertRule], int]:
        cond = [] if enabled is None else [alert_rules.c.enabled == enabled]
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(alert_rules).where(*cond))).scalar_one()
            rows = (await conn.execute(select(alert_rules).where(*cond).order_by(alert_rules.c.id)
                                       .limit(limit).offset(offset))).all()
        return [_rule(r) for r in rows], int(total)

    async def delete(self, rule_id: int) -> bool:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(delete(alert_rules).where(alert_rules.c.id == rule_id))).rowcount
            if gone == 1:
                await conn.execute(delete(alert_firings).where(alert_firings.c.rule_id == rule_id))
        return gone == 1

    # firings -------------------------------------------------------------------------------

    async def claim(self, rule_id: int, subject: str, period: str, *, value: float | None, message: str,
                    status: str = SENDING, now: float | None = None) -> Firing | None:
        """The firing, inserted, for the first process to claim (rule, subject, period); None for
        every later one."""
        firing = Firing(id=0, rule_id=rule_id, subject=subject[:300], period=period, value=value, message=message,
                        status=status, error=None, fired_at=time.time() if now is None else now)
        row = msgspec.structs.asdict(firing)
        del row["id"]
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(alert_firings.insert().values(**row))
        except IntegrityError:
            return None
        pk = result.inserted_primary_key[0] if result.inserted_primary_key else 0
        return msgspec.structs.replace(firing, id=int(pk))

    async def finish(self, firing_id: int, status: str, error: str | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(alert_firings.update().where(alert_firings.c.id == firing_id)
                               .values(status=status, error=error[:1000] if error else None))

    async def last(self, rule_id: int, subjects: Sequence[str]) -> dict[str, Firing]:
        """The newest firing of each subject of a rule (the debounced ones: not a quota's)."""
        if not subjects:
            return {}
        newest = (select(alert_firings.c.subject, func.max(alert_firings.c.id).label("id"))
                  .where(alert_firings.c.rule_id == rule_id, alert_firings.c.subject.in_(list(subjects)),
                         alert_firings.c.period.like("after:%"))
                  .group_by(alert_firings.c.subject).subquery())
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(alert_firings).join(newest, alert_firings.c.id == newest.c.id))
            return {r.subject: _firing(r) for r in rows}

    async def periods(self, rule_id: int, prefix: str) -> set[tuple[str, str]]:
        """(subject, period) of a rule's firings whose period starts with ``prefix`` (a month)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(alert_firings.c.subject, alert_firings.c.period).where(
                alert_firings.c.rule_id == rule_id, alert_firings.c.period.like(f"{prefix}%")))
            return {(r.subject, r.period) for r in rows}

    async def firings(self, *, rule_id: int | None = None, limit: int = 20) -> list[Firing]:
        cond = [] if rule_id is None else [alert_firings.c.rule_id == rule_id]
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(alert_firings).where(*cond).order_by(alert_firings.c.id.desc())
                                      .limit(limit))
            return [_firing(r) for r in rows]

    async def purge(self, before: float) -> int:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(delete(alert_firings).where(alert_firings.c.fired_at < before))).rowcount
        return int(gone or 0)

    # what the rules watch ------------------------------------------------------------------

    async def quota_spend(self, month: str, key_id: int | None = None) -> list[KeyFigure]:
        """Live keys with a monthly quota, and what they were charged in ``month`` (ledger)."""
        spent = (select(ledger.c.key_id, (-func.sum(ledger.c.amount)).label("spent"))
                 .where(ledger.c.month == month, ledger.c.kind == "charge").group_by(ledger.c.key_id).subquery())
        cond = [api_keys.c.month_quota.is_not(None), api_keys.c.month_quota > 0, api_keys.c.revoked_at.is_(None)]
        if key_id is not None:
            cond.append(api_keys.c.id == key_id)
        query = (select(api_keys.c.id, api_keys.c.name, api_keys.c.prefix, api_keys.c.month_quota, spent.c.spent)
                 .join(spent, spent.c.key_id == api_keys.c.id).where(*cond).order_by(api_keys.c.id))
        async with self.engine.connect() as conn:
            return [KeyFigure(r.id, r.name, r.prefix, int(r.spent or 0), int(r.month_quota))
                    for r in await conn.execute(query)]

    async def low_balances(self, below: int, key_id: int | None = None) -> list[KeyFigure]:
        """Live keys whose stored balance is below ``below`` micro-credits: with ``key_id`` that
        key; otherwise every key that has been recharged once (a key never given money is not one
        that runs low)."""
        cond = [api_keys.c.balance < below, api_keys.c.revoked_at.is_(None), api_keys.c.enabled.is_(True)]
        if key_id is not None:
            cond.append(api_keys.c.id == key_id)
        else:
            cond.append(exists().where(and_(ledger.c.key_id == api_keys.c.id, ledger.c.kind == "recharge")))
        query = select(api_keys.c.id, api_keys.c.name, api_keys.c.prefix, api_keys.c.balance).where(*cond)
        async with self.engine.connect() as conn:
            return [KeyFigure(r.id, r.name, r.prefix, int(r.balance))
                    for r in await conn.execute(query.order_by(api_keys.c.id))]

    def _log_filters(self, since: float, filters: dict[str, Any]) -> list[Any]:
        cond = [request_logs.c.created_at >= since, request_logs.c.model.is_not(None),
                request_logs.c.status != 499]  # a client that went away is no error of the model's
        if filters.get("model"):
            cond.append(request_logs.c.model == filters["model"])
        if filters.get("provider"):
            cond.append(request_logs.c.provider == filters["provider"])
        if filters.get("key_id") is not None:
            cond.append(request_logs.c.key_id == filters["key_id"])
        return cond

    async def model_errors(self, since: float, filters: dict[str, Any]) -> list[ModelCount]:
        """Per model since ``since``: requests, and those answered 5xx."""
        errors = func.sum(case((request_logs.c.status >= 500, 1), else_=0))
        query = (select(request_logs.c.model, func.count().label("n"), errors.label("errors"))
                 .where(*self._log_filters(since, filters)).group_by(request_logs.c.model)
                 .order_by(request_logs.c.model))
        async with self.engine.connect() as conn:
            return [ModelCount(r.model, int(r.n), int(r.errors or 0)) for r in await conn.execute(query)]

    async def model_latencies(self, since: float, filters: dict[str, Any],
                              min_requests: int = 1) -> list[tuple[str, int, list[float]]]:
        """Per model since ``since`` with at least ``min_requests`` answered (status < 400)
        requests: how many, and the greatest latencies that hold their p99 (ms, greatest first;
        ``top_needed``, at most ``MAX_LATENCIES``)."""
        cond = [*self._log_filters(since, filters), request_logs.c.status < 400]
        async with self.engine.connect() as conn:
            counts = (await conn.execute(select(request_logs.c.model, func.count().label("n")).where(*cond)
                                         .group_by(request_logs.c.model)
                                         .having(func.count() >= max(1, min_requests))
                                         .order_by(request_logs.c.model))).all()
            out = []
            for r in counts:
                want = min(top_needed(int(r.n)), MAX_LATENCIES)
                values = (await conn.execute(select(request_logs.c.latency_ms)
                                             .where(*cond, request_logs.c.model == r.model)
                                             .order_by(request_logs.c.latency_ms.desc()).limit(want))).scalars()
                out.append((str(r.model), int(r.n), [float(v) for v in values]))
        return out

    async def stranded(self, before: float) -> tuple[int, float | None]:
        """Settlements kept since before ``before``: how many, and the oldest's time."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(func.count(), func.min(pending_settlements.c.created_at))
                                      .where(pending_settlements.c.created_at < before))).one()
        return int(row[0]), (float(row[1]) if row[1] is not None else None)

    async def failed_tasks(self, since: float, filters: dict[str, Any]) -> int:
        cond = [tasks.c.status == "failed", func.coalesce(tasks.c.finished_at, tasks.c.updated_at) >= since]
        if filters.get("model"):
            cond.append(tasks.c.model == filters["model"])
        if filters.get("provider"):
            cond.append(tasks.c.provider == filters["provider"])
        if filters.get("key_id") is not None:
            cond.append(tasks.c.key_id == filters["key_id"])
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(tasks).where(*cond))).scalar_one())


def top_needed(n: int, q: float = 0.99) -> int:
    """How many of ``n`` values, greatest first, hold the ``q`` quantile (nearest rank): the rank
    is ceil(q*n) from the bottom, so n - rank + 1 from the top."""
    if n <= 0:
        return 0
    return n - nearest_rank(n, q) + 1


def nearest_rank(n: int, q: float) -> int:
    """The 1-based rank (ascending) of the ``q`` quantile of ``n`` values, by nearest rank."""
    # integer arithmetic on q in parts per million: ceil(q*n) without float error (0.99*100 = 99.00000000000001)
    ppm = round(q * 1_000_000)
    return max(1, -(-ppm * n // 1_000_000))
