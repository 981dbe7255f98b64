"""Models and prices: the registry rows admins manage (``/admin/model/*``: prices, aliases,
enable/disable), the catalog the gateway routes (``GET /v1/ai/models``: callable or what it
needs), Claude's fast/slow mapping (``/admin/config``). Authorization to groups and keys is on
the group and key pages."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.forms import Form, compact
from tollway.console.operator.actions import act, options
from tollway.console.pages import Paging, page_route, render
from tollway.console.session import Viewer

PRICE_UNITS = ("", "character", "second")


async def models(request: Request, viewer: Viewer) -> Response:
    paging = Paging(request)
    q = request.query_params.get("q", "").strip()
    data = await viewer.api("GET", "/admin/model/list", query={"q": q, "limit": paging.limit,
                                                                "offset": paging.offset})
    paging.total = int(data.get("total") or 0)
    catalog = await viewer.answer("GET", "/v1/ai/models")
    config = await viewer.answer("GET", "/admin/config", query={"provider": "echo"})
    edit_id = request.query_params.get("edit", "")
    items = data.get("items") or []
    editing = next((m for m in items if str(m.get("id")) == edit_id), None)
    return await render(request, viewer, "ops/models.html", {
        "items": items, "paging": paging, "q": q, "editing": editing,
        "catalog": (catalog.data or {}).get("items") or [] if catalog.ok else [],
        "mapping": (config.data or {}).get("claude_mapping") or {} if config.ok else {},
        "groups": await options(viewer, "/admin/group/list"), "units": PRICE_UNITS},
        active="models", title="Models and prices")


def _model_body(form: Form) -> dict[str, Any]:
    body = compact({
        "name": form.given("name"), "provider": form.given("provider"), "upstream_id": form.given("upstream_id"),
        "display_name": form.given("display_name"), "category": form.given("category"),
        "description": form.given("description"), "price_in": form.amount("price_in"),
        "price_out": form.amount("price_out"), "credit_cost": form.amount("credit_cost"),
        "unit_price": form.amount("unit_price"), "price_unit": form.choice("price_unit", PRICE_UNITS, ""),
    })
    body["aliases"] = form.names("aliases")
    body["enabled"] = form.flag("enabled")
    for name in ("rpm", "tpm", "max_output_tokens", "group_id"):
        body[name] = form.number(name)  # empty clears
    return body


async def save(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    body = _model_body(form)
    model_id = form.number("id")
    if model_id is not None:
        body["id"] = model_id
    return await act(request, viewer, "POST", "/admin/model/save", body, back="/ui/models",
                     done=f"Model {body.get('name', '')} saved.")


async def toggle(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    enabled = form.flag("enabled")
    return await act(request, viewer, "POST", "/admin/model/save", {"id": form.number("id"), "enabled": enabled},
                     back="/ui/models", done="Model enabled." if enabled else "Model disabled.")


async def delete(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    return await act(request, viewer, "POST", "/admin/model/delete", {"id": form.number("id")}, back="/ui/models",
                     done="Model deleted.")


async def mapping(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    wanted = compact({"fast": form.given("fast"), "slow": form.given("slow")})
    return await act(request, viewer, "POST", "/admin/config", {"claude_mapping": wanted, "provider": "echo"},
                     back="/ui/models", done="Claude model mapping saved.")


def model_routes() -> list[BaseRoute]:
    post = ("POST",)
    return [
        page_route("/models", models),
        page_route("/models/save", save, methods=post),
        page_route("/models/toggle", toggle, methods=post),
        page_route("/models/delete", delete, methods=post),
        page_route("/models/mapping", mapping, methods=post),
    ]
