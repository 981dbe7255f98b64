"""The ``accounts`` service: password login, admin-created users, and GitHub/Google sign-in.

- ``POST login {email, password}`` (guests): ``{user_token, user}``. The password is checked
  against its argon2id hash (argon2-cffi, in a worker thread, a few at a time); an unknown
  email, or a user who only signs in through a provider, costs one verification of a dummy
  hash all the same, and every failure says the same thing (401). An attempt counts as a
  failure from its start (so parallel guesses count) until it succeeds. Failures are counted in
  this process's memory (each replica counts its own, a restart forgets), never per email alone,
  so nobody can lock a user out from elsewhere: per (email, client IP) the first 5 failures are
  free, then each further attempt waits 1 s, 2 s, 4 s ... up to 5 minutes after the last failure
  (forgotten after a success or 15 quiet minutes); per client IP, 20 failures in 5 minutes
  whatever the emails. A refused attempt is 429 with Retry-After and checks nothing. The client
  IP is the connection's (X-Forwarded-For is believed only from TOLLWAY_TRUSTED_PROXIES, none by
  default). The limits are in ``login_limits``.
- ``POST users/create {email, password, name?, studio_id?}`` (admin): a user with a password.
- ``POST oauth/start {provider, studio_id?}`` (guests): ``{authorize_url, state, expires_in}``.
  The state (32 random bytes) and a PKCE S256 verifier are stored for TOLLWAY_OAUTH_STATE_TTL
  seconds (600). The studio client opens the URL in a browser and polls ``oauth/result``.
- ``GET oauth/callback ?code&state`` (or ``?error``): where the provider sends the browser back.
  The state must be known, pending and unexpired, and is claimed by one callback only; the
  code is exchanged with the verifier (Authlib), the provider's user fetched, and the account
  found by its provider link, else linked to the user with the same *verified* email, else
  created (in the state's studio). The token is bound to the user's studio, else the state's;
  an account of another studio than the state's fails. A small HTML page answers (200, or
  400 when sign-in failed; unknown, used and expired states change nothing).
- ``GET oauth/result ?state`` (guests): ``pending``, ``failed`` with the reason, or
  ``succeeded`` with ``user_token`` and ``user`` exactly once; later polls say ``succeeded``
  without the token. Until that first poll the token sits in the state row in the clear (the
  only way to hand it over); collecting it clears it, and unclaimed rows are deleted an hour
  after they expire.

Provider settings come from the gateway's env (``oauth_config``): TOLLWAY_OAUTH_<P>_CLIENT_ID
and _CLIENT_SECRET, and _AUTHORIZE_URL, _TOKEN_URL, _API_URL to point elsewhere;
TOLLWAY_PUBLIC_URL is the gateway's external base URL, so the callback is
``<public>/v1/accounts/oauth/callback`` (default: the request's own base URL).
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import secrets
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request
from starlette.responses import Response

from tollway.core.catalog import EnvRequirement
from tollway.core.errors import (
    AuthenticationFailed,
    ConfigError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from tollway.core.json_input import loads
from tollway.dialects.city.login_limits import OAUTH_STARTS_PER_MINUTE, FailureWindow, LoginGuard
from tollway.dialects.city.services import Caller, Kind, Service
from tollway.dialects.city.studios import issue_user_token
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.store.studios import StudioRepository
from tollway.store.users import FAILED, PENDING, SUCCEEDED, OAuthStateRepository, User, UserRepository

log = logging.getLogger("tollway")

GITHUB, GOOGLE = "github", "google"
CALLBACK_PATH = "/v1/accounts/oauth/callback"
_DEFAULTS = {
    GITHUB: ("https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token",
             "https://api.github.com", "read:user user:email"),
    GOOGLE: ("https://accounts.google.com/o/oauth2/v2/auth", "https://oauth2.googleapis.com/token",
             "https://openidconnect.googleapis.com/v1/userinfo", "openid email profile"),
}
DEFAULT_STATE_TTL = 600.0
_PURGE_AFTER = 3600.0  # states are deleted this long after they expire
_CLAIMED_GRACE = 60.0  # a claimed state whose callback died reads as expired after this


class ProviderEndpoints(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    api_url: str  # GitHub: the API root; Google: the OpenID userinfo endpoint
    scope: str


def _url(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{key} must be an http(s) URL, not {value!r}")
    return value.rstrip("/")


def oauth_config(env: Mapping[str, str]) -> dict[str, ProviderEndpoints]:
    """The providers whose client id and secret are set, with their endpoints."""
    out = {}
    for name, (authorize, token, api, scope) in _DEFAULTS.items():
        prefix = f"TOLLWAY_OAUTH_{name.upper()}_"
        client_id, secret = env.get(prefix + "CLIENT_ID", "").strip(), env.get(prefix + "CLIENT_SECRET", "").strip()
        if not client_id or not secret:
            continue
        out[name] = ProviderEndpoints(
            name=name, client_id=client_id, client_secret=secret, scope=scope,
            authorize_url=_url(env, prefix + "AUTHORIZE_URL", authorize),
            token_url=_url(env, prefix + "TOKEN_URL", token), api_url=_url(env, prefix + "API_URL", api))
    return out


def state_ttl(env: Mapping[str, str]) -> float:
    raw = env.get("TOLLWAY_OAUTH_STATE_TTL", "").strip()
    if not raw:
        return DEFAULT_STATE_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = math.nan
    if not (math.isfinite(ttl) and 0 < ttl <= 86400):
        raise ConfigError(f"TOLLWAY_OAUTH_STATE_TTL must be seconds in (0, 86400], not {raw!r}")
    return ttl


def callback_url(env: Mapping[str, str], request: Request) -> str:
    """The redirect URI: TOLLWAY_PUBLIC_URL's, else this request's own base URL's. The callback
    computes it again from its own request, so it matches what the provider redirected to."""
    public = env.get("TOLLWAY_PUBLIC_URL", "").strip()
    base = _url(env, "TOLLWAY_PUBLIC_URL", public) if public else str(request.base_url).rstrip("/")
    return base + CALLBACK_PATH


def authorize_url(p: ProviderEndpoints, *, redirect_uri: str, state: str, code_verifier: str) -> str:
    # Authlib (with httpx) is imported on the first sign-in, not at start: 11 MB of RSS otherwise
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
    from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

    return str(prepare_grant_uri(p.authorize_url, client_id=p.client_id, response_type="code",
                                 redirect_uri=redirect_uri, scope=p.scope, state=state,
                                 code_challenge=create_s256_code_challenge(code_verifier),
                                 code_challenge_method="S256"))


class Passwords:
    """argon2id hashing off the event loop, at most ``concurrency`` at once (64 MiB each)."""

    def __init__(self, hasher: PasswordHasher | None = None, *, concurrency: int = 4) -> None:
        self.hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if it matches; with no hash, a dummy one is verified so the time is the same."""
        if self._dummy is None:  # made on the first verification of any kind, known user or not
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        async with self._slots:
            ok = await asyncio.to_thread(self._check, password_hash or self._dummy, password)
        return ok and password_hash is not None

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return bool(self.hasher.check_needs_rehash(password_hash))


