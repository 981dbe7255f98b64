"""Sign-in and sign-out: ``/ui/signin`` (a key or token; email and password; GitHub / Google
where configured) and ``POST /ui/signout``.

- A key or token (the admin key, an admin-role or user API key, a City user_token) is
  identified the way every API surface identifies a bearer (hashed, looked up, the admin
  secret compared in constant time). Failures count in the admin API's throttle of the
  client's address (``admin.base.auth_throttle``): past its limit, sign-in answers 429.
- Email and password is City's ``POST /v1/accounts/login`` (its argon2id check and login
  limits), called in process; the user_token it issues is the session's credential.
- GitHub / Google is City's OAuth flow: ``POST /v1/accounts/oauth/start`` gives the provider's
  URL, opened in a new tab; the provider returns the browser to City's callback page, and this
  page polls ``GET /v1/accounts/oauth/result`` (every 2 s with htmx; a button without script)
  until the user_token arrives. The pending state sits in a sealed cookie.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tollway.admin.base import auth_throttle, peer
from tollway.console.dispatch import call, error_message
from tollway.console.pages import HOLDER_HOME, HOME_URL, SECURITY_HEADERS, error_page, render, safe_next
from tollway.console.session import (
    KIND_ACCOUNT,
    PRE_COOKIE,
    CsrfRefused,
    Viewer,
    check_csrf,
    clear_cookie,
    end_session,
    gateway,
    load_viewer,
    pre_nonce,
    same_origin,
    session_keys,
    set_cookie,
    start_session,
)
from tollway.core.errors import AuthenticationFailed, RateLimited, TollwayError
from tollway.dialects.city.accounts import oauth_config

OAUTH_COOKIE = "tollway_console_oauth"
MAX_SECRET = 1024


class _Pending(msgspec.Struct, frozen=True):
    state: str
    provider: str
    next: str


def landing(viewer: Viewer, wanted: str | None) -> str:
    """Where a holder goes after signing in: the page it asked for, else its home (the overview
    for operators, its own usage for a key holder)."""
    target = safe_next(wanted)
    return target if target != HOME_URL or viewer.is_operator else HOLDER_HOME


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _signin_page(request: Request, *, status: int = 200, error: str = "", email: str = "",
                       waiting: dict[str, Any] | None = None) -> Response:
    nonce, new = pre_nonce(request)
    keys = await session_keys(request)
    providers = sorted(oauth_config(gateway(request).env))
    response = await render(request, None, "signin.html", {
        "signin_csrf": keys.csrf_token("pre:" + nonce), "next": safe_next(request.query_params.get("next")),
        "error": error, "email": email, "providers": providers, "waiting": waiting}, status=status, title="Sign in")
    if new:
        set_cookie(response, request, PRE_COOKIE, nonce, max_age=3600)
    return response


async def _checked(request: Request) -> dict[str, str]:
    """The form, once its sign-in CSRF token matched the nonce cookie (403 otherwise)."""
    nonce = request.cookies.get(PRE_COOKIE, "")
    if not nonce:
        raise CsrfRefused("This sign-in form has expired (or cookies are off): reload the page and try again.",
                          code="csrf_failed")
    await check_csrf(request, "pre:" + nonce)
    return await _form(request)


async def signin(request: Request) -> Response:
    if request.method == "GET":
        if await load_viewer(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303,
                                    headers=SECURITY_HEADERS)
        return await _signin_page(request)
    try:
        form = await _checked(request)
    except CsrfRefused as err:
        return await error_page(request, None, 403, err.message)
    secret = form.get("credential", "").strip()
    throttle, client = auth_throttle(request), peer(request)
    try:
        throttle.check(client)
        if not secret or len(secret) > MAX_SECRET:
            raise AuthenticationFailed("Enter a key or token.")
        response: Response = RedirectResponse(safe_next(form.get("next")), status_code=303, headers=SECURITY_HEADERS)
        try:
            viewer = await start_session(request, response, secret)
        except AuthenticationFailed:
            throttle.failed(client)
            raise AuthenticationFailed("That key or token is not valid here.") from None
        response.headers["location"] = landing(viewer, form.get("next"))
        return response
    except RateLimited as err:
        return await _signin_page(request, status=429, error=err.message)
    except TollwayError as err:  # a wrong secret (401), a disabled key or paused studio (403)
        return await _signin_page(request, status=err.status, error=err.message)


async def signin_password(request: Request) -> Response:
    try:
        form = await _checked(request)
    except CsrfRefused as err:
        return await error_page(request, None, 403, err.message)
    email = form.get("email", "").strip()[:320]
    answer = await call(request, "POST", "/v1/accounts/login", bearer=None,
                        json={"email": email, "password": form.get("password", "")[:1024]})
    if not answer.ok or not isinstance(answer.data, dict) or not isinstance(answer.data.get("user_token"), str):
        return await _signin_page(request, status=answer.status if answer.status >= 400 else 502,
                                  error=error_message(answer.data, answer.status), email=email)
    response: Response = RedirectResponse(safe_next(form.get("next")), status_code=303, headers=SECURITY_HEADERS)
    try:
        viewer = await start_session(request, response, answer.data["user_token"], kind=KIND_ACCOUNT)
    except TollwayError as err:
        return await _signin_page(request, status=err.status, error=err.message, email=email)
    response.headers["location"] = landing(viewer, form.get("next"))
    return response


async def signin_oauth(request: Request) -> Response:
    """Start a GitHub / Google sign-in (City's flow) and show the page that waits for it."""
    try:
        form = await _checked(request)
    except CsrfRefused as err:
        return await error_page(request, None, 403, err.message)
    provider = form.get("provider", "")
    answer = await call(request, "POST", "/v1/accounts/oauth/start", bearer=None, json={"provider": provider})
    data = answer.data if isinstance(answer.data, dict) else {}
    if not answer.ok or not isinstance(data.get("authorize_url"), str) or not isinstance(data.get("state"), str):
        return await _signin_page(request, status=answer.status if answer.status >= 400 else 502,
                                  error=error_message(answer.data, answer.status))
    keys = await session_keys(request)
    response = await _signin_page(request, waiting={"provider": provider, "url": data["authorize_url"]})
    set_cookie(response, request, OAUTH_COOKIE,
               keys.seal(_Pending(data["state"], provider, safe_next(form.get("next")))),
               max_age=int(data.get("expires_in") or 600))
    return response


async def signin_oauth_poll(request: Request) -> Response:
    """Has the provider sign-in finished? Signed in (to the console), still waiting, or failed."""
    try:
        await _checked(request)
    except CsrfRefused as err:
        return await error_page(request, None, 403, err.message)
    keys = await session_keys(request)
    pending: _Pending | None = keys.open(request.cookies.get(OAUTH_COOKIE), _Pending)
    if pending is None:
        return await _signin_page(request, status=400, error="No sign-in is waiting (or it expired): start again.")
    answer = await call(request, "GET", "/v1/accounts/oauth/result", bearer=None, query={"state": pending.state})
    data = answer.data if isinstance(answer.data, dict) else {}
    status = data.get("status")
    htmx = request.headers.get("hx-request") == "true"
    if answer.ok and status == "succeeded" and isinstance(data.get("user_token"), str):
        response: Response = RedirectResponse(pending.next, status_code=303, headers=SECURITY_HEADERS)
        if htmx:
            response = Response(status_code=204, headers={**SECURITY_HEADERS, "hx-redirect": pending.next})
        viewer = await start_session(request, response, data["user_token"], kind=KIND_ACCOUNT)
        response.headers["hx-redirect" if htmx else "location"] = landing(viewer, pending.next)
        clear_cookie(response, request, OAUTH_COOKIE)
        return response
    if answer.ok and status == "pending":
        if htmx:
            return Response(status_code=204, headers=SECURITY_HEADERS)  # keep polling
        return await _signin_page(request, waiting={"provider": pending.provider, "url": ""},
                                  error="Not finished yet: complete the sign-in in the other tab, then try again.")
    reason = data.get("error") if isinstance(data.get("error"), str) else error_message(answer.data, answer.status)
    response = await _signin_page(request, status=400, error=f"Sign-in with {pending.provider} failed: {reason}")
    if htmx:
        response.headers["hx-retarget"] = "body"
    clear_cookie(response, request, OAUTH_COOKIE)
    return response


async def signout(request: Request) -> Response:
    viewer = await load_viewer(request)
    try:
        if viewer is not None:
            await check_csrf(request, viewer.sid)
        elif not same_origin(request):
            raise CsrfRefused("Sign-out from another site is refused.", code="csrf_failed")
    except CsrfRefused as err:
        return await error_page(request, viewer, 403, err.message)
    response: Response = RedirectResponse("/ui/signin", status_code=303, headers=SECURITY_HEADERS)
    await end_session(request, response, viewer)
    return response


def signin_routes() -> list[BaseRoute]:
    return [
        Route("/ui/signin", signin, methods=["GET", "POST"]),
        Route("/ui/signin/password", signin_password, methods=["POST"]),
        Route("/ui/signin/oauth", signin_oauth, methods=["POST"]),
        Route("/ui/signin/oauth/poll", signin_oauth_poll, methods=["POST"]),
        Route("/ui/signout", signout, methods=["POST"]),
    ]
