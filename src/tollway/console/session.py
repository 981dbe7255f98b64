"""The console's sign-in session: an encrypted cookie, a server-side row, and CSRF tokens.

- **Cookie** ``tollway_console`` (HttpOnly, SameSite=Strict, Path=/ui, Secure when the request
  came over https or ``X-Forwarded-Proto: https``): a Fernet token (AES-CBC + HMAC) holding the
  session's random id and the credential the holder signed in with. Its key is derived from the
  admin JWT's signing key (``AdminTokens.derive``), which is never in the database alone: a copy
  of the database opens no cookie, and a cookie without the server's key reveals nothing. The
  credential is kept so that every console action is an ordinary API call with it as bearer
  (``dispatch``); changing the admin key ends every session (the derived key changes).
- **Row** (``store.console_sessions``, in ``meta``): kind, key id and end time; no secret. Every
  console request needs its row: the end is decided server-side (``TOLLWAY_CONSOLE_SESSION_TTL``
  seconds after sign-in, default 8 h; read from the gateway's env at sign-in), and signing out
  deletes it in every process at once. The credential is identified again on each request, so a
  revoked or disabled key, or a paused studio, ends its session at once.
- **CSRF**: every request that is not GET/HEAD carries ``csrf_token`` (form field) or the
  ``X-CSRF-Token`` header: an HMAC of the session id under another derived key, compared in
  constant time; else 403. Before sign-in a random nonce in the ``tollway_console_pre`` cookie
  stands in for the session id (double submit). A request whose ``Origin`` is another host is
  refused too (SameSite=Strict already keeps the cookie off cross-site requests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec
from cryptography.fernet import Fernet, InvalidToken
from starlette.requests import Request
from starlette.responses import Response

from tollway.auth.jwt import AdminTokens
from tollway.auth.keys import Identity
from tollway.console.dispatch import Answer, Stream, call
from tollway.core.errors import ConfigError, PermissionDenied, TollwayError
from tollway.routing.gateway import Gateway
from tollway.store.console_sessions import ConsoleSession, ConsoleSessionRepository

COOKIE = "tollway_console"
PRE_COOKIE = "tollway_console_pre"
FLASH_COOKIE = "tollway_console_flash"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TTL_ENV = "TOLLWAY_CONSOLE_SESSION_TTL"
DEFAULT_TTL = 8 * 3600.0
MAX_TTL = 30 * 86400.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# how a holder signed in (ConsoleSession.kind)
KIND_ADMIN, KIND_ADMIN_KEY, KIND_KEY = "admin", "admin_key", "key"
KIND_USER_TOKEN, KIND_ACCOUNT = "user_token", "account"
KIND_LABELS = {KIND_ADMIN: "admin key", KIND_ADMIN_KEY: "admin-role API key", KIND_KEY: "API key",
               KIND_USER_TOKEN: "City user_token", KIND_ACCOUNT: "City account"}


class CsrfRefused(PermissionDenied):
    """A state-changing request without the session's CSRF token (or from another origin)."""


class _Sealed(msgspec.Struct, frozen=True):
    sid: str
    secret: str
    kind: str


class _Flash(msgspec.Struct, frozen=True):
    text: str
    level: str
    at: float


class SessionKeys:
    """The keys derived for the console: the cookies' Fernet key and the CSRF HMAC key."""

    def __init__(self, fernet: bytes, csrf: bytes) -> None:
        self.fernet = Fernet(base64.urlsafe_b64encode(fernet))
        self.csrf = csrf

    def seal(self, data: msgspec.Struct) -> str:
        """A Fernet token of ``data`` without its ``=`` padding (a cookie value needs no quotes)."""
        return self.fernet.encrypt(msgspec.json.encode(data)).decode("ascii").rstrip("=")

    def open(self, token: str | None, kind: type[Any]) -> Any:
        """What ``seal`` sealed, or None for anything else (tampered, foreign, another key)."""
        if not token or len(token) > 8192:
            return None
        try:
            padded = token + "=" * (-len(token) % 4)
            return msgspec.json.decode(self.fernet.decrypt(padded.encode("ascii")), type=kind)
        except (InvalidToken, UnicodeError, ValueError, msgspec.DecodeError):
            return None

    def csrf_token(self, seed: str) -> str:
        return hmac.new(self.csrf, b"csrf\x00" + seed.encode(), hashlib.sha256).hexdigest()[:48]

    def csrf_ok(self, seed: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_token(seed).encode(), (given or "").encode())


