"""The web console, served under ``/ui`` by ``tollway serve`` (issue 16).

Server-rendered pages (Jinja2, ``templates/``) with htmx as progressive enhancement and uPlot
for charts, both vendored in ``static/`` with their licence notes: no CDN, no Node at install
or run time.

**One way to change state.** The console has no write path of its own: every action a page
offers becomes one call to the documented HTTP API (``/admin/...``, City's
``/v1/{service}/{action}``, ``/user/...``, ``/v1/chat/completions``) made in process through the
whole ASGI app (``dispatch``), with the signed-in holder's own credential as its bearer. The API
authenticates, validates, writes, logs and answers exactly as it would for ``curl``; the page
shows its answer (or its error). Pages name the endpoint each form calls. Reads go through the
API too, so a page shows what the API shows that credential.

Sign-in, the session cookie and CSRF are in ``session`` and ``signin``; the page framework
(routes, ``base.html``, paging, navigation) in ``pages``; the operator pages in the
``operator`` package; the key holder's own pages in ``user_pages``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tollway.console.operator import operator_routes
from tollway.console.pages import error_page
from tollway.console.session import load_viewer
from tollway.console.signin import signin_routes
from tollway.console.static import static_routes
from tollway.console.user_pages import user_routes


async def _to_home(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=308)


async def _not_found(request: Request) -> Response:
    viewer = await load_viewer(request)
    return await error_page(request, viewer, 404, f"There is no console page at {request.url.path}.")


def console_routes() -> list[BaseRoute]:
    """Every ``/ui`` route; the last one answers any other ``/ui/...`` path with the console's 404."""
    return [
        Route("/ui", _to_home, methods=["GET"]),
        *static_routes(),
        *signin_routes(),
        *operator_routes(),
        *user_routes(),
        Route("/ui/{rest:path}", _not_found, methods=["GET", "POST"]),
    ]
