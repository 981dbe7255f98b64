"""The task table on SQLite and PostgreSQL: owned by their caller, leased to one process at a time,
taken over only once a lease ran out (by exactly one of several claimants), written only by the
holder of the lease, cancelled once, purged after they expire."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.store.tasks import CANCELLED, PENDING, RUNNING, SUCCEEDED, Task, TaskRepository


def task(tid: str, *, owner: str = "key:1", lease_owner: str | None = "p1", lease_until: float | None = None,
         created: float | None = None) -> Task:
    now = time.time() if created is None else created
    return Task(id=tid, kind="image", shape="platform", owner=owner, model="m", status=PENDING,
                request={"image": {"prompt": "x"}}, key_id=1, attempts=1, lease_owner=lease_owner,
                lease_until=now + 30 if lease_until is None else lease_until, created_at=now, updated_at=now)


async def test_owned_and_paged(engine: AsyncEngine) -> None:
    repo = TaskRepository(engine)
    for i in range(5):
        await repo.create(task(f"t{i}", owner="key:1" if i % 2 == 0 else "key:2", created=1000.0 + i))
    assert (await repo.get("t1", "key:1")) is None and (await repo.get("t1", "key:2")) is not None
    assert (await repo.get("t1")) is not None  # the admin's view
    first = await repo.page(owner="key:1", limit=2)
    assert [t.id for t in first] == ["t4", "t2"]
    assert [t.id for t in await repo.page(owner="key:1", limit=2, after="t2")] == ["t0"]
    assert [t.id for t in await repo.page(owner="key:1", limit=5, newest_first=False)] == ["t0", "t2", "t4"]
    got = await repo.get("t0")
    assert got is not None and got.request == {"image": {"prompt": "x"}} and got.result is None


async def test_only_the_lease_holder_writes(engine: AsyncEngine) -> None:
    repo = TaskRepository(engine)
    await repo.create(task("a"))
    assert await repo.update("a", "p1", status=RUNNING, progress=10)
    assert not await repo.update("a", "p2", status=SUCCEEDED)  # not its lease
    assert await repo.update("a", "p1", status=SUCCEEDED, result={"assets": []})
    assert not await repo.update("a", "p1", progress=50)  # final: never changed again
    done = await repo.get("a")
    assert done is not None and done.status == SUCCEEDED and done.result == {"assets": []}


async def test_a_stale_lease_is_taken_over_by_exactly_one_claimant(engine: AsyncEngine) -> None:
    repo = TaskRepository(engine)
    now = time.time()
    for i in range(8):
        await repo.create(task(f"s{i}", lease_owner="dead", lease_until=now - 1))
    await repo.create(task("alive", lease_owner="p1", lease_until=now + 60))
    results = await asyncio.gather(*(repo.claim(f"c{n}", now, now + 30, 8) for n in range(4)))
    claimed = [t.id for batch in results for t in batch]
    assert sorted(claimed) == [f"s{i}" for i in range(8)]  # each once, the live one never
    assert all(t.attempts == 2 and t.lease_owner.startswith("c") for batch in results for t in batch)  # type: ignore[union-attr]
    assert await repo.claim("late", now, now + 30, 8) == []


async def test_renew_cancel_and_purge(engine: AsyncEngine) -> None:
    repo = TaskRepository(engine)
    now = time.time()
    await repo.create(task("r", lease_until=now + 1))
    assert await repo.renew("p1", now + 100) == 1
    assert await repo.claim("other", now + 50, now + 80, 5) == []  # renewed: not stale
    assert await repo.statuses(["r", "missing"]) == {"r": (PENDING, "p1")}
    assert (await repo.cancel("r", "key:2")) is None  # another owner's
    cancelled = await repo.cancel("r", "key:1")
    assert cancelled is not None and cancelled.status == CANCELLED and cancelled.error_code == "cancelled"
    assert not await repo.update("r", "p1", status=SUCCEEDED)  # a cancel is final
    await repo.create(task("old"))
    assert await repo.update("old", "p1", status=SUCCEEDED, finished_at=now, expires_at=now - 1)
    expired = await repo.expired(now)
    assert [t.id for t in expired] == ["old"]
    await repo.remove(["old"])
    assert await repo.get("old") is None
    await repo.set_cost("r", 123)
    assert (await repo.get("r")).cost_micro == 123  # type: ignore[union-attr]