async def session_keys(request: Request) -> SessionKeys:
    """The app's console keys, derived on first use (``app.state.console_keys``)."""
    state = request.app.state
    keys: SessionKeys | None = getattr(state, "console_keys", None)
    if keys is None:
        tokens: AdminTokens | None = getattr(state, "admin_tokens", None)
        if tokens is None:
            raise ConfigError("the console needs app.state.admin_tokens (made in the lifespan)")
        keys = state.console_keys = SessionKeys(await tokens.derive(b"console cookie v1"),
                                                await tokens.derive(b"console csrf v1"))
    return keys


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def session_ttl(env: Mapping[str, str]) -> float:
    """``TOLLWAY_CONSOLE_SESSION_TTL`` seconds (a bad value is the default, not a crash at sign-in)."""
    raw = env.get(TTL_ENV, "").strip()
    try:
        ttl = float(raw) if raw else DEFAULT_TTL
    except ValueError:
        return DEFAULT_TTL
    return min(ttl, MAX_TTL) if math.isfinite(ttl) and ttl > 0 else DEFAULT_TTL


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=is_https(request))


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request))


def kind_of(identity: Identity, gw: Gateway, secret: str) -> str:
    if identity.key is None:
        return KIND_ADMIN
    if identity.is_admin:
        return KIND_ADMIN_KEY
    return KIND_USER_TOKEN if secret.startswith("ub_") else KIND_KEY


async def identify(gw: Gateway, secret: str) -> Identity:
    """Who ``secret`` is (the admin secret, a key, a user_token), as every API surface decides it:
    hashed and looked up, compared in constant time; a disabled key or paused studio is refused."""
    return await gw.identify({"authorization": f"Bearer {secret}"}, direct=False)


