"""What every admin handler shares: admin authentication and ``{"detail": ...}`` errors.

An admin request carries the admin secret, an admin-role key, or an admin JWT from
``POST /admin/login`` (seed 002), as ``Authorization: Bearer`` or ``x-api-key``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tollway.auth.jwt import AdminTokens, looks_like_jwt
from tollway.auth.keys import bearer_token
from tollway.core.errors import AuthenticationFailed, InternalError, InvalidRequest, PermissionDenied, TollwayError
from tollway.routing.gateway import Gateway
from tollway.routing.responses import JSONBytes, error_response, read_body
from tollway.store.meta import MetaRepository

log = logging.getLogger("tollway.admin")
Handler = Callable[[Request, Gateway], Awaitable[Any]]
MAX_ADMIN_BODY = 1024 * 1024


def admin_tokens(request: Request, gw: Gateway) -> AdminTokens:
    """The app's admin-JWT service, made on first use (it reads its secret once)."""
    state = request.app.state
    tokens: AdminTokens | None = getattr(state, "admin_tokens", None)
    if tokens is None:
        tokens = state.admin_tokens = AdminTokens(MetaRepository(gw.engine), gw.auth.admin_hash)
    return tokens


async def authenticate_admin(request: Request, gw: Gateway) -> None:
    """Pass an admin JWT, the admin secret or an admin-role key; raise otherwise.

    A token shaped like a JWT is verified as one first; if that fails it is still tried as a key
    (an imported key may contain dots), and a failure then reports the JWT's problem (expired)."""
    token = bearer_token(request.headers.get("authorization"), request.headers.get("x-api-key"))
    jwt_error: AuthenticationFailed | None = None
    if token and looks_like_jwt(token):
        try:
            await admin_tokens(request, gw).verify(token)
            return
        except AuthenticationFailed as err:
            jwt_error = err
    try:
        identity = await gw.identify(request.headers, direct=False)  # an admin is never a direct token
    except AuthenticationFailed:
        if jwt_error is not None:
            raise jwt_error from None
        raise
    if not identity.is_admin:
        raise PermissionDenied("This endpoint needs the admin key.")


def _detail(err: TollwayError) -> dict[str, Any]:
    return {"detail": err.message}


def admin_endpoint(handler: Handler, *, public: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Require admin authentication (unless ``public``); render errors as ``{"detail": ...}``."""

    async def endpoint(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        try:
            if not public:
                await authenticate_admin(request, gw)
            result = await handler(request, gw)
            if request.method != "GET":
                gw.changed()  # other processes reload what this may have changed now, not at their poll
            return result if isinstance(result, Response) else JSONBytes(result)
        except TollwayError as err:
            return error_response(err, _detail)
        except Exception:
            log.exception("admin handler failed: %s", request.url.path)
            return JSONBytes({"detail": InternalError("internal error").message}, status_code=500)

    return endpoint


async def json_body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, MAX_ADMIN_BODY)
    try:
        data = msgspec.json.decode(raw) if raw else {}
    except msgspec.DecodeError:
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


MAX_INT = 2**31 - 1
_INT = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²"


def int_param(value: Any, name: str, default: int | None = None, *, low: int = 0,
              high: int = MAX_INT) -> int | None:
    """An integer from JSON (a real int, not a bool or a float) or a query string."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidRequest(f"{name} must be an integer", param=name)
    if isinstance(value, str) and not _INT.fullmatch(value):
        raise InvalidRequest(f"{name} must be an integer", param=name)
    if isinstance(value, str) and len(value) > 12:
        raise InvalidRequest(f"{name} must be between {low} and {high}", param=name)
    n = int(value)
    if not low <= n <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", param=name)
    return n


def str_param(value: Any, name: str, limit: int = 320) -> str:
    """A text field: a string (or absent), at most ``limit`` characters, without NUL."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", param=name)
    if len(value) > limit or "\x00" in value:
        raise InvalidRequest(f"{name} must be at most {limit} characters, without NUL", param=name)
    return value
