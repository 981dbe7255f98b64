"""Seed 002's (DS2API's) admin API: JWT login, sanitized config, accounts, queue status, account
tests, import and export, and a test call through the gateway's own ``/v1`` door.

Accounts are the run-time upstream credentials (``store.credentials``) of one provider: the one
named by the ``provider`` query parameter or body field, else the first configured provider that
is not ``echo`` (DS2API serves one upstream; Tollway serves many, and the choice is per request
rather than a setting). An account is ``{email | mobile, password, token}`` or an API-key
credential ``{id?, api_key}``; ``token`` and ``api_key`` both become the credential's secret, and a
token-only account is named ``token:<hash>``. Credentials from env and YAML are not accounts: they
serve, show in the queue status and can be tested, but are changed where they are configured.

``AccountBook`` and ``probe`` are shared with the CLI (``tollway credentials``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from tollway.admin.base import (
    admin_endpoint,
    admin_tokens,
    auth_throttle,
    count_failure,
    int_param,
    json_body,
    peer,
    str_param,
)
from tollway.admin.keys import MASK, import_keys
from tollway.auth.jwt import DEFAULT_HOURS, MAX_HOURS, MIN_HOURS, looks_like_jwt
from tollway.auth.keys import bearer_token
from tollway.core.catalog import Credential
from tollway.core.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    TollwayError,
    UpstreamError,
)
from tollway.core.names import PROVIDER_ECHO
from tollway.core.redaction import redact
from tollway.providers.base import ChatProvider
from tollway.routing.catalog import Catalog
from tollway.routing.catalog import Route as ModelRoute
from tollway.routing.gateway import Gateway
from tollway.routing.pools import CredentialPool, Lease
from tollway.routing.recovery import probe as probe_call
from tollway.routing.responses import JSONBytes
from tollway.store.credentials import CredentialRepository, StoredCredential, token_id

log = logging.getLogger("tollway.admin")

MAX_ID, MAX_EMAIL, MAX_MOBILE, MAX_SECRET = 200, 320, 64, 8192
TOKEN_ID_PREFIX = "token:"
PROBE_TIMEOUT = 60.0
PROBE_CONCURRENCY = 4
DEFAULT_MESSAGE = "Hello"
UNTESTABLE = ("Not tested: this account has a password but no token, and no provider here logs in with a "
              "password, so nothing could be sent upstream. Add its token (or api_key) to test it.")


class AccountConflict(TollwayError):
    """An account whose id, email or mobile another account holds (409)."""

    status = 409
    default_code = "conflict"


# accounts --------------------------------------------------------------------------------------


class AccountBook:
    """Seed 002's accounts over the credential store, with its rules (the admin API and the CLI)."""

    def __init__(self, store: CredentialRepository, providers: Sequence[str],
                 configured: Mapping[str, Sequence[Credential]]) -> None:
        self.store = store
        self.providers = list(providers)
        self._configured = {name: {c.id for c in creds} for name, creds in configured.items()}

    def provider(self, requested: object = None) -> str:
        """The named provider, or the first configured one that is not echo."""
        name = str_param(requested, "provider", 64)
        if name:
            if name not in self.providers:
                raise InvalidRequest(f"provider {name!r} is not configured (configured: {', '.join(self.providers)})",
                                     param="provider")
            return name
        default = next((p for p in self.providers if p != PROVIDER_ECHO), None)
        if default is None:
            raise InvalidRequest("no upstream provider is configured (only echo): accounts need one", param="provider")
        return default

    def parse(self, item: object, provider: str, where: str = "account") -> StoredCredential:
        """One account of a request body (an item's own ``provider`` wins), checked."""
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object")
        provider = self.provider(item.get("provider") or provider)
        email = str_param(item.get("email"), f"{where}.email", MAX_EMAIL).strip()
        mobile = str_param(item.get("mobile"), f"{where}.mobile", MAX_MOBILE).strip()
        password = str_param(item.get("password"), f"{where}.password", MAX_SECRET) or None
        token = str_param(item.get("token"), f"{where}.token", MAX_SECRET).strip()
        api_key = str_param(item.get("api_key"), f"{where}.api_key", MAX_SECRET).strip()
        if token and api_key and token != api_key:
            raise InvalidRequest(f"{where}: token and api_key differ (they are the same secret)")
        secret = token or api_key or None
        chosen = str_param(item.get("id"), f"{where}.id", MAX_ID).strip()
        if chosen.startswith(TOKEN_ID_PREFIX) and (secret is None or chosen != token_id(secret)):
            raise InvalidRequest(f"{where}.id: ids starting with {TOKEN_ID_PREFIX!r} name token-only accounts")
        ident = chosen or email or mobile or (token_id(secret) if secret else "")
        if not ident:
            raise InvalidRequest(f"{where} needs an email, a mobile, an id or a token (api_key)")
        if len(ident) > MAX_ID:
            raise InvalidRequest(f"{where}: an identifier (the email when no id is given) is at most {MAX_ID} "
                                 "characters; give a shorter id")
        if any(not c.isprintable() for c in ident):
            raise InvalidRequest(f"{where}: the identifier must be printable")
        if ident in self._configured.get(provider, ()):
            raise InvalidRequest(f"{where}: {ident!r} is configured in env or YAML for provider {provider!r}")
        return StoredCredential(id=ident, provider=provider, email=email, mobile=mobile, password=password,
                                secret=secret)

    async def accounts(self, provider: str | None = None) -> list[StoredCredential]:
        return await self.store.all(provider)

    async def find(self, ident: str, provider: str) -> StoredCredential | None:
        if not ident:
            return None
        return next((c for c in await self.store.all(provider) if ident in (c.id, c.email, c.mobile)), None)

    @staticmethod
    def _conflict(c: StoredCredential, existing: Sequence[StoredCredential], *, replacing: bool) -> str | None:
        for other in existing:
            if other.id == c.id:
                if other.provider != c.provider:
                    return f"{c.id!r} is already an account of provider {other.provider!r}"
                if not replacing:
                    return f"account {c.id!r} already exists"
            elif other.provider == c.provider:
                if c.email and other.email == c.email:
                    return "account email already exists"
                if c.mobile and other.mobile == c.mobile:
                    return "account mobile already exists"
        return None

    @staticmethod
    def _usable(c: StoredCredential) -> StoredCredential:
        if not (c.password or c.secret):
            raise InvalidRequest(f"account {c.id!r} needs a password or a token (api_key)")
        return c

    async def add(self, c: StoredCredential) -> None:
        """A new account; 409 when its id, email or mobile is taken, also by an add that raced
        this one (the database's primary key decides: one of ten identical adds wins)."""
        problem = self._conflict(self._usable(c), await self.store.all(), replacing=False)
        if problem:
            raise AccountConflict(problem)
        if not await self.store.insert(c):
            raise AccountConflict(f"account {c.id!r} already exists")

    async def upsert(self, items: Sequence[StoredCredential]) -> int:
        """Insert or update by id (POST /admin/config): what an item leaves empty (password, token,
        email, mobile) keeps its stored value, so a sanitized config can be sent back. All or none."""
        by_id = {c.id: c for c in await self.store.all()}
        merged: dict[str, StoredCredential] = {}
        for c in items:
            old = merged.get(c.id) or by_id.get(c.id)
            if old is not None and old.provider == c.provider:
                c = msgspec.structs.replace(c, email=c.email or old.email, mobile=c.mobile or old.mobile,
                                            password=c.password or old.password, secret=c.secret or old.secret)
            problem = self._conflict(self._usable(c), list({**by_id, **merged}.values()), replacing=True)
            if problem:
                raise AccountConflict(problem)
            merged[c.id] = c
        return await self.store.upsert(list(merged.values()))

    async def import_new(self, items: Sequence[StoredCredential]) -> int:
        """Add the accounts whose id, email and mobile are all new (POST /admin/import); skip the
        rest, and those a concurrent write added first."""
        existing = await self.store.all()
        new: list[StoredCredential] = []
        for c in items:
            if self._conflict(self._usable(c), existing + new, replacing=False) is None:
                new.append(c)
        return sum([await self.store.insert(c) for c in new])

    async def remove(self, ident: str, provider: str) -> bool:
        found = await self.find(ident, provider)
        return found is not None and await self.store.delete(found.id, found.provider)


