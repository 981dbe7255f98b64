"""Chat records on SQLite and PostgreSQL: grouping into sessions, search, history, isolation,
deletion and retention."""

from __future__ import annotations

import time

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.records import RecordRepository, Thread


def thread(owner: str, text: str, answer: str, *, at: float | None = None, ref: str | None = None,
           response: str | None = None, previous: str | None = None, key_id: int | None = 1) -> Thread:
    return Thread(owner=owner, key_id=key_id, studio_id=None, request_id=f"req_{text}", dialect="openai", model="m",
                  input=msgspec.json.encode([{"role": "user", "content": text}]).decode(), output=answer,
                  title=text, truncated=False, stream=False, status=200, prompt_tokens=1, completion_tokens=2,
                  cost_micro=5, latency_ms=1.0, created_at=time.time() if at is None else at, client_ref=ref,
                  response_ref=response, previous_ref=previous)


async def test_sessions_group_threads(engine: AsyncEngine) -> None:
    repo = RecordRepository(engine)
    await repo.write([thread("key:1", "hello bot", "hi", ref="chat-1"), thread("key:1", "again", "yes", ref="chat-1"),
                      thread("key:1", "lonely", "ok"), thread("key:2", "hello bot", "other", ref="chat-1"),
                      thread("key:1", "r one", "a", response="resp_1")])
    await repo.write([thread("key:1", "third", "sure", ref="chat-1"),
                      thread("key:1", "r two", "b", response="resp_2", previous="resp_1"),
                      thread("key:2", "r steal", "c", previous="resp_1")])  # another owner's chain: its own
    sessions, total = await repo.sessions(owner="key:1", limit=50)
    assert total == 3
    titles = {s["title"]: s["threads"] for s in sessions}
    assert titles == {"hello bot": 3, "lonely": 1, "r one": 2}
    assert (await repo.sessions(owner="key:2"))[1] == 2
    assert await repo.history("key:1", "chat-1", 2) == [("again", "yes"), ("third", "sure")]
    assert await repo.history("key:2", "chat-1", 10) == [("hello bot", "other")]
    assert await repo.history("key:1", "missing", 10) == []


async def test_search_listing_and_deletion(engine: AsyncEngine) -> None:
    repo = RecordRepository(engine)
    await repo.write([thread("key:1", "the zebra question", "stripes answer"), thread("key:1", "apples", "red"),
                      thread("key:3", "zebra too", "not yours", key_id=3)])
    assert (await repo.sessions(q="zebra"))[1] == 2  # the admin's view: every owner
    assert (await repo.sessions(owner="key:1", q="zebra"))[1] == 1
    assert (await repo.sessions(owner="key:1", q="stripes"))[1] == 1  # a thread's answer matches its session
    items, total = await repo.threads(owner="key:1", q="red")
    assert total == 1 and items[0]["preview"] == "red"
    assert (await repo.threads(key_id=3))[1] == 1
    sid = (await repo.sessions(owner="key:1", q="apples"))[0][0]["id"]
    assert await repo.session(sid, "key:3") is None
    full = await repo.session(sid, "key:1")
    assert full is not None and full["items"][0]["input"] == [{"role": "user", "content": "apples"}]
    assert not await repo.delete_session(sid, "key:3")
    assert await repo.delete_session(sid, "key:1")
    assert (await repo.threads(owner="key:1", q="red"))[1] == 0


async def test_retention(engine: AsyncEngine) -> None:
    repo = RecordRepository(engine)
    now = time.time()
    await repo.write([thread("key:1", "old", "x", at=now - 1000, ref="r"), thread("key:1", "new", "y", at=now)])
    assert await repo.purge(now - 500) == 1
    sessions, total = await repo.sessions(owner="key:1")
    assert total == 1 and sessions[0]["title"] == "new"


async def test_settings(engine: AsyncEngine) -> None:
    repo = RecordRepository(engine)
    await repo.set("key", "7", False)
    await repo.set("group", "2", True)
    assert await repo.settings() == {("key", "7"): False, ("group", "2"): True}
    await repo.set("key", "7", None)
    assert await repo.settings() == {("group", "2"): True}
