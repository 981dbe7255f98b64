"""Request logs, usage and payments: ``/admin/log/list``, ``/admin/usage``, ``/admin/payment/list``
and a key's own ``/user/usage`` and ``/user/log/list`` (the same answers, of the calling key's rows).

A log listing filters by ``key_id``, ``model``, ``status``, ``since``, ``until`` and ``request_id``
(the ``x-request-id`` a call was answered with: its one row, once written; rows are written
behind the answer, within ``TOLLWAY_LOG_FLUSH_INTERVAL``).

Times in queries (``since`` inclusive, ``until`` exclusive) are unix seconds or ISO 8601
(``2026-11-23T10:00:00Z``; without an offset, UTC). ``status`` is a code (``404``) or a class
(``4xx``). ``group_by`` is a comma-separated subset of ``key``, ``model``, ``day`` (the UTC
calendar day, ``2026-11-23``) and ``hour`` (the UTC hour, ``2026-11-23T10:00:00Z``, usable as a
``since``); usage items hold only the fields grouped by, and each sums ``requests``, ``errors``
(status 400 and above), tokens and cost. ``order`` (``cost``, ``requests``, ``tokens`` or
``errors``) sorts the groups by that sum, largest first (``cost`` ties go to the larger estimate),
instead of by day, hour, key and model; ``limit`` (1 to 10000) keeps the first groups, so
``group_by=model&order=cost&limit=5`` is the five models with the most spend. ``truncated`` says
more groups matched; ``totals`` always sums every matching row. Money goes out in credits and
exactly in micro-credits (``cost``, ``cost_micro``). A call on a model without an operator price
also shows ``estimated_cost`` (USD at its provider's list price, ``billing.reference_prices``) and
``estimated_cost_micro``: an estimate, never charged (null in a log row without one).
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from tollway.admin.base import MAX_INT, admin_endpoint, int_param, str_param
from tollway.core.errors import AuthenticationFailed, InvalidRequest
from tollway.core.keys import ApiKey
from tollway.core.money import MICRO
from tollway.core.request_log import RequestLog
from tollway.routing.gateway import Gateway
from tollway.store.ledger import RECHARGE, LedgerRepository
from tollway.store.request_logs import GROUPS, ORDERS, RequestLogRepository

MAX_LIMIT = 1000
MAX_GROUPS = 10_000  # usage items per answer; ``truncated`` says when more groups matched
MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z
_INT = re.compile(r"-?[0-9]+")
_UNIX = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_STATUS = re.compile(r"[1-5]([0-9][0-9]|xx)")
_attempts = msgspec.json.Decoder()


def time_param(value: str | None, name: str) -> float | None:
    """Unix seconds (``1795392000``, ``1795392000.5``) or ISO 8601 (an offset, or UTC without). All
    digits is always unix seconds: ``20261123`` is 1970-08-23, not a basic-format date."""
    if value is None or value == "":
        return None
    error = InvalidRequest(f"{name} must be unix seconds or an ISO 8601 time such as 2026-11-23T10:00:00Z",
                           param=name)
    if len(value) > 64:
        raise error
    if _UNIX.fullmatch(value):
        t = float(value)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise error from None
        t = (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()
    if not 0 <= t <= MAX_TIME:
        raise InvalidRequest(f"{name} must be between 1970 and 9999", param=name)
    return t


def window(q: QueryParams) -> tuple[float | None, float | None]:
    since, until = time_param(q.get("since"), "since"), time_param(q.get("until"), "until")
    if since is not None and until is not None and since > until:
        raise InvalidRequest("since must not be after until", param="since")
    return since, until


def status_param(value: str | None) -> int | str | None:
    if value is None or value == "":
        return None
    value = value.lower()
    if _STATUS.fullmatch(value):
        return value if value.endswith("xx") else int(value)
    raise InvalidRequest("status must be an HTTP status code (404) or a class (4xx)", param="status")


def group_param(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None or value == "":
        return default
    names = [part.strip() for part in value.split(",")]
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise InvalidRequest(f"group_by: unknown {', '.join(repr(n) for n in unknown)}; "
                             f"choose from {', '.join(GROUPS)}", param="group_by")
    return tuple(g for g in GROUPS if g in names)


def order_param(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in ORDERS:
        raise InvalidRequest(f"order must be one of {', '.join(ORDERS)}", param="order")
    return value


def query_int(value: str | None, name: str, default: int | None = None, *, low: int = 0,
              high: int = MAX_INT) -> int | None:
    """``int_param`` for a query string, refusing first what only looks numeric to it (``²``, ``--1``)."""
    if value and not _INT.fullmatch(value):
        raise InvalidRequest(f"{name} must be an integer", param=name)
    return int_param(value, name, default, low=low, high=high)


def model_param(value: str | None) -> str | None:
    return str_param(value, "model", 200) or None


def log_item(row: RequestLog) -> dict[str, Any]:
    """A request-log row as listed: its fields, ``cost`` in credits, ``attempts`` decoded."""
    item: dict[str, Any] = msgspec.structs.asdict(row)
    item["cost"] = row.cost_micro / MICRO
    estimated = row.estimated_cost_micro
    item["estimated_cost"] = estimated / MICRO if estimated is not None else None  # USD, never charged
    if row.attempts is not None:
        with contextlib.suppress(msgspec.DecodeError):  # else kept as the stored text
            item["attempts"] = _attempts.decode(row.attempts)
    return item


def usage_item(group: dict[str, Any]) -> dict[str, Any]:
    cost = group.pop("cost_micro")
    estimated = group.pop("estimated_cost_micro")
    return {**group, "cost": cost / MICRO, "cost_micro": cost, "estimated_cost": estimated / MICRO,
            "estimated_cost_micro": estimated}


async def usage_report(gw: Gateway, q: QueryParams, *, key_id: int | None,
                       default_groups: tuple[str, ...]) -> dict[str, Any]:
    """``/admin/usage``'s answer: one item per group, and the sums over every matching row."""
    model = model_param(q.get("model"))
    since, until = window(q)
    group_by = group_param(q.get("group_by"), default_groups)
    order = order_param(q.get("order"))
    limit = query_int(q.get("limit"), "limit", MAX_GROUPS, low=1, high=MAX_GROUPS) or MAX_GROUPS
    repo = RequestLogRepository(gw.engine)
    groups = await repo.usage(key_id=key_id, model=model, since=since, until=until, group_by=group_by,
                              order=order, limit=limit + 1)
    (totals,) = await repo.usage(key_id=key_id, model=model, since=since, until=until, group_by=())
    return {"items": [usage_item(g) for g in groups[:limit]], "totals": usage_item(totals),
            "group_by": list(group_by), "truncated": len(groups) > limit}


