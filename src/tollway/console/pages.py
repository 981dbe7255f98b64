"""How a console page is made: its route (``page_route``), rendering in ``base.html`` (``render``),
redirects with a message (``redirect``), paging (``Paging``) and the navigation.

A page handler is ``async def handler(request: Request, viewer: Viewer) -> Response``. The route
wrapper signs the holder in (or sends the browser to ``/ui/signin``), refuses a state-changing
request without its CSRF token (403), refuses operator pages to key holders (403, a page that
says so), and renders an ``ApiError`` (the API refused a call) or a ``TollwayError`` as a page
with its status.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import jinja2
import msgspec
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tollway.console.dispatch import ApiError
from tollway.console.session import (
    FLASH_COOKIE,
    CsrfRefused,
    Viewer,
    check_csrf,
    clear_cookie,
    load_viewer,
    set_flash,
    take_flash,
)
from tollway.console.static import static_url
from tollway.core.errors import TollwayError

log = logging.getLogger("tollway.console")
TEMPLATES = Path(__file__).parent / "templates"
PageHandler = Callable[[Request, Viewer], Awaitable[Response]]

SIGNIN_URL = "/ui/signin"
HOME_URL = "/ui/"
HOLDER_HOME = "/ui/me"  # a key holder's home (user_pages)
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                                "frame-ancestors 'none'; form-action 'self'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class NavItem(NamedTuple):
    label: str
    href: str
    section: str  # the ``active`` name a page renders with to highlight it


OPERATOR_NAV = (
    NavItem("Overview", "/ui/", "overview"),
    NavItem("Keys", "/ui/keys", "keys"),
    NavItem("Models", "/ui/models", "models"),
    NavItem("Groups", "/ui/groups", "groups"),
    NavItem("Studios", "/ui/studios", "studios"),
    NavItem("Env", "/ui/env", "env"),
    NavItem("Pools", "/ui/pools", "pools"),
    NavItem("Requests", "/ui/logs", "logs"),
    NavItem("Chat records", "/ui/records", "records"),
    NavItem("Tasks", "/ui/tasks", "tasks"),
    NavItem("Bots", "/ui/bots", "bots"),
)
# the admin secret has no key (so no "My key" section): its playground (a pasted key) is here
PLAYGROUND_NAV = NavItem("Playground", "/ui/playground", "playground")
# the key holder's own pages (console/user_pages.py)
HOLDER_NAV = (
    NavItem("My usage", "/ui/me", "me"),
    NavItem("My records", "/ui/me/records", "me-records"),
    NavItem("Playground", "/ui/playground", "playground"),
)


def nav_for(viewer: Viewer | None) -> list[tuple[str, Sequence[NavItem]]]:
    """The navigation's sections for this holder: operators get the operator pages, anyone with
    a key its own pages (an admin-role key both; the admin secret has no key of its own)."""
    if viewer is None:
        return []
    sections: list[tuple[str, Sequence[NavItem]]] = []
    if viewer.is_operator:
        # an admin-role key finds the playground under "My key"; the admin secret only here
        sections.append(("Operate", OPERATOR_NAV if viewer.key_id is not None else (*OPERATOR_NAV, PLAYGROUND_NAV)))
    if viewer.key_id is not None:
        sections.append(("My key", HOLDER_NAV))
    return sections


# filters --------------------------------------------------------------------------------------


def when(value: Any) -> str:
    """Unix seconds as ``2026-11-23 10:00:00 UTC`` (empty for none)."""
    if value is None or value == "":
        return ""
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)


def credits(value: Any, digits: int = 6) -> str:
    """A credit amount without float noise: ``1.5``, ``0.000123``, ``12``."""
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    text = f"{number:,.{digits}f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def number(value: Any) -> str:
    if value is None or value == "":
        return "—"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def pretty_json(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def chart_data(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<`` escaped, so no data can
    close the element."""
    text = msgspec.json.encode(value).decode().replace("<", "\\u003c").replace(">", "\\u003e")
    return Markup(text.replace("&", "\\u0026"))


