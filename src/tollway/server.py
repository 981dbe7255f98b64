"""The HTTP server's guards on what clients send: uvicorn's httptools protocol with deadlines.

uvicorn closes a connection that idles between requests (``timeout_keep_alive``), but it waits
for ever for a new connection's first request, for headers that trickle in byte by byte, and for
a body shorter than its Content-Length: a few hundred such connections (slowloris) stay open
however long they like. ``GuardedHttpToolsProtocol`` adds, per connection:

- ``header_timeout``: a new connection, and a request once its first byte arrived, has this long
  to deliver its complete headers (an idle new connection is closed; a started request gets 408);
- ``body_timeout`` and ``read_timeout``: a body must be complete within ``body_timeout`` of its
  headers, with no gap between two reads longer than ``read_timeout`` (408, connection closed).
  Time during which the server itself does not read (flow control: the app has not taken what
  came) does not count against the client;
- ``max_header_bytes``: a request line and headers larger than this get 431;
- ``max_connections``: a connection past this many open ones in the process is answered 503
  and closed at once, so idle sockets cannot pile up without bound.

A deadline costs one timer per connection (none per request once a request arrives whole in one
read), armed only while the server waits for the client. When a body times out while the app
reads it, the app sees the client as gone (``routing.responses.read_body`` makes that a 499).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tollway.config import ConnectionLimits

_HEADERS: Final = "headers"
_BODY: Final = "body"


def _response(status: str, message: str, extra: str = "") -> bytes:
    body = msgspec.json.encode({"error": {"message": message, "type": "invalid_request_error",
                                          "code": status.split(" ", 1)[1].lower().replace(" ", "_")}})
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\n\r\n").encode("latin-1") + body


TIMEOUT_408: Final = _response("408 Request Timeout", "The client took too long to send its request.")
TOO_LARGE_431: Final = _response("431 Request Header Fields Too Large", "The request's headers are too large.")
BUSY_503: Final = _response("503 Service Unavailable", "The server has too many open connections; retry shortly.",
                            "retry-after: 1\r\n")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``ConnectionLimits`` (see the module doc). Built by
    uvicorn through ``functools.partial(GuardedHttpToolsProtocol, limits=...)``."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._phase: str | None = None  # what the server waits for from the client: headers, a body, nothing
        self._deadline = 0.0  # the phase's own deadline (monotonic)
        self._last_read = 0.0
        self._header_bytes = 0
        self._started = False  # a byte of the current request arrived
        self._guard: asyncio.TimerHandle | None = None
        self._refused = False

    # the connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            transport.write(BUSY_503)
            transport.close()
            return
        super().connection_made(transport)
        self._wait_for(_HEADERS, self.limits.header_timeout)
        self._started = False
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._phase = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._phase is None and (self.cycle is None or self.cycle.response_complete):
            self._wait_for(_HEADERS, self.limits.header_timeout)  # bytes between requests: one is due
        self._last_read = self.loop.time()
        if self._phase == _HEADERS:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._phase == _HEADERS and self._header_bytes > self.limits.max_header_bytes \
                and not self.transport.is_closing():
            self._refuse(TOO_LARGE_431)
            return
        if self._phase is None:
            self._disarm()
        elif self._guard is None:
            self._arm()

    # the parser's events ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase is None:  # a request after a keep-alive pause: its headers are due in time
            self._wait_for(_HEADERS, self.limits.header_timeout)
        self._started = True

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._wait_for(_BODY, self.limits.body_timeout)  # ends at once for a request without a body

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = None
        self._started = False

    # the guard -----------------------------------------------------------------------------------

    def _wait_for(self, phase: str, within: float) -> None:
        now = self.loop.time()
        self._phase, self._deadline, self._last_read = phase, now + within, now
        self._header_bytes = 0

    def _due(self) -> float:
        if self._phase == _BODY:
            return min(self._deadline, self._last_read + self.limits.read_timeout)
        return self._deadline

    def _arm(self) -> None:
        self._disarm()
        self._guard = self.loop.call_at(self._due(), self._check)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _check(self) -> None:
        self._guard = None
        if self._phase is None or self.transport is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the server is not reading: the wait is not the client's
            self._deadline = max(self._deadline, now + self.limits.read_timeout)
            self._last_read = now
            self._arm()
            return
        if now < self._due():
            self._arm()
            return
        # too slow: a request begun and not answered yet gets a 408; otherwise the connection just closes
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        unanswered_body = self._phase == _BODY and answering and not cycle.response_started
        begun_request = self._phase == _HEADERS and self._started and not answering
        self._refuse(TIMEOUT_408 if unanswered_body or begun_request else None)

    def _refuse(self, response: bytes | None) -> None:
        """Answer ``response`` (if any) and close; a request the app is reading sees the client gone."""
        self._disarm()
        self._phase = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() says http.disconnect, its send() is dropped
            cycle.message_event.set()
        if response is not None:
            self.transport.write(response)
        self.transport.close()
