"""Runtime env variables admins store (City's ``/v1/env``), encrypted at rest.

Values go through a cipher (``auth.secret_box.SecretBox``) on the way in and out; the table
never holds a clear value. Every write bumps the change counter in its transaction, so every
process re-reads the variables. Keys match ``^[A-Z_][A-Z0-9_]{0,127}$``; values are text of
at most 64 KiB (UTF-8) without NUL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Literal, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.core.errors import ConfigError, InvalidRequest
from tollway.store import changes
from tollway.store.tables import env_vars

KEY_RULE = "^[A-Z_][A-Z0-9_]{0,127}$"
_KEY = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
MAX_VALUE_BYTES = 64 * 1024
_CHUNK = 500  # keys per IN (...) query

Outcome = Literal["added", "updated", "unchanged"]


class Cipher(Protocol):
    def encrypt(self, text: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


class EnvEntry(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    value: str  # clear text: never leaves the process unmasked
    updated_at: float


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be an env key, or None."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return (f"a key is A-Z, 0-9 and _, starts with a letter or _ and has at most 128 characters "
                f"({KEY_RULE})")
    return None


def value_problem(value: object) -> str | None:
    """Why ``value`` cannot be an env value, or None."""
    if not isinstance(value, str):
        return "a value must be a string"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "a value must be valid Unicode text"
    if size > MAX_VALUE_BYTES:
        return f"a value has at most {MAX_VALUE_BYTES} bytes (64 KiB), not {size}"
    if "\x00" in value:
        return "a value cannot contain NUL"
    return None


def check_entry(key: object, value: object) -> None:
    problem = key_problem(key)
    if problem is not None:
        raise InvalidRequest(f"invalid key {str(key)[:64]!r}: {problem}", param="key")
    problem = value_problem(value)
    if problem is not None:
        raise InvalidRequest(f"{key}: {problem}", param="value")


class EnvRepository:
    def __init__(self, engine: AsyncEngine, box: Cipher) -> None:
        self.engine = engine
        self.box = box

    async def entries(self) -> list[EnvEntry]:
        """Every variable, decrypted, by key; values that do not decrypt are one ConfigError."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(env_vars).order_by(env_vars.c.key))).all()
        out, bad = [], []
        for r in rows:
            m = r._mapping
            try:
                value = self.box.decrypt(str(m["value"]))
            except ConfigError:
                bad.append(str(m["key"]))
                continue
            out.append(EnvEntry(key=str(m["key"]), value=value, updated_at=float(m["updated_at"])))
        if bad:
            names = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise ConfigError(f"stored env values ({names}) do not decrypt: {self._wrong_key()}")
        return out

    async def all(self) -> dict[str, str]:
        return {e.key: e.value for e in await self.entries()}

    async def upsert(self, key: str, value: str) -> Outcome:
        return (await self.upsert_many({key: value}))[key]

    async def upsert_many(self, items: Mapping[str, str]) -> dict[str, Outcome]:
        """Write every pair in one transaction (one change-counter bump if anything changed).
        Each key is added, updated, or unchanged when it holds that value already. All or nothing:
        one invalid pair refuses the lot."""
        for key, value in items.items():
            check_entry(key, value)
        if not items:
            return {}
        try:
            return await self._write(items)
        except IntegrityError:  # a key added concurrently: now it exists, so write again as update
            return await self._write(items)

    async def _write(self, items: Mapping[str, str]) -> dict[str, Outcome]:
        now = time.time()
        outcomes: dict[str, Outcome] = {}
        async with self.engine.begin() as conn:
            stored = await self._stored(conn, list(items))
            for key, value in items.items():
                token = stored.get(key)
                if token is None:
                    await conn.execute(env_vars.insert().values(key=key, value=self.box.encrypt(value),
                                                                updated_at=now))
                    outcomes[key] = "added"
                elif self._decrypt(key, token) == value:
                    outcomes[key] = "unchanged"
                else:
                    await conn.execute(env_vars.update().where(env_vars.c.key == key)
                                       .values(value=self.box.encrypt(value), updated_at=now))
                    outcomes[key] = "updated"
            if any(o != "unchanged" for o in outcomes.values()):
                await changes.bump(conn)
        return outcomes

    async def remove(self, key: str) -> bool:
        problem = key_problem(key)
        if problem is not None:
            raise InvalidRequest(f"invalid key {str(key)[:64]!r}: {problem}", param="key")
        async with self.engine.begin() as conn:
            result = await conn.execute(env_vars.delete().where(env_vars.c.key == key))
            if result.rowcount == 0:
                return False
            await changes.bump(conn)
        return True

    async def _stored(self, conn: AsyncConnection, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(keys), _CHUNK):
            q = sa.select(env_vars.c.key, env_vars.c.value).where(env_vars.c.key.in_(keys[i:i + _CHUNK]))
            out.update({str(k): str(v) for k, v in (await conn.execute(q)).all()})
        return out

    def _decrypt(self, key: str, token: str) -> str:
        try:
            return self.box.decrypt(token)
        except ConfigError:
            raise ConfigError(f"the stored value of {key} does not decrypt: {self._wrong_key()}") from None

    @staticmethod
    def _wrong_key() -> str:
        return ("they were written with another secret key; set TOLLWAY_SECRET_KEY to the key they were "
                "written with (every replica must use the same one)")
