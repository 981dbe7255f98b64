"""Key secrets, hashes and the in-process identity cache.

A key is ``tw-`` plus 43 URL-safe random characters (256 bits), shown once. The store keeps
its SHA-256 (a fast hash is right for a high-entropy secret: nothing to brute-force) and a
10-character prefix for display. Lookups hash the presented token and look the hash up in a
dict, so lookup time says nothing about any stored secret; the admin secret is compared with
``hmac.compare_digest``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable

import msgspec

from tollway.core.errors import AuthenticationFailed, PermissionDenied
from tollway.core.keys import ApiKey

KEY_PREFIX = "tw-"
PREFIX_LEN = 10


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def prefix_of(secret: str) -> str:
    """The part of a key that listings show: 10 characters of a generated key, at most a
    quarter of a short imported one (so a listing never reveals most of a secret)."""
    return secret[: min(PREFIX_LEN, len(secret) // 4)]


def bearer_token(authorization: str | None, x_api_key: str | None) -> str | None:
    """The caller's token from ``Authorization: Bearer`` or ``x-api-key``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    key: ApiKey | None = None
    is_admin: bool = False
    # direct-token mode (seed 002): a bearer that is no Tollway key, used as the upstream's own
    # credential by a provider that opted in; never stored, never logged
    direct_token: str | None = None

    @property
    def key_id(self) -> int | None:
        return self.key.id if self.key else None

    @property
    def owner(self) -> str:
        """Whose the things this caller stores are (stored responses, tasks, chat records):
        ``key:<id>``, ``direct:<hash>`` or ``admin``; another owner's id is not found."""
        if self.key is not None:
            return f"key:{self.key.id}"
        if self.direct_token is not None:
            return "direct:" + hashlib.sha256(self.direct_token.encode()).hexdigest()[:40]
        return "admin"

    @property
    def key_prefix(self) -> str | None:
        if self.direct_token is not None:
            return "direct"
        return self.key.prefix if self.key else ("admin" if self.is_admin else None)


ADMIN = Identity(is_admin=True)


KeyLookup = Callable[[str], Awaitable[ApiKey | None]]
MAX_MISSES = 10_000
LOOKUPS_PER_SECOND = 20.0


class Authenticator:
    """Resolves a bearer to an identity from memory; ``reload`` swaps the whole key table.

    A token whose hash is not in memory is looked up once in the store (``lookup``): another
    process (a worker, a replica, the CLI) may have created it since the last reload. Hashes
    found nowhere are remembered until the next reload. Lookups are single-flight per token and
    limited to ``lookups_per_second`` in all (a token bucket), so a flood of made-up tokens cannot
    become database load; past the budget an unknown token is refused at once (a brand-new key
    then works after the next change poll). Known keys never touch the database.
    """

    def __init__(self, admin_hash: str, keys: list[ApiKey], lookup: KeyLookup | None = None, *,
                 lookups_per_second: float = LOOKUPS_PER_SECOND,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._admin_hash = admin_hash
        self._by_hash: dict[str, ApiKey] = {}
        self._misses: set[str] = set()
        self._lookup = lookup
        self._rate = lookups_per_second
        self._budget = lookups_per_second
        self._clock = clock
        self._budget_at = clock()
        self._pending: dict[str, asyncio.Future[ApiKey | None]] = {}
        self._changes = 0
        self.reload(keys)

    def set_lookup(self, lookup: KeyLookup) -> None:
        self._lookup = lookup

    def mark(self) -> int:
        """How many keys this process put or dropped so far: taken before reading the keys for
        ``reload``, it tells a read that a local change may have overtaken."""
        return self._changes

    def reload(self, keys: list[ApiKey], mark: int | None = None) -> bool:
        """Replace the table with ``keys``; unless a key was put or dropped here since ``mark``
        (the read may predate it: a revoked key would come back), then False and nothing changes."""
        if mark is not None and mark != self._changes:
            return False
        self._by_hash = {k.key_hash: k for k in keys if k.revoked_at is None}
        self._misses = set()
        return True

    def put(self, key: ApiKey) -> None:
        table = dict(self._by_hash)
        table[key.key_hash] = key
        self._by_hash = table
        self._misses.discard(key.key_hash)
        self._changes += 1

    def by_id(self, key_id: int) -> ApiKey | None:
        """A live key by its id (a task resumed by another process pays with its key)."""
        return next((k for k in self._by_hash.values() if k.id == key_id), None)

    def drop(self, key_id: int) -> None:
        self._by_hash = {h: k for h, k in self._by_hash.items() if k.id != key_id}
        self._changes += 1

    @property
    def admin_hash(self) -> str:
        return self._admin_hash

    def is_admin_secret(self, token: str) -> bool:
        return hmac.compare_digest(hash_secret(token), self._admin_hash)

    async def identify(self, token: str | None) -> Identity:
        if not token:
            raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key'.")
        h = hash_secret(token)
        if hmac.compare_digest(h, self._admin_hash):  # first: no key can shadow the admin secret
            return ADMIN
        key = self._by_hash.get(h)
        if key is None:
            key = await self._find(h)
            if key is None:
                raise AuthenticationFailed("Invalid API key.")
        if not key.enabled:
            raise PermissionDenied("This API key is disabled.", code="api_disabled")
        return Identity(key=key, is_admin=key.role == "admin")

    def _spend(self) -> bool:
        now = self._clock()
        self._budget = min(self._rate, self._budget + (now - self._budget_at) * self._rate)
        self._budget_at = now
        if self._budget < 1.0:
            return False
        self._budget -= 1.0
        return True

    async def _find(self, h: str) -> ApiKey | None:
        if self._lookup is None or h in self._misses:
            return None
        pending = self._pending.get(h)
        if pending is not None:
            return await asyncio.shield(pending)
        if not self._spend():
            return None
        future = asyncio.ensure_future(self._lookup(h))
        self._pending[h] = future
        try:
            key = await asyncio.shield(future)
        finally:
            self._pending.pop(h, None)
        if key is None or key.revoked_at is not None:
            if len(self._misses) < MAX_MISSES:
                self._misses.add(h)
            return None
        self.put(key)
        return key