async def log_page(gw: Gateway, q: QueryParams, *, key_id: int | None) -> dict[str, Any]:
    """``/admin/log/list``'s answer: matching rows newest first, a page of them, and their count."""
    since, until = window(q)
    rows, total = await RequestLogRepository(gw.engine).list(
        key_id=key_id, model=model_param(q.get("model")), status=status_param(q.get("status")), since=since,
        until=until, request_id=str_param(q.get("request_id"), "request_id", 200) or None,
        limit=query_int(q.get("limit"), "limit", 10, low=1, high=MAX_LIMIT) or 10,
        offset=query_int(q.get("offset"), "offset", 0) or 0,
    )
    return {"items": [log_item(r) for r in rows], "total": total}


async def list_logs(request: Request, gw: Gateway) -> dict[str, Any]:
    return await log_page(gw, request.query_params, key_id=query_int(request.query_params.get("key_id"), "key_id"))


async def admin_usage(request: Request, gw: Gateway) -> dict[str, Any]:
    q = request.query_params
    return await usage_report(gw, q, key_id=query_int(q.get("key_id"), "key_id"),
                              default_groups=("key", "model", "day"))


async def list_payments(request: Request, gw: Gateway) -> dict[str, Any]:
    """Seed 004's recharge history: the ledger's ``recharge`` rows, newest first."""
    q = request.query_params
    entries, total = await LedgerRepository(gw.engine).entries(
        key_id=query_int(q.get("key_id"), "key_id"), kind=RECHARGE,
        limit=query_int(q.get("limit"), "limit", 10, low=1, high=MAX_LIMIT) or 10,
        offset=query_int(q.get("offset"), "offset", 0) or 0,
    )
    return {"items": [e.public() for e in entries], "total": total}


async def calling_key(request: Request, gw: Gateway, path: str, admin_path: str) -> ApiKey:
    """The key that authenticated (not the admin secret, which has no key; not a revoked key);
    a ``key_id`` in the query must be its own."""
    identity = await gw.identify(request.headers, direct=False)
    if identity.key is None:
        raise InvalidRequest(f"This endpoint reports an API key's own usage; use {admin_path}.")
    key = await gw.keys.get(identity.key.id)
    if key is None or key.revoked_at is not None:
        raise AuthenticationFailed("Invalid API key.")
    if request.query_params.get("key_id") not in (None, "", str(key.id)):
        raise InvalidRequest(f"key_id: {path} reports the calling key only", param="key_id")
    return key


async def user_logs(request: Request, gw: Gateway) -> dict[str, Any]:
    """The calling key's own request-log rows, as ``/admin/log/list`` lists them."""
    key = await calling_key(request, gw, "/user/log/list", "/admin/log/list")
    return await log_page(gw, request.query_params, key_id=key.id)


async def user_usage(request: Request, gw: Gateway) -> dict[str, Any]:
    """The calling key's own usage (its API key authenticates; the admin secret alone has no key)."""
    key = await calling_key(request, gw, "/user/usage", "/admin/usage")
    q = request.query_params
    report = await usage_report(gw, q, key_id=key.id, default_groups=("model", "day"))
    report["key"] = {"id": key.id, "name": key.name, "prefix": key.prefix, "balance": key.balance / MICRO,
                     "balance_micro": key.balance,
                     "month_quota": None if key.month_quota is None else key.month_quota / MICRO,
                     "month_quota_micro": key.month_quota}
    return report


def usage_routes() -> list[BaseRoute]:
    return [
        Route("/admin/log/list", admin_endpoint(list_logs), methods=["GET"]),
        Route("/admin/usage", admin_endpoint(admin_usage), methods=["GET"]),
        Route("/admin/payment/list", admin_endpoint(list_payments), methods=["GET"]),
        Route("/user/usage", admin_endpoint(user_usage, public=True), methods=["GET"]),
        Route("/user/log/list", admin_endpoint(user_logs, public=True), methods=["GET"]),
    ]
