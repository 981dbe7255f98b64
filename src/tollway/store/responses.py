"""Stored responses of the Responses API (``store: true``), each owned by the caller that made it.

A response is read, continued (``previous_response_id``), listed and deleted only by its owner:
another owner's id is not found. A row past its ``expires_at`` is as if deleted (and purged).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.tables import stored_responses as t

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
MAX_CHAIN = 10_000  # responses one conversation may chain (a guard against a cycle)


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    previous_id: str | None
    status: str
    response: dict[str, Any]
    input: list[dict[str, Any]]


class ResponseRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(self, owner: str, response: dict[str, Any], inputs: list[dict[str, Any]], *,
                   previous_id: str | None, expires_at: float | None) -> None:
        """Keep a response (insert, or replace the one with its id: a background response's
        final state replaces its queued one)."""
        values = {"owner": owner, "previous_id": previous_id, "model": str(response.get("model") or ""),
                  "status": str(response.get("status") or ""), "created_at": float(response.get("created_at") or 0),
                  "expires_at": expires_at, "input": _encoder.encode(inputs).decode(),
                  "response": _encoder.encode(response).decode()}
        rid = str(response["id"])
        async with self.engine.begin() as conn:
            done = await conn.execute(update(t).where(t.c.id == rid, t.c.owner == owner).values(**values))
            if done.rowcount:
                return
            try:
                async with conn.begin_nested():
                    await conn.execute(t.insert().values(id=rid, **values))
            except IntegrityError:  # another owner's id (an upstream that reuses ids): not replaced
                pass

    async def update_if(self, owner: str, rid: str, statuses: tuple[str, ...], response: dict[str, Any]) -> bool:
        """Replace a response only while its status is one of ``statuses`` (a cancel racing a
        finish: the first one wins)."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(t).where(t.c.id == rid, t.c.owner == owner, t.c.status.in_(statuses))
                .values(status=str(response.get("status")), response=_encoder.encode(response).decode()))
            return bool(done.rowcount)

    async def get(self, owner: str, rid: str) -> StoredResponse | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(t.c.id, t.c.previous_id, t.c.status, t.c.response, t.c.input, t.c.expires_at)
                .where(t.c.id == rid, t.c.owner == owner))).first()
        if row is None or (row.expires_at is not None and row.expires_at <= time.time()):
            return None
        return StoredResponse(id=row.id, previous_id=row.previous_id, status=row.status,
                              response=_decoder.decode(row.response), input=_decoder.decode(row.input))

    async def conversation(self, owner: str, rid: str) -> list[dict[str, Any]] | None:
        """Every item of the conversation up to and including response ``rid`` (each response's
        input, then its output), oldest first; None when ``rid`` is not the owner's."""
        turns: list[list[dict[str, Any]]] = []
        seen: set[str] = set()
        current: str | None = rid
        while current is not None and current not in seen and len(seen) < MAX_CHAIN:
            seen.add(current)
            stored = await self.get(owner, current)
            if stored is None:
                if current == rid:
                    return None
                break  # an older turn expired or was deleted: the conversation starts after it
            turns.append(stored.input + list(stored.response.get("output") or []))
            current = stored.previous_id
        return [item for turn in reversed(turns) for item in turn]

    async def delete(self, owner: str, rid: str) -> bool:
        async with self.engine.begin() as conn:
            done = await conn.execute(delete(t).where(t.c.id == rid, t.c.owner == owner))
        return bool(done.rowcount)

    async def purge(self, now: float | None = None) -> int:
        """Drop every response past its retention."""
        async with self.engine.begin() as conn:
            done = await conn.execute(delete(t).where(t.c.expires_at.is_not(None),
                                                      t.c.expires_at <= (now or time.time())))
        return int(done.rowcount or 0)
