"""The Redis connection every shared-state backend uses (pool state, rate limits): one way to
connect, to describe a URL without its password, and to turn a Redis failure into a Tollway
error naming what was being done."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

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


class ScriptBatch:
    """Lua scripts sent together: the calls made during one turn of the event loop go out as one
    pipeline (one connection checkout, one write, one read), not one round trip each.

    Under load, many requests reach their admission or settlement in the same turn; batching them
    is what keeps Redis-backed billing close to in-memory billing in CPU per request. A script the
    server does not know yet (first use, or after a restart) is loaded and its calls sent again.
    ``register`` returns a callable with redis-py's ``Script`` calling convention.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._queue: list[tuple[str, str, list[Any], list[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def register(self, text: str) -> Callable[..., Awaitable[Any]]:
        sha = hashlib.sha1(text.encode()).hexdigest()

        async def call(*, keys: list[str], args: list[Any]) -> Any:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.append((sha, text, keys, args, future))
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
            return await future

        return call

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, str, list[Any], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._pipeline(batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:
                for text in {batch[i][1] for i in missing}:
                    await self.client.script_load(text)
                again = await self._pipeline([batch[i] for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except BaseException as exc:  # the whole pipeline failed (connection lost, cancelled)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RedisError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pipeline(self, batch: list[tuple[str, str, list[Any], list[Any], asyncio.Future[Any]]]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for sha, _, keys, args, _ in batch:
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        if self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)
        await self.client.aclose()