def templates(request: Request) -> jinja2.Environment:
    """The app's template environment (``app.state.console_templates``), made on first use."""
    state = request.app.state
    env: jinja2.Environment | None = getattr(state, "console_templates", None)
    if env is None:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                 trim_blocks=True, lstrip_blocks=True)
        env.filters.update(when=when, credits=credits, number=number, pretty_json=pretty_json,
                           chart_data=chart_data, urlquote=lambda v: quote(str(v), safe=""))
        env.globals.update(static=static_url)
        state.console_templates = env
    return env


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def render(request: Request, viewer: Viewer | None, template: str, context: Mapping[str, Any] | None = None,
                 *, status: int = 200, active: str = "", title: str = "",
                 headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """``template`` (which extends ``base.html``) with the navigation, the holder, its CSRF
    token and the pending message; no-store and a strict CSP."""
    flash = await take_flash(request)
    body = templates(request).get_template(template).render(
        viewer=viewer, csrf_token=viewer.csrf_token if viewer else "", nav=nav_for(viewer), active=active,
        title=title, flash=flash, path=request.url.path, **(context or {}))
    response = HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
    if flash is not None or FLASH_COOKIE in request.cookies:
        clear_cookie(response, request, FLASH_COOKIE)
    return response


async def redirect(request: Request, url: str, message: str | None = None, level: str = "ok") -> Response:
    """303 to ``url`` (an htmx request follows it too), with a message for the page it lands on."""
    response: Response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
    if message:
        await set_flash(request, response, message, level)
    return response


async def error_page(request: Request, viewer: Viewer | None, status: int, message: str,
                     title: str = "") -> HTMLResponse:
    titles = {401: "Signed out", 403: "Not allowed", 404: "Not found", 429: "Too many attempts"}
    return await render(request, viewer, "error.html", {"status": status, "message": message}, status=status,
                        title=title or titles.get(status, "Something went wrong"))


def safe_next(value: str | None) -> str:
    """A console path to return to after sign-in; anything else (another site) is the home page."""
    if value and value.startswith("/ui/") and not value.startswith(("//", "/ui//")) and "\\" not in value:
        return value
    return HOME_URL


def page_route(path: str, handler: PageHandler, *, operator: bool = True,
               methods: Sequence[str] = ("GET",), name: str | None = None) -> Route:
    """The route of one console page at ``/ui<path>``; ``operator=False`` lets every signed-in
    holder in (a key holder's own pages)."""

    async def endpoint(request: Request) -> Response:
        viewer = None
        try:
            viewer = await load_viewer(request)
            if viewer is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                url = f"{SIGNIN_URL}?{urlencode({'next': target})}"
                if request.method in ("GET", "HEAD") and not _htmx(request):
                    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
                response = await error_page(request, None, 401, "Your session has ended: sign in again.")
                response.headers["hx-redirect"] = url
                return response
            await check_csrf(request, viewer.sid)
            if operator and not viewer.is_operator:
                return await error_page(request, viewer, 403, "This page is for operators (the admin key or an "
                                        "admin-role API key). You are signed in with a key of your own: your pages "
                                        "are in the menu.")
            return await handler(request, viewer)
        except CsrfRefused as err:
            return await error_page(request, viewer, 403, err.message)
        except ApiError as err:
            return await error_page(request, viewer, err.status if err.status >= 400 else 502, err.message)
        except TollwayError as err:
            return await error_page(request, viewer, err.status, err.message)
        except Exception:
            log.exception("console page failed: %s %s", request.method, request.url.path)
            return await error_page(request, viewer, 500, "The console failed to show this page; the gateway's "
                                    "log has the details.")

    return Route("/ui" + path, endpoint, methods=list(methods), name=name)


# paging ---------------------------------------------------------------------------------------

PER_PAGE = (10, 25, 50, 100)


class Paging:
    """Server-side paging from ``?page=&per=`` (1-based pages, ``per`` one of 10/25/50/100)."""

    def __init__(self, request: Request, *, per: int = 25) -> None:
        q = request.query_params
        self.request = request
        self.per = int(q["per"]) if q.get("per", "").isdigit() and int(q["per"]) in PER_PAGE else per
        self.page = max(1, min(int(q["page"]), 1_000_000)) if q.get("page", "").isdigit() else 1
        self.total = 0

    @property
    def limit(self) -> int:
        return self.per

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per))

    @property
    def first(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last(self) -> int:
        return min(self.total, self.offset + self.per)

    def url(self, page: int) -> str:
        """This page's URL with ``page`` changed (other filters kept)."""
        params = {k: v for k, v in self.request.query_params.items() if k != "page"}
        params["page"] = str(page)
        return f"{self.request.url.path}?{urlencode(params)}"
