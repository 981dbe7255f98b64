"""Stored Responses API responses on SQLite and PostgreSQL: owned by their caller, chained into a
conversation, replaced only while unfinished, and gone past their retention."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.responses import ResponseRepository


def response(rid: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": rid, "object": "response", "created_at": 1, "status": status, "model": "m",
            "output": [{"id": f"msg_{rid}", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}]}


def user(text: str) -> dict[str, Any]:
    return {"id": f"in_{text}", "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def test_a_conversation_is_its_chain_of_responses_oldest_first(engine: AsyncEngine) -> None:
    repo = ResponseRepository(engine)
    await repo.save("key:1", response("r1", "a1"), [user("q1")], previous_id=None, expires_at=None)
    await repo.save("key:1", response("r2", "a2"), [user("q2")], previous_id="r1", expires_at=None)
    items = await repo.conversation("key:1", "r2")
    assert [i["id"] for i in items or ()] == ["in_q1", "msg_r1", "in_q2", "msg_r2"]
    assert await repo.conversation("key:2", "r2") is None  # another owner's
    await repo.delete("key:1", "r1")  # an older turn gone: the conversation starts after it
    assert [i["id"] for i in await repo.conversation("key:1", "r2") or ()] == ["in_q2", "msg_r2"]


async def test_owners_never_see_or_replace_each_others(engine: AsyncEngine) -> None:
    repo = ResponseRepository(engine)
    await repo.save("key:1", response("same", "mine"), [], previous_id=None, expires_at=None)
    await repo.save("key:2", response("same", "theirs"), [], previous_id=None, expires_at=None)
    mine = await repo.get("key:1", "same")
    assert mine is not None and mine.response["output"][0]["content"][0]["text"] == "mine"
    assert await repo.get("key:2", "same") is None
    assert not await repo.delete("key:2", "same")


async def test_an_unfinished_response_is_replaced_once(engine: AsyncEngine) -> None:
    repo = ResponseRepository(engine)
    await repo.save("key:1", response("bg", "", "queued"), [], previous_id=None, expires_at=None)
    outcomes = await asyncio.gather(
        repo.update_if("key:1", "bg", ("queued", "in_progress"), response("bg", "", "cancelled")),
        repo.update_if("key:1", "bg", ("queued", "in_progress"), response("bg", "done", "completed")))
    assert sorted(outcomes) == [False, True]
    stored = await repo.get("key:1", "bg")
    assert stored is not None and stored.status in ("cancelled", "completed")


async def test_expired_responses_are_not_found_and_purged(engine: AsyncEngine) -> None:
    repo = ResponseRepository(engine)
    await repo.save("key:1", response("old", "x"), [], previous_id=None, expires_at=time.time() - 1)
    await repo.save("key:1", response("new", "y"), [], previous_id=None, expires_at=time.time() + 60)
    assert await repo.get("key:1", "old") is None and await repo.get("key:1", "new") is not None
    assert await repo.purge() == 1
    assert await repo.get("key:1", "new") is not None


async def test_a_kept_response_is_read_at_once_and_written_in_a_batch(engine: AsyncEngine) -> None:
    repo = ResponseRepository(engine, interval=0.05)
    repo.start()
    try:
        for i in range(5):
            repo.keep("key:1", response(f"k{i}", f"a{i}"), [user(f"q{i}")], previous_id=f"k{i - 1}" if i else None,
                      expires_at=None)
        assert (await repo.get("key:1", "k4")) is not None and await repo.get("key:2", "k4") is None
        assert len(await repo.conversation("key:1", "k4") or ()) == 10  # read while pending
        await asyncio.sleep(0.3)
        other = ResponseRepository(engine)  # another process: the database alone
        assert len(await other.conversation("key:1", "k4") or ()) == 10
        assert await repo.delete("key:1", "k0") and await other.get("key:1", "k0") is None
    finally:
        await repo.close()


async def test_responses_given_up_by_the_writer_are_not_served_from_memory(engine: AsyncEngine) -> None:
    """Pending responses are bounded in bytes; one the writer gives up (over the bound through an
    outage, or refused) leaves the pending map too: ``get`` never serves what was never stored."""
    one = len(msgspec.json.encode(response("b0", "x" * 1_000))) + len(msgspec.json.encode([user("q")]))
    repo = ResponseRepository(engine, interval=3600.0, max_pending_bytes=int(2.5 * (one + 256)))  # room for two

    async def unreachable(rows: Any) -> None:
        raise OSError("database unreachable")

    insert, repo.writer.insert = repo.writer.insert, unreachable
    for i in range(4):
        repo.keep("key:1", response(f"b{i}", "x" * 1_000), [user("q")], previous_id=None, expires_at=None)
    with contextlib.suppress(OSError):
        await repo.writer.flush()
    # the two oldest went (what is kept weighs at most the bound), and with them their pending copies
    assert repo.writer.dropped == 2
    assert await repo.get("key:1", "b0") is None and await repo.get("key:1", "b1") is None
    assert await repo.get("key:1", "b3") is not None  # still pending
    repo.writer.insert = insert
    await repo.writer.flush()
    other = ResponseRepository(engine)  # the database alone
    assert await other.get("key:1", "b2") is not None and await other.get("key:1", "b0") is None