# provider sign-in -------------------------------------------------------------------------


class SignInFailed(Exception):
    """A sign-in that cannot finish; the message is shown to the user and the poller."""


class ProviderUser(msgspec.Struct, frozen=True, kw_only=True):
    subject: str
    email: str | None  # only a verified one
    name: str


def _provider_user(subject: str, email: object, name: object) -> ProviderUser:
    """Fitted to the columns: a subject too long fails, an email too long is dropped."""
    if not subject or len(subject) > 200:
        raise SignInFailed("the provider gave no usable user id")
    clean = email.strip().lower() if isinstance(email, str) else ""
    return ProviderUser(subject=subject, email=clean if 3 <= len(clean) <= 320 and "@" in clean else None,
                        name=str(name or "user")[:200])


def _json(r: Any) -> Any:
    """An OAuth provider's JSON answer, bounded like a client's body; None if it is none."""
    try:
        return loads(r.content)
    except InvalidRequest:
        return None


def _json_object(r: Any, what: str) -> dict[str, Any]:
    if r.status_code != 200:
        raise SignInFailed(f"{what} answered HTTP {r.status_code}")
    data = _json(r)
    if not isinstance(data, dict):
        raise SignInFailed(f"{what} did not answer a JSON object")
    return data


async def _github_user(client: Any, api: str) -> ProviderUser:
    headers = {"Accept": "application/vnd.github+json"}
    data = _json_object(await client.get(api + "/user", headers=headers), "GitHub's user API")
    if not isinstance(data.get("id"), int | str) or str(data["id"]) == "":
        raise SignInFailed("GitHub's user API gave no user id")
    # /user carries the public email without a verified flag: the emails API says which are
    r = await client.get(api + "/user/emails", headers=headers)
    listed = _json(r) if r.status_code == 200 else []
    verified = [e for e in listed if isinstance(e, dict) and e.get("verified") is True
                and isinstance(e.get("email"), str)] if isinstance(listed, list) else []
    profile = data.get("email")
    chosen = (next((e["email"] for e in verified if e["email"] == profile), None)
              or next((e["email"] for e in verified if e.get("primary") is True), None)
              or next((e["email"] for e in verified), None))
    return _provider_user(str(data["id"]), chosen, data.get("name") or data.get("login"))


