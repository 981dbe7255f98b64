"""Creating, listing and revoking keys: the one implementation the CLI and the admin API share."""

from __future__ import annotations

import secrets

from tollway.auth.keys import hash_secret, new_secret, prefix_of
from tollway.core.errors import InvalidRequest
from tollway.core.keys import ApiKey
from tollway.core.names import ROLE_ADMIN, ROLE_USER
from tollway.store.keys import KeyRepository
from tollway.store.meta import MetaRepository

ADMIN_HASH = "admin_key_hash"
MIN_SECRET = 8


class KeyService:
    def __init__(self, keys: KeyRepository) -> None:
        self.repo = keys

    async def create(self, *, name: str = "", role: str = ROLE_USER, email: str = "", group_id: int | None = None,
                     studio_id: str | None = None, secret: str | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once). ``secret`` imports a caller-chosen key."""
        if role not in (ROLE_USER, ROLE_ADMIN):
            raise InvalidRequest(f"role must be '{ROLE_USER}' or '{ROLE_ADMIN}'", param="role")
        if secret is not None and len(secret) < MIN_SECRET:
            raise InvalidRequest(f"a key must be at least {MIN_SECRET} characters", param="key")
        secret = secret or new_secret()
        key_hash = hash_secret(secret)
        if await self.repo.by_hash(key_hash) is not None:
            raise InvalidRequest("this key already exists", param="key")
        key = await self.repo.create(name=name, key_hash=key_hash, prefix=prefix_of(secret), role=role, email=email,
                                     group_id=group_id, studio_id=studio_id)
        return key, secret

    async def find(self, ref: str) -> ApiKey | None:
        """A key by id, by full secret, or by its unique displayed prefix."""
        if ref.isdigit():
            return await self.repo.get(int(ref))
        key = await self.repo.by_hash(hash_secret(ref))
        if key is not None:
            return key
        matches = [k for k in await self.repo.active() if k.prefix == ref or ref.startswith(k.prefix) and
                   len(ref) <= len(k.prefix)]
        return matches[0] if len(matches) == 1 else None

    async def revoke(self, key_id: int) -> bool:
        return await self.repo.revoke(key_id)


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
