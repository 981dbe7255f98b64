"""``app.LazyRoutes``: routes under a prefix, built on the first request that reaches them, matched
as Starlette matches its own (also under a root path), with the app's 404/405 handlers behind them."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

from tollway.app import LazyRoutes


def make_app() -> tuple[Starlette, list[int]]:
    built: list[int] = []

    async def page(request: Request) -> Response:
        return PlainTextResponse(f"page {request.url.path}")

    def build() -> list[BaseRoute]:
        built.append(1)
        return [Route("/ui", page, methods=["GET"]), Route("/ui/{rest:path}", page, methods=["GET", "POST"])]

    async def other(request: Request) -> Response:
        return PlainTextResponse("other")

    async def unrouted(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        return PlainTextResponse(f"unrouted {code}", status_code=code)

    app = Starlette(routes=[LazyRoutes("/ui", build), Route("/{name}", other, methods=["GET"])],
                    exception_handlers={404: unrouted, 405: unrouted})
    return app, built


def test_built_once_on_the_first_request_under_its_prefix() -> None:
    app, built = make_app()
    client = TestClient(app)
    assert built == []
    assert client.get("/uix").text == "other"  # not under the prefix: the next route, nothing built
    assert built == []
    assert client.get("/ui").text == "page /ui"
    assert client.post("/ui/a/b").text == "page /ui/a/b"
    assert built == [1]
    put = client.put("/ui/a")
    assert (put.status_code, put.text) == (405, "unrouted 405")  # the app's own handler


def test_under_a_root_path() -> None:
    app, _ = make_app()
    client = TestClient(app, root_path="/gw")
    assert client.get("/gw/ui/signin").text == "page /gw/ui/signin"
    assert client.get("/gw/uix").text == "other"
