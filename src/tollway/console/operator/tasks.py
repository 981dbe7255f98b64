"""Tasks (images, videos): ``GET /api/v1/tasks`` (the admin key sees every task, an admin-role
key its own; newest first, paged by cursor) and ``POST /api/v1/tasks/{id}/cancel``."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.operator.actions import act
from tollway.console.pages import page_route, render
from tollway.console.session import Viewer

PER_PAGE = 25


async def tasks(request: Request, viewer: Viewer) -> Response:
    after = request.query_params.get("after", "")
    data = await viewer.api("GET", "/api/v1/tasks", query={"limit": PER_PAGE, "after": after or None})
    items = data.get("data") or []
    return await render(request, viewer, "ops/tasks.html", {
        "items": items, "after": after, "has_more": bool(data.get("has_more")),
        "next_after": items[-1].get("id") if items else "", "all_tasks": viewer.key_id is None},
        active="tasks", title="Tasks")


async def cancel(request: Request, viewer: Viewer) -> Response:
    task_id = request.path_params["id"]
    return await act(request, viewer, "POST", f"/api/v1/tasks/{quote(task_id, safe='')}/cancel", None,
                     back="/ui/tasks", done=f"Task {task_id} cancelled.")


def task_routes() -> list[BaseRoute]:
    return [page_route("/tasks", tasks), page_route("/tasks/{id}/cancel", cancel, methods=("POST",))]
