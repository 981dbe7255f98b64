"""Fake GitHub and Google OAuth servers: one aiohttp server on 127.0.0.1, in its own thread.

There is no authorize page: a test hands the gateway's authorize URL to ``authorize``, which
checks its query (client_id, redirect_uri, state, scope, an S256 code_challenge) as the real
page would and returns a code bound to that challenge, redirect URI and the scripted user
(``script_github`` / ``script_google``). The token endpoints check the client id and secret,
the code (single use: a second redemption is refused even when the first failed), the
redirect URI and the PKCE verifier against the stored challenge. The user endpoints want the
access token they issued. Every token request is kept in ``token_requests`` with the fake's
verdict, so tests can tell which refusal happened.

Paths (``base_url`` + ...):
  GitHub: /github/login/oauth/authorize, /github/login/oauth/access_token, /github/api/user,
          /github/api/user/emails
  Google: /google/auth, /google/token, /google/userinfo
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

GITHUB_CLIENT = ("gh-client-id-123", "gh-client-secret-456")
GOOGLE_CLIENT = ("google-client-id.apps.example", "google-client-secret-789")
SCOPES = {"github": "read:user user:email", "google": "openid email profile"}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


@dataclass
class Grant:
    provider: str
    client_id: str
    redirect_uri: str
    challenge: str
    user: dict[str, Any]
    emails: list[dict[str, Any]] | None
    used: bool = False


@dataclass
class TokenRequest:
    provider: str
    form: dict[str, str]
    verdict: str  # "ok" or the refusal's reason


@dataclass
class FakeOAuth:
    github_user: dict[str, Any] = field(default_factory=lambda: {"id": 1001, "login": "octo", "name": "Octo Cat",
                                                                  "email": None})
    github_emails: list[dict[str, Any]] | None = field(default_factory=lambda: [
        {"email": "octo@example.com", "primary": True, "verified": True, "visibility": None}])
    google_user: dict[str, Any] = field(default_factory=lambda: {"sub": "g-2002", "email": "gina@example.com",
                                                                  "email_verified": True, "name": "Gina"})
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[TokenRequest] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The gateway's TOLLWAY_OAUTH_* settings pointing at this fake."""
        b = self.base_url
        return {
            "TOLLWAY_OAUTH_GITHUB_CLIENT_ID": GITHUB_CLIENT[0], "TOLLWAY_OAUTH_GITHUB_CLIENT_SECRET": GITHUB_CLIENT[1],
            "TOLLWAY_OAUTH_GITHUB_AUTHORIZE_URL": b + "/github/login/oauth/authorize",
            "TOLLWAY_OAUTH_GITHUB_TOKEN_URL": b + "/github/login/oauth/access_token",
            "TOLLWAY_OAUTH_GITHUB_API_URL": b + "/github/api",
            "TOLLWAY_OAUTH_GOOGLE_CLIENT_ID": GOOGLE_CLIENT[0], "TOLLWAY_OAUTH_GOOGLE_CLIENT_SECRET": GOOGLE_CLIENT[1],
            "TOLLWAY_OAUTH_GOOGLE_AUTHORIZE_URL": b + "/google/auth",
            "TOLLWAY_OAUTH_GOOGLE_TOKEN_URL": b + "/google/token",
            "TOLLWAY_OAUTH_GOOGLE_API_URL": b + "/google/userinfo",
        }

    def script_github(self, user: dict[str, Any], emails: list[dict[str, Any]] | None) -> None:
        """Who signs in with the next GitHub codes (``emails`` None: the emails API says 404)."""
        self.github_user, self.github_emails = user, emails

    def script_google(self, user: dict[str, Any]) -> None:
        self.google_user = user

    # the authorize page, as a function -------------------------------------------------------

    def authorize(self, url: str, *, challenge: str | None = None) -> tuple[str, dict[str, str]]:
        """Check an authorize URL as the provider's page would; the code it redirects with, and
        the query it read. ``challenge`` binds the code to another PKCE challenge (an attacker's)."""
        parts = urlsplit(url)
        provider = "github" if parts.path == "/github/login/oauth/authorize" else "google"
        assert parts.path in ("/github/login/oauth/authorize", "/google/auth"), url
        raw = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
        assert all(len(v) == 1 for v in raw.values()), raw
        query = {k: v[0] for k, v in raw.items()}
        client_id = (GITHUB_CLIENT if provider == "github" else GOOGLE_CLIENT)[0]
        assert query["response_type"] == "code", query
        assert query["client_id"] == client_id, query
        assert query["scope"] == SCOPES[provider], query
        assert query["code_challenge_method"] == "S256", query
        assert len(query["code_challenge"]) == 43, query  # base64url of a SHA-256, unpadded
        assert len(query["state"]) >= 43, query  # 32+ random bytes
        assert query["redirect_uri"].endswith("/v1/accounts/oauth/callback"), query
        code = secrets.token_urlsafe(20)
        user = self.github_user if provider == "github" else self.google_user
        emails = self.github_emails if provider == "github" else None
        self.grants[code] = Grant(provider=provider, client_id=client_id, redirect_uri=query["redirect_uri"],
                                  challenge=challenge or query["code_challenge"], user=dict(user),
                                  emails=None if emails is None else [dict(e) for e in emails])
        return code, query

    def verdicts(self, provider: str) -> list[str]:
        return [t.verdict for t in self.token_requests if t.provider == provider]

    # server ----------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = web.Application()
            app.router.add_post("/github/login/oauth/access_token", self._github_token)
            app.router.add_get("/github/api/user", self._github_user)
            app.router.add_get("/github/api/user/emails", self._github_emails)
            app.router.add_post("/google/token", self._google_token)
            app.router.add_get("/google/userinfo", self._google_userinfo)
            runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-oauth", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    # token endpoints -------------------------------------------------------------------------

    async def _redeem(self, request: web.Request, provider: str) -> tuple[str, str | None]:
        """(verdict, access token): every check a real token endpoint makes."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        client_id, secret = GITHUB_CLIENT if provider == "github" else GOOGLE_CLIENT
        sent_id, sent_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            sent_id, _, sent_secret = base64.b64decode(basic[6:]).decode().partition(":")
        verdict, token = "ok", None
        grant = self.grants.get(form.get("code", ""))
        if (sent_id, sent_secret) != (client_id, secret):
            verdict = "invalid_client"
        elif form.get("grant_type") != "authorization_code":
            verdict = "unsupported_grant_type"
        elif grant is None or grant.provider != provider:
            verdict = "unknown code"
        elif grant.used:
            verdict = "code already used"
        elif form.get("redirect_uri") != grant.redirect_uri:
            verdict = "redirect_uri mismatch"
        elif not form.get("code_verifier") or s256(form["code_verifier"]) != grant.challenge:
            verdict = "code_verifier mismatch"
        if grant is not None and verdict != "invalid_client":
            grant.used = True  # a code is burnt by its first redemption, good or bad
        if verdict == "ok" and grant is not None:
            token = ("gho_" if provider == "github" else "ya29.") + secrets.token_urlsafe(24)
            self.tokens[token] = grant
        self.token_requests.append(TokenRequest(provider=provider, form=form, verdict=verdict))
        return verdict, token

    async def _github_token(self, request: web.Request) -> web.Response:
        verdict, token = await self._redeem(request, "github")
        if token is None:  # GitHub answers 200 with an error object
            error = "incorrect_client_credentials" if verdict == "invalid_client" else "bad_verification_code"
            return web.json_response({"error": error, "error_description": verdict})
        return web.json_response({"access_token": token, "token_type": "bearer", "scope": SCOPES["github"]})

    async def _google_token(self, request: web.Request) -> web.Response:
        verdict, token = await self._redeem(request, "google")
        if token is None:
            status, error = (401, "invalid_client") if verdict == "invalid_client" else (400, "invalid_grant")
            return web.json_response({"error": error, "error_description": verdict}, status=status)
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer",
                                  "scope": SCOPES["google"]})

    # user endpoints --------------------------------------------------------------------------

    def _grant_of(self, request: web.Request, provider: str) -> Grant | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        grant = self.tokens.get(token) if scheme.lower() in ("bearer", "token") else None
        return grant if grant is not None and grant.provider == provider else None

    async def _github_user(self, request: web.Request) -> web.Response:
        grant = self._grant_of(request, "github")
        if grant is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response(grant.user)

    async def _github_emails(self, request: web.Request) -> web.Response:
        grant = self._grant_of(request, "github")
        if grant is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        if grant.emails is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(grant.emails)

    async def _google_userinfo(self, request: web.Request) -> web.Response:
        grant = self._grant_of(request, "google")
        if grant is None:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response(grant.user)
