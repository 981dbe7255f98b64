"""The web console's sign-in sessions, as rows of the ``meta`` table (``console_session:<id>``).

A row holds what the server needs to know about a session (its kind, its key's id, when it
ends), never a secret: the session id in the row's key is a SHA-256 of the cookie's random id,
so a copy of the database names no cookie. Every process and replica reads the same rows, so a
sign-out anywhere ends the session everywhere.
"""

from __future__ import annotations

import hashlib
import time

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.tables import meta

PREFIX = "console_session:"


class ConsoleSession(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # how the holder signed in: admin, admin_key, key, user_token, account
    key_id: int | None  # the API key (or user_token) it signed in with; None for the admin secret
    created_at: float
    expires_at: float


_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(ConsoleSession)


def row_key(session_id: str) -> str:
    return PREFIX + hashlib.sha256(session_id.encode()).hexdigest()[:40]


class ConsoleSessionRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, session_id: str, session: ConsoleSession) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(meta.insert().values(key=row_key(session_id), value=_encode.encode(session).decode()))

    async def get(self, session_id: str) -> ConsoleSession | None:
        """The session, or None when it is unknown, signed out or past its end."""
        async with self.engine.connect() as conn:
            raw = (await conn.execute(select(meta.c.value).where(meta.c.key == row_key(session_id)))).scalar()
        if raw is None:
            return None
        try:
            session = _decode.decode(raw)
        except msgspec.DecodeError:
            return None
        return session if session.expires_at > time.time() else None

    async def delete(self, session_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(meta).where(meta.c.key == row_key(session_id)))
        return bool(result.rowcount)

    async def purge(self, now: float | None = None) -> int:
        """Delete the sessions that have ended (and rows that do not decode)."""
        now = time.time() if now is None else now
        async with self.engine.connect() as conn:
            mine = meta.c.key.startswith(PREFIX, autoescape=True)
            rows = (await conn.execute(select(meta.c.key, meta.c.value).where(mine))).all()
        ended = []
        for key, raw in rows:
            try:
                if _decode.decode(raw).expires_at > now:
                    continue
            except msgspec.DecodeError:
                pass
            ended.append(key)
        if not ended:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(meta).where(meta.c.key.in_(ended)))
        return int(result.rowcount or 0)
