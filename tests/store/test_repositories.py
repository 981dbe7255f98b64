"""Migrations and repositories on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.key_service import KeyService, ensure_admin_secret
from tollway.auth.keys import hash_secret
from tollway.core.errors import InvalidRequest
from tollway.core.request_log import RequestLog
from tollway.store import changes
from tollway.store.db import migrate
from tollway.store.keys import KeyRepository
from tollway.store.log_buffer import RequestLogBuffer
from tollway.store.meta import MetaRepository
from tollway.store.request_logs import RequestLogRepository


async def test_keys_and_change_counter(database_url: str, engine: AsyncEngine) -> None:
    await asyncio.to_thread(migrate, database_url)  # a second run changes nothing
    service = KeyService(KeyRepository(engine))
    before = await changes.current(engine)
    key, secret = await service.create(name="alice", email="a@x.test", group_id=3)
    assert await changes.current(engine) == before + 1
    assert key.key_hash == hash_secret(secret) and key.prefix == secret[:10]
    assert (await service.find(secret)) == key
    assert (await service.find(key.prefix)) == key
    assert (await service.find(str(key.id))) == key
    other, _ = await service.create(name="bob", role="admin")
    listed, total = await service.repo.list(role="admin")
    assert [k.id for k in listed] == [other.id] and total == 1
    listed, total = await service.repo.list(q="ali")
    assert [k.name for k in listed] == ["alice"]
    assert await service.revoke(key.id) is True
    assert await service.revoke(key.id) is False
    assert [k.name for k in await service.repo.active()] == ["bob"]
    assert await changes.current(engine) == before + 3


async def test_admin_secret_is_generated_once(engine: AsyncEngine) -> None:
    meta = MetaRepository(engine)
    h1, secret = await ensure_admin_secret(meta, None)
    assert secret is not None and h1 == hash_secret(secret)
    h2, again = await ensure_admin_secret(meta, None)
    assert (h2, again) == (h1, None)
    h3, _ = await ensure_admin_secret(meta, "configured-secret")
    assert h3 == hash_secret("configured-secret")


async def test_log_buffer_batches_and_flushes_on_close(engine: AsyncEngine) -> None:
    repo = RequestLogRepository(engine)
    buffer = RequestLogBuffer(repo, interval=3600, batch=1000)
    buffer.start()
    for i in range(250):
        buffer.add(RequestLog(id=f"r{i}", created_at=1000.0 + i, path="/v1/chat/completions", dialect="openai",
                              status=200 if i % 5 else 502, model="echo", prompt_tokens=i))
    assert await repo.count() == 0  # nothing written on the hot path
    await buffer.close()
    assert await repo.count() == 250
    failed, total = await repo.list(status=502, limit=10)
    assert total == 50 and all(r.status == 502 for r in failed)
    window, total = await repo.list(since=1100.0, until=1110.0)
    assert total == 10 and {r.id for r in window} == {f"r{i}" for i in range(100, 110)}


async def test_a_refused_row_does_not_block_the_log(engine: AsyncEngine) -> None:
    repo = RequestLogRepository(engine)
    buffer = RequestLogBuffer(repo, interval=3600, batch=1000)
    row = RequestLog(id="dup", created_at=1.0, path="/p", dialect="openai", status=200)
    buffer.add(row)
    await buffer.flush()
    buffer.add(RequestLog(id="a", created_at=2.0, path="/p", dialect="openai", status=200))
    buffer.add(row)  # the same primary key again: the database refuses this row
    buffer.add(RequestLog(id="b", created_at=3.0, path="/p", dialect="openai", status=200))
    await buffer.flush()
    assert await repo.count() == 3 and buffer.dropped == 1 and buffer.pending == 0


async def test_rows_with_hostile_values_are_stored_cleaned(engine: AsyncEngine) -> None:
    repo = RequestLogRepository(engine)
    await repo.insert_many([RequestLog(id="h1", created_at=1.0, path="/v1/chat/completions", dialect="openai",
                                       status=404, model="nope\x00x" + "a" * 500, note="bad\x00note",
                                       prompt_tokens=2**40, cost_micro=2**70)])
    (row,), total = await repo.list()
    assert total == 1 and row.model == ("nopex" + "a" * 500)[:200] and row.note == "badnote"
    assert row.prompt_tokens == 2**31 - 1 and row.cost_micro == 2**63 - 1


async def test_a_key_imported_concurrently_is_created_once(engine: AsyncEngine) -> None:
    service = KeyService(KeyRepository(engine))
    results = await asyncio.gather(*[service.create(name="dup", secret="sk-duplicate-key-0001") for _ in range(8)],
                                   return_exceptions=True)
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1
    assert refused and all(isinstance(r, InvalidRequest) and "already exists" in r.message for r in refused)
