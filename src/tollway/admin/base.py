"""What every admin handler shares: admin authentication, its throttle, and ``{"detail": ...}`` errors.

An admin request carries the admin secret, an admin-role key, or an admin JWT from
``POST /admin/login`` (seed 002), as ``Authorization: Bearer`` or ``x-api-key``.

Failed admin authentications (a wrong admin key at login, a bearer that is neither a key nor a
valid JWT on any admin route, a bad JWT at ``/admin/verify``) are counted per client address
(``request.client.host``) in one ``AuthThrottle``: past ``limit`` in ``window`` seconds, every
admin request from that address is refused with 429 and ``Retry-After``, the right credential
too (otherwise a right guess would stand out). A request without any credential, an expired
session and a valid key that is not an admin's are not guesses and are not counted. Per process.
"""

from __future__ import annotations

import collections
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tollway.auth.jwt import AdminTokens, SessionExpired, looks_like_jwt
from tollway.auth.keys import bearer_token
from tollway.core.errors import (
    AuthenticationFailed,
    ConfigError,
    InternalError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TollwayError,
)
from tollway.core.json_input import loads
from tollway.routing.gateway import Gateway
from tollway.routing.responses import JSONBytes, error_response, read_body

log = logging.getLogger("tollway.admin")
Handler = Callable[[Request, Gateway], Awaitable[Any]]
MAX_ADMIN_BODY = 1024 * 1024


class AuthThrottle:
    """Failed admin authentications per client address: after ``limit`` within ``window``
    seconds, that address is refused (429) until the oldest failure is ``window`` old."""

    def __init__(self, limit: int = 10, window: float = 60.0, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_clients, self._clock = limit, window, max_clients, clock
        self._fails: dict[str, collections.deque[float]] = {}

    def wait(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        fails = self._fails.get(client)
        if not fails:
            return 0.0
        now = self._clock()
        while fails and fails[0] <= now - self.window:
            fails.popleft()
        if not fails:
            del self._fails[client]
            return 0.0
        return fails[0] + self.window - now if len(fails) >= self.limit else 0.0

    def check(self, client: str) -> None:
        """RateLimited while ``client`` is throttled."""
        wait = self.wait(client)
        if wait > 0:
            raise RateLimited("Too many failed admin authentications from this address: try again later.",
                              retry_after=wait)

    def failed(self, client: str) -> None:
        if client not in self._fails and len(self._fails) >= self.max_clients:
            horizon = self._clock() - self.window
            self._fails = {c: f for c, f in self._fails.items() if f and f[-1] > horizon}
            if len(self._fails) >= self.max_clients:
                del self._fails[min(self._fails, key=lambda c: self._fails[c][-1])]
        self._fails.setdefault(client, collections.deque(maxlen=self.limit)).append(self._clock())


def peer(request: Request) -> str:
    """The client address throttles count by (the connection's, as the server resolved it)."""
    return request.client.host if request.client else "unknown"


def auth_throttle(request: Request) -> AuthThrottle:
    """The app's throttle of failed admin authentications, made on first use."""
    state = request.app.state
    throttle: AuthThrottle | None = getattr(state, "admin_auth_throttle", None)
    if throttle is None:
        throttle = state.admin_auth_throttle = AuthThrottle()
    return throttle


def admin_tokens(request: Request, gw: Gateway) -> AdminTokens:
    """The app's admin-JWT service (``app.state.admin_tokens``, made in the lifespan: its server
    secret comes from the settings, never from the database)."""
    tokens: AdminTokens | None = getattr(request.app.state, "admin_tokens", None)
    if tokens is None:
        raise ConfigError("admin sessions are not set up in this app (app.state.admin_tokens)")
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


def count_failure(request: Request, err: AuthenticationFailed) -> None:
    """Count a failed authentication against the caller's address, unless it was no guess (no
    credential at all, or a session the gateway signed that has expired)."""
    presented = bearer_token(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if presented and not isinstance(err, SessionExpired):
        auth_throttle(request).failed(peer(request))


async def guarded_authentication(request: Request, gw: Gateway) -> None:
    """``authenticate_admin`` behind the throttle of the caller's address."""
    throttle = auth_throttle(request)
    throttle.check(peer(request))
    try:
        await authenticate_admin(request, gw)
    except AuthenticationFailed as err:
        count_failure(request, err)
        raise


def _detail(err: TollwayError) -> dict[str, Any]:
    return {"detail": err.message}


def admin_endpoint(handler: Handler, *, public: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Require admin authentication (unless ``public``); render errors as ``{"detail": ...}``."""

    async def endpoint(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        try:
            if not public:
                await guarded_authentication(request, gw)
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
    data = loads(raw, invalid="body is not valid JSON") if raw else {}
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
