"""API keys as the gateway holds them: a hash and a short prefix, never the secret."""

from __future__ import annotations

import msgspec


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    prefix: str
    key_hash: str
    role: str = "user"
    email: str = ""
    group_id: int | None = None
    studio_id: str | None = None
    enabled: bool = True
    created_at: float = 0.0
    revoked_at: float | None = None

    def public(self) -> dict[str, object]:
        """The listing shape: everything but the hash."""
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "key_preview": self.prefix + "...",
            "role": self.role, "email": self.email, "group_id": self.group_id, "studio_id": self.studio_id,
            "enabled": self.enabled, "created_at": self.created_at, "revoked_at": self.revoked_at,
        }
