"""The key holder's own pages: my usage, balance, quota and models (``/ui/me``) and my chat
records (``/ui/me/records``); the playground is ``console.playground``.

Every number comes from the key's own API, called with the holder's credential: ``GET /user/me``
(balance, quota, limits, models), ``GET /user/usage`` (per hour or day, per model: summed in SQL),
``GET /user/log/list`` (recent requests), ``/user/session/*`` and ``/user/thread/*`` (records).
The admin secret has no key, so it has no usage or records of its own: these pages say so and
point to the operator pages.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.dispatch import ApiError
from tollway.console.operator.overview import series
from tollway.console.pages import Paging, page_route, redirect, render
from tollway.console.playground import playground_routes
from tollway.console.session import Viewer

# period -> (usage bucket, seconds back, bucket seconds)
PERIODS = {"24h": ("hour", 24 * 3600, 3600), "7d": ("day", 7 * 86400, 86400), "30d": ("day", 30 * 86400, 86400)}
PERIOD_LABELS = {"24h": "Last 24 hours (per hour)", "7d": "Last 7 days (per day)", "30d": "Last 30 days (per day)"}
RECENT = 10


async def _no_key(request: Request, viewer: Viewer, active: str, title: str) -> Response:
    return await render(request, viewer, "me/no_key.html", {}, active=active, title=title)


async def my_usage(request: Request, viewer: Viewer) -> Response:
    if viewer.key_id is None:
        return await _no_key(request, viewer, "me", "My usage")
    period = request.query_params.get("period", "24h")
    if period not in PERIODS:
        period = "24h"
    by, span, step = PERIODS[period]
    since = int(time.time() - span)
    me = await viewer.api("GET", "/user/me")
    usage = await viewer.api("GET", "/user/usage", query={"group_by": by, "since": since})
    per_model = await viewer.api("GET", "/user/usage", query={"group_by": "model", "since": since,
                                                               "order": "cost"})
    recent = await viewer.api("GET", "/user/log/list", query={"limit": RECENT})
    return await render(request, viewer, "me/index.html", {
        "me": me, "period": period, "periods": PERIOD_LABELS, "by": by, "since": since,
        "chart": series(usage.get("items") or [], by, since, step), "totals": usage.get("totals") or {},
        "per_model": per_model.get("items") or [], "recent": recent.get("items") or [],
        "recent_total": recent.get("total", 0)}, active="me", title="My usage")


async def my_records(request: Request, viewer: Viewer) -> Response:
    if viewer.key_id is None:
        return await _no_key(request, viewer, "me-records", "My records")
    paging = Paging(request, per=25)
    q = request.query_params.get("q", "").strip()[:200]
    recording = bool((await viewer.api("GET", "/user/me")).get("records_chats"))
    answer = await viewer.answer("GET", "/user/session/list", query={"q": q, "limit": paging.limit,
                                                                     "offset": paging.offset})
    unavailable = None
    sessions: list[dict[str, Any]] = []
    if answer.status == 404:  # the gateway keeps no chat records at all
        unavailable = answer.data.get("detail") if isinstance(answer.data, dict) else None
    else:
        data = answer.json()
        sessions, paging.total = data.get("items") or [], int(data.get("total") or 0)
    return await render(request, viewer, "me/records.html", {
        "sessions": sessions, "paging": paging, "q": q, "recording": recording, "unavailable": unavailable},
        active="me-records", title="My records")


def _path_int(request: Request, name: str) -> int:
    value = request.path_params.get(name, "")
    if not str(value).isdigit() or len(str(value)) > 18:
        raise ApiError(404, "No such record.")
    return int(value)


async def my_session(request: Request, viewer: Viewer) -> Response:
    if viewer.key_id is None:
        return await _no_key(request, viewer, "me-records", "My records")
    sid = _path_int(request, "id")
    session = await viewer.api("GET", f"/user/session/detail/{sid}")
    return await render(request, viewer, "me/session.html", {"session": session, "threads": session.get("items") or []},
                        active="me-records", title=session.get("title") or f"Session {sid}")


async def my_thread(request: Request, viewer: Viewer) -> Response:
    if viewer.key_id is None:
        return await _no_key(request, viewer, "me-records", "My records")
    tid = _path_int(request, "id")
    thread = await viewer.api("GET", f"/user/thread/detail/{tid}")
    return await render(request, viewer, "me/thread.html", {"thread": thread}, active="me-records",
                        title=f"Exchange {tid}")


async def delete_session(request: Request, viewer: Viewer) -> Response:
    sid = _path_int(request, "id")
    await viewer.api("POST", "/user/session/delete", json={"id": sid})
    return await redirect(request, "/ui/me/records", f"Session {sid} deleted.")


def user_routes() -> list[BaseRoute]:
    return [
        page_route("/me", my_usage, operator=False),
        page_route("/me/records", my_records, operator=False),
        page_route("/me/records/{id}", my_session, operator=False),
        page_route("/me/records/{id}/delete", delete_session, operator=False, methods=("POST",)),
        page_route("/me/threads/{id}", my_thread, operator=False),
        *playground_routes(),
    ]
