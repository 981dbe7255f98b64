"""A lean HTTP/1.1 client for upstream calls: keep-alive connections per origin on asyncio
protocols, responses parsed by httptools (llhttp, the parser uvicorn serves with).

Why not aiohttp here: sending the same keep-alive POST to the bench mock, aiohttp spent 0.072 ms
of CPU per request and this client 0.015 ms (``bench/RESULTS.md``, issue 19); aiohttp was about a
fifth of the gateway's CPU per request. The gateway needs little of what aiohttp offers: no
cookies, redirects (never followed upstream), proxies or multipart, so what is here is only:

- ``http`` and ``https`` (the default SSL context, SNI), a connect timeout;
- at most ``limit`` requests in flight per ``Pool`` (more wait for a slot), idle connections kept
  for ``keepalive`` seconds and reused newest first;
- bodies by Content-Length, chunked, or up to the connection's close; ``identity`` is asked for,
  and gzip or deflate an upstream sends anyway is decoded;
- read-side flow control: a stream's socket is paused while more than 256 KiB wait unread;
- a request on a reused connection that the server closed before answering any byte (the
  keep-alive race: the server timed the idle connection out as the request left) is sent once
  more on a new connection. Nothing else is retried here: retries belong to the pipeline.

Header names and values that could split the request (CR, LF, NUL; a colon in a name) are
refused with ``ValueError`` before anything is sent.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from typing import Final
from urllib.parse import urlsplit

import httptools

_HIGH: Final = 256 * 1024  # unread bytes past which a connection stops reading
_OWN: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_BAD: Final = ("\r", "\n", "\0")


class H1Error(Exception):
    """An upstream HTTP failure, named by class; ``str()`` says what happened without secrets."""


class ConnectError(H1Error):
    """No connection: refused, unknown host, TLS handshake failed."""


class ConnectTimeout(ConnectError):
    """No connection within the connect timeout."""


class ResponseError(H1Error):
    """The connection broke, or the upstream sent something that is not HTTP/1.1."""


class _Stale(ResponseError):
    """A reused connection closed before any byte of its response: safe to send again."""


class Headers:
    """Response headers by lower-cased name; a repeated header's values joined with ``, ``."""

    __slots__ = ("_map",)

    def __init__(self, items: dict[str, str]) -> None:
        self._map = items

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._map.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def items(self) -> collections.abc.ItemsView[str, str]:
        return self._map.items()

    def __repr__(self) -> str:
        return f"Headers({self._map!r})"