async def _google_user(client: Any, userinfo: str) -> ProviderUser:
    data = _json_object(await client.get(userinfo), "Google's userinfo endpoint")
    if not isinstance(data.get("sub"), str) or not data["sub"]:
        raise SignInFailed("Google's userinfo gave no subject")
    email = data.get("email") if data.get("email_verified") in (True, "true") else None
    return _provider_user(data["sub"], email, data.get("name") or str(email or "").partition("@")[0])


async def provider_user(p: ProviderEndpoints, *, code: str, code_verifier: str, redirect_uri: str) -> ProviderUser:
    """Exchange the code (with the PKCE verifier) and fetch who signed in. Every failure of the
    provider or of the connection becomes SignInFailed: this is Authlib's and httpx's boundary."""
    from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]

    try:
        async with AsyncOAuth2Client(client_id=p.client_id, client_secret=p.client_secret,
                                     redirect_uri=redirect_uri, token_endpoint_auth_method="client_secret_post",
                                     timeout=15.0) as client:
            await client.fetch_token(p.token_url, grant_type="authorization_code", code=code,
                                     code_verifier=code_verifier)
            return await (_github_user(client, p.api_url) if p.name == GITHUB else _google_user(client, p.api_url))
    except SignInFailed:
        raise
    except Exception as exc:  # OAuthError, httpx(2) errors, malformed answers
        reason = getattr(exc, "error", None) or type(exc).__name__
        log.warning("%s sign-in failed: %s: %s", p.name, reason, getattr(exc, "description", None) or exc)
        raise SignInFailed(f"{p.name} refused the sign-in ({reason})") from None


async def find_or_create(users: UserRepository, provider: str, who: ProviderUser,
                         studio_id: str | None) -> User:
    """The user linked to this provider account; else the one with its verified email, now
    linked; else a new one. A concurrent sign-in of the same account makes us look again."""
    for _ in range(3):
        user = await users.by_link(provider, who.subject)
        if user is not None:
            return user
        existing = await users.by_email(who.email) if who.email else None
        if existing is not None:
            if await users.link(provider, who.subject, existing.id):
                return existing
            continue
        created = await users.create_linked(provider=provider, subject=who.subject, email=who.email,
                                            name=who.name, studio_id=studio_id)
        if created is not None:
            return created
    raise SignInFailed("the account could not be created or linked; try again")


# handlers ---------------------------------------------------------------------------------


def _env(request: Request) -> Mapping[str, str]:
    gw: Gateway = request.app.state.gateway
    return gw.env  # the process env with the variables admins stored through /v1/env


def _text(body: dict[str, Any], name: str, *, limit: int, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name} is required", param=name)
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidRequest(f"{name} must be a string of at most {limit} characters", param=name)
    return value


def _email(body: dict[str, Any]) -> str:
    email = (_text(body, "email", limit=320) or "").strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise InvalidRequest("email must be an email address", param="email")
    return email


