"""Posting alerts to webhooks: aiohttp, 5 s per attempt, one retry after a connection error, a
timeout, a 429 or a 5xx (not after a refusal such as a bad Feishu signature).

Webhook URLs are the operator's own, so loopback and private addresses are allowed; redirects are
not followed. A failure is logged with the rule and the URL's host, never its path or query
(where Slack and Feishu put their tokens), nor an exception's text (which may quote the URL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import msgspec

if TYPE_CHECKING:
    import aiohttp

from tollway.alerts.formats import Alert, payload, refused
from tollway.auth.secret_box import SecretBox
from tollway.store.alerts import AlertRule

log = logging.getLogger("tollway.alerts")
TIMEOUT = 5.0
RETRY_DELAY = 0.5
MAX_ANSWER = 64 * 1024


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    status: int | None = None  # the receiver's last HTTP status
    error: str | None = None


def host_of(url: str) -> str:
    """What a log line may say about a webhook: its host (never the path, query or user)."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def test_alert(rule: AlertRule, gateway: str, now: float) -> Alert:
    """The alert ``/admin/alert/test`` and ``tollway alerts test`` send."""
    named = f" ({rule.name})" if rule.name else ""
    return Alert(kind=rule.kind, subject="test", value=None, threshold=None, at=now, gateway=gateway, rule_id=rule.id,
                 message=f"a test of alert rule {rule.id}{named}: this webhook receives Tollway's alerts")


class Webhooks:
    """One HTTP session for every webhook, made on first use."""

    def __init__(self, *, timeout: float = TIMEOUT, retry_delay: float = RETRY_DELAY) -> None:
        self.timeout, self.retry_delay = timeout, retry_delay
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, box: SecretBox, rule: AlertRule, alert: Alert) -> Delivery:
        url = box.decrypt(rule.webhook)
        secret = box.decrypt(rule.secret) if rule.secret else None
        delivery = Delivery(ok=False, error="not sent")
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(self.retry_delay)
                alert = msgspec.structs.replace(alert, at=time.time())  # a Feishu signature holds its time
            delivery, again = await self._post(url, rule.format, payload(alert, rule.format, secret=secret))
            if delivery.ok or not again:
                break
        if not delivery.ok:
            log.warning("alert rule %s (%s) could not be delivered to %s: %s", rule.id, rule.kind, host_of(url),
                        delivery.error)
        return delivery

    async def _post(self, url: str, fmt: str, body: dict[str, object]) -> tuple[Delivery, bool]:
        """One attempt: its outcome, and whether another attempt may help."""
        import aiohttp  # with the first alert, not at start (issue 19)

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(url, data=msgspec.json.encode(body), allow_redirects=False,
                                          headers={"Content-Type": "application/json"}) as resp:
                answer = await resp.content.read(MAX_ANSWER)
                why = refused(fmt, resp.status, answer)
                if why is None:
                    return Delivery(ok=True, status=resp.status), False
                return Delivery(ok=False, status=resp.status, error=why), resp.status == 429 or resp.status >= 500
        except TimeoutError:
            return Delivery(ok=False, error=f"no answer within {self.timeout:g} s"), True
        except aiohttp.ClientError as exc:
            return Delivery(ok=False, error=f"connection failed ({type(exc).__name__})"), True
