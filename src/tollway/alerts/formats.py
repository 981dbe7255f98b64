"""What a webhook receives, per ``format`` (pure: the time is handed in).

- ``json``: ``{"alert": kind, "subject", "message", "value", "threshold", "at", "gateway"}``
  (``at`` in ISO 8601, UTC).
- ``slack``: a Slack incoming webhook's ``{"text": ...}``.
- ``feishu``: a Feishu (Lark) custom bot's ``{"msg_type": "text", "content": {"text": ...}}``; with
  a signing secret also ``timestamp`` (seconds, as a string) and ``sign``: base64 of
  HMAC-SHA256 keyed with ``"{timestamp}\\n{secret}"`` over an empty message, as Feishu documents.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import msgspec


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert to send: what crossed which threshold, and when."""

    kind: str
    subject: str
    message: str
    value: float | None
    threshold: float | None
    at: float
    gateway: str
    rule_id: int | None = None


def feishu_sign(timestamp: int, secret: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def text_of(alert: Alert) -> str:
    """The one-line text the chat formats show."""
    return f"[Tollway {alert.gateway}] {alert.kind}: {alert.subject}: {alert.message}"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def payload(alert: Alert, fmt: str, *, secret: str | None = None) -> dict[str, Any]:
    if fmt == "slack":
        return {"text": text_of(alert)}
    if fmt == "feishu":
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": text_of(alert)}}
        if secret:
            stamp = int(alert.at)
            body = {"timestamp": str(stamp), "sign": feishu_sign(stamp, secret), **body}
        return body
    return {"alert": alert.kind, "subject": alert.subject, "message": alert.message, "value": alert.value,
            "threshold": alert.threshold, "at": iso(alert.at), "gateway": alert.gateway}


def refused(fmt: str, status: int, body: bytes) -> str | None:
    """Why a receiver's answer is a failure (None: delivered). Feishu answers 200 with a non-zero
    ``code`` (19021: the signature did not match); Slack answers plain ``ok``."""
    if not 200 <= status < 300:
        return f"HTTP {status}"
    if fmt == "feishu":
        try:
            data = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError:
            return None
        if isinstance(data, dict):
            code = data.get("code", data.get("StatusCode", 0))
            if code not in (0, None):
                return f"feishu code {code}: {str(data.get('msg', data.get('StatusMessage', '')))[:200]}"
    return None
