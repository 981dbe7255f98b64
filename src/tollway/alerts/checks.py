"""What each kind of rule finds now: ``Finding``s, one per subject over its threshold.

The figures come from the database (``store.alerts``: the ledger, balances, the request log,
kept settlements, tasks) and from the credential pools' state; the decisions (which quota
threshold, whether a debounced subject may fire again, the p99) are pure functions here.

- ``quota``: a key's charges this month (UTC) against its monthly quota; 80% and 100% each fire
  once per key per month (a key found past 100% before its 80% fired gets the 100% alone).
- ``low_balance``: a key's stored balance below ``threshold`` credits (with ``filter.key_id`` that
  key, else every key ever recharged).
- ``credential``: a credential disabled, or cooling down for more than ``minutes`` (its cooldown
  runs that long, or it has been seen cooling that long without a break).
- ``error_rate``: a model's share of 5xx answers over ``window`` minutes above ``threshold``,
  with at least ``min_requests`` requests (a client that went away, 499, counts for nothing).
- ``latency_p99``: a model's p99 latency (ms, nearest rank, answered requests) over ``window``
  minutes above ``threshold``, with at least ``min_requests`` requests.
- ``stranded_settlement``: settlements kept (``pending_settlements``) for more than ``minutes``.
- ``task_failures``: at least ``threshold`` tasks failed in the last ``window`` minutes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal

import msgspec

from tollway.alerts.config import (
    CREDENTIAL,
    ERROR_RATE,
    LATENCY_P99,
    LOW_BALANCE,
    QUOTA,
    STRANDED,
    TASK_FAILURES,
)
from tollway.core.money import MICRO, to_micro
from tollway.routing.pools import CredentialPool
from tollway.store.alerts import AlertRepository, AlertRule, Firing, KeyFigure, top_needed
from tollway.store.ledger import month_of

QUOTA_STEPS = (80, 100)


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """A subject over a rule's threshold. ``period`` is set when the firing is once per period
    (a quota step: ``2026-12/80``); otherwise the debounce decides (``debounced_period``).
    ``superseded``: periods to claim without sending (a quota's 80% once its 100% fires)."""

    subject: str
    message: str
    value: float | None
    threshold: float | None
    period: str | None = None
    superseded: tuple[str, ...] = ()


def debounced_period(last: Firing | None, now: float, debounce_minutes: int) -> str | None:
    """The period a debounced subject's next firing claims, or None while the last one is within
    the debounce window. Each firing names the one it follows (``after:<id>``), so two processes
    that saw the same last firing claim the same row and only one sends."""
    if last is None:
        return "after:0"
    if now - last.fired_at < debounce_minutes * 60:
        return None
    return f"after:{last.id}"


def quota_findings(figures: Sequence[KeyFigure], month: str, fired: set[tuple[str, str]]) -> list[Finding]:
    """The quota steps keys crossed that have not fired this month (``fired``: (subject, period))."""
    out = []
    for k in figures:
        if not k.quota:
            continue
        subject = f"key {k.key_id}"
        crossed = [s for s in QUOTA_STEPS if k.amount * 100 >= s * k.quota]
        open_steps = [s for s in crossed if (subject, f"{month}/{s}") not in fired]
        if not open_steps or open_steps[-1] != crossed[-1]:
            continue  # the highest step crossed has fired: a lower one no longer matters
        step = crossed[-1]
        share = k.amount / k.quota
        out.append(Finding(
            subject=subject, value=round(share * 100, 2), threshold=float(step), period=f"{month}/{step}",
            superseded=tuple(f"{month}/{s}" for s in open_steps[:-1]),
            message=(f"key {k.key_id} ({k.name or k.prefix}...) spent {k.amount / MICRO:g} of its "
                     f"{k.quota / MICRO:g} credits monthly quota ({share:.0%}) in {month}: past {step}%")))
    return out


def p99(greatest: Sequence[float], n: int) -> float | None:
    """The p99 (nearest rank) of ``n`` values given their greatest ones, greatest first (at least
    ``top_needed(n)`` of them; fewer, when the read was capped, gives the least of those: an
    upper bound)."""
    if n <= 0 or not greatest:
        return None
    return greatest[min(top_needed(n), len(greatest)) - 1]


class CoolingWatch:
    """When this process first saw each credential cooling without a break since."""

    def __init__(self) -> None:
        self.since: dict[tuple[str, str], float] = {}

    def seen(self, key: tuple[str, str], cooling: bool, now: float) -> float:
        """Seconds ``key`` has been seen cooling (0 when it is not)."""
        if not cooling:
            self.since.pop(key, None)
            return 0.0
        return now - self.since.setdefault(key, now)


async def credential_findings(pools: Mapping[str, CredentialPool], rule: AlertRule, watch: CoolingWatch,
                              now: float) -> list[Finding]:
    provider = rule.filters.get("provider")
    limit = (rule.minutes or 10) * 60
    out = []
    for name, pool in sorted(pools.items()):
        if provider and name != provider:
            continue
        ids = [c.id for c in pool.credentials]
        health = await pool.state.health(pool.provider, ids)
        for cid in ids:
            until, reason = health.get(cid, (0.0, None))
            subject = f"{name}/{cid}"
            cooling_for = watch.seen((name, cid), until > now, now)
            if reason is not None:
                out.append(Finding(subject=subject, value=None, threshold=None,
                                   message=f"credential disabled: {reason}"))
            elif until > now and (until - now >= limit or cooling_for >= limit):
                minutes = max(until - now, cooling_for) / 60
                out.append(Finding(subject=subject, value=round(minutes, 1), threshold=float(rule.minutes or 10),
                                   message=f"credential cooling down for {minutes:.1f} min "
                                           f"(more than {rule.minutes} min)"))
    return out


async def findings(repo: AlertRepository, pools: Mapping[str, CredentialPool], rule: AlertRule,
                   watch: CoolingWatch, now: float | None = None) -> list[Finding]:
    """What ``rule`` finds now."""
    now = time.time() if now is None else now
    f = rule.filters
    threshold = float(Decimal(rule.threshold)) if rule.threshold is not None else None
    if rule.kind == QUOTA:
        month = month_of(now)
        return quota_findings(await repo.quota_spend(month, f.get("key_id")), month,
                              await repo.periods(rule.id, f"{month}/"))
    if rule.kind == LOW_BALANCE and rule.threshold is not None:
        below = to_micro(rule.threshold, "threshold")
        return [Finding(subject=f"key {k.key_id}", value=k.amount / MICRO, threshold=threshold,
                        message=f"key {k.key_id} ({k.name or k.prefix}...) has a balance of "
                                f"{k.amount / MICRO:g} credits, below {rule.threshold}")
                for k in await repo.low_balances(below, f.get("key_id"))]
    if rule.kind == CREDENTIAL:
        return await credential_findings(pools, rule, watch, now)
    window = (rule.window or 5) * 60
    if rule.kind == ERROR_RATE and threshold is not None:
        out = []
        for m in await repo.model_errors(now - window, f):
            rate = m.errors / m.requests if m.requests else 0.0
            if m.requests >= (rule.min_requests or 1) and rate > threshold:
                out.append(Finding(subject=f"model {m.model}", value=round(rate, 4), threshold=threshold,
                                   message=f"error rate {rate:.1%} ({m.errors} of {m.requests} requests answered "
                                           f"5xx) over {rule.window} min, above {threshold:.1%}"))
        return out
    if rule.kind == LATENCY_P99 and threshold is not None:
        out = []
        for model, n, greatest in await repo.model_latencies(now - window, f, rule.min_requests or 1):
            value = p99(greatest, n)
            if value is not None and value > threshold:
                out.append(Finding(subject=f"model {model}", value=round(value, 1), threshold=threshold,
                                   message=f"p99 latency {value:.0f} ms over {rule.window} min ({n} requests), "
                                           f"above {threshold:g} ms"))
        return out
    if rule.kind == STRANDED:
        count, oldest = await repo.stranded(now - (rule.minutes or 10) * 60)
        if count and oldest is not None:
            return [Finding(subject="pending settlements", value=float(count), threshold=float(rule.minutes or 10),
                            message=f"{count} settlement(s) kept unbooked for more than {rule.minutes} min "
                                    f"(the oldest {(now - oldest) / 60:.0f} min): is the wallet store (Redis) up?")]
        return []
    if rule.kind == TASK_FAILURES and threshold is not None:
        failed = await repo.failed_tasks(now - window, f)
        if failed and failed >= threshold:
            return [Finding(subject="tasks" + (f" of model {f['model']}" if f.get("model") else ""),
                            value=float(failed), threshold=threshold,
                            message=f"{failed} task(s) failed in the last {rule.window} min (threshold "
                                    f"{threshold:g})")]
    return []
