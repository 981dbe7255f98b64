"""Upstream credentials managed at run time (seed 002's "accounts"), by provider.

A row is an API key or a session token (``secret``), or a login (email / mobile and password)
that a provider able to log in would turn into a token. Its id is what admins and the pin
header name it by: the email, the mobile, a chosen id, or ``token:<hash>`` for a token-only
credential. Every write bumps the change counter, so every process reloads its pools.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.core.catalog import Credential
from tollway.store import changes
from tollway.store.tables import credentials


class StoredCredential(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    provider: str
    email: str = ""
    mobile: str = ""
    password: str | None = None
    secret: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def credential(self) -> Credential:
        extra = {k: v for k, v in (("email", self.email), ("mobile", self.mobile)) if v}
        return Credential(id=self.id, secret=self.secret, extra=extra)

    def public(self) -> dict[str, object]:
        """Seed 002's sanitized account: never the password, only a preview of the token."""
        return {"identifier": self.id, "provider": self.provider, "email": self.email, "mobile": self.mobile,
                "has_password": bool(self.password), "has_token": bool(self.secret),
                "token_preview": preview(self.secret)}


def preview(secret: str | None) -> str:
    if not secret:
        return ""
    return secret[:5] + "..." if len(secret) > 12 else "***"


def token_id(secret: str) -> str:
    """The synthetic id of a token-only credential."""
    return "token:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def _row(r: sa.Row[tuple[object, ...]]) -> StoredCredential:
    # plain str keys: SQLAlchemy may hand back a str subclass (quoted_name), which msgspec refuses
    return msgspec.convert({str(k): v for k, v in r._mapping.items()}, StoredCredential)


class CredentialRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def all(self, provider: str | None = None) -> list[StoredCredential]:
        q = sa.select(credentials).order_by(credentials.c.created_at, credentials.c.id)
        if provider is not None:
            q = q.where(credentials.c.provider == provider)
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(q)).all()]

    async def get(self, ident: str, provider: str | None = None) -> StoredCredential | None:
        """By id, email or mobile (within one provider when given); an exact id wins."""
        q = sa.select(credentials).where(sa.or_(credentials.c.id == ident, credentials.c.email == ident,
                                                credentials.c.mobile == ident))
        if provider is not None:
            q = q.where(credentials.c.provider == provider)
        q = q.order_by(sa.case((credentials.c.id == ident, 0), else_=1))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _row(row) if row is not None else None

    async def upsert(self, items: Sequence[StoredCredential]) -> int:
        """Insert or replace by id; returns how many were written."""
        now = time.time()
        async with self.engine.begin() as conn:
            for c in items:
                existing = (await conn.execute(sa.select(credentials.c.created_at).where(
                    credentials.c.id == c.id))).first()
                values = {"provider": c.provider, "email": c.email, "mobile": c.mobile, "password": c.password,
                          "secret": c.secret, "updated_at": now}
                if existing is None:
                    await conn.execute(credentials.insert().values(id=c.id, created_at=now, **values))
                else:
                    await conn.execute(credentials.update().where(credentials.c.id == c.id).values(**values))
            if items:
                await changes.bump(conn)
        return len(items)

    async def delete(self, ident: str, provider: str | None = None) -> bool:
        found = await self.get(ident, provider)
        if found is None:
            return False
        async with self.engine.begin() as conn:
            await conn.execute(credentials.delete().where(credentials.c.id == found.id))
            await changes.bump(conn)
        return True

    async def count(self, provider: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(credentials)
        if provider is not None:
            q = q.where(credentials.c.provider == provider)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())
