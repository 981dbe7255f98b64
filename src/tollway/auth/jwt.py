"""Admin session tokens (seed 002's ``/admin/login``): HS256 JWTs.

The signing key is a random 256-bit secret generated on first use and kept in the ``meta`` table
(first writer wins, so every worker and replica signs with the same one), combined with the admin
secret's hash: the admin key itself never signs anything, and changing the admin key ends every
session. Claims: ``sub`` = ``"admin"``, ``iat``, ``exp``. Verification pins the algorithm (no
``none``, no algorithm confusion), requires all three claims and allows no clock leeway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

import jwt as pyjwt

from tollway.core.errors import AuthenticationFailed
from tollway.store.meta import MetaRepository

SECRET_ROW = "admin_jwt_secret"
SUBJECT = "admin"
ALGORITHM = "HS256"
MIN_HOURS = 1
MAX_HOURS = 720
DEFAULT_HOURS = 24


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts: worth verifying as a JWT before trying it as a key."""
    return token.count(".") == 2 and len(token) <= 4096


class AdminTokens:
    """Issues and verifies admin JWTs; the stored secret is read once per process."""

    def __init__(self, meta: MetaRepository, admin_hash: str, *, clock: Callable[[], float] = time.time) -> None:
        self._meta = meta
        self._admin_hash = admin_hash
        self._clock = clock
        self._key: bytes | None = None

    async def _signing_key(self) -> bytes:
        if self._key is None:
            stored = await self._meta.get(SECRET_ROW)
            if not stored:
                stored = await self._meta.set_if_absent(SECRET_ROW, secrets.token_urlsafe(32))
            self._key = hmac.new(stored.encode(), self._admin_hash.encode(), hashlib.sha256).digest()
        return self._key

    async def issue(self, hours: int) -> tuple[str, int]:
        """A token valid for ``hours`` (1..720) and its lifetime in seconds."""
        if not MIN_HOURS <= hours <= MAX_HOURS:
            raise ValueError(f"hours must be between {MIN_HOURS} and {MAX_HOURS}")
        now = int(self._clock())
        ttl = hours * 3600
        token = pyjwt.encode({"sub": SUBJECT, "iat": now, "exp": now + ttl}, await self._signing_key(),
                             algorithm=ALGORITHM)
        return token, ttl

    async def verify(self, token: str) -> int:
        """The token's expiry (epoch seconds); AuthenticationFailed when it is not a valid admin token."""
        if not looks_like_jwt(token):
            raise AuthenticationFailed("Invalid admin token.")
        try:
            claims = pyjwt.decode(token, await self._signing_key(), algorithms=[ALGORITHM],
                                  options={"require": ["sub", "iat", "exp"], "verify_iat": False})
        except pyjwt.ExpiredSignatureError:
            raise AuthenticationFailed("Admin token expired: log in again.") from None
        except pyjwt.InvalidTokenError:
            raise AuthenticationFailed("Invalid admin token.") from None
        exp = claims.get("exp")
        if claims.get("sub") != SUBJECT or not isinstance(exp, int) or exp <= self._clock():
            raise AuthenticationFailed("Invalid admin token.")
        return exp
