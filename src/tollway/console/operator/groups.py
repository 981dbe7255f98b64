"""Groups (``/admin/group/*``) and the models authorized to each (``/admin/group/model/*``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.dispatch import ApiError
from tollway.console.forms import Form, compact
from tollway.console.operator.actions import act
from tollway.console.pages import Paging, page_route, render
from tollway.console.session import Viewer


async def groups(request: Request, viewer: Viewer) -> Response:
    paging = Paging(request)
    q = request.query_params.get("q", "").strip()
    data = await viewer.api("GET", "/admin/group/list", query={"q": q, "limit": paging.limit,
                                                                "offset": paging.offset})
    paging.total = int(data.get("total") or 0)
    return await render(request, viewer, "ops/groups.html", {"items": data.get("items") or [], "paging": paging,
                                                            "q": q}, active="groups", title="Groups")


async def group_page(request: Request, viewer: Viewer) -> Response:
    group_id = int(request.path_params["id"])
    found = await viewer.api("GET", "/admin/group/list", query={"limit": 1000})
    group = next((g for g in found.get("items") or [] if g.get("id") == group_id), None)
    if group is None:
        raise ApiError(404, f"No group with id {group_id}.")
    authorized = await viewer.api("GET", "/admin/group/model/list", query={"group_id": group_id})
    keys = await viewer.api("GET", "/admin/api-key/list", query={"group_id": group_id, "limit": 100})
    return await render(request, viewer, "ops/group.html", {
        "group": group, "authorized": authorized.get("items") or [], "keys": keys.get("items") or [],
        "keys_total": keys.get("total") or 0}, active="groups", title=f"Group {group.get('name')}")


async def save(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    group_id = form.number("id")
    body = compact({"id": group_id, "name": form.given("name"), "description": form.text("description"),
                    "multiplier": form.amount("multiplier"), "restricted": form.flag("restricted")})
    back = f"/ui/groups/{group_id}" if group_id is not None else "/ui/groups"
    return await act(request, viewer, "POST", "/admin/group/save", body, back=back, done="Group saved.")


async def delete(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    return await act(request, viewer, "POST", "/admin/group/delete", {"id": form.number("id")}, back="/ui/groups",
                     done="Group deleted.")


async def authorize(request: Request, viewer: Viewer) -> Response:
    group_id, form = int(request.path_params["id"]), await Form.read(request)
    op = "deauthorize" if request.url.path.endswith("/deauthorize") else "authorize"
    return await act(request, viewer, "POST", f"/admin/group/model/{op}",
                     {"group_id": group_id, "models": form.names("models")}, back=f"/ui/groups/{group_id}",
                     done="Model authorizations changed.")


def group_routes() -> list[BaseRoute]:
    post = ("POST",)
    return [
        page_route("/groups", groups),
        page_route("/groups/save", save, methods=post),
        page_route("/groups/delete", delete, methods=post),
        page_route("/groups/{id:int}", group_page),
        page_route("/groups/{id:int}/authorize", authorize, methods=post),
        page_route("/groups/{id:int}/deauthorize", authorize, methods=post),
    ]
