"""The request log (``GET /admin/log/list``): filters by key, model, status and time, paged;
each request opens to its detail: attempts (every upstream tried), ``dropped_params``, error and
note, tokens, cost, timings."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.dispatch import ApiError, error_message
from tollway.console.pages import Paging, page_route, render
from tollway.console.session import Viewer

_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")


def time_filter(value: str) -> str | None:
    """A ``datetime-local`` box (UTC, as the page says) as the API's ISO time; else as typed."""
    value = value.strip()
    if not value:
        return None
    if _LOCAL.fullmatch(value):
        return value + ("" if value.count(":") == 2 else ":00") + "Z"
    return value


async def logs(request: Request, viewer: Viewer) -> Response:
    paging = Paging(request)
    q = request.query_params
    filters = {name: q.get(name, "").strip() for name in ("key_id", "model", "status", "since", "until")}
    query = {"key_id": filters["key_id"], "model": filters["model"], "status": filters["status"],
             "since": time_filter(filters["since"]), "until": time_filter(filters["until"]),
             "limit": paging.limit, "offset": paging.offset}
    answer = await viewer.answer("GET", "/admin/log/list", query=query)
    items: list[dict[str, Any]] = []
    problem = ""
    if answer.ok:
        items = answer.data.get("items") or []
        paging.total = int(answer.data.get("total") or 0)
    else:  # a bad filter: say which, keep the form
        problem = error_message(answer.data, answer.status)
    for item in items:
        _dropped(item)
    return await render(request, viewer, "ops/logs.html", {
        "items": items, "paging": paging, "filters": filters, "problem": problem,
        "now": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M")}, status=200 if answer.ok else answer.status,
        active="logs", title="Requests")


def _dropped(item: dict[str, Any]) -> dict[str, Any]:
    dropped = item.get("dropped_params")
    item["dropped"] = [p for p in re.split(r"[\s,]+", dropped) if p] if isinstance(dropped, str) else []
    return item


async def log_page(request: Request, viewer: Viewer) -> Response:
    """One request: ``/admin/log/list?request_id=`` (its row, or none)."""
    request_id = request.path_params["id"]
    data = await viewer.api("GET", "/admin/log/list", query={"request_id": request_id, "limit": 1})
    found = [i for i in data.get("items") or [] if i.get("id") == request_id]
    if not found:
        raise ApiError(404, f"No request {request_id} in the log (rows are written a moment after the answer).")
    return await render(request, viewer, "ops/log.html", {"r": _dropped(found[0])}, active="logs",
                        title=f"Request {request_id}")


def log_routes() -> list[BaseRoute]:
    return [page_route("/logs", logs), page_route("/logs/{id}", log_page)]
