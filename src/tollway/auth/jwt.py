"""Admin session tokens (seed 002's ``/admin/login``): HS256 JWTs.

The signing key is ``HMAC-SHA256(server secret, random row || admin secret's hash)``:

- the **server secret** is never in the database (``server_secret``): ``TOLLWAY_SECRET_KEY``
  when set, else ``TOLLWAY_ADMIN_KEY`` when set, else a random key file in the data directory
  (``admin-session.key``, made on first use with mode 0600). A copy of the database alone
  (``meta`` holds the random row and, for a generated admin key, its hash) cannot sign a token;
- the **random row** (``meta.admin_jwt_secret``, 256 bits, first writer wins) is shared by
  every worker and replica; deleting it ends every session;
- the **admin secret's hash**: changing the admin key ends every session.

Every process that must accept one another's sessions needs the same server secret: replicas on
one database set ``TOLLWAY_SECRET_KEY`` (or ``TOLLWAY_ADMIN_KEY``); workers of one ``tollway
serve`` share the data directory. Claims: ``sub`` = ``"admin"``, ``iat``, ``exp``.
Verification pins the algorithm (no ``none``, no algorithm confusion), requires all three claims
and allows no clock leeway.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tollway.core.errors import AuthenticationFailed, ConfigError
from tollway.store.meta import MetaRepository

SECRET_ROW = "admin_jwt_secret"
KEY_FILE = "admin-session.key"
SUBJECT = "admin"
ALGORITHM = "HS256"
MIN_HOURS = 1
MAX_HOURS = 720
DEFAULT_HOURS = 24
_KEY_BYTES = 32
_DOMAIN = b"tollway admin jwt v2\x00"


class SessionExpired(AuthenticationFailed):
    """A token the gateway signed whose time is up: not a guess (throttles do not count it)."""


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts: worth verifying as a JWT before trying it as a key."""
    return token.count(".") == 2 and len(token) <= 4096


def server_secret(env: Mapping[str, str], data_dir: str | Path) -> bytes:
    """The part of the signing key that is not in the database (see the module doc). ``env`` is
    the process environment the settings were read from, never the variables admins store."""
    for name in ("TOLLWAY_SECRET_KEY", "TOLLWAY_ADMIN_KEY"):
        value = env.get(name, "").strip()
        if value:
            return name.encode() + b"\x00" + value.encode("utf-8")
    return b"file\x00" + key_file(Path(data_dir) / KEY_FILE)


def key_file(path: Path) -> bytes:
    """The random key in ``path``, made now if absent (0600, written whole before it appears:
    processes starting together agree on the first one linked in place)."""
    if not path.exists():
        try:
            _make_key_file(path)
        except OSError as exc:
            raise ConfigError(f"cannot make the admin session key {path} ({exc.strerror or exc}): make the data "
                              "directory writable, or set TOLLWAY_SECRET_KEY") from None
    try:
        text = path.read_text().strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError):
        key = b""
    if len(key) < _KEY_BYTES:
        raise ConfigError(f"{path} must hold a random key of {_KEY_BYTES} bytes in hex: remove it to make a new "
                          "one (that ends every admin session)")
    return key


def _make_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(_KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs wins
            os.link(tmp, path)
    finally:
        tmp.unlink()


class AdminTokens:
    """Issues and verifies admin JWTs; the stored row is read once per process."""

    def __init__(self, meta: MetaRepository, admin_hash: str, server_key: bytes, *,
                 clock: Callable[[], float] = time.time) -> None:
        if not server_key:
            raise ValueError("admin sessions need a server secret")
        self._meta = meta
        self._admin_hash = admin_hash
        self._server_key = server_key
        self._clock = clock
        self._key: bytes | None = None

    async def _signing_key(self) -> bytes:
        if self._key is None:
            stored = await self._meta.get(SECRET_ROW)
            if not stored:
                stored = await self._meta.set_if_absent(SECRET_ROW, secrets.token_urlsafe(32))
            self._key = signing_key(self._server_key, stored, self._admin_hash)
        return self._key

    async def derive(self, purpose: bytes) -> bytes:
        """A 32-byte key for ``purpose`` (the web console's session cookies), made from the same
        secrets as the signing key: never in the database alone, and changing the admin key (or
        deleting the random row) makes every key derived so far worthless."""
        return hmac.new(await self._signing_key(), b"derive\x00" + purpose, hashlib.sha256).digest()

    async def issue(self, hours: int) -> tuple[str, int]:
        """A token valid for ``hours`` (1..720) and its lifetime in seconds."""
        if not MIN_HOURS <= hours <= MAX_HOURS:
            raise ValueError(f"hours must be between {MIN_HOURS} and {MAX_HOURS}")
        import jwt as pyjwt  # on the first admin login, not at start (issue 19)

        now = int(self._clock())
        ttl = hours * 3600
        token = pyjwt.encode({"sub": SUBJECT, "iat": now, "exp": now + ttl}, await self._signing_key(),
                             algorithm=ALGORITHM)
        return token, ttl

    async def verify(self, token: str) -> int:
        """The token's expiry (epoch seconds); AuthenticationFailed when it is not a valid admin
        token (SessionExpired when it was one)."""
        if not looks_like_jwt(token):
            raise AuthenticationFailed("Invalid admin token.")
        import jwt as pyjwt

        try:
            claims = pyjwt.decode(token, await self._signing_key(), algorithms=[ALGORITHM],
                                  options={"require": ["sub", "iat", "exp"], "verify_iat": False})
        except pyjwt.ExpiredSignatureError:
            raise SessionExpired("Admin token expired: log in again.") from None
        except pyjwt.InvalidTokenError:
            raise AuthenticationFailed("Invalid admin token.") from None
        exp = claims.get("exp")
        if claims.get("sub") != SUBJECT or not isinstance(exp, int):
            raise AuthenticationFailed("Invalid admin token.")
        if exp <= self._clock():
            raise SessionExpired("Admin token expired: log in again.")
        return exp


def signing_key(server_key: bytes, stored: str, admin_hash: str) -> bytes:
    """HMAC-SHA256 keyed by the server secret over the stored row and the admin hash."""
    return hmac.new(server_key, _DOMAIN + stored.encode() + b"\x00" + admin_hash.encode(), hashlib.sha256).digest()
