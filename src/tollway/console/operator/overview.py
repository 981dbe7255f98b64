"""``/ui/`` overview: requests, errors, tokens and spend per hour (last 48 h) or per day (last
30 days), top keys and models, and upstream health. From ``GET /admin/usage`` and
``GET /admin/queue/status``."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.dispatch import ApiError
from tollway.console.pages import HOLDER_HOME, page_route, redirect, render
from tollway.console.session import Viewer

PERIODS = {"48h": ("hour", 48 * 3600), "7d": ("day", 7 * 86400), "30d": ("day", 30 * 86400)}
TOP = 5


def bucket_time(item: dict[str, Any], by: str) -> float | None:
    """A usage item's bucket as unix seconds (``day`` ``2026-11-23``, ``hour`` ``2026-11-23T10:00:00Z``)."""
    import datetime as dt

    value = item.get(by)
    if not isinstance(value, str):
        return None
    try:
        if by == "day":
            return dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:00:00Z").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def series(items: list[dict[str, Any]], by: str, since: float, step: int) -> dict[str, Any]:
    """Chart data with every bucket of the period present (zeros where nothing happened)."""
    found = {t: i for i in items if (t := bucket_time(i, by)) is not None}
    start = since - since % step
    xs = [float(t) for t in range(int(start), int(time.time()) + 1, step)]
    def col(name: str) -> list[float]:
        return [float(found[x].get(name) or 0) if x in found else 0.0 for x in xs]
    tokens = [a + b for a, b in zip(col("prompt_tokens"), col("completion_tokens"), strict=True)]
    return {
        "requests": {"x": xs, "series": [{"label": "Requests", "values": col("requests")},
                                         {"label": "Errors", "values": col("errors")}]},
        "tokens": {"x": xs, "series": [{"label": "Tokens", "values": tokens}]},
        "spend": {"x": xs, "series": [{"label": "Spend (credits)", "values": col("cost")},
                                      {"label": "Estimated (USD, unpriced models)", "values": col("estimated_cost")}]},
        "rows": [found[x] for x in xs if x in found],
    }


async def _usage(viewer: Viewer, query: dict[str, Any]) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = await viewer.api("GET", "/admin/usage", query=query)
        return data
    except ApiError:
        return None


async def pool_status(viewer: Viewer) -> dict[str, Any]:
    """Every pool's status (``providers`` of ``/admin/queue/status``). The endpoint's own pool
    defaults to the first provider that is not echo; with echo alone it must be named."""
    answer = await viewer.answer("GET", "/admin/queue/status")
    if answer.status == 400:
        answer = await viewer.answer("GET", "/admin/queue/status", query={"provider": "echo"})
    providers: dict[str, Any] = answer.json().get("providers") or {}
    return providers


async def overview(request: Request, viewer: Viewer) -> Response:
    if not viewer.is_operator:  # the console's home: a key holder's is its own page
        return await redirect(request, HOLDER_HOME)
    period = request.query_params.get("period", "48h")
    if period not in PERIODS:
        period = "48h"
    by, span = PERIODS[period]
    now = time.time()
    since = now - span
    step = 3600 if by == "hour" else 86400
    notes: list[str] = []
    usage = await _usage(viewer, {"group_by": by, "since": int(since)})
    if usage is None and by == "hour":  # a gateway without hourly usage yet: days instead
        by, step = "day", 86400
        usage = await _usage(viewer, {"group_by": by, "since": int(since)})
        notes.append("Hourly usage is not available from this gateway's /admin/usage; showing days.")
    usage = usage or {"items": [], "totals": {}}
    chart = series(usage.get("items") or [], by, since, step)
    tops: dict[str, list[dict[str, Any]]] = {}
    for what in ("key", "model"):
        top = await _usage(viewer, {"group_by": what, "since": int(since), "order": "cost", "limit": TOP})
        if top is None:  # no ``order`` yet: every group, sorted here
            top = await _usage(viewer, {"group_by": what, "since": int(since)}) or {"items": []}
            top["items"] = sorted(top.get("items") or [], key=lambda i: (-(i.get("cost") or 0),
                                                                         -(i.get("requests") or 0)))[:TOP]
        tops[what] = top.get("items") or []
    try:
        pools = await pool_status(viewer)
    except ApiError as err:
        pools, notes = {}, [*notes, f"Upstream health: {err.message}"]
    return await render(request, viewer, "ops/overview.html", {
        "period": period, "periods": list(PERIODS), "by": by, "chart": chart, "totals": usage.get("totals") or {},
        "top_keys": tops["key"], "top_models": tops["model"], "pools": pools, "notes": notes},
        active="overview", title="Overview")


def overview_routes() -> list[BaseRoute]:
    return [page_route("/", overview, operator=False)]
