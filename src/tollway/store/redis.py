"""The Redis connection every shared-state backend uses (pool state, rate limits): one way to
connect, to describe a URL without its password, and to turn a Redis failure into a Tollway
error naming what was being done."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tollway.core.errors import ConfigError, InternalError


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparseable URL>"


async def connect(url: str) -> aioredis.Redis:
    """A client on ``url`` (TOLLWAY_REDIS_URL), once the server answers a PING; a one-line
    ConfigError (without the password) when it does not."""
    try:
        client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5, socket_timeout=5)
    except ValueError as exc:
        raise ConfigError(f"TOLLWAY_REDIS_URL {redact(url)!r} is not a Redis URL: {exc}") from None
    try:
        await cast(Awaitable[bool], client.ping())
    except (RedisError, OSError) as exc:
        await client.aclose()
        detail = " ".join(str(exc).split())
        raise ConfigError(f"Redis not reachable at {redact(url)} ({type(exc).__name__}: {detail}); "
                          "check TOLLWAY_REDIS_URL") from None
    return client


@contextlib.contextmanager
def translated(component: str, what: str) -> Iterator[None]:
    """A Redis failure while serving, as an InternalError saying which part failed to do what."""
    try:
        yield
    except RedisError as exc:
        raise InternalError(f"{component}: Redis failed to {what} ({type(exc).__name__}: {exc})") from exc


class Broadcast:
    """A wake-up call between processes: ``publish`` after a write that caches depend on, and every
    process listening (``listen``) looks at the change counter at once instead of at its next poll.
    The counter stays the truth: a message lost (a reconnect) only delays a reload to the poll."""

    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self.client = client
        self.channel = channel

    async def publish(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.publish(self.channel, "changed")

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` for every message until cancelled; reconnects after a failure."""
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    wake()  # messages sent while not subscribed are gone: look once now
                    async for _ in pubsub.listen():
                        wake()
            except (RedisError, OSError):
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        await self.client.aclose()