class Viewer:
    """The signed-in holder of one console request: who it is, and its way into the API.

    ``api`` / ``answer`` / ``stream`` call the gateway's own API with the holder's credential
    (``dispatch``); the credential itself never leaves this object."""

    def __init__(self, request: Request, *, sid: str, kind: str, identity: Identity, session: ConsoleSession,
                 csrf_token: str, secret: str) -> None:
        self.request, self.sid, self.kind, self.identity, self.session = request, sid, kind, identity, session
        self.csrf_token = csrf_token
        self._secret = secret

    @property
    def is_operator(self) -> bool:
        """The admin secret or an admin-role key: every operator page."""
        return self.identity.is_admin

    @property
    def key_id(self) -> int | None:
        return self.identity.key_id

    @property
    def label(self) -> str:
        key = self.identity.key
        if key is None:
            return "admin"
        return f"{key.name or 'key'} ({key.prefix}…)"

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    async def answer(self, method: str, path: str, *, json: Any = None, query: Mapping[str, Any] | None = None,
                     headers: Mapping[str, str] | None = None) -> Answer:
        """The API's whole answer, whatever its status."""
        return await call(self.request, method, path, bearer=self._secret, json=json, query=query, headers=headers)

    async def api(self, method: str, path: str, *, json: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        """The JSON of a 2xx answer; ``ApiError`` (status, the API's message) otherwise."""
        return (await self.answer(method, path, json=json, query=query)).json()

    def stream(self, method: str, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None) -> Stream:
        """A streamed call (``async with viewer.stream(...) as s: async for chunk in s.chunks()``)."""
        return Stream(self.request, method, path, bearer=self._secret, json=json, headers=headers)


async def load_viewer(request: Request) -> Viewer | None:
    """The signed-in holder, or None (no cookie, a cookie that does not open, a session that
    ended or was signed out, a credential the gateway no longer accepts)."""
    keys = await session_keys(request)
    sealed: _Sealed | None = keys.open(request.cookies.get(COOKIE), _Sealed)
    if sealed is None:
        return None
    gw = gateway(request)
    session = await ConsoleSessionRepository(gw.engine).get(sealed.sid)
    if session is None or session.kind != sealed.kind:
        return None
    try:
        identity = await identify(gw, sealed.secret)
    except TollwayError:
        return None
    if identity.key_id != session.key_id:
        return None
    return Viewer(request, sid=sealed.sid, kind=sealed.kind, identity=identity, session=session,
                  csrf_token=keys.csrf_token(sealed.sid), secret=sealed.secret)


async def start_session(request: Request, response: Response, secret: str, *, kind: str | None = None) -> Viewer:
    """Sign in with ``secret`` (already checked by the caller, or checked here): a new session
    row and its cookie on ``response``. AuthenticationFailed / PermissionDenied when refused."""
    gw = gateway(request)
    identity = await identify(gw, secret)
    kind = kind or kind_of(identity, gw, secret)
    keys = await session_keys(request)
    repo = ConsoleSessionRepository(gw.engine)
    await repo.purge()
    now = time.time()
    ttl = session_ttl(gw.env)
    sid = secrets.token_urlsafe(32)
    session = ConsoleSession(kind=kind, key_id=identity.key_id, created_at=now, expires_at=now + ttl)
    await repo.create(sid, session)
    set_cookie(response, request, COOKIE, keys.seal(_Sealed(sid, secret, kind)), max_age=math.ceil(ttl))
    clear_cookie(response, request, PRE_COOKIE)
    return Viewer(request, sid=sid, kind=kind, identity=identity, session=session,
                  csrf_token=keys.csrf_token(sid), secret=secret)


async def end_session(request: Request, response: Response, viewer: Viewer | None) -> None:
    if viewer is not None:
        await ConsoleSessionRepository(gateway(request).engine).delete(viewer.sid)
    clear_cookie(response, request, COOKIE)


# CSRF -----------------------------------------------------------------------------------------


def pre_nonce(request: Request) -> tuple[str, bool]:
    """The sign-in forms' nonce (cookie ``tollway_console_pre``) and whether it is new."""
    nonce = request.cookies.get(PRE_COOKIE, "")
    if 20 <= len(nonce) <= 64 and nonce.isascii():
        return nonce, False
    return secrets.token_urlsafe(24), True


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser on same-origin form posts
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def submitted_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def check_csrf(request: Request, seed: str) -> None:
    """Refuse (403) a state-changing request without the token made from ``seed`` (the session
    id, or the sign-in nonce), or one from another origin."""
    if request.method in SAFE_METHODS:
        return
    keys = await session_keys(request)
    if not same_origin(request) or not keys.csrf_ok(seed, await submitted_token(request)):
        raise CsrfRefused("This form has expired or did not come from this console (CSRF check failed). "
                          "Reload the page and try again.", code="csrf_failed")


# flash messages -------------------------------------------------------------------------------


async def set_flash(request: Request, response: Response, text: str, level: str = "ok") -> None:
    """A message for the next page (sealed: nobody else can put words in the console's mouth)."""
    keys = await session_keys(request)
    set_cookie(response, request, FLASH_COOKIE, keys.seal(_Flash(text[:500], level, time.time())), max_age=60)


async def take_flash(request: Request) -> tuple[str, str] | None:
    keys = await session_keys(request)
    found: _Flash | None = keys.open(request.cookies.get(FLASH_COOKIE), _Flash)
    if found is None or found.at < time.time() - 60:
        return None
    return found.text, found.level

