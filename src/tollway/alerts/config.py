"""An alert rule's settings: validated from an admin's (or the CLI's) body, sealed for the store,
masked for listings, opened for sending.

A body: ``kind`` (``KINDS``), ``webhook`` (an http(s) URL), and as the kind needs (``NEEDS``):
``threshold`` (a number: credits for ``low_balance``, a fraction 0..1 for ``error_rate``,
milliseconds for ``latency_p99``, a count for ``task_failures``), ``minutes``, ``window``
(minutes) and ``min_requests``; optionally ``name``, ``filter`` (``key_id``, ``model``,
``provider``), ``format`` (``json`` | ``slack`` | ``feishu``), ``secret`` (Feishu's signing
secret), ``debounce`` (minutes, default 60) and ``enabled`` (default true). On an update a field
not given keeps its value, and ``webhook`` or ``secret`` sent back as its listing mask too;
``secret`` is cleared with ``""`` or ``null``.

The webhook URL (which may carry a token, as Slack's and Feishu's do) and the secret are stored
as ``SecretBox`` tokens; a listing shows the URL's scheme and host only (``https://host/…``) and
the secret's first 4 characters.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from tollway.auth.secret_box import SecretBox
from tollway.core.errors import InvalidRequest
from tollway.core.money import to_micro
from tollway.store.alerts import AlertRule, RuleFields

QUOTA, LOW_BALANCE, CREDENTIAL = "quota", "low_balance", "credential"
ERROR_RATE, LATENCY_P99, STRANDED, TASK_FAILURES = "error_rate", "latency_p99", "stranded_settlement", "task_failures"
KINDS = (QUOTA, LOW_BALANCE, CREDENTIAL, ERROR_RATE, LATENCY_P99, STRANDED, TASK_FAILURES)
FORMATS = ("json", "slack", "feishu")
FILTERS = ("key_id", "model", "provider")
MASK = "…"
DEFAULT_DEBOUNCE = 60
MAX_MINUTES = 60 * 24 * 31  # a month: every duration (window, minutes, debounce) fits in it
# what each kind reads: required parameters, and the defaults of the optional ones
NEEDS: dict[str, tuple[tuple[str, ...], dict[str, int]]] = {
    QUOTA: ((), {}),
    LOW_BALANCE: (("threshold",), {}),
    CREDENTIAL: ((), {"minutes": 10}),
    ERROR_RATE: (("threshold",), {"window": 5, "min_requests": 10}),
    LATENCY_P99: (("threshold",), {"window": 5, "min_requests": 10}),
    STRANDED: ((), {"minutes": 10}),
    TASK_FAILURES: (("threshold",), {"window": 60}),
}
PARAMS = ("threshold", "minutes", "window", "min_requests")
BODY = frozenset({"id", "name", "kind", "enabled", "filter", "webhook", "format", "secret", "debounce", *PARAMS})
READ_ONLY = frozenset({"created_at", "updated_at", "threshold_micro", "last_fired"})


def masked_url(url: str) -> str:
    """A webhook URL as a listing shows it: scheme and host (no user, path or query)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/{MASK}"


def masked_secret(value: str) -> str:
    return value[:4] + MASK if value else ""


def webhook_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("webhook must be an http(s) URL", param="webhook")
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise InvalidRequest("webhook must be an http(s) URL", param="webhook") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 2000 or not value.isprintable():
        raise InvalidRequest("webhook must be an http(s) URL of at most 2000 characters", param="webhook")
    return str(value)


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidRequest(f"{name} must be an integer", param=name)
    try:
        n = int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer", param=name) from None
    if not low <= n <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", param=name)
    return n


def _threshold(kind: str, value: Any) -> str:
    if kind == LOW_BALANCE:
        return str(Decimal(to_micro(value, "threshold")) / 1_000_000)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest("threshold must be a number", param="threshold")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest("threshold must be a number", param="threshold") from None
    if not number.is_finite() or number < 0 or number > 10**12:
        raise InvalidRequest("threshold must be a number from 0 to 10^12", param="threshold")
    if kind == ERROR_RATE and number > 1:
        raise InvalidRequest("an error_rate threshold is a fraction from 0 to 1 (0.05: 5%)", param="threshold")
    return format(number.normalize(), "f") if number else "0"


