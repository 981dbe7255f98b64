"""Stored responses of the Responses API (``store: true``), each owned by the caller that made it.

A response is read, continued (``previous_response_id``), listed and deleted only by its owner:
another owner's id is not found. A row past its ``expires_at`` is as if deleted (and purged).

``keep`` stores an answer off the hot path: it is pending in this process at once (``get`` and
``conversation`` read it from there) and inserted with others in one transaction every
``interval`` (``store.log_buffer.WriteBehind``), so another process sees it within that.
``save`` writes at once (a background response, whose row its task later replaces).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.db import writing
from tollway.store.log_buffer import WriteBehind
from tollway.store.tables import stored_responses as t

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
MAX_CHAIN = 10_000  # responses one conversation may chain (a guard against a cycle)


# an item id the gateway made: <prefix>_<the response id's 48 hex digits>[in]<index>
_OUR_ITEM = re.compile(r"[a-z]+_(?P<stem>[0-9a-f]{48})(?P<input>in)?(?P<index>\d{1,6})")


def _item_in(row: Any, item_id: str) -> dict[str, Any] | None:
    stored = _stored(row)
    for item in [*stored.input, *(stored.response.get("output") or ())]:
        if isinstance(item, dict) and item.get("id") == item_id:
            return item
    return None


def _alive(expires_at: float | None) -> bool:
    return expires_at is None or expires_at > time.time()


def _stored(row: Any) -> StoredResponse:
    return StoredResponse(id=row["id"], previous_id=row["previous_id"], status=row["status"],
                          response=_decoder.decode(row["response"]), input=_decoder.decode(row["input"]))


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    previous_id: str | None
    status: str
    response: dict[str, Any]
    input: list[dict[str, Any]]


def _row(owner: str, response: dict[str, Any], inputs: list[dict[str, Any]], previous_id: str | None,
         expires_at: float | None, encoded: bytes | None = None) -> dict[str, Any]:
    return {"id": str(response["id"]), "owner": owner, "previous_id": previous_id,
            "model": str(response.get("model") or ""), "status": str(response.get("status") or ""),
            "created_at": float(response.get("created_at") or 0), "expires_at": expires_at,
            "input": _encoder.encode(inputs).decode(), "response": (encoded or _encoder.encode(response)).decode()}


def _weight(row: dict[str, Any]) -> int:
    return 256 + len(row["input"]) + len(row["response"])


class ResponseRepository:
    def __init__(self, engine: AsyncEngine, *, interval: float = 0.1,
                 max_pending_bytes: int = 64 * 1024 * 1024) -> None:
        self.engine = engine
        self.interval = interval
        self._pending: dict[str, dict[str, Any]] = {}  # kept, not yet inserted: id -> row
        # a pending row holds the response and its input: bounded in bytes too, and a row given up
        # is no longer served from ``_pending`` (it was never stored)
        self.writer: WriteBehind[dict[str, Any]] = WriteBehind(
            self._insert, name="stored responses", interval=interval, batch=200, weigh=_weight,
            max_bytes=max_pending_bytes, on_drop=self._forget)

    def start(self) -> None:
        self.writer.start()

    async def close(self) -> None:
        await self.writer.close()

    def keep(self, owner: str, response: dict[str, Any], inputs: list[dict[str, Any]], *,
             previous_id: str | None, expires_at: float | None, encoded: bytes | None = None) -> None:
        """Store a new response off the hot path (see the module doc); ``encoded``: the response's
        JSON, when the caller has it already."""
        row = _row(owner, response, inputs, previous_id, expires_at, encoded)
        self._pending[row["id"]] = row
        self.writer.add(row)

    async def _insert(self, rows: Sequence[dict[str, Any]]) -> None:
        async with writing(self.engine) as conn:
            await conn.execute(t.insert(), list(rows))
        self._forget(rows)

    def _forget(self, rows: Sequence[dict[str, Any]]) -> None:
        """``rows`` left the writer (inserted, or given up): ``get`` reads them from the database now."""
        for row in rows:
            if self._pending.get(row["id"]) is row:
                del self._pending[row["id"]]

    async def save(self, owner: str, response: dict[str, Any], inputs: list[dict[str, Any]], *,
                   previous_id: str | None, expires_at: float | None) -> None:
        """Store a response at once (insert, or replace the one with its id: a background
        response's final state replaces its queued one)."""
        values = _row(owner, response, inputs, previous_id, expires_at)
        rid = values.pop("id")
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
        pending = self._pending.get(rid)
        if pending is not None:
            return _stored(pending) if pending["owner"] == owner and _alive(pending["expires_at"]) else None
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(t.c.id, t.c.previous_id, t.c.status, t.c.response, t.c.input, t.c.expires_at)
                .where(t.c.id == rid, t.c.owner == owner))).first()
        if row is None or not _alive(row.expires_at):
            return None
        return _stored(row._mapping)

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

    async def find_item(self, owner: str, item_id: str) -> dict[str, Any] | None:
        """An input or output item of one of the owner's stored responses, by its id (an
        ``item_reference``): the gateway's own ids name their response; another's (an upstream's,
        a client's) is looked for in the owner's responses, newest first."""
        ours = _OUR_ITEM.fullmatch(item_id)
        if ours is not None:
            stored = await self.get(owner, "resp_" + ours["stem"])
            items = (stored.input if ours["input"] else list(stored.response.get("output") or ())) if stored else []
            index = int(ours["index"])
            if index < len(items) and items[index].get("id") == item_id:
                return items[index]
        for row in reversed(list(self._pending.values())):
            if row["owner"] == owner:
                found = _item_in(row, item_id)
                if found is not None:
                    return found
        needle = '%"id":' + _encoder.encode(item_id).decode().replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_") + "%"
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(t.c.id, t.c.previous_id, t.c.status, t.c.response, t.c.input, t.c.expires_at)
                .where(t.c.owner == owner,
                       t.c.response.like(needle, escape="\\") | t.c.input.like(needle, escape="\\"))
                .order_by(t.c.created_at.desc()).limit(20))).all()
        for db_row in rows:
            if _alive(db_row.expires_at):
                found = _item_in(db_row._mapping, item_id)
                if found is not None:
                    return found
        return None

    async def delete(self, owner: str, rid: str) -> bool:
        if rid in self._pending:  # being inserted perhaps: let it land first, then delete it
            await self.writer.flush()
        async with self.engine.begin() as conn:
            done = await conn.execute(delete(t).where(t.c.id == rid, t.c.owner == owner))
        return bool(done.rowcount)

    async def purge(self, now: float | None = None) -> int:
        """Drop every response past its retention."""
        async with self.engine.begin() as conn:
            done = await conn.execute(delete(t).where(t.c.expires_at.is_not(None),
                                                      t.c.expires_at <= (now or time.time())))
        return int(done.rowcount or 0)