Origin = tuple[str, str, int]  # scheme, host, port


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the response being read on it."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.reused = False
        self.idle_since = 0.0
        self.begin()

    def begin(self) -> None:
        """Ready for the next response on this connection."""
        self.status = 0
        self.reason = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.headers: Headers | None = None
        self.complete = False
        self.keep_alive = False
        self.delimited = True  # the body's end is in the message (length or chunks), not the close
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.any_byte = False
        self.error: H1Error | None = None
        self.waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.any_byte = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ResponseError(f"malformed HTTP response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.complete or self.error is not None:
            self._wake()
            return
        if self.headers is not None and not self.delimited:  # a body that ends with the connection
            self.complete = True
            self._wake()
            return
        if self.reused and not self.any_byte:
            self._fail(_Stale("the reused connection was closed before the response"))
        else:
            self._fail(ResponseError("the connection closed before the response ended"))

    # httptools callbacks -------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 1xx (we never send Expect): the real response follows
            self.fields = []
            self.reason = b""
            return
        found: dict[str, str] = {}
        for raw_name, raw_value in self.fields:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            found[name] = f"{found[name]}, {value}" if name in found else value
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()  # known here (llhttp resets it at the message's end)
        self.headers = Headers(found)
        self.delimited = ("content-length" in found or "chunked" in found.get("transfer-encoding", "").lower()
                          or status in (204, 304))
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.headers is not None:  # not the end of a 1xx
            self.complete = True
            self._wake()

    # ---------------------------------------------------------------------------------------

    def _fail(self, error: H1Error) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter

    def take(self) -> bytes:
        """What arrived and was not read yet (the socket resumes if it was paused)."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """An upstream response whose headers have arrived; the body is read with ``read`` (all of
    it) or ``readany`` (what has arrived, ``b""`` at its end). Give the connection back with
    ``release`` (after the body's end: kept for reuse) or ``close`` (dropped)."""

    __slots__ = ("status", "reason", "headers", "_conn", "_pool", "_decoder", "_done")

    def __init__(self, conn: _Connection, pool: Pool) -> None:
        self._conn = conn
        self._pool = pool
        self.status = conn.status
        self.reason = conn.reason.decode("latin-1")
        self.headers: Headers = conn.headers or Headers({})
        self._done = False
        encoding = self.headers.get("content-encoding", "") or ""
        encoding = encoding.strip().lower()
        self._decoder = (zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip")
                         else zlib.decompressobj() if encoding == "deflate" else None)

    async def readany(self) -> bytes:
        conn = self._conn
        while True:
            if conn.chunks:
                data = conn.take()
                if self._decoder is None:
                    return data
                try:
                    out = self._decoder.decompress(data)
                except zlib.error:
                    raise ResponseError("the response's compressed body is corrupt") from None
                if out:
                    return out
                continue
            if conn.complete:
                if self._decoder is not None:
                    tail, self._decoder = self._decoder.flush(), None
                    if tail:
                        return tail
                return b""
            if conn.error is not None:
                raise conn.error
            await conn.wait()

    async def read(self, limit: int | None = None) -> bytes:
        """The body to its end, or its first ``limit`` bytes or a little more (an error body)."""
        parts: list[bytes] = []
        size = 0
        while chunk := await self.readany():
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break
        return b"".join(parts)

    def release(self) -> None:
        """Done with the response: its connection is kept for the next request if the body was
        read to its end and the upstream keeps it alive, else closed."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and not conn.chunks and not conn.lost and conn.error is None and conn.keep_alive:
            self._pool._keep(conn)
        else:
            conn.close()
        self._pool._slots.release()

    def close(self) -> None:
        """Drop the connection (an unread body, a stream cut short: the upstream sees it go)."""
        if self._done:
            return
        self._done = True
        self._conn.close()
        self._pool._slots.release()


class Pool:
    """Keep-alive HTTP/1.1 connections to any number of origins (see the module doc)."""

    def __init__(self, *, connect_timeout: float, limit: int = 512, keepalive: float = 15.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """``ssl_context``: for ``https`` (default: the system's trust store, made on first use)."""
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._urls: dict[str, tuple[Origin, bytes]] = {}
        self._ssl = ssl_context
        self.closed = False

    def _target(self, url: str) -> tuple[Origin, bytes]:
        """An URL's origin and the request line's start with the Host header (cached)."""
        known = self._urls.get(url)
        if known is not None:
            return known
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname
        netloc = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            netloc = f"{netloc}:{port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        if any(c in path for c in " \r\n\0"):
            raise ValueError("the URL's path has a space or a control character")
        known = ((scheme, host, port), f"{path} HTTP/1.1\r\nHost: {netloc}\r\n".encode())
        if len(self._urls) < 4096:  # a provider's URLs are few; a per-request URL (a job id) is not kept
            self._urls[url] = known
        return known

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> Response:
        """Send a request and wait for its response's headers. Raises ``ConnectError``,
        ``ConnectTimeout``, ``ResponseError``, or ``ValueError`` for a request that cannot be sent."""
        if self.closed:
            raise ConnectError("the client is closed")
        origin, line = self._target(url)
        lines = [method.encode(), b" ", line]
        for name, value in headers.items():
            if name.lower() in _OWN:
                continue
            if ":" in name or any(c in name or c in value for c in _BAD):
                raise ValueError(f"header {name!r} has a character that would split the request")
            lines.append(f"{name}: {value}\r\n".encode())
        if "accept-encoding" not in (k.lower() for k in headers):
            lines.append(b"Accept-Encoding: identity\r\n")
        if body is not None:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        head = b"".join(lines)
        await self._slots.acquire()
        conn: _Connection | None = None
        try:
            for attempt in range(2):  # the second on a new connection, after a stale one
                conn = (self._reuse(origin) if attempt == 0 else None) or await self._connect(origin)
                conn.begin()
                assert conn.transport is not None
                if body is not None and len(body) > 16384:
                    conn.transport.writelines((head, body))
                else:
                    conn.transport.write(head + body if body else head)
                while conn.headers is None:
                    if conn.error is not None:
                        break
                    await conn.wait()
                if conn.headers is not None:
                    return Response(conn, self)
                if not isinstance(conn.error, _Stale):
                    raise conn.error or ResponseError("no response")
                conn.close()
            raise ResponseError("the upstream closed a new connection before answering")
        except BaseException:
            if conn is not None:
                conn.close()
            self._slots.release()
            raise

    def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest = time.monotonic() - self.keepalive
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.idle_since >= oldest:
                conn.reused = True
                return conn
            conn.close()
        return None

    def _keep(self, conn: _Connection) -> None:
        if self.closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(conn.origin, [])
        if idle and (idle[0].lost or idle[0].idle_since < conn.idle_since - self.keepalive):
            idle[:] = [c for c in idle if not c.lost]  # prune what the upstream closed meanwhile
        idle.append(conn)

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        tls = self._context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: _Connection(origin), host, port, ssl=tls,
                                                       server_hostname=host if tls is not None else None)
        except TimeoutError:
            raise ConnectTimeout(f"no connection within {self.connect_timeout:g}s") from None
        except OSError as exc:
            raise ConnectError(type(exc).__name__) from None
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def close(self) -> None:
        self.closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
