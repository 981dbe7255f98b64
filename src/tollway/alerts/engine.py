"""The alert engine: every ``TOLLWAY_ALERT_INTERVAL`` seconds (default 60) it evaluates the
enabled rules (``alerts.checks``) and posts what fired to each rule's webhook.

A firing is claimed in the database before it is sent (``AlertRepository.claim``: a unique
(rule, subject, period)), so however many replicas run the engine, and across restarts, each
firing is sent by one process, once: a quota step once a month, anything else at most once per
``debounce`` minutes per rule and subject. A process that dies between the claim and the post
loses that one alert (at most once, never twice).

Posting is ``alerts.sender.Webhooks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

import msgspec

from tollway.alerts.checks import CoolingWatch, Finding, debounced_period, findings
from tollway.alerts.formats import Alert
from tollway.alerts.sender import Delivery, Webhooks, test_alert
from tollway.auth.secret_box import SecretBox
from tollway.core.errors import ConfigError
from tollway.routing.gateway import Gateway
from tollway.store.alerts import FAILED, SENT, SUPERSEDED, AlertRepository, AlertRule

log = logging.getLogger("tollway.alerts")
DEFAULT_INTERVAL = 60.0
KEEP_FIRINGS = 62 * 86400.0  # firings older than two months are purged (a quota's month is over)


class Fired(msgspec.Struct, frozen=True, kw_only=True):
    """An alert this process claimed and sent (``status`` ``sent`` or ``failed``)."""

    rule_id: int
    kind: str
    subject: str
    message: str
    value: float | None
    status: str
    error: str | None = None


def interval_of(value: str | None) -> float:
    """TOLLWAY_ALERT_INTERVAL's seconds (default 60; at least 0.2)."""
    try:
        seconds = float(value) if value else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return min(max(seconds, 0.2), 86400.0) if seconds == seconds else DEFAULT_INTERVAL


class AlertEngine:
    def __init__(self, gateway: Gateway, *, repo: AlertRepository | None = None) -> None:
        self.gateway = gateway
        self.repo = repo or AlertRepository(gateway.engine)
        self._watch = CoolingWatch()
        self.webhooks = Webhooks()
        self._task: asyncio.Task[None] | None = None
        self._purged = 0.0

    @property
    def name(self) -> str:
        """The ``gateway`` an alert names: TOLLWAY_ALERT_GATEWAY_NAME, else the host name."""
        return self.gateway.env.get("TOLLWAY_ALERT_GATEWAY_NAME") or socket.gethostname()

    def _box(self) -> SecretBox:
        if self.gateway.secret_box is None:
            raise ConfigError("alerts need the gateway's secret box (TOLLWAY_SECRET_KEY or a generated key)")
        return self.gateway.secret_box

    # the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="alert engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.webhooks.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(interval_of(self.gateway.env.get("TOLLWAY_ALERT_INTERVAL")))
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away for a while: try again next time
                log.warning("alert check failed: %s: %s", type(exc).__name__, exc)

    # one round -----------------------------------------------------------------------------

    async def check(self) -> list[Fired]:
        """Evaluate every enabled rule once; send and return what this process claimed."""
        now = time.time()
        rules, _ = await self.repo.page(limit=10_000, enabled=True)
        fired: list[Fired] = []
        for rule in rules:
            try:
                found = await findings(self.repo, self.gateway.pools, rule, self._watch, now)
                fired.extend(await self._fire(rule, found, now))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("alert rule %s (%s) could not be checked: %s: %s", rule.id, rule.kind,
                            type(exc).__name__, exc)
        if now - self._purged > 3600:
            self._purged = now
            await self.repo.purge(now - KEEP_FIRINGS)
        return fired

    async def _fire(self, rule: AlertRule, found: list[Finding], now: float) -> list[Fired]:
        if not found:
            return []
        last = await self.repo.last(rule.id, [f.subject for f in found if f.period is None])
        out = []
        for f in found:
            period = f.period if f.period is not None else debounced_period(last.get(f.subject), now, rule.debounce)
            if period is None:
                continue  # within the debounce window of the last firing
            firing = await self.repo.claim(rule.id, f.subject, period, value=f.value, message=f.message, now=now)
            if firing is None:
                continue  # another process (or an earlier round) has it
            for other in f.superseded:
                await self.repo.claim(rule.id, f.subject, other, value=f.value, message=f.message,
                                      status=SUPERSEDED, now=now)
            alert = Alert(kind=rule.kind, subject=f.subject, message=f.message, value=f.value,
                          threshold=f.threshold, at=now, gateway=self.name, rule_id=rule.id)
            delivery = await self.webhooks.deliver(self._box(), rule, alert)
            status = SENT if delivery.ok else FAILED
            await self.repo.finish(firing.id, status, delivery.error)
            out.append(Fired(rule_id=rule.id, kind=rule.kind, subject=f.subject, message=f.message, value=f.value,
                             status=status, error=delivery.error))
        return out

    # sending -------------------------------------------------------------------------------

    async def test(self, rule: AlertRule) -> Delivery:
        """Send a test alert to the rule's webhook now (nothing claimed, no debounce)."""
        return await self.webhooks.deliver(self._box(), rule, test_alert(rule, self.name, time.time()))