def _book(gw: Gateway) -> AccountBook:
    return AccountBook(gw.credential_store, list(gw.providers), gw.configured_credentials)


def _requested_provider(request: Request, body: Mapping[str, Any] | None = None) -> object:
    return (body or {}).get("provider") or request.query_params.get("provider")


# account tests ---------------------------------------------------------------------------------


def probe_route(catalog: Catalog, provider: str, model: str) -> ModelRoute:
    """The route of a test call: ``model``, or the provider's first listed model; it must be
    served by ``provider`` (the credential is that provider's)."""
    if not model:
        model = next((m.id for m in catalog.listed() if m.provider == provider), "")
        if not model:
            raise InvalidRequest(f"provider {provider!r} lists no model: name one (model)", param="model")
    route = catalog.resolve(model)
    if route.provider != provider:
        raise InvalidRequest(f"model {model!r} is served by provider {route.provider!r}, not {provider!r}",
                             param="model")
    return route


async def probe(provider: ChatProvider, route: ModelRoute, credential: Credential, message: str, *,
                password: str | None = None) -> tuple[dict[str, Any], TollwayError | None]:
    """A tiny chat call on this one credential through the provider's adapter: seed 002's test
    result (``response_time`` in ms; never a secret in ``message``) and the error, if any."""
    t0 = time.perf_counter()
    reply, error = await probe_call(provider, route, credential, message or DEFAULT_MESSAGE, timeout=PROBE_TIMEOUT)
    elapsed = round((time.perf_counter() - t0) * 1000)
    if error is None:
        text = "API test successful" + (f": {reply[:100]}" if reply else "")
    else:
        text = redact(redact(error.message, credential.secret), password)
    return {"account": credential.id, "success": error is None, "response_time": elapsed, "message": text,
            "model": route.model.id}, error


