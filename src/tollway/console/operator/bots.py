"""Feishu / Lark bots (``/admin/bot/feishu/*``): list (paged), add, change, delete. Secrets are
listed masked by the API; a secret field left empty on a change keeps its value."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.forms import Form, compact
from tollway.console.operator.actions import act
from tollway.console.pages import Paging, page_route, render
from tollway.console.session import Viewer

CONFIG = ("appId", "appSecret", "apiKey", "modelId", "verificationToken", "encryptKey", "apiBase")


async def bots(request: Request, viewer: Viewer) -> Response:
    paging = Paging(request)
    q = request.query_params.get("q", "").strip()
    data = await viewer.api("GET", "/admin/bot/feishu/list", query={"q": q, "limit": paging.limit,
                                                                     "offset": paging.offset})
    paging.total = int(data.get("total") or 0)
    items = data.get("items") or []
    edit = request.query_params.get("edit", "")
    return await render(request, viewer, "ops/bots.html", {
        "items": items, "paging": paging, "q": q, "editing": next((b for b in items if str(b.get("id")) == edit),
                                                                  None)}, active="bots", title="Bots")


async def save(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    bot_id = form.number("id")
    config: dict[str, Any] = compact({name: form.given(name) for name in CONFIG})
    body = compact({"id": bot_id, "name": form.given("name"), "provider": form.given("provider") or "feishu",
                    "config": config})
    return await act(request, viewer, "POST", "/admin/bot/feishu/save", body, back="/ui/bots", done="Bot saved.")


async def delete(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    return await act(request, viewer, "POST", "/admin/bot/feishu/delete", {"id": form.number("id")},
                     back="/ui/bots", done="Bot deleted.")


def bot_routes() -> list[BaseRoute]:
    post = ("POST",)
    return [page_route("/bots", bots), page_route("/bots/save", save, methods=post),
            page_route("/bots/delete", delete, methods=post)]
