"""Recording chats: which calls are recorded, what is captured on the request path, and the
writer behind it.

**Whether** (``wants``): the key's setting, else its group's, else its studio's, else the
gateway's default (``TOLLWAY_RECORD_CHATS``, on: seed 004 expects records to exist). Settings are
rows of ``record_settings`` (``/admin/record/*``), held in memory and reloaded when the change
counter moves.

**On the request path** the pipeline makes a ``Recording`` (``start``) that only holds references:
the raw body it already read, the answer's bytes (a whole body) or the frames it wrote (a
stream), and the client's session id (``X-Session-Id``). Nothing is decoded or copied there.
When the call finishes, ``add`` queues it with the call's log row (model, tokens, cost, latency,
status); the writer (``store.log_buffer.WriteBehind``) decodes the messages and the answer as
the client received it (``records.extract``), bounds them (``max_chars`` each, ``truncated``
set), and writes batches (``store.records.RecordRepository.write``). Headers and credentials are
never recorded. Records older than ``retention`` are deleted every hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import msgspec

from tollway.core.keys import ApiKey
from tollway.core.request_log import RequestLog
from tollway.records.extract import Message, answered, asked
from tollway.store.log_buffer import WriteBehind
from tollway.store.records import RecordRepository, Thread

log = logging.getLogger("tollway.records")
_encoder = msgspec.json.Encoder()
SCOPES = ("key", "group", "studio")
PURGE_EVERY = 3600.0
MAX_REF = 300
TRUNCATED = "\n…[truncated]"


class Identity(Protocol):
    """A caller as the recorder reads it (``auth.keys.Identity`` is one; records sit beside auth)."""

    @property
    def key(self) -> ApiKey | None: ...

    @property
    def direct_token(self) -> str | None: ...

    @property
    def owner(self) -> str: ...


class Recording:
    """One call's capture: references to bytes the gateway holds anyway. A bot (or any caller
    without a wire body) sets ``messages`` and ``answer`` itself."""

    __slots__ = ("dialect", "raw", "client_ref", "body", "frames", "messages", "answer")

    def __init__(self, dialect: str, raw: bytes = b"", client_ref: str | None = None) -> None:
        self.dialect = dialect
        self.raw = raw
        self.client_ref = client_ref
        self.body: bytes | None = None  # a whole answer as the client got it
        self.frames: list[bytes] = []  # a stream's writes
        self.messages: list[Message] | None = None
        self.answer: str | None = None


class _Done(msgspec.Struct, frozen=True):
    identity_owner: str
    key_id: int | None
    studio_id: str | None
    row: RequestLog
    recording: Any


def _weight(done: _Done) -> int:
    """About what a pending record keeps alive: the bytes it will read, and its log row."""
    rec: Recording = done.recording
    return 512 + len(rec.raw) + len(rec.body or b"") + sum(map(len, rec.frames)) + len(rec.answer or "")


class ChatRecorder:
    def __init__(self, repo: RecordRepository, *, default: bool = True, retention: float = 90 * 86400.0,
                 max_chars: int = 32_000, interval: float = 0.5, max_pending_bytes: int = 64 * 1024 * 1024) -> None:
        self.repo = repo
        self.default = default
        self.retention = retention
        self.max_chars = max_chars
        self.settings: dict[tuple[str, str], bool] = {}
        # a record holds its request and answer until written: counted in bytes too (log_buffer)
        self.writer: WriteBehind[_Done] = WriteBehind(self._write, name="records", interval=interval, batch=200,
                                                      max_pending=50_000, weigh=_weight,
                                                      max_bytes=max_pending_bytes)
        self._purger: asyncio.Task[None] | None = None

    # whether ---------------------------------------------------------------------------------

    def wants(self, identity: Identity | None) -> bool:
        if identity is None or identity.direct_token is not None:
            return False
        settings = self.settings
        key = identity.key
        if key is None or not settings:
            return self.default
        for scope, value in (("key", key.id), ("group", key.group_id), ("studio", key.studio_id)):
            if value is not None:
                found = settings.get((scope, str(value)))
                if found is not None:
                    return found
        return self.default

    async def reload(self) -> None:
        self.settings = await self.repo.settings()

    # capture -------------------------------------------------------------------------------

    def start(self, identity: Identity | None, dialect: str, raw: bytes, headers: Mapping[str, str] | None = None,
              *, client_ref: str | None = None) -> Recording | None:
        """A recording of this call, or None when its caller's chats are not recorded."""
        if not self.wants(identity):
            return None
        if client_ref is None and headers is not None:
            client_ref = headers.get("x-session-id") or None
        return Recording(dialect, raw, client_ref[:MAX_REF] if client_ref else None)

    def add(self, identity: Identity | None, row: RequestLog, recording: Recording) -> None:
        key = identity.key if identity is not None else None
        owner = identity.owner if identity is not None else "admin"
        self.writer.add(_Done(owner, key.id if key else None, key.studio_id if key else None, row, recording))

    # the writer ------------------------------------------------------------------------------

    def _bounded(self, text: str) -> tuple[str, bool]:
        if len(text) <= self.max_chars:
            return text, False
        return text[: self.max_chars] + TRUNCATED, True

    def _thread(self, done: _Done) -> Thread | None:
        rec: Recording = done.recording
        if rec.messages is not None:
            messages, ref, previous = rec.messages, None, None
        else:
            what = asked(rec.dialect, rec.raw)
            messages, ref, previous = what.messages, what.client_ref, what.previous_ref
        if rec.answer is not None:
            output, response_id = rec.answer, None
        else:
            output, response_id = answered(rec.dialect, rec.body, rec.frames)
        truncated = False
        bounded: list[Message] = []
        budget = self.max_chars
        for m in reversed(messages):  # the newest turns are kept whole first
            content, cut = self._bounded(m.get("content", ""))
            if len(content) > budget:
                truncated = True
                break
            budget -= len(content)
            truncated = truncated or cut
            bounded.append({"role": m.get("role", "user"), "content": content})
        bounded.reverse()
        output, cut = self._bounded(output)
        first_user = next((m["content"] for m in messages if m.get("role") == "user"), "")
        row = done.row
        client_ref = rec.client_ref or (f"meta:{ref}"[:MAX_REF] if ref else None)
        return Thread(owner=done.identity_owner, key_id=done.key_id, studio_id=done.studio_id, request_id=row.id,
                      dialect=row.dialect, model=row.model, input=_encoder.encode(bounded).decode(), output=output,
                      title=" ".join(first_user.split())[:80], truncated=truncated or cut, stream=row.stream,
                      status=row.status, prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens,
                      cost_micro=row.cost_micro, latency_ms=row.latency_ms, created_at=row.created_at,
                      client_ref=client_ref, response_ref=response_id, previous_ref=previous)

    async def _write(self, batch: Sequence[_Done]) -> None:
        threads = []
        for done in batch:
            try:
                thread = self._thread(done)
            except Exception:  # a record is best effort: one odd body never blocks the others
                log.exception("could not read the exchange of request %s for its record", done.row.id)
                continue
            if thread is not None:
                threads.append(thread)
        if threads:
            await self.repo.write(threads)

    # reading (bots) --------------------------------------------------------------------------

    async def history(self, owner: str, client_ref: str, limit: int = 20) -> list[tuple[str, str]]:
        """The session ``client_ref`` of ``owner`` so far, oldest first: (user message, answer)
        pairs; what is still in the writer's buffer is flushed first."""
        with contextlib.suppress(Exception):
            await self.writer.flush()
        return await self.repo.history(owner, client_ref, limit)

    # lifecycle -------------------------------------------------------------------------------

    def start_writing(self) -> None:
        self.writer.start()
        self._purger = asyncio.create_task(self._purge_forever(), name="records-purge")

    async def purge(self) -> int:
        return await self.repo.purge(time.time() - self.retention)

    async def _purge_forever(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception as exc:
                log.warning("purging old chat records failed: %s", exc)
            await asyncio.sleep(PURGE_EVERY)

    async def close(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
        await self.writer.close()
