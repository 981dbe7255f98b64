"""Studios (seed 000's tenants): active or paused; removing one revokes its keys and tokens."""

from __future__ import annotations

import secrets
import time

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store import changes
from tollway.store.tables import api_keys, studios


class Studio(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    status: str
    created_at: float
    updated_at: float

    def public(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "status": self.status, "created_at": self.created_at,
                "updated_at": self.updated_at}


def _studio(r: sa.Row[tuple[object, ...]]) -> Studio:
    m = r._mapping
    return Studio(id=str(m["id"]), name=str(m["name"]), status=str(m["status"]), created_at=float(m["created_at"]),
                  updated_at=float(m["updated_at"]))


class StudioRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def list(self) -> list[Studio]:
        q = sa.select(studios).where(studios.c.removed_at.is_(None)).order_by(studios.c.created_at)
        async with self.engine.connect() as conn:
            return [_studio(r) for r in (await conn.execute(q)).all()]

    async def get(self, studio_id: str) -> Studio | None:
        q = sa.select(studios).where(studios.c.id == studio_id, studios.c.removed_at.is_(None))
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _studio(row) if row is not None else None

    async def create(self, name: str) -> Studio:
        now = time.time()
        studio = Studio(id="studio_" + secrets.token_hex(8), name=name, status="active", created_at=now,
                        updated_at=now)
        async with self.engine.begin() as conn:
            await conn.execute(studios.insert().values(id=studio.id, name=name, status="active", created_at=now,
                                                       updated_at=now, removed_at=None))
        return studio

    async def set_status(self, studio_id: str, status: str) -> Studio | None:
        async with self.engine.begin() as conn:
            result = await conn.execute(studios.update().where(studios.c.id == studio_id,
                                                               studios.c.removed_at.is_(None))
                                        .values(status=status, updated_at=time.time()))
            if result.rowcount == 0:
                return None
            await changes.bump(conn)  # every process's paused-studio set
        return await self.get(studio_id)

    async def remove(self, studio_id: str) -> int | None:
        """Remove it and revoke its keys; how many were revoked, or None if there is no such studio."""
        now = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(studios.update().where(studios.c.id == studio_id,
                                                               studios.c.removed_at.is_(None))
                                        .values(removed_at=now, updated_at=now))
            if result.rowcount == 0:
                return None
            revoked = await conn.execute(api_keys.update().where(api_keys.c.studio_id == studio_id,
                                                                 api_keys.c.revoked_at.is_(None))
                                         .values(revoked_at=now))
            await changes.bump(conn)
        return int(revoked.rowcount)

    async def removed(self) -> frozenset[str]:
        q = sa.select(studios.c.id).where(studios.c.removed_at.is_not(None))
        async with self.engine.connect() as conn:
            return frozenset(str(r[0]) for r in (await conn.execute(q)).all())

    async def paused(self) -> frozenset[str]:
        q = sa.select(studios.c.id).where(studios.c.status == "paused", studios.c.removed_at.is_(None))
        async with self.engine.connect() as conn:
            return frozenset(str(r[0]) for r in (await conn.execute(q)).all())
