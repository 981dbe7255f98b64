"""API keys as the gateway holds them: a hash and a short prefix, never the secret."""

from __future__ import annotations

import msgspec

from tollway.core.money import MICRO


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
    balance: int = 0  # micro-credits, as last written (a running gateway's wallet is ahead by what it holds)
    month_quota: int | None = None  # micro-credits per calendar month (UTC); None: no cap
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None  # a whitelist of model names; None: no whitelist
    updated_at: float | None = None

    def public(self) -> dict[str, object]:
        """The listing shape: everything but the hash. Money in credits and exactly in micro-credits."""
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "key_preview": self.prefix + "...",
            "role": self.role, "email": self.email, "group_id": self.group_id, "studio_id": self.studio_id,
            "enabled": self.enabled, "created_at": self.created_at, "revoked_at": self.revoked_at,
            "balance": self.balance / MICRO, "balance_micro": self.balance,
            "month_quota": None if self.month_quota is None else self.month_quota / MICRO,
            "month_quota_micro": self.month_quota, "rpm": self.rpm, "tpm": self.tpm,
            "models": list(self.models) if self.models is not None else None, "updated_at": self.updated_at,
        }
