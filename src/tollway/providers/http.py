"""The upstream HTTP boundary: one pool of keep-alive connections per provider
(``providers.h1``, a lean HTTP/1.1 client on httptools).

The client went from httpx to aiohttp (13x less client CPU per request: 0.11 against 1.5 ms),
then from aiohttp to ``h1`` (0.015 against 0.072 ms, issue 19; see bench/RESULTS.md). Every
client exception and every upstream error status is translated to a tollway error here, in one
place; the credential is redacted from anything that leaves.

Timeouts: ``connect`` (TCP connect), ``first_byte`` (request sent -> response headers, and
the whole body for non-stream calls), ``idle`` (gap between two stream reads).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any, Protocol

import msgspec

from tollway.core.errors import UpstreamError, UpstreamTimeout
from tollway.core.redaction import Secret, redact, secret_parts
from tollway.providers.h1 import ConnectError, ConnectTimeout, H1Error, Pool, Response
from tollway.providers.sse import SSEEvent, SSEFramer

ErrorParser = Callable[[bytes], str | None]
RetryAfterParser = Callable[[bytes], float | None]  # an error body's retry delay in seconds, if it has one
MAX_ERROR_BODY = 64 * 1024
# tracing (tollway[otel], telemetry/tracing.py): the headers that carry the current upstream attempt's
# span to the upstream (W3C traceparent), set per attempt by routing.pipeline; None when not traced
TRACE_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("tollway_trace_headers", default=None)


class Timeouts(msgspec.Struct, frozen=True, kw_only=True):
    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0


MAX_RETRY_AFTER = 3600.0
MAX_MESSAGE = 500


def clamp_retry_after(seconds: float | None) -> float | None:
    """A retry delay clamped to 0..1 h; None if absent or not finite."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def retry_after_of(headers: Any) -> float | None:
    """The upstream's Retry-After in seconds (delta form), clamped to 0..1 h; None if absent or odd."""
    value = headers.get("retry-after") if headers is not None else None
    try:
        return clamp_retry_after(float(value) if value is not None else None)
    except ValueError:
        return None


class UpstreamStream:
    """An open upstream response body, read as a stream. Used as an async context manager,
    it is the one lifecycle every reader shares: the reader sets ``ended`` once it has seen the
    stream's last event; on leaving the block, an ended stream is finished (the rest of the
    body is read in the background and the connection goes back to the pool) and any other
    (an error, a client gone, an upstream that stopped early) is closed, which drops the
    connection and so cancels the upstream's work.

        async with upstream:
            async for batch in upstream.batches():
                ...
                upstream.ended = True
    """

    def __init__(self, resp: Response, client: UpstreamClient, secret: Secret) -> None:
        self._resp = resp
        self._client = client
        self._secret = secret
        self.headers = resp.headers
        self.ended = False  # the reader saw the stream's last event
        self._eof = False  # the body was read to its end

    async def __aenter__(self) -> UpstreamStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.end()

    def end(self) -> None:
        """Finish the stream if its reader saw the last event, else close it."""
        if self.ended:
            self.finish()
        else:
            self.close()

    async def batches(self) -> AsyncIterator[list[SSEEvent]]:
        """The SSE events of each upstream read, together (one client write per read)."""
        framer = SSEFramer()
        async for chunk in self.chunks():
            events = framer.feed(chunk)
            if events:
                yield events
        tail = framer.close()
        if tail:
            yield tail

    async def chunks(self) -> AsyncIterator[bytes]:
        """The raw body, one upstream read at a time (binary framings such as AWS event streams
        use it directly), with the idle timeout and the error translation."""
        resp = self._resp
        idle = self._client.timeouts.idle
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):
                        chunk = await resp.readany()
                except TimeoutError:
                    raise UpstreamTimeout(f"upstream stream idle for more than {idle:g}s",
                                          provider=self._client.provider) from None
                if not chunk:
                    break
                yield chunk
            self._eof = True
        except H1Error as exc:
            raise UpstreamError(f"upstream stream broke: {type(exc).__name__}",
                                provider=self._client.provider) from None

    async def drain(self, timeout: float = 1.0) -> None:
        """Read to the end of the body after the stream's last event, so the connection can
        go back to the pool instead of being dropped."""
        if self._eof:
            return
        try:
            async with asyncio.timeout(timeout):
                while await self._resp.readany():
                    pass
            self._eof = True
        except (TimeoutError, H1Error):
            pass

    def finish(self) -> None:
        """After the stream's last event: read to the end of the body in the background (so the
        connection goes back to the pool) without holding up the client's response."""
        if self._eof:
            self._resp.release()
            return
        self._client.drain_later(self)

    async def _drain_then_release(self) -> None:
        try:
            await self.drain()
        finally:
            if self._eof:
                self._resp.release()
            else:
                self._resp.close()

    def close(self) -> None:
        """Abort: drop the connection (unread data, or a stream cut short), which also cancels
        the upstream's work."""
        self._resp.close()


