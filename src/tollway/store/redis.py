"""The Redis connection every shared-state backend uses (pool state, rate limits): one way to
connect, to describe a URL without its password, and to turn a Redis failure into a Tollway
error naming what was being done."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tollway.core.errors import ConfigError, InternalError

log = logging.getLogger("tollway.redis")


def redact_url(url: str) -> str:
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
        raise ConfigError(f"TOLLWAY_REDIS_URL {redact_url(url)!r} is not a Redis URL: {exc}") from None
    try:
        await cast(Awaitable[bool], client.ping())
    except (RedisError, OSError) as exc:
        await client.aclose()
        detail = " ".join(str(exc).split())
        raise ConfigError(f"Redis not reachable at {redact_url(url)} ({type(exc).__name__}: {detail}); "
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
    write on one dedicated connection, and their answers come back in order on the same one.

    Under load, many requests reach their admission or settlement in the same turn; batching them
    is what keeps Redis-backed billing close to in-memory billing. redis-py connects (URL, TLS,
    AUTH, SELECT); after that the calls are packed and their replies parsed by hiredis directly,
    without redis-py's per-command pipeline machinery: about 4 us of client CPU per call, its
    future included, instead of 14 through a redis-py pipeline (64 calls per batch,
    bench/RESULTS.md). Batches are pipelined: a turn's calls are written without waiting for the
    last turn's answers.

    A script the server does not know (first use, a SCRIPT FLUSH) is sent again as EVAL, which
    also caches it. A connection lost, or silent for ``timeout`` seconds while calls wait, fails
    the calls in flight (``redis.exceptions`` errors, as redis-py raises them); they are not sent
    again, since a script may have run (the callers' scripts are safe to repeat where it matters).
    The next call connects again. ``register`` returns a callable with redis-py's ``Script``
    calling convention.
    """

    def __init__(self, client: aioredis.Redis, *, timeout: float | None = None) -> None:
        self.client = client
        self.timeout = timeout or client.connection_pool.connection_kwargs.get("socket_timeout") or 5.0
        self._queue: list[_Call] = []
        self._scheduled = False
        self._inflight: collections.deque[_Call] = collections.deque()
        self._conn: Any = None  # redis-py's connection, once connected; its streams carry the calls
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: list[_Call] | None = None  # calls queued while connecting
        self._tasks: set[asyncio.Task[None]] = set()
        self._replies = 0  # answers received: the watchdog's sign of life
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False

    def register(self, text: str) -> Callable[..., Awaitable[Any]]:
        sha = hashlib.sha1(text.encode()).hexdigest()

        def call(*, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
            if self._closed:
                raise RedisConnectionError("Redis client closed")
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()
            self._queue.append(_Call(sha, text, keys, args, future))  # DataError here for a bad argument
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush)
            return future

        return call

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        if self._closed:
            _fail(batch, RedisConnectionError("Redis client closed"))
        elif self._writer is not None:
            self._send(batch)
        elif self._waiting is not None:
            self._waiting.extend(batch)
        else:
            self._waiting = batch
            self._spawn(self._connect())

    def _send(self, batch: list[_Call]) -> None:
        assert self._writer is not None
        self._writer.write(b"".join([call.packed for call in batch]))
        self._inflight.extend(batch)
        if self._watchdog is None:
            self._arm()

    async def _connect(self) -> None:
        conn = None
        try:
            conn = await self.client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            await conn.connect()
            reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
            if not isinstance(reader, asyncio.StreamReader) or not isinstance(writer, asyncio.StreamWriter):
                raise RedisConnectionError("this redis-py version does not expose its connection's streams")
        except BaseException as exc:
            if conn is not None:
                await self.client.connection_pool.release(conn)
            waiting, self._waiting = self._waiting or [], None
            _fail(waiting, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._conn, self._writer = conn, writer
        waiting, self._waiting = self._waiting or [], None
        self._spawn(self._read(conn, reader))
        if waiting:
            self._send(waiting)

    async def _read(self, conn: Any, stream: asyncio.StreamReader) -> None:
        # errors as redis-py's own parser makes them (NoScriptError, BusyLoadingError, ...), strings
        # decoded as the client asked (decode_responses, encoding, encoding_errors)
        encoder = conn.encoder
        options: dict[str, Any] = {"replyError": BaseParser.parse_error}
        if encoder.decode_responses:
            options.update(encoding=encoder.encoding, errors=encoder.encoding_errors)
        parser = hiredis.Reader(**options)
        try:
            while True:
                data = await stream.read(65536)
                if not data:
                    raise RedisConnectionError("Connection closed by server.")
                if self._conn is not conn:
                    return  # dropped (timed out): its calls have failed already
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    self._replies += 1
                    self._answer(self._inflight.popleft(), reply)
        except asyncio.CancelledError:
            raise  # closing
        except Exception as exc:
            if self._conn is conn:
                lost = exc if isinstance(exc, RedisError) else RedisConnectionError(f"Redis connection lost: {exc!r}")
                self._drop(lost)

    def _answer(self, call: _Call, reply: Any) -> None:
        if isinstance(reply, NoScriptError) and not call.eval:
            call.as_eval()  # EVAL runs it and caches it for the EVALSHAs that follow
            self._send([call])
            return
        if call.future.done():
            return  # its caller gave up
        if isinstance(reply, Exception):
            call.future.set_exception(reply)
        else:
            call.future.set_result(reply)

    def _arm(self) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(self.timeout, self._check, self._replies)

    def _check(self, replies: int) -> None:
        self._watchdog = None
        if not self._inflight:
            return
        if self._replies == replies:  # calls waiting, and not one answer for a whole timeout
            self._drop(RedisTimeoutError(f"Redis sent no answer for {self.timeout:g} s"))
        else:
            self._arm()

    def _drop(self, exc: BaseException, *, disconnect: bool = True) -> Any:
        """The connection is gone or stuck: fail what it carried; the next call connects again."""
        conn, self._conn, self._writer = self._conn, None, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        inflight, self._inflight = list(self._inflight), collections.deque()
        _fail(inflight, exc)
        if conn is not None and disconnect:
            self._spawn(self._let_go(conn))
        return conn

    async def _let_go(self, conn: Any) -> None:
        try:
            await conn.disconnect()
        except (RedisError, OSError) as exc:
            log.warning("closing a Redis connection failed: %s", exc)
        finally:
            await self.client.connection_pool.release(conn)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Fail what has not been answered; calls made from now on fail at once."""
        self._closed = True
        queued, self._queue = self._queue, []
        waiting, self._waiting = self._waiting or [], None
        _fail([*queued, *waiting], RedisConnectionError("Redis client closed"))
        conn = self._drop(RedisConnectionError("Redis client closed"), disconnect=False)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if conn is not None:
            await self._let_go(conn)
        await self.client.aclose()


class _Call:
    """One script call: packed when it is made, so a bad argument fails its caller alone."""

    __slots__ = ("text", "keys", "args", "future", "packed", "eval")

    def __init__(self, sha: str, text: str, keys: list[str], args: list[Any], future: asyncio.Future[Any]) -> None:
        self.text, self.keys, self.args, self.future = text, keys, args, future
        self.eval = False
        self.packed = _pack(("EVALSHA", sha, len(keys), *keys, *args))

    def as_eval(self) -> None:
        self.eval = True
        self.packed = _pack(("EVAL", self.text, len(self.keys), *self.keys, *self.args))


def _pack(command: tuple[Any, ...]) -> bytes:
    try:
        return cast(bytes, hiredis.pack_command(command))
    except TypeError as exc:  # None, a bool, a float subclass hiredis does not take...
        raise DataError(f"invalid argument in a script call: {exc}") from None


def _fail(calls: list[_Call], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else RedisConnectionError("cancelled")
    for call in calls:
        if not call.future.done():
            call.future.set_exception(error)
