"""Studios (City's ``/v1/studios/*``): create, pause, activate, remove, and user_tokens issued
for a studio (``tokens/apply``, the token shown once). City lists every studio at once; the
console pages through that list."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.forms import Form
from tollway.console.operator.actions import act, outcome
from tollway.console.pages import Paging, page_route, render
from tollway.console.session import Viewer

STATUS_ACTIONS = ("pause", "activate", "remove")


async def studios(request: Request, viewer: Viewer) -> Response:
    paging = Paging(request)
    data = await viewer.api("GET", "/v1/studios/list")
    everything = data.get("items") or []
    paging.total = len(everything)
    return await render(request, viewer, "ops/studios.html", {
        "items": everything[paging.offset:paging.offset + paging.limit], "paging": paging},
        active="studios", title="Studios")


async def create(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    return await act(request, viewer, "POST", "/v1/studios/create", {"name": form.text("name")}, back="/ui/studios",
                     done="Studio created.")


async def status(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    action = form.choice("action", STATUS_ACTIONS, "pause")
    done = {"pause": "Studio paused: its tokens get 403.", "activate": "Studio activated.",
            "remove": "Studio removed and its tokens revoked."}[action]
    return await act(request, viewer, "POST", f"/v1/studios/{action}", {"studio_id": form.text("studio_id")},
                     back="/ui/studios", done=done)


async def token(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    answer = await viewer.answer("POST", "/v1/studios/tokens/apply",
                                 json={"studio_id": form.text("studio_id"), "name": form.text("name") or None})
    if not answer.ok:
        return await outcome(request, answer, back="/ui/studios", done="")
    return await render(request, viewer, "ops/token_created.html", {"token": answer.data}, status=201,
                        active="studios", title="user_token issued")


def studio_routes() -> list[BaseRoute]:
    post = ("POST",)
    return [
        page_route("/studios", studios),
        page_route("/studios/create", create, methods=post),
        page_route("/studios/status", status, methods=post),
        page_route("/studios/token", token, methods=post),
    ]
