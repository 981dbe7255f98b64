"""Keys: list (paged), create (the secret shown once), edit limits, quota, group and whitelist,
recharge, revoke, model authorizations, payments. Each action is one call to
``/admin/api-key/*`` or ``/admin/payment/list``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.forms import Form, compact
from tollway.console.operator.actions import act, options, outcome
from tollway.console.pages import Paging, page_route, render
from tollway.console.session import Viewer

ROLES = ("user", "admin")


def _key_id(request: Request) -> int:
    return int(request.path_params["id"])


async def keys(request: Request, viewer: Viewer) -> Response:
    paging = Paging(request)
    q = request.query_params
    filters = {"q": q.get("q", "").strip(), "role": q.get("role", "") if q.get("role") in ROLES else "",
               "group_id": q.get("group_id", "") if q.get("group_id", "").isdigit() else ""}
    data = await viewer.api("GET", "/admin/api-key/list", query={**filters, "limit": paging.limit,
                                                                   "offset": paging.offset})
    paging.total = int(data.get("total") or 0)
    groups = await options(viewer, "/admin/group/list")
    return await render(request, viewer, "ops/keys.html", {
        "items": data.get("items") or [], "paging": paging, "filters": filters, "groups": groups,
        "group_names": {g["id"]: g.get("name") for g in groups}, "roles": ROLES}, active="keys", title="Keys")


async def create(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    body = compact({"name": form.text("name"), "role": form.choice("role", ROLES, "user"),
                    "email": form.given("email"), "group_id": form.number("group_id"),
                    "balance": form.amount("balance"), "month_quota": form.amount("month_quota"),
                    "rpm": form.number("rpm"), "tpm": form.number("tpm"),
                    "models": form.names("models") or None})
    answer = await viewer.answer("POST", "/admin/api-key/apply", json=body)
    if not answer.ok:
        return await outcome(request, answer, back="/ui/keys", done="")
    key: dict[str, Any] = answer.data
    # the secret is in this one answer only: never in a redirect, a cookie or a cache
    return await render(request, viewer, "ops/key_created.html", {"key": key, "secret": key.get("api_key", "")},
                        status=201, active="keys", title="Key created")


async def key_page(request: Request, viewer: Viewer) -> Response:
    key_id = _key_id(request)
    key = await viewer.api("GET", "/admin/api-key/detail", query={"id": key_id})
    paging = Paging(request, per=10)
    payments = await viewer.api("GET", "/admin/payment/list", query={"key_id": key_id, "limit": paging.limit,
                                                                     "offset": paging.offset})
    paging.total = int(payments.get("total") or 0)
    authorized = await viewer.api("GET", "/admin/api-key/model/list", query={"key_id": key_id})
    usage = await viewer.answer("GET", "/admin/usage", query={"key_id": key_id, "group_by": "model"})
    groups = await options(viewer, "/admin/group/list")
    return await render(request, viewer, "ops/key.html", {
        "key": key, "payments": payments.get("items") or [], "paging": paging,
        "authorized": authorized.get("items") or [], "usage": usage.data if usage.ok else None,
        "groups": groups, "roles": ROLES}, active="keys", title=f"Key #{key_id}")


async def update(request: Request, viewer: Viewer) -> Response:
    key_id, form = _key_id(request), await Form.read(request)
    models = form.names("models")
    body = {"id": key_id, "name": form.text("name"), "email": form.text("email"),
            "role": form.choice("role", ROLES, "user"), "group_id": form.number("group_id"),
            "enabled": form.flag("enabled"), "month_quota": form.amount("month_quota"),
            "rpm": form.number("rpm"), "tpm": form.number("tpm"),
            "models": models if form.flag("whitelist") else None}
    return await act(request, viewer, "POST", "/admin/api-key/update", body, back=f"/ui/keys/{key_id}",
                     done="Key saved.")


async def recharge(request: Request, viewer: Viewer) -> Response:
    key_id, form = _key_id(request), await Form.read(request)
    body = compact({"id": key_id, "balance": form.amount("amount"), "note": form.given("note")})
    return await act(request, viewer, "POST", "/admin/api-key/recharge", body, back=f"/ui/keys/{key_id}",
                     done="Balance recharged.")


async def revoke(request: Request, viewer: Viewer) -> Response:
    key_id = _key_id(request)
    return await act(request, viewer, "POST", "/admin/api-key/delete", {"id": key_id}, back="/ui/keys",
                     done=f"Key #{key_id} revoked: it no longer works anywhere.")


async def authorize(request: Request, viewer: Viewer) -> Response:
    key_id, form = _key_id(request), await Form.read(request)
    op = "deauthorize" if request.url.path.endswith("/deauthorize") else "authorize"
    return await act(request, viewer, "POST", f"/admin/api-key/model/{op}",
                     {"key_id": key_id, "models": form.names("models")}, back=f"/ui/keys/{key_id}",
                     done="Model authorizations changed.")


async def payments(request: Request, viewer: Viewer) -> Response:
    paging = Paging(request)
    key_id = request.query_params.get("key_id", "")
    data = await viewer.api("GET", "/admin/payment/list", query={
        "key_id": key_id if key_id.isdigit() else None, "limit": paging.limit, "offset": paging.offset})
    paging.total = int(data.get("total") or 0)
    return await render(request, viewer, "ops/payments.html", {"items": data.get("items") or [], "paging": paging,
                                                              "key_id": key_id}, active="keys", title="Payments")


def key_routes() -> list[BaseRoute]:
    post = ("POST",)
    return [
        page_route("/keys", keys),
        page_route("/keys/create", create, methods=post),
        page_route("/keys/payments", payments),
        page_route("/keys/{id:int}", key_page),
        page_route("/keys/{id:int}/update", update, methods=post),
        page_route("/keys/{id:int}/recharge", recharge, methods=post),
        page_route("/keys/{id:int}/revoke", revoke, methods=post),
        page_route("/keys/{id:int}/authorize", authorize, methods=post),
        page_route("/keys/{id:int}/deauthorize", authorize, methods=post),
    ]
