"""The guarded event stream: every way a stream can end releases the credential, closes the
upstream and writes exactly one log row with the right status. And the error response's headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tollway.core.catalog import Credential
from tollway.core.errors import (
    AuthenticationFailed,
    InsufficientCredits,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    TollwayError,
    UpstreamError,
)
from tollway.core.request_log import RequestLog
from tollway.dialects.anthropic.errors import anthropic_error_body
from tollway.dialects.openai.errors import openai_error_body
from tollway.routing.call import Call
from tollway.routing.pools import CredentialPool, PoolOptions
from tollway.routing.responses import error_response, guarded_stream


class _Logs:
    def __init__(self) -> None:
        self.rows: list[RequestLog] = []

    def add(self, row: RequestLog) -> None:
        self.rows.append(row)


class _Gateway:
    def __init__(self) -> None:
        self.logs = _Logs()


async def _call() -> tuple[Call, CredentialPool, _Gateway]:
    """A call holding a lease on the pool's one credential, as the pipeline leaves it."""
    gw = _Gateway()
    call = Call(gw.logs, RequestLog(id="r1", created_at=0.0, path="/v1/chat/completions", dialect="openai"))
    pool = CredentialPool("p", (Credential(id="c1"),), options=PoolOptions(max_inflight=1, queue_size=0))
    call.lease, call.pool = await pool.acquire(), pool
    assert call.credential == Credential(id="c1") and await _in_flight(pool) == 1
    return call, pool, gw


async def _in_flight(pool: CredentialPool) -> int:
    return (await pool.status())["in_flight"]["c1"]  # type: ignore[index,no-any-return]


async def _released(call: Call, pool: CredentialPool) -> bool:
    """The call gave its slot back: nothing in flight, and the next call gets the credential."""
    if call.lease is not None or await _in_flight(pool) != 0:
        return False
    lease = await pool.acquire()  # the pool has a cap of 1 and no queue: refused if still held
    await pool.release(lease)
    return True


def _frame(err: TollwayError) -> bytes:
    return f"error:{err.code}".encode()


class _Client:
    """An ASGI peer: records what is sent; disconnects when told to."""

    def __init__(self, *, fail_on_start: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.fail_on_start = fail_on_start

    async def send(self, message: dict[str, Any]) -> None:
        if self.fail_on_start and message["type"] == "http.response.start":
            raise OSError("connection reset")
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def test_normal_end() -> None:
    call, pool, gw = await _call()
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    async def close() -> None:
        closed.append(True)

    client = _Client()
    await guarded_stream(chunks(), call, _frame, close)({}, client.receive, client.send)
    assert client.body() == b"ab" and closed == [True]
    assert [r.status for r in gw.logs.rows] == [200]
    assert await _released(call, pool)


@pytest.mark.parametrize(("exc", "status", "frame"), [
    (UpstreamError("cut", provider="p"), 502, b"error:provider_error"),
    (ValueError("bug"), 500, b"error:internal_error"),
])
async def test_failure_mid_stream_becomes_an_error_frame(exc: Exception, status: int, frame: bytes) -> None:
    call, pool, gw = await _call()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        raise exc

    async def close() -> None:
        return None

    client = _Client()
    await guarded_stream(chunks(), call, _frame, close)({}, client.receive, client.send)
    assert client.body() == b"a" + frame
    assert [r.status for r in gw.logs.rows] == [status]
    assert await _released(call, pool)


async def test_client_gone_mid_stream_cancels_and_closes_at_once() -> None:
    call, pool, gw = await _call()
    closed: list[bool] = []
    stalled = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        stalled.set()
        await asyncio.sleep(3600)  # an upstream that never sends again
        yield b"never"

    async def close() -> None:
        closed.append(True)

    client = _Client()
    task = asyncio.create_task(guarded_stream(chunks(), call, _frame, close)({}, client.receive, client.send))
    await stalled.wait()
    client.gone.set()
    await asyncio.wait_for(task, 1.0)
    assert closed == [True] and client.body() == b"a"
    assert [(r.status, r.note) for r in gw.logs.rows] == [(499, "client disconnected")]
    assert await _released(call, pool)


async def test_client_gone_before_the_first_byte_still_cleans_up() -> None:
    call, pool, gw = await _call()
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"

    async def close() -> None:
        closed.append(True)

    client = _Client(fail_on_start=True)
    with pytest.raises(OSError):
        await guarded_stream(chunks(), call, _frame, close)({}, client.receive, client.send)
    assert closed == [True]
    assert [r.status for r in gw.logs.rows] == [499]
    assert await _released(call, pool)


@pytest.mark.parametrize("err, should_retry", [
    (AuthenticationFailed("bad key"), "false"),  # Claude Code retried this one for minutes
    (InvalidRequest("bad body"), "false"),
    (ModelNotFound("no such model"), "false"),
    (PayloadTooLarge("too big"), "false"),
    (InsufficientCredits("top up"), "false"),
    (QuotaExceeded("spent for the month", code="insufficient_quota"), "false"),  # a 429 no retry mends
    (RateLimited("slow down", retry_after=2.5), "true"),
    (UpstreamError("upstream 429", provider="p", upstream_status=429), "true"),
    (UpstreamError("upstream down", provider="p", upstream_status=503), None),  # a 5xx: the client's own rule
    (InternalError("bug"), None),
])
def test_error_headers_say_whether_a_retry_may_help(err: TollwayError, should_retry: str | None) -> None:
    response = error_response(err, anthropic_error_body)
    assert response.headers.get("x-should-retry") == should_retry
    assert "request-id" not in response.headers and json.loads(response.body)["request_id"] is None
    named = error_response(err, anthropic_error_body, request_id="req_1")
    assert named.headers["request-id"] == "req_1" and json.loads(named.body)["request_id"] == "req_1"
    other = error_response(err, openai_error_body, request_id="req_1")  # no request_id in OpenAI's envelope
    assert "request_id" not in json.loads(other.body)
    if isinstance(err, RateLimited):
        assert response.headers["retry-after"] == "3"