async def _check_studio(gw: Gateway, studio_id: str | None, *, named: bool = True) -> None:
    """A studio tokens may be issued for: existing and active (None: no studio). ``named``: the
    caller gave it (an unknown one is a 404), else it is the account's own (removed: 403)."""
    if studio_id is None:
        return
    if await StudioRepository(gw.engine).get(studio_id) is None:
        if named:
            raise NotFound("no such studio")
        raise PermissionDenied("This account's studio was removed.")
    if studio_id in gw.paused_studios:
        raise PermissionDenied("This studio is paused.", code="studio_paused")


def page(status: int, message: str, call: Call) -> Response:
    """The small page the browser lands on after the provider."""
    call.finish(status, InvalidRequest(message) if status >= 400 else None)
    body = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign-in</title></head><body>"
            f"<p>{html.escape(message)}</p><p>You can close this window.</p></body></html>")
    return Response(body, status_code=status, media_type="text/html; charset=utf-8", headers={
        "cache-control": "no-store", "referrer-policy": "no-referrer", "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'"})


def _requirements() -> list[EnvRequirement]:
    out = []
    for name in _DEFAULTS:
        p, title = f"TOLLWAY_OAUTH_{name.upper()}_", name.capitalize()
        out += [EnvRequirement(key=p + "CLIENT_ID", required=False, description=f"{title} sign-in: OAuth client id"),
                EnvRequirement(key=p + "CLIENT_SECRET", required=False,
                               description=f"{title} sign-in: OAuth client secret")]
    return [*out, EnvRequirement(key="TOLLWAY_PUBLIC_URL", required=False,
                                 description="the gateway's external base URL (the OAuth callback is under it)"),
            EnvRequirement(key="TOLLWAY_OAUTH_STATE_TTL", required=False,
                           description="seconds a sign-in may take (600)")]


