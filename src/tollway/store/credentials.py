"""Upstream credentials managed at run time (seed 002's "accounts"), by provider.

A row is an API key or a session token (``secret``), or a login (email / mobile and password)
that a provider able to log in would turn into a token. Its id is what admins and the pin
header name it by: the email, the mobile, a chosen id, or ``token:<hash>`` for a token-only
credential. Every write bumps the change counter, so every process reloads its pools.

``password`` and ``secret`` are encrypted at rest with the cipher of the env values
(``auth.secret_box.SecretBox``, keyed by ``TOLLWAY_SECRET_KEY``): a stored value is ``SEALED``
followed by the Fernet token. Rows written before encryption (clear text, no prefix) still read,
and the first read through a repository that has the cipher rewrites them sealed (a conditional
update: a value changed meanwhile is left alone). A repository without a cipher writes clear
text and refuses to read a sealed value (a ConfigError), never hands a token on as a secret.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.core.catalog import Credential
from tollway.core.errors import ConfigError
from tollway.store import changes
from tollway.store.env import Cipher
from tollway.store.tables import credentials

SEALED = "sealed:v1:"
_SEALED_FIELDS = ("password", "secret")
_NO_CIPHER = ("stored account secrets are encrypted, and this reader was given no secret key to open them (the "
              "key of the env values: TOLLWAY_SECRET_KEY, or the one generated in the database)")
_WRONG_KEY = ("stored account secrets do not decrypt with the current secret key: set TOLLWAY_SECRET_KEY to the "
              "key they were written with (every replica must use the same one)")


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


class CredentialRepository:
    def __init__(self, engine: AsyncEngine, box: Cipher | None = None) -> None:
        self.engine = engine
        self.box = box

    # encryption at rest ------------------------------------------------------------------

    def _seal(self, value: str | None) -> str | None:
        if value is None or self.box is None:
            return value
        return SEALED + self.box.encrypt(value)

    def _open(self, value: object) -> str | None:
        if value is None:
            return None
        text = str(value)
        if not text.startswith(SEALED):
            return text  # written before encryption: read as is, sealed by ``_seal_clear``
        if self.box is None:
            raise ConfigError(_NO_CIPHER)
        try:
            return self.box.decrypt(text[len(SEALED):])
        except ConfigError:
            raise ConfigError(_WRONG_KEY) from None

    def _row(self, r: sa.Row[tuple[object, ...]]) -> StoredCredential:
        # plain str keys: SQLAlchemy may hand back a str subclass (quoted_name), which msgspec refuses
        m = {str(k): v for k, v in r._mapping.items()}
        for name in _SEALED_FIELDS:
            m[name] = self._open(m[name])
        return msgspec.convert(m, StoredCredential)

    async def _seal_clear(self, rows: Sequence[sa.Row[tuple[object, ...]]]) -> None:
        """Encrypt the values of rows written in clear (before encryption, or without a cipher)."""
        if self.box is None:
            return
        for r in rows:
            m = r._mapping
            clear = {name: m[name] for name in _SEALED_FIELDS
                     if m[name] is not None and not str(m[name]).startswith(SEALED)}
            if not clear:
                continue
            unchanged = [credentials.c[name] == value for name, value in clear.items()]
            async with self.engine.begin() as conn:  # no change bump: the values stay the same
                await conn.execute(credentials.update().where(credentials.c.id == m["id"], *unchanged)
                                   .values({name: self._seal(str(value)) for name, value in clear.items()}))

    # reads -------------------------------------------------------------------------------

    async def all(self, provider: str | None = None) -> list[StoredCredential]:
        q = sa.select(credentials).order_by(credentials.c.created_at, credentials.c.id)
        if provider is not None:
            q = q.where(credentials.c.provider == provider)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        found = [self._row(r) for r in rows]
        await self._seal_clear(rows)
        return found

    async def get(self, ident: str, provider: str | None = None) -> StoredCredential | None:
        """By id, email or mobile (within one provider when given); an exact id wins."""
        q = sa.select(credentials).where(sa.or_(credentials.c.id == ident, credentials.c.email == ident,
                                                credentials.c.mobile == ident))
        if provider is not None:
            q = q.where(credentials.c.provider == provider)
        q = q.order_by(sa.case((credentials.c.id == ident, 0), else_=1))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return self._row(row) if row is not None else None

    # writes ------------------------------------------------------------------------------

    def _values(self, c: StoredCredential, now: float) -> dict[str, object]:
        return {"provider": c.provider, "email": c.email, "mobile": c.mobile, "password": self._seal(c.password),
                "secret": self._seal(c.secret), "updated_at": now}

    async def insert(self, c: StoredCredential) -> bool:
        """Add a new credential; False when its id is taken (also by a concurrent insert)."""
        now = time.time()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(credentials.insert().values(id=c.id, created_at=now, **self._values(c, now)))
                await changes.bump(conn)
        except IntegrityError:
            return False
        return True

    async def upsert(self, items: Sequence[StoredCredential]) -> int:
        """Insert or replace by id; returns how many were written. An id inserted concurrently
        makes the whole write run again, as an update of that row."""
        try:
            return await self._upsert(items)
        except IntegrityError:
            return await self._upsert(items)

    async def _upsert(self, items: Sequence[StoredCredential]) -> int:
        now = time.time()
        async with self.engine.begin() as conn:
            for c in items:
                await self._write(conn, c, now)
            if items:
                await changes.bump(conn)
        return len(items)

    async def _write(self, conn: AsyncConnection, c: StoredCredential, now: float) -> None:
        existing = (await conn.execute(sa.select(credentials.c.created_at).where(credentials.c.id == c.id))).first()
        if existing is None:
            await conn.execute(credentials.insert().values(id=c.id, created_at=now, **self._values(c, now)))
        else:
            await conn.execute(credentials.update().where(credentials.c.id == c.id).values(**self._values(c, now)))

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
