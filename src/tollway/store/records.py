"""Chat records (seed 004): sessions and threads, written in batches behind the responses, read
by the admin and user APIs, deleted after their retention; and the record settings.

A batch (``write``) groups each exchange into its session, in one transaction: the session of
the thread whose Responses id it continues (``previous_response_id``), else the owner's session
of its ``client_ref`` (made on first use; a concurrent maker on another process wins the unique
constraint and the batch is tried again), else a new session of its own. A session's title is
its first user message.

``q`` searches session titles and thread text: PostgreSQL's full-text search over the migration's
GIN indexes (words, ``plainto_tsquery('simple')``), a case-insensitive substring on SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.core.money import MICRO
from tollway.store import changes
from tollway.store.db import insert_rows, new_ids, writing
from tollway.store.tables import chat_sessions as s
from tollway.store.tables import chat_threads as t
from tollway.store.tables import record_settings as rs

_decoder = msgspec.json.Decoder()
TITLE = 80  # characters of the first user message a session's title keeps
_SESSION_COLUMNS = ("id", "owner", "key_id", "studio_id", "client_ref", "title", "model", "dialect", "threads",
                    "created_at", "updated_at")
_THREAD_COLUMNS = ("session_id", "owner", "key_id", "request_id", "response_ref", "dialect", "model", "input",
                   "output", "truncated", "stream", "status", "prompt_tokens", "completion_tokens", "cost_micro",
                   "latency_ms", "created_at")


class Thread(msgspec.Struct, frozen=True, kw_only=True):
    """One exchange to write: what the recorder extracted from a finished call."""

    owner: str
    key_id: int | None
    studio_id: str | None
    request_id: str
    dialect: str
    model: str | None
    input: str  # JSON list of {role, content}
    output: str
    title: str  # the first user message (a new session's title)
    truncated: bool
    stream: bool
    status: int
    prompt_tokens: int
    completion_tokens: int
    cost_micro: int
    latency_ms: float
    created_at: float
    client_ref: str | None = None
    response_ref: str | None = None
    previous_ref: str | None = None  # a Responses previous_response_id: continues its session


def _session_row(r: Any) -> dict[str, Any]:
    return {"id": r.id, "key_id": r.key_id, "studio_id": r.studio_id, "title": r.title, "model": r.model,
            "dialect": r.dialect, "threads": r.threads, "client_ref": r.client_ref,
            "created_at": r.created_at, "updated_at": r.updated_at}


def thread_row(r: Any, *, full: bool = True) -> dict[str, Any]:
    out = {"id": r.id, "session_id": r.session_id, "key_id": r.key_id, "request_id": r.request_id,
           "dialect": r.dialect, "model": r.model, "status": r.status, "stream": r.stream,
           "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
           "cost_micro": r.cost_micro, "cost": r.cost_micro / MICRO, "latency_ms": r.latency_ms,
           "truncated": r.truncated, "created_at": r.created_at}
    if full:
        out["input"] = _decoder.decode(r.input)
        out["output"] = r.output
    else:
        out["preview"] = (r.output or "")[:200]
    return out


class RecordRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    # writing -----------------------------------------------------------------------------

    async def write(self, threads: Sequence[Thread]) -> None:
        for attempt in range(3):
            try:
                async with writing(self.engine) as conn:
                    await self._write(conn, threads)
                return
            except IntegrityError:  # another process made one of these sessions first: again, it exists now
                if attempt == 2:
                    raise

    async def _write(self, conn: AsyncConnection, threads: Sequence[Thread]) -> None:
        """One batch in a few statements whatever its size: two lookups, one multi-row insert of
        the new sessions, one of the threads, one update per existing session touched."""
        chained: dict[tuple[str, str], int] = {}
        prevs = [th.previous_ref for th in threads if th.previous_ref]
        if prevs:
            rows = await conn.execute(select(t.c.response_ref, t.c.session_id, t.c.owner)
                                      .where(t.c.response_ref.in_(prevs)))
            chained = {(r.owner, r.response_ref): r.session_id for r in rows}
        by_ref: dict[tuple[str, str], int] = {}
        refs = {(th.owner, th.client_ref) for th in threads if th.client_ref}
        if refs:
            rows = await conn.execute(select(s.c.id, s.c.owner, s.c.client_ref).where(
                s.c.owner.in_({o for o, _ in refs}), s.c.client_ref.in_({r for _, r in refs})))
            by_ref = {(r.owner, r.client_ref): r.id for r in rows if (r.owner, r.client_ref) in refs}
        # each thread's session: an existing id, or the index of a session this batch makes
        made: list[dict[str, Any]] = []
        made_by_ref: dict[tuple[str, str], int] = {}
        made_by_response: dict[tuple[str, str], int] = {}
        places: list[tuple[bool, int]] = []  # (new?, id or index into made)
        for th in threads:
            place: tuple[bool, int] | None = None
            if th.previous_ref:
                key = (th.owner, th.previous_ref)
                if key in chained:
                    place = (False, chained[key])
                elif key in made_by_response:
                    place = (True, made_by_response[key])
            if place is None and th.client_ref:
                key = (th.owner, th.client_ref)
                if key in by_ref:
                    place = (False, by_ref[key])
                elif key in made_by_ref:
                    place = (True, made_by_ref[key])
            if place is None:
                made.append({"owner": th.owner, "key_id": th.key_id, "studio_id": th.studio_id,
                             "client_ref": th.client_ref, "title": th.title[:TITLE], "model": th.model,
                             "dialect": th.dialect, "threads": 0, "created_at": th.created_at,
                             "updated_at": th.created_at})
                place = (True, len(made) - 1)
                if th.client_ref:
                    made_by_ref[(th.owner, th.client_ref)] = place[1]
            if th.response_ref:
                if place[0]:
                    made_by_response[(th.owner, th.response_ref)] = place[1]
                else:
                    chained[(th.owner, th.response_ref)] = place[1]
            places.append(place)
            if place[0]:
                session = made[place[1]]
                session["threads"] += 1
                session["updated_at"] = max(session["updated_at"], th.created_at)
                session["model"] = th.model
        ids = await new_ids(conn, s, len(made))
        for session_id, session in zip(ids, made, strict=True):
            session["id"] = session_id
        if made:
            await insert_rows(conn, s, _SESSION_COLUMNS, made)
        touched: dict[int, list[Thread]] = {}
        values: list[dict[str, Any]] = []
        for th, (new, where) in zip(threads, places, strict=True):
            session_id = ids[where] if new else where
            if not new:
                touched.setdefault(session_id, []).append(th)
            values.append({
                "session_id": session_id, "owner": th.owner, "key_id": th.key_id, "request_id": th.request_id,
                "response_ref": th.response_ref, "dialect": th.dialect, "model": th.model, "input": th.input,
                "output": th.output, "truncated": th.truncated, "stream": th.stream, "status": th.status,
                "prompt_tokens": th.prompt_tokens, "completion_tokens": th.completion_tokens,
                "cost_micro": th.cost_micro, "latency_ms": th.latency_ms, "created_at": th.created_at})
        await insert_rows(conn, t, _THREAD_COLUMNS, values)
        for session_id, added in touched.items():
            await conn.execute(update(s).where(s.c.id == session_id).values(
                threads=s.c.threads + len(added), updated_at=max(th.created_at for th in added),
                model=added[-1].model,
                title=func.coalesce(func.nullif(s.c.title, ""), literal(added[0].title[:TITLE]))))

    # reading -----------------------------------------------------------------------------

    def _matches_threads(self, q: str) -> ColumnElement[bool]:
        if self._postgres:
            return func.to_tsvector("simple", t.c.input + " " + t.c.output).bool_op("@@")(
                func.plainto_tsquery("simple", q))
        like = f"%{_escape(q.lower())}%"
        return or_(func.lower(t.c.input).like(like, escape="\\"), func.lower(t.c.output).like(like, escape="\\"))

    def _matches_title(self, q: str) -> ColumnElement[bool]:
        if self._postgres:
            return func.to_tsvector("simple", s.c.title).bool_op("@@")(func.plainto_tsquery("simple", q))
        return func.lower(s.c.title).like(f"%{_escape(q.lower())}%", escape="\\")

    async def sessions(self, *, owner: str | None = None, key_id: int | None = None, q: str = "",
                       limit: int = 10, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        where: list[ColumnElement[bool]] = []
        if owner is not None:
            where.append(s.c.owner == owner)
        if key_id is not None:
            where.append(s.c.key_id == key_id)
        if q:
            where.append(or_(self._matches_title(q),
                             s.c.id.in_(select(t.c.session_id).where(self._matches_threads(q)))))
        cond = and_(*where) if where else literal(True)
        async with self.engine.connect() as conn:
            total = int((await conn.execute(select(func.count()).select_from(s).where(cond))).scalar_one())
            rows = (await conn.execute(select(s).where(cond).order_by(s.c.updated_at.desc(), s.c.id.desc())
                                       .limit(limit).offset(offset))).all()
        return [_session_row(r) for r in rows], total

    async def session(self, session_id: int, owner: str | None = None) -> dict[str, Any] | None:
        query = select(s).where(s.c.id == session_id)
        if owner is not None:
            query = query.where(s.c.owner == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            threads = (await conn.execute(select(t).where(t.c.session_id == session_id).order_by(t.c.id))).all()
        return {**_session_row(row), "items": [thread_row(r) for r in threads]}

    async def threads(self, *, owner: str | None = None, key_id: int | None = None, session_id: int | None = None,
                      q: str = "", limit: int = 10, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        where: list[ColumnElement[bool]] = []
        if owner is not None:
            where.append(t.c.owner == owner)
        if key_id is not None:
            where.append(t.c.key_id == key_id)
        if session_id is not None:
            where.append(t.c.session_id == session_id)
        if q:
            where.append(self._matches_threads(q))
        cond = and_(*where) if where else literal(True)
        async with self.engine.connect() as conn:
            total = int((await conn.execute(select(func.count()).select_from(t).where(cond))).scalar_one())
            rows = (await conn.execute(select(t).where(cond).order_by(t.c.id.desc()).limit(limit)
                                       .offset(offset))).all()
        return [thread_row(r, full=False) for r in rows], total

    async def thread(self, thread_id: int, owner: str | None = None) -> dict[str, Any] | None:
        query = select(t).where(t.c.id == thread_id)
        if owner is not None:
            query = query.where(t.c.owner == owner)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return thread_row(row) if row is not None else None

    async def history(self, owner: str, client_ref: str, limit: int) -> list[tuple[str, str]]:
        """The last ``limit`` threads of the owner's session ``client_ref``, oldest first: each
        (its last user message, the answer)."""
        async with self.engine.connect() as conn:
            sid = (await conn.execute(select(s.c.id).where(s.c.owner == owner, s.c.client_ref == client_ref))).scalar()
            if sid is None:
                return []
            rows = (await conn.execute(select(t.c.input, t.c.output).where(t.c.session_id == sid, t.c.status == 200)
                                       .order_by(t.c.id.desc()).limit(limit))).all()
        out = []
        for r in reversed(rows):
            messages = _decoder.decode(r.input)
            asked = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
            out.append((str(asked), str(r.output)))
        return out

    async def delete_session(self, session_id: int, owner: str | None) -> bool:
        async with self.engine.begin() as conn:
            query = delete(s).where(s.c.id == session_id)
            if owner is not None:
                query = query.where(s.c.owner == owner)
            if (await conn.execute(query)).rowcount != 1:
                return False
            await conn.execute(delete(t).where(t.c.session_id == session_id))
        return True

    async def purge(self, before: float) -> int:
        """Threads made before ``before``, and the sessions left without one since."""
        async with self.engine.begin() as conn:
            gone = (await conn.execute(delete(t).where(t.c.created_at < before))).rowcount
            await conn.execute(delete(s).where(s.c.updated_at < before))
        return int(gone or 0)

    # settings ------------------------------------------------------------------------------

    async def settings(self) -> dict[tuple[str, str], bool]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(rs.c.scope, rs.c.scope_id, rs.c.enabled))).all()
        return {(r.scope, r.scope_id): bool(r.enabled) for r in rows}

    async def set(self, scope: str, scope_id: str, enabled: bool | None) -> None:
        """Record (True), do not (False), or follow the next scope out (None) for one scope; other
        processes reload it through the change counter."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(rs).where(rs.c.scope == scope, rs.c.scope_id == scope_id))
            if enabled is not None:
                await conn.execute(insert(rs).values(scope=scope, scope_id=scope_id, enabled=enabled,
                                                     updated_at=time.time()))
            await changes.bump(conn)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