def accounts_service(*, guard: LoginGuard | None = None, passwords: Passwords | None = None) -> Service:
    service = Service(id="accounts", name="Accounts", env=_requirements)
    admin: tuple[Kind, ...] = ("admin",)
    guests: tuple[Kind, ...] = ()
    guard = guard or LoginGuard()
    passwords = passwords or Passwords()

    @service.action("login", allow=guests, summary="Log in with email and password: a user_token")
    async def login(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        email = _email(body)
        password = _text(body, "password", limit=1024) or ""
        ip = request.client.host if request.client else "unknown"
        attempt = guard.begin(email, ip)
        users = UserRepository(gw.engine)
        found = await users.for_login(email)
        user, password_hash = found if found is not None else (None, None)
        if not await passwords.verify(password_hash, password) or user is None or password_hash is None:
            raise AuthenticationFailed("Wrong email or password.")
        guard.succeeded(email, ip, attempt)
        if passwords.needs_rehash(password_hash):
            await users.set_password_hash(user.id, await passwords.hash(password))
        await _check_studio(gw, user.studio_id, named=False)
        token, _ = await issue_user_token(gw, user.studio_id, f"user:{user.id}")
        return {"user_token": token, "user": user.public()}

    @service.action("users/create", allow=admin, summary="Create a user with a password")
    async def create(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        email = _email(body)
        password = _text(body, "password", limit=1024) or ""
        if len(password) < 8:
            raise InvalidRequest("password must have at least 8 characters", param="password")
        name = (_text(body, "name", limit=200, required=False) or "").strip() or email.partition("@")[0]
        studio_id = _text(body, "studio_id", limit=64, required=False)
        await _check_studio(gw, studio_id)
        users = UserRepository(gw.engine)
        if await users.by_email(email) is not None:
            raise InvalidRequest("A user with this email exists.", code="email_taken", param="email")
        user = await users.create(email=email, name=name, password_hash=await passwords.hash(password),
                                  studio_id=studio_id)
        if user is None:  # created by someone else meanwhile
            raise InvalidRequest("A user with this email exists.", code="email_taken", param="email")
        return user.public()

    starts = FailureWindow(OAUTH_STARTS_PER_MINUTE, 60.0)  # every start writes a row: guests are bounded

    @service.action("oauth/start", allow=guests, summary="Start a GitHub or Google sign-in")
    async def start(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        ip = request.client.host if request.client else "unknown"
        wait = starts.retry_after(ip)
        if wait is not None:
            raise RateLimited(f"Too many sign-ins started; try again in {math.ceil(wait)} seconds.",
                              retry_after=wait)
        starts.add(ip)
        env = _env(request)
        provider = _text(body, "provider", limit=32) or ""
        if provider not in _DEFAULTS:
            raise InvalidRequest(f"provider must be one of {', '.join(_DEFAULTS)}", param="provider")
        p = oauth_config(env).get(provider)
        if p is None:
            raise InvalidRequest(f"Sign-in with {provider} is not configured: set "
                                 f"TOLLWAY_OAUTH_{provider.upper()}_CLIENT_ID and _CLIENT_SECRET.",
                                 code="provider_not_configured", param="provider")
        studio_id = _text(body, "studio_id", limit=64, required=False)
        await _check_studio(gw, studio_id)
        ttl = state_ttl(env)
        states = OAuthStateRepository(gw.engine)
        await states.purge(time.time() - _PURGE_AFTER)
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        await states.create(state=state, provider=provider, code_verifier=verifier, studio_id=studio_id, ttl=ttl)
        url = authorize_url(p, redirect_uri=callback_url(env, request), state=state, code_verifier=verifier)
        return {"authorize_url": url, "state": state, "expires_in": math.ceil(ttl)}

    @service.action("oauth/callback", methods=("GET",), allow=guests, summary="The providers' return URL")
    async def callback(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> Response:
        gw: Gateway = request.app.state.gateway
        state, code, error = body.get("state") or "", body.get("code") or "", body.get("error") or ""
        if not state or len(state) > 128:
            return page(400, "This sign-in link has no valid state.", call)
        states = OAuthStateRepository(gw.engine)
        row, now = await states.get(state), time.time()
        if row is None:
            return page(400, "This sign-in is unknown.", call)
        if row.status != PENDING or row.claimed:
            return page(400, "This sign-in was used already.", call)
        if row.expires_at <= now:
            return page(400, "This sign-in expired; start again.", call)
        if not error and not (code and len(code) <= 2048):
            return page(400, "The provider sent no code.", call)
        if not await states.claim(state, now):
            return page(400, "This sign-in was used already.", call)
        try:
            if error:
                raise SignInFailed(f"{row.provider} said: {(body.get('error_description') or error)[:200]}")
            env = _env(request)
            p = oauth_config(env).get(row.provider)
            if p is None:
                raise SignInFailed(f"sign-in with {row.provider} is not configured")
            who = await provider_user(p, code=code, code_verifier=row.code_verifier,
                                      redirect_uri=callback_url(env, request))
            users = UserRepository(gw.engine)
            user = await find_or_create(users, row.provider, who, row.studio_id)
            if user.studio_id and row.studio_id and user.studio_id != row.studio_id:
                raise SignInFailed("this account belongs to another studio")
            studio_id = user.studio_id  # a new account was created in the state's studio; an old one keeps its own
            try:
                await _check_studio(gw, studio_id, named=False)
            except PermissionDenied as exc:
                raise SignInFailed(exc.message) from None
            token, _ = await issue_user_token(gw, studio_id, f"user:{user.id}")
        except SignInFailed as exc:
            await states.fail(state, str(exc))
            return page(400, f"Sign-in failed: {exc}.", call)
        except Exception:  # the poller hears of it at once; the edge logs it (500)
            await states.fail(state, "the gateway failed to finish the sign-in")
            raise
        await states.succeed(state, token=token, user_id=user.id)
        return page(200, "Signed in.", call)

    @service.action("oauth/result", methods=("GET",), allow=guests, summary="Poll a sign-in: the token, once")
    async def result(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        state = _text(body, "state", limit=128) or ""
        states = OAuthStateRepository(gw.engine)
        row = await states.get(state)
        if row is None:
            raise NotFound("no such sign-in state")
        if row.status == SUCCEEDED:
            handed = await states.collect(state)
            if handed is None:
                return {"status": SUCCEEDED}
            user = await UserRepository(gw.engine).get(handed[1])
            return {"status": SUCCEEDED, "user_token": handed[0], "user": user.public() if user else None}
        if row.status == FAILED:
            return {"status": FAILED, "error": row.error or "sign-in failed"}
        now = time.time()
        if now > row.expires_at + (_CLAIMED_GRACE if row.claimed else 0.0):
            return {"status": FAILED, "error": "expired"}
        return {"status": PENDING}

    return service
