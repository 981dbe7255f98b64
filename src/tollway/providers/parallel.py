"""Several upstream calls of one request at once, bounded: what an adapter does when its API takes
fewer items per call than the request has (embedding batches, images one or a few per call)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar

MAX_PARALLEL: Final = 4  # upstream calls one request makes at once
T = TypeVar("T")


async def bounded(calls: Iterable[Callable[[], Awaitable[T]]], limit: int = MAX_PARALLEL) -> list[T]:
    """The calls' results in order, at most ``limit`` running at once; the first error (as it is,
    not in a group) cancels the others."""
    gate = asyncio.Semaphore(limit)

    async def one(make: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await make()

    tasks = [asyncio.ensure_future(one(c)) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