def _filters(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"filter must be an object with {', '.join(FILTERS)}", param="filter")
    unknown = sorted(set(value) - set(FILTERS))
    if unknown:
        raise InvalidRequest(f"unknown filter field(s): {', '.join(unknown)}; known: {', '.join(FILTERS)}",
                             param="filter")
    out: dict[str, Any] = {}
    if value.get("key_id") not in (None, ""):
        out["key_id"] = _int(value["key_id"], "filter.key_id", 1, 2**31 - 1)
    for name in ("model", "provider"):
        v = value.get(name)
        if v in (None, ""):
            continue
        if not isinstance(v, str) or len(v) > 200 or not v.isprintable():
            raise InvalidRequest(f"filter.{name} must be a string of at most 200 characters", param="filter")
        out[name] = v
    return out


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise InvalidRequest(f"{name} must be a string of at most {limit} printable characters", param=name)
    return value.strip()


def validate(box: SecretBox, body: dict[str, Any], before: AlertRule | None) -> RuleFields:
    """A save body (over the stored rule ``before`` on an update) checked and sealed."""
    unknown = sorted(set(body) - BODY - READ_ONLY)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", param=unknown[0])
    kind = body.get("kind", before.kind if before else None)
    if kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}", param="kind")
    fmt = body.get("format", before.format if before else "json")
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}", param="format")
    given_url = body.get("webhook")
    if given_url is None or (before is not None and isinstance(given_url, str) and given_url.endswith(MASK)):
        if before is None:
            raise InvalidRequest("webhook is required", param="webhook")
        webhook = before.webhook  # kept, sealed as it is
    else:
        webhook = box.encrypt(webhook_url(given_url))
    secret = before.secret if before else None
    if "secret" in body:
        given = body["secret"]
        if given in (None, ""):
            secret = None
        elif not (before is not None and isinstance(given, str) and given.endswith(MASK)):
            secret = box.encrypt(_text(given, "secret", 512))
    if secret is not None and fmt != "feishu":
        raise InvalidRequest("secret is Feishu's signing secret: only for format feishu", param="secret")
    required, defaults = NEEDS[kind]
    same_kind = before is not None and before.kind == kind
    params: dict[str, Any] = {}
    for name in PARAMS:
        value = body.get(name) if name in body else (getattr(before, name) if same_kind and before else None)
        if value in (None, ""):
            if name in required:
                raise InvalidRequest(f"a {kind} rule needs {name}", param=name)
            params[name] = defaults.get(name)
            continue
        if name == "threshold":
            params[name] = _threshold(kind, value)
        elif name == "min_requests":
            params[name] = _int(value, name, 1, 1_000_000)
        else:
            params[name] = _int(value, name, 1, MAX_MINUTES)
    filters = _filters(body["filter"]) if "filter" in body else (before.filters if before else {})
    enabled = body.get("enabled", before.enabled if before else True)
    if not isinstance(enabled, bool):
        raise InvalidRequest("enabled must be true or false", param="enabled")
    debounce = body.get("debounce", before.debounce if before else DEFAULT_DEBOUNCE)
    name_given = body.get("name", before.name if before else "")
    return RuleFields(name=_text(name_given if name_given is not None else "", "name", 200), kind=kind,
                      enabled=enabled, filters=filters, threshold=params["threshold"], minutes=params["minutes"],
                      window=params["window"], min_requests=params["min_requests"], webhook=webhook, format=fmt,
                      secret=secret, debounce=_int(debounce, "debounce", 0, MAX_MINUTES))


def listed(box: SecretBox, rule: AlertRule) -> dict[str, Any]:
    """A rule as a listing shows it: the webhook and the secret masked."""
    out: dict[str, Any] = {
        "id": rule.id, "name": rule.name, "kind": rule.kind, "enabled": rule.enabled, "filter": rule.filters,
        "threshold": threshold_number(rule), "minutes": rule.minutes, "window": rule.window,
        "min_requests": rule.min_requests, "webhook": masked_url(box.decrypt(rule.webhook)), "format": rule.format,
        "secret": masked_secret(box.decrypt(rule.secret)) if rule.secret else "", "debounce": rule.debounce,
        "created_at": rule.created_at, "updated_at": rule.updated_at,
    }
    if rule.kind == LOW_BALANCE and rule.threshold is not None:
        out["threshold_micro"] = to_micro(rule.threshold, "threshold")
    return out


def threshold_number(rule: AlertRule) -> float | int | None:
    if rule.threshold is None:
        return None
    number = Decimal(rule.threshold)
    return int(number) if number == number.to_integral_value() else float(number)
