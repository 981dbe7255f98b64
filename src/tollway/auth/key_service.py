"""Creating, listing and revoking keys: the one implementation the CLI and the admin API share."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError

from tollway.auth.keys import hash_secret, new_secret, prefix_of
from tollway.core.errors import InvalidRequest
from tollway.core.keys import ApiKey
from tollway.core.names import ROLE_ADMIN, ROLE_USER
from tollway.store.keys import KeyRepository
from tollway.store.meta import MetaRepository

ADMIN_HASH = "admin_key_hash"
MIN_SECRET = 8
MAX_ID = 2**31 - 1


MAX_SECRET = 512
MAX_NAME = 200
MAX_EMAIL = 320


def _text(value: str, name: str, limit: int) -> str:
    if "\x00" in value or len(value) > limit:
        raise InvalidRequest(f"{name} must be at most {limit} characters, without NUL", param=name)
    return value


class KeyService:
    def __init__(self, keys: KeyRepository, *, admin_hash: str | None = None) -> None:
        self.repo = keys
        self._admin_hash = admin_hash

    async def create(self, *, name: str = "", role: str = ROLE_USER, email: str = "", group_id: int | None = None,
                     studio_id: str | None = None, secret: str | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once). ``secret`` imports a caller-chosen key."""
        if role not in (ROLE_USER, ROLE_ADMIN):
            raise InvalidRequest(f"role must be '{ROLE_USER}' or '{ROLE_ADMIN}'", param="role")
        _text(name, "name", MAX_NAME)
        _text(email, "email", MAX_EMAIL)
        if group_id is not None and not 0 <= group_id <= MAX_ID:
            raise InvalidRequest(f"group_id must be between 0 and {MAX_ID}", param="group_id")
        if secret is not None and not (MIN_SECRET <= len(secret) <= MAX_SECRET) or (
                secret is not None and (secret != secret.strip() or any(c.isspace() for c in secret))):
            raise InvalidRequest(f"a key must be {MIN_SECRET} to {MAX_SECRET} characters without whitespace",
                                 param="key")
        secret = secret or new_secret()
        key_hash = hash_secret(secret)
        if self._admin_hash is not None and key_hash == self._admin_hash:
            raise InvalidRequest("this key is the admin secret and cannot be a user key", param="key")
        if await self.repo.by_hash(key_hash) is not None:
            raise InvalidRequest("this key already exists", param="key")
        try:
            key = await self.repo.create(name=name, key_hash=key_hash, prefix=prefix_of(secret), role=role,
                                         email=email, group_id=group_id, studio_id=studio_id)
        except IntegrityError:  # the same key imported concurrently: the database's unique index decides
            raise InvalidRequest("this key already exists", param="key") from None
        return key, secret

    async def find(self, ref: str) -> ApiKey | None:
        """A key by full secret, by id, or by its displayed prefix (which must be unambiguous).

        The full secret is tried first: an imported key may well be all digits."""
        key = await self.repo.by_hash(hash_secret(ref))
        if key is not None:
            return key
        if ref.isdigit() and not ref.startswith("0") and len(ref) <= 10:
            key_id = int(ref)
            return await self.repo.get(key_id) if key_id <= MAX_ID else None
        matches = [k for k in await self.repo.active() if k.prefix and k.prefix == ref]
        if len(matches) > 1:
            raise InvalidRequest(f"{len(matches)} keys share the prefix {ref!r}: use the key's id")
        return matches[0] if matches else None

    async def revoke(self, key_id: int) -> bool:
        return await self.repo.revoke(key_id)


async def admin_hash_of(meta: MetaRepository, configured: str | None) -> str | None:
    """The admin secret's hash if there is one yet (never generates it)."""
    return hash_secret(configured) if configured else await meta.get(ADMIN_HASH)


async def ensure_admin_secret(meta: MetaRepository, configured: str | None) -> tuple[str, str | None]:
    """The admin secret's hash, and the secret itself when it was generated just now.

    ``TOLLWAY_ADMIN_KEY`` wins when set. Otherwise a secret is generated once, stored hashed
    and returned so the caller can print it; later starts return only the hash.
    """
    if configured:
        return hash_secret(configured), None
    stored = await meta.get(ADMIN_HASH)
    if stored:
        return stored, None
    secret = "tw-admin-" + secrets.token_urlsafe(24)
    winner = await meta.set_if_absent(ADMIN_HASH, hash_secret(secret))
    return winner, secret if winner == hash_secret(secret) else None
