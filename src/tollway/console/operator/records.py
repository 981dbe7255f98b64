"""Chat records (``/admin/session/*``, ``/admin/thread/*``, ``/admin/record/*``): sessions
(paged, searched, by key), a session's threads, one thread's messages and answer, and where
recording is on."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.dispatch import ApiError
from tollway.console.forms import Form
from tollway.console.operator.actions import act
from tollway.console.pages import Paging, page_route, render
from tollway.console.session import Viewer

SCOPES = ("key", "group", "studio")


async def sessions(request: Request, viewer: Viewer) -> Response:
    paging = Paging(request)
    q = request.query_params
    filters = {"q": q.get("q", "").strip(), "key_id": q.get("key_id", "") if q.get("key_id", "").isdigit() else ""}
    try:
        data = await viewer.api("GET", "/admin/session/list", query={**filters, "limit": min(paging.limit, 100),
                                                                      "offset": paging.offset})
        settings = await viewer.api("GET", "/admin/record/settings")
    except ApiError as err:
        if err.status != 404:
            raise
        return await render(request, viewer, "ops/records.html", {"off": err.message, "filters": filters,
                                                                 "paging": paging}, active="records",
                            title="Chat records")
    paging.total = int(data.get("total") or 0)
    return await render(request, viewer, "ops/records.html", {
        "items": data.get("items") or [], "paging": paging, "filters": filters, "settings": settings,
        "scopes": SCOPES}, active="records", title="Chat records")


async def session_page(request: Request, viewer: Viewer) -> Response:
    sid = int(request.path_params["id"])
    found = await viewer.api("GET", f"/admin/session/detail/{sid}")
    return await render(request, viewer, "ops/record_session.html", {"session": found}, active="records",
                        title=f"Session {sid}")


async def thread_page(request: Request, viewer: Viewer) -> Response:
    tid = int(request.path_params["id"])
    found = await viewer.api("GET", f"/admin/thread/detail/{tid}")
    return await render(request, viewer, "ops/record_thread.html", {"thread": found}, active="records",
                        title=f"Thread {tid}")


async def delete_session(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    return await act(request, viewer, "POST", "/admin/session/delete", {"id": form.number("id")},
                     back="/ui/records", done="Session deleted.")


async def save_setting(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    choice = form.choice("enabled", ("on", "off", "inherit"), "inherit")
    ref = form.text("id")
    body = {"scope": form.choice("scope", SCOPES, "key"), "id": int(ref) if ref.isdigit() else ref,
            "enabled": {"on": True, "off": False, "inherit": None}[choice]}
    return await act(request, viewer, "POST", "/admin/record/save", body, back="/ui/records",
                     done="Recording setting saved.")


def record_routes() -> list[BaseRoute]:
    post = ("POST",)
    return [
        page_route("/records", sessions),
        page_route("/records/sessions/{id:int}", session_page),
        page_route("/records/threads/{id:int}", thread_page),
        page_route("/records/delete", delete_session, methods=post),
        page_route("/records/settings", save_setting, methods=post),
    ]
