"""The API-key repository. Returns ``core.keys.ApiKey``; bumps the change counter on writes."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.core.keys import ApiKey
from tollway.store import changes
from tollway.store.tables import api_keys


def _row(r: Any) -> ApiKey:
    return ApiKey(id=r.id, name=r.name, prefix=r.prefix, key_hash=r.key_hash, role=r.role, email=r.email,
                  group_id=r.group_id, studio_id=r.studio_id, enabled=r.enabled, created_at=r.created_at,
                  revoked_at=r.revoked_at, balance=r.balance, month_quota=r.month_quota, rpm=r.rpm, tpm=r.tpm,
                  models=tuple(_models.decode(r.models)) if r.models is not None else None,
                  updated_at=r.updated_at)


_models = msgspec.json.Decoder(list[str])

# what ``update`` may change (seed 004's /admin/api-key/update); money moves only through the ledger
UPDATABLE = frozenset({"name", "email", "role", "group_id", "enabled", "month_quota", "rpm", "tpm", "models"})


class KeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, *, name: str, key_hash: str, prefix: str, role: str = "user", email: str = "",
                     group_id: int | None = None, studio_id: str | None = None) -> ApiKey:
        async with self.engine.begin() as conn:
            result = await conn.execute(api_keys.insert().values(
                name=name, key_hash=key_hash, prefix=prefix, role=role, email=email, group_id=group_id,
                studio_id=studio_id, enabled=True, created_at=time.time(),
            ))
            key_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            await changes.bump(conn)
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).one()
        return _row(row)

    async def active(self) -> list[ApiKey]:
        """Every key not revoked: what the auth cache holds."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None)))
            return [_row(r) for r in rows]

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
        return _row(row) if row is not None else None

    async def get(self, key_id: int) -> ApiKey | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return _row(row) if row is not None else None

    async def list(self, *, q: str | None = None, name: str | None = None, group_id: int | None = None,
                   role: str | None = None, limit: int = 10, offset: int = 0,
                   include_revoked: bool = False) -> tuple[list[ApiKey], int]:
        cond: list[ColumnElement[bool]] = [] if include_revoked else [api_keys.c.revoked_at.is_(None)]
        if q:
            like = f"%{q}%"
            cond.append(or_(api_keys.c.name.like(like), api_keys.c.email.like(like), api_keys.c.prefix.like(like)))
        if name:
            cond.append(api_keys.c.name == name)
        if group_id is not None:
            cond.append(api_keys.c.group_id == group_id)
        if role:
            cond.append(api_keys.c.role == role)
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(api_keys).where(*cond))).scalar() or 0
            rows = await conn.execute(
                select(api_keys).where(*cond).order_by(api_keys.c.id).limit(limit).offset(offset)
            )
            return [_row(r) for r in rows], int(total)

    async def update(self, key_id: int, fields: dict[str, Any]) -> ApiKey | None:
        """Change the ``UPDATABLE`` fields given; None if there is no active key with that id."""
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        values = dict(fields)
        if "models" in values and values["models"] is not None:
            values["models"] = msgspec.json.encode(list(values["models"])).decode()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(**values, updated_at=time.time())
            )
            if not result.rowcount:
                return None
            await changes.bump(conn)
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).one()
        return _row(row)

    async def revoke(self, key_id: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time(), enabled=False)
            )
            if result.rowcount:
                await changes.bump(conn)
            return bool(result.rowcount)

    async def count_active(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
            )).scalar() or 0)