class Transport(Protocol):
    """Where an ``UpstreamClient``'s requests go: a factory of the connection pool it sends them
    with. ``tcp_transport`` (keep-alive TCP and TLS) serves; a test hands in its own (a recording
    pool, one with a fault-injecting subclass) through ``ProviderContext.transport``, and every
    adapter uses it unchanged."""

    def __call__(self, timeouts: Timeouts, max_connections: int) -> Pool: ...


def tcp_transport(timeouts: Timeouts, max_connections: int) -> Pool:
    return Pool(connect_timeout=timeouts.connect, limit=max_connections)


class UpstreamClient:
    def __init__(self, *, provider: str, timeouts: Timeouts, parse_error: ErrorParser,
                 parse_retry_after: RetryAfterParser | None = None, max_connections: int = 512,
                 transport: Transport = tcp_transport) -> None:
        """``parse_error`` takes an error body's message; ``parse_retry_after``, if given, its
        retry delay, for upstreams that send it in the body (Google) rather than in Retry-After."""
        self.provider = provider
        self.timeouts = timeouts
        self._parse_error = parse_error
        self._parse_retry_after = parse_retry_after
        self._max_connections = max_connections
        self._transport = transport
        self._session: Pool | None = None
        self._draining: dict[asyncio.Task[None], UpstreamStream] = {}

    def drain_later(self, stream: UpstreamStream) -> None:
        """Finish reading a stream's body in the background; ``close`` aborts what is left."""
        task = asyncio.ensure_future(stream._drain_then_release())
        self._draining[task] = stream
        task.add_done_callback(lambda t: self._draining.pop(t, None))

    def _get_session(self) -> Pool:
        if self._session is None or self._session.closed:
            self._session = self._transport(self.timeouts, self._max_connections)
        return self._session

    async def close(self) -> None:
        for task, stream in list(self._draining.items()):
            task.cancel()
            stream.close()  # the task may be cancelled before it ever ran: close here, not there
        self._draining.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _error(self, resp: Response, secret: Secret) -> UpstreamError:
        try:
            body = (await resp.read(MAX_ERROR_BODY))[:MAX_ERROR_BODY]
        except H1Error:
            body = b""
        finally:
            resp.close()
        for part in secret_parts(secret):
            body = body.replace(part.encode(), b"***")  # before any parsing or cutting
        detail = redact(self._parse_error(body) or resp.reason or "error", secret)[:MAX_MESSAGE]
        retry_after = retry_after_of(resp.headers)
        if retry_after is None and self._parse_retry_after is not None:
            retry_after = clamp_retry_after(self._parse_retry_after(body))
        return UpstreamError(
            f"{self.provider} upstream returned HTTP {resp.status}: {detail}",
            provider=self.provider, upstream_status=resp.status, retry_after=retry_after,
        )

    async def _send(self, url: str, headers: dict[str, str], body: bytes | None,
                    method: str = "POST") -> Response:
        if (trace := TRACE_HEADERS.get()) is not None:  # tracing: the attempt's traceparent
            headers = {**headers, **trace}
        try:
            return await self._get_session().request(method, url, headers, body)
        except ConnectTimeout:
            raise UpstreamTimeout(f"{self.provider} upstream connect timed out", provider=self.provider) from None
        except ConnectError as exc:
            raise UpstreamError(f"{self.provider} upstream unreachable: {exc}", provider=self.provider) from None
        except H1Error as exc:
            raise UpstreamError(f"{self.provider} upstream broke the connection: {type(exc).__name__}",
                                provider=self.provider) from None
        except ValueError as exc:  # a header that would split the request, an URL that is not http(s)
            raise UpstreamError(f"{self.provider} upstream request not sent: {exc}", provider=self.provider) from None

    async def post(self, url: str, headers: dict[str, str], body: bytes, *, secret: Secret) -> bytes:
        """A non-stream call: the whole body, or a tollway error."""
        return await self.fetch("POST", url, headers, body, secret=secret)

    async def fetch(self, method: str, url: str, headers: dict[str, str], body: bytes | None = None, *,
                    secret: Secret) -> bytes:
        """Any non-stream request: the whole body, or a tollway error."""
        try:
            async with asyncio.timeout(self.timeouts.first_byte):
                resp = await self._send(url, headers, body, method)
                if resp.status >= 400:
                    raise await self._error(resp, secret)
                try:
                    return await resp.read()
                finally:
                    resp.release()
        except TimeoutError:
            raise UpstreamTimeout(f"{self.provider} upstream gave no response within "
                                  f"{self.timeouts.first_byte:g}s", provider=self.provider) from None
        except H1Error as exc:
            raise UpstreamError(f"{self.provider} upstream broke the response: {type(exc).__name__}",
                                provider=self.provider) from None

    async def open_stream(self, url: str, headers: dict[str, str], body: bytes, *,
                          secret: Secret) -> UpstreamStream:
        """Send a streaming call and wait for the response headers (first-byte timeout)."""
        try:
            async with asyncio.timeout(self.timeouts.first_byte):
                resp = await self._send(url, headers, body)
                if resp.status >= 400:
                    raise await self._error(resp, secret)
        except TimeoutError:
            raise UpstreamTimeout(f"{self.provider} upstream sent no headers within "
                                  f"{self.timeouts.first_byte:g}s", provider=self.provider) from None
        return UpstreamStream(resp, self, secret)