async def _settle(pool: CredentialPool, credential: Credential, error: TollwayError | None) -> None:
    """A passing test re-enables the credential; a failing one counts like a failed call."""
    if error is None:
        await pool.enable(credential.id)
    elif isinstance(error, UpstreamError):
        await pool.failed(Lease(credential=credential, token="admin-test", pool=pool.provider), error)


def untested(credential: Credential, route: ModelRoute) -> dict[str, Any]:
    """The result for an account with nothing to send upstream (a password without a token)."""
    return {"account": credential.id, "success": False, "response_time": 0, "message": UNTESTABLE,
            "model": route.model.id}


def password_only(stored: StoredCredential | None, credential: Credential) -> bool:
    """A stored login without a token: no provider here logs in, so a test would send no secret."""
    return stored is not None and stored.id == credential.id and not stored.secret


async def _test_one(gw: Gateway, pool: CredentialPool, route: ModelRoute, credential: Credential, message: str,
                    stored: StoredCredential | None) -> dict[str, Any]:
    if password_only(stored, credential):
        return untested(credential, route)
    password = stored.password if stored is not None else None
    result, error = await probe(gw.providers[pool.provider], route, credential, message, password=password)
    await _settle(pool, credential, error)
    return result


async def test_account(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    ident = str_param(body.get("identifier"), "identifier", MAX_EMAIL).strip()
    if not ident:
        raise InvalidRequest("identifier is required", param="identifier")
    book = _book(gw)
    provider = book.provider(_requested_provider(request, body))
    pool = gw.pools[provider]
    stored = await book.find(ident, provider)
    credential = pool.find(ident)
    if credential is None and stored is not None:  # added by another process since the last poll
        await gw.reload_credentials()
        credential = pool.find(ident) or stored.credential()
    if credential is None:
        raise NotFound("account does not exist")
    route = probe_route(gw.catalog, provider, str_param(body.get("model"), "model"))
    message = str_param(body.get("message"), "message", 4000)
    return await _test_one(gw, pool, route, credential, message, stored)


async def test_all(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    book = _book(gw)
    provider = book.provider(_requested_provider(request, body))
    pool = gw.pools[provider]
    accounts = await book.accounts(provider)
    results: list[dict[str, Any]] = []
    if accounts:
        route = probe_route(gw.catalog, provider, str_param(body.get("model"), "model"))
        message = str_param(body.get("message"), "message", 4000)
        gate = asyncio.Semaphore(PROBE_CONCURRENCY)

        async def one(account: StoredCredential) -> dict[str, Any]:
            async with gate:
                credential = pool.find(account.id) or account.credential()
                return await _test_one(gw, pool, route, credential, message, account)

        results = list(await asyncio.gather(*(one(a) for a in accounts)))
    passed = sum(1 for r in results if r["success"])
    return {"total": len(results), "success": passed, "failed": len(results) - passed, "results": results,
            "provider": provider}


# login -----------------------------------------------------------------------------------------


async def login(request: Request, gw: Gateway) -> dict[str, Any]:
    client = peer(request)
    throttle = auth_throttle(request)  # shared with every admin route: a guess is a guess anywhere
    throttle.check(client)
    body = await json_body(request)
    hours = int_param(body.get("expire_hours"), "expire_hours", DEFAULT_HOURS, low=MIN_HOURS, high=MAX_HOURS)
    key = body.get("admin_key")
    if not isinstance(key, str) or not key or not gw.auth.is_admin_secret(key):
        throttle.failed(client)
        raise AuthenticationFailed("Invalid admin key")
    token, ttl = await admin_tokens(request, gw).issue(hours or DEFAULT_HOURS)
    return {"success": True, "token": token, "expires_in": ttl}


async def verify(request: Request, gw: Gateway) -> dict[str, Any]:
    token = bearer_token(request.headers.get("authorization"), None)
    if not token:
        raise AuthenticationFailed("No credentials provided")
    auth_throttle(request).check(peer(request))
    try:
        expires_at = await admin_tokens(request, gw).verify(token)
    except AuthenticationFailed as err:
        count_failure(request, err)
        raise
    return {"valid": True, "expires_at": expires_at, "remaining_seconds": max(0, expires_at - int(time.time()))}


# config, import, export ------------------------------------------------------------------------


def _items(body: Mapping[str, Any], name: str) -> list[Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest(f"{name} must be a list", param=name)
    return value


def _claude_mapping(value: object, catalog: Catalog) -> dict[str, str]:
    """A mapping whose targets resolve now (``fast`` and/or ``slow``)."""
    if not isinstance(value, dict):
        raise InvalidRequest("claude_mapping must be an object", param="claude_mapping")
    out: dict[str, str] = {}
    for family, target in value.items():
        if family not in ("fast", "slow"):
            raise InvalidRequest(f"claude_mapping: {family!r} is not fast or slow", param="claude_mapping")
        if not isinstance(target, str) or not 0 < len(target) <= MAX_ID:
            raise InvalidRequest(f"claude_mapping {family!r} must be a model name", param="claude_mapping")
        try:
            catalog.resolve(target)
        except TollwayError as err:
            raise InvalidRequest(f"claude_mapping {family!r}: {err.message}", param="claude_mapping") from None
        out[family] = target
    return out


def _parsed_accounts(book: AccountBook, body: Mapping[str, Any], provider: str) -> list[StoredCredential]:
    return [book.parse(item, provider, f"accounts[{i}]") for i, item in enumerate(_items(body, "accounts") or [])]


async def get_config(request: Request, gw: Gateway) -> dict[str, Any]:
    book = _book(gw)
    provider = book.provider(_requested_provider(request))
    return {"keys": [k.prefix + MASK for k in await gw.keys.active()],
            "accounts": [c.public() for c in await book.accounts()],
            "claude_mapping": dict(gw.catalog.claude_mapping), "accounts_provider": provider}


async def set_config(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    book = _book(gw)
    provider = book.provider(_requested_provider(request, body))
    keys = _items(body, "keys")
    accounts = _parsed_accounts(book, body, provider) if "accounts" in body else None
    mapping = _claude_mapping(body["claude_mapping"], gw.catalog) if body.get("claude_mapping") is not None else None
    created, skipped = await import_keys(gw, keys) if keys is not None else (0, 0)
    updated = 0
    if accounts:
        updated = await book.upsert(accounts)
        await gw.reload_credentials()
    if mapping is not None:
        await gw.set_claude_mapping(mapping)  # kept in the database: every process, every restart
    return {"success": True, "message": "config updated", "imported_keys": created, "skipped_keys": skipped,
            "updated_accounts": updated, "claude_mapping": dict(gw.catalog.claude_mapping)}


async def import_config(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    book = _book(gw)
    provider = book.provider(_requested_provider(request, body))
    keys = _items(body, "keys") or []
    accounts = _parsed_accounts(book, body, provider)
    mapping = _claude_mapping(body["claude_mapping"], gw.catalog) if body.get("claude_mapping") else None
    created, skipped = await import_keys(gw, keys)
    imported = await book.import_new(accounts)
    if imported:
        await gw.reload_credentials()
    if mapping:
        await gw.set_claude_mapping({**gw.catalog.claude_mapping, **mapping})
    return {"success": True, "imported_keys": created, "imported_accounts": imported, "skipped_keys": skipped,
            "skipped_accounts": len(accounts) - imported}


async def export_config(request: Request, gw: Gateway) -> JSONBytes:
    """The admin's backup: account passwords and tokens included (keys only as prefixes)."""
    data = {
        "keys": [k.prefix + MASK for k in await gw.keys.active()],
        "accounts": [{"provider": c.provider, "id": c.id, "email": c.email, "mobile": c.mobile,
                      "password": c.password or "", "token": c.secret or ""}
                     for c in await gw.credential_store.all()],
        "claude_mapping": dict(gw.catalog.claude_mapping),
    }
    text = msgspec.json.encode(data).decode()
    return JSONBytes({"json": text, "base64": base64.b64encode(text.encode()).decode()},
                     headers={"cache-control": "no-store"})


# accounts and queue ----------------------------------------------------------------------------


async def list_accounts(request: Request, gw: Gateway) -> dict[str, Any]:
    q = request.query_params
    book = _book(gw)
    provider = book.provider(q.get("provider"))
    page = int_param(q.get("page"), "page", 1, low=1) or 1
    size = int_param(q.get("page_size"), "page_size", 10, low=1, high=100) or 10
    accounts = await book.accounts(provider)
    total = len(accounts)
    items = accounts[(page - 1) * size:page * size]
    return {"items": [c.public() for c in items], "total": total, "page": page, "page_size": size,
            "total_pages": max(1, math.ceil(total / size)), "provider": provider}


async def add_account(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    book = _book(gw)
    account = book.parse(body, book.provider(_requested_provider(request, body)))
    await book.add(account)
    await gw.reload_credentials()
    return {"success": True, "total_accounts": await gw.credential_store.count(account.provider),
            "identifier": account.id, "account": account.public()}


async def delete_account(request: Request, gw: Gateway) -> dict[str, Any]:
    ident = request.path_params["identifier"]
    book = _book(gw)
    provider = book.provider(request.query_params.get("provider"))
    if not await book.remove(ident, provider):
        raise NotFound("account does not exist")
    await gw.reload_credentials()
    return {"success": True, "deleted_identifier": ident,
            "total_accounts": await gw.credential_store.count(provider)}


async def queue_status(request: Request, gw: Gateway) -> dict[str, Any]:
    provider = _book(gw).provider(request.query_params.get("provider"))
    status = await gw.pools[provider].status()
    every = {name: await pool.status() for name, pool in gw.pools.items()}
    return {**status, "provider": provider, "providers": every}


# test through the service ----------------------------------------------------------------------


def _own_url(request: Request) -> str:
    """This server's ``/v1/chat/completions`` on loopback (the socket's port, not the Host header's)."""
    server = request.scope.get("server")
    port = server[1] if server and server[1] else request.url.port
    return f"http://127.0.0.1:{port}/v1/chat/completions"


async def self_test(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    api_key = str_param(body.get("api_key"), "api_key", 512).strip()
    if not api_key:
        caller = bearer_token(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not caller or looks_like_jwt(caller):
            raise InvalidRequest("api_key is required with a JWT: Tollway keeps only hashes of keys, so it has "
                                 "no key of its own to send", param="api_key")
        api_key = caller
    model = str_param(body.get("model"), "model")
    if not model:
        book = _book(gw)
        default = next((p for p in book.providers if p != PROVIDER_ECHO), PROVIDER_ECHO)
        model = next((m.id for m in gw.catalog.listed() if m.provider == default), PROVIDER_ECHO)
    message = str_param(body.get("message"), "message", 4000) or DEFAULT_MESSAGE
    payload = {"model": model, "messages": [{"role": "user", "content": message}], "stream": False}
    import httpx  # only this probe uses it: not imported at start

    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, trust_env=False) as client:
            r = await client.post(_own_url(request), json=payload, headers={"Authorization": f"Bearer {api_key}"})
    except httpx.HTTPError as exc:
        return {"success": False, "status_code": 0, "response": {"detail": f"{type(exc).__name__}"}}
    try:
        response: Any = r.json()
    except ValueError:
        response = r.text[:2000]
    return {"success": r.status_code == 200, "status_code": r.status_code, "response": response}


def ds2api_routes() -> list[BaseRoute]:
    return [
        Route("/admin/login", admin_endpoint(login, public=True), methods=["POST"]),
        Route("/admin/verify", admin_endpoint(verify, public=True), methods=["GET"]),
        Route("/admin/config", admin_endpoint(get_config), methods=["GET"]),
        Route("/admin/config", admin_endpoint(set_config), methods=["POST"]),
        Route("/admin/accounts", admin_endpoint(list_accounts), methods=["GET"]),
        Route("/admin/accounts", admin_endpoint(add_account), methods=["POST"]),
        Route("/admin/accounts/test", admin_endpoint(test_account), methods=["POST"]),
        Route("/admin/accounts/test-all", admin_endpoint(test_all), methods=["POST"]),
        Route("/admin/accounts/{identifier:path}", admin_endpoint(delete_account), methods=["DELETE"]),
        Route("/admin/queue/status", admin_endpoint(queue_status), methods=["GET"]),
        Route("/admin/import", admin_endpoint(import_config), methods=["POST"]),
        Route("/admin/export", admin_endpoint(export_config), methods=["GET"]),
        Route("/admin/test", admin_endpoint(self_test), methods=["POST"]),
    ]
