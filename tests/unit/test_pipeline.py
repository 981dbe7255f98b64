"""The request pipeline on its own: a real Gateway (no database work), a scripted provider, the
OpenAI and Anthropic codecs, and an ASGI peer that records every message the response sends.

What it pins: one client write per upstream read on a translated stream; an attempt that fails
before its first events is retried on the next credential and both attempts are logged; an error
after the first events is the dialect's in-stream frame; every attempt failing is one error that
names them all; the credential is released and one log row written on every path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.requests import Request

from tollway.auth.keys import Authenticator, hash_secret
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import (
    ChatRequest,
    ChatResponse,
    Finish,
    StreamEvent,
    StreamStart,
    TextBlock,
    TextDelta,
    Usage,
    UsageReport,
)
from tollway.core.errors import AllUpstreamsFailed, UpstreamError
from tollway.core.names import DIALECT_ANTHROPIC, DIALECT_OPENAI
from tollway.core.request_log import RequestLog
from tollway.dialects.anthropic.front import AnthropicCodec
from tollway.dialects.city.front import CityCodec
from tollway.dialects.openai.errors import openai_error_body
from tollway.dialects.openai.front import OpenAICodec
from tollway.providers import echo
from tollway.providers.sse import SSEEvent
from tollway.routing.catalog import Catalog
from tollway.routing.gateway import Gateway, GatewayOptions
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.pools import CredentialPool, PoolOptions
from tollway.routing.responses import EventStreamResponse
from tollway.store.db import create_engine

ADMIN = "pipeline-test-admin-secret"
CREDENTIALS = (Credential(id="c1", secret="s1"), Credential(id="c2", secret="s2"))


class Script:
    """What the provider does, per credential: the batches of its stream, or an error raised
    before the first batch (``fail``) or after it (``break_after``)."""

    def __init__(self, batches: list[list[StreamEvent]], *, fail: set[str] | None = None,
                 break_after: bool = False) -> None:
        self.batches = batches
        self.fail = fail or set()
        self.break_after = break_after
        self.closed = 0


class ScriptedProvider:
    name = "echo"

    def __init__(self, script: Script) -> None:
        self.script = script

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        return []

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        if credential.id in self.script.fail:
            raise UpstreamError("refused", provider=self.name, upstream_status=500)
        return ChatResponse(id="r", model=upstream_model, created=1, content=(TextBlock(text="hi"),),
                            finish_reason="stop", usage=Usage(input_tokens=3, output_tokens=1))

    async def stream(self, req: ChatRequest, *, upstream_model: str,
                     credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        try:
            if credential.id in self.script.fail:
                raise UpstreamError(f"{credential.id} refused", provider=self.name, upstream_status=500)
            for i, batch in enumerate(self.script.batches):
                yield batch
                if self.script.break_after and i == 0:
                    raise UpstreamError("upstream stream broke", provider=self.name)
        finally:
            self.script.closed += 1

    async def close(self) -> None:
        return None


class FakeUpstream:
    """An open upstream SSE body (``providers.http.UpstreamStream``'s reading side)."""

    def __init__(self, reads: list[list[SSEEvent]]) -> None:
        self.reads = reads
        self.ended = False
        self.closed = False
        self.finished = False

    async def batches(self) -> AsyncIterator[list[SSEEvent]]:
        for read in self.reads:
            yield read

    def close(self) -> None:
        self.closed = True

    def end(self) -> None:
        self.finished, self.closed = self.ended, not self.ended


class ForwardingProvider(ScriptedProvider):
    """An OpenAI-wire upstream: the OpenAI dialect's requests are forwarded to it as bytes."""

    wires = frozenset({DIALECT_OPENAI})

    def __init__(self, script: Script, reads: dict[str, list[list[SSEEvent]]]) -> None:
        super().__init__(script)
        self.reads = reads
        self.opened: dict[str, FakeUpstream] = {}

    def speaks(self, wire: str, upstream_model: str) -> bool:
        return wire in self.wires

    def adapt(self, body: dict[str, Any], wire: str) -> list[str]:
        return []

    async def forward(self, body: bytes, *, wire: str, credential: Credential, headers: Any = None) -> bytes:
        raise AssertionError("not used")

    async def forward_stream(self, body: bytes, *, wire: str, credential: Credential,
                             headers: Any = None) -> FakeUpstream:
        self.opened[credential.id] = FakeUpstream(self.reads[credential.id])
        return self.opened[credential.id]


class Builder:
    def __init__(self, script: Script, provider: ScriptedProvider | None = None) -> None:
        self.script = script
        self.made = provider

    def configs(self, env: Mapping[str, str]) -> dict[str, ProviderConfig]:
        return {"echo": ProviderConfig(name="echo", kind="echo", credentials=CREDENTIALS)}

    def provider(self, config: ProviderConfig) -> ScriptedProvider:
        return self.made or ScriptedProvider(self.script)

    def pool(self, config: ProviderConfig) -> CredentialPool:
        return CredentialPool(config.name, config.credentials, options=PoolOptions(max_inflight=1, queue_size=0))

    def catalog(self, configs: Mapping[str, ProviderConfig]) -> Catalog:
        return Catalog([echo.SPEC], configs.values())


class Rows:
    def __init__(self) -> None:
        self.rows: list[RequestLog] = []

    def add(self, row: RequestLog) -> None:
        self.rows.append(row)


class Peer:
    """An ASGI client: the request body, then silence; records what the response sends."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent: list[dict[str, Any]] = []
        self._read = False

    async def receive(self) -> dict[str, Any]:
        if not self._read:
            self._read = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await asyncio.Event().wait()  # never disconnects
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def writes(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body" and m["body"]]


def _gateway(tmp_path: Path, script: Script, provider: ScriptedProvider | None = None) -> tuple[Gateway, Rows]:
    rows = Rows()
    gw = Gateway(engine=create_engine(f"sqlite+aiosqlite:///{tmp_path / 't.db'}"),
                 auth=Authenticator(hash_secret(ADMIN), []), builder=Builder(script, provider), base_env={},
                 logs=rows, options=GatewayOptions(max_attempts=3))  # type: ignore[arg-type]
    return gw, rows


def _request(peer: Peer, path: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": path, "headers": [
        (b"authorization", f"Bearer {ADMIN}".encode()), (b"content-type", b"application/json")],
        "query_string": b""}, peer.receive)


BATCHES: list[list[StreamEvent]] = [
    [StreamStart(id="s1", model="echo", created=1), TextDelta(text="a"), TextDelta(text="b"), TextDelta(text="c")],
    [TextDelta(text="d"), TextDelta(text="e"), Finish(reason="stop"),
     UsageReport(usage=Usage(input_tokens=7, output_tokens=5))],
]


async def _serve(gw: Gateway, codec: Any, body: dict[str, Any], path: str) -> tuple[Peer, Any]:
    peer = Peer(msgspec.json.encode(body))
    call = gw.begin("r1", path, codec.dialect)
    response = await ChatPipeline(gw).serve(_request(peer, path), call, codec)
    if isinstance(response, EventStreamResponse):
        await response({"type": "http"}, peer.receive, peer.send)
    return peer, call


OPENAI_BODY = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {"model": "echo", "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("codec", "body", "path"), [
    (OpenAICodec(DIALECT_OPENAI, openai_error_body), OPENAI_BODY, "/v1/chat/completions"),
    (AnthropicCodec(), ANTHROPIC_BODY, "/v1/messages"),
])
async def test_a_translated_stream_writes_once_per_upstream_read(tmp_path: Path, codec: Any, body: dict[str, Any],
                                                                  path: str) -> None:
    script = Script(BATCHES)
    gw, rows = _gateway(tmp_path, script)
    peer, _ = await _serve(gw, codec, body, path)
    writes = peer.writes()
    assert len(writes) == 3  # one per upstream read, then the stream's tail
    text = b"".join(writes)
    assert b'"a"' in text and b'"e"' in text
    assert (b"data: [DONE]" in text) if codec.dialect == DIALECT_OPENAI else (b"event: message_stop" in text)
    [row] = rows.rows
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.credential) == (200, 7, 5, "c1")
    assert row.ttft_ms is not None and row.stream and row.dialect == codec.dialect
    assert script.closed == 1 and (await gw.pools["echo"].status())["in_flight"]["c1"] == 0


async def test_a_stream_failing_before_its_first_events_is_tried_on_the_next_credential(tmp_path: Path) -> None:
    script = Script(BATCHES, fail={"c1"})
    gw, rows = _gateway(tmp_path, script)
    peer, _ = await _serve(gw, AnthropicCodec(), ANTHROPIC_BODY, "/v1/messages")
    assert b"message_stop" in b"".join(peer.writes()) and b"error" not in b"".join(peer.writes())
    [row] = rows.rows
    assert row.status == 200 and row.credential == "c2"
    attempts = msgspec.json.decode(row.attempts or "[]")
    assert [(a["credential"], a["status"]) for a in attempts] == [("c1", 502), ("c2", 200)]
    status = (await gw.pools["echo"].status())["in_flight"]
    assert status == {"c1": 0, "c2": 0}


async def test_an_error_after_the_first_events_is_the_dialects_in_stream_frame(tmp_path: Path) -> None:
    script = Script(BATCHES, break_after=True)
    gw, rows = _gateway(tmp_path, script)
    peer, _ = await _serve(gw, AnthropicCodec(), ANTHROPIC_BODY, "/v1/messages")
    text = b"".join(peer.writes())
    assert text.count(b"event: error") == 1 and b"upstream stream broke" in text and b"message_stop" not in text
    assert b'"request_id":"r1"' in text  # the error event names the request, as the headers do
    [row] = rows.rows
    assert row.status == 502 and row.error_code == "provider_error" and script.closed == 1
    assert (await gw.pools["echo"].status())["in_flight"]["c1"] == 0


async def test_every_attempt_failing_is_one_error_naming_them_all(tmp_path: Path) -> None:
    script = Script(BATCHES, fail={"c1", "c2"})
    gw, rows = _gateway(tmp_path, script)
    body = {**OPENAI_BODY, "stream": False}
    peer = Peer(msgspec.json.encode(body))
    call = gw.begin("r1", "/v1/chat/completions", DIALECT_OPENAI)
    with pytest.raises(AllUpstreamsFailed) as info:
        await ChatPipeline(gw).serve(_request(peer, "/v1/chat/completions"), call,
                                     OpenAICodec(DIALECT_OPENAI, openai_error_body))
    err = info.value
    assert err.http_status == 502 and len(err.errors) == 2
    assert "echo via echo/c1: 502" in err.message and "echo via echo/c2: 502" in err.message
    call.finish(err.http_status, err)  # what the route guard does
    [row] = rows.rows
    assert row.status == 502 and len(msgspec.json.decode(row.attempts or "[]")) == 2
    assert (await gw.pools["echo"].status())["in_flight"] == {"c1": 0, "c2": 0}


async def test_a_whole_answer_is_encoded_by_the_codec_and_billed_from_its_usage(tmp_path: Path) -> None:
    gw, rows = _gateway(tmp_path, Script(BATCHES))
    peer = Peer(msgspec.json.encode({**ANTHROPIC_BODY, "stream": False}))
    call = gw.begin("r1", "/v1/messages", DIALECT_ANTHROPIC)
    response = await ChatPipeline(gw).serve(_request(peer, "/v1/messages"), call, AnthropicCodec())
    answer = msgspec.json.decode(response.body)  # type: ignore[union-attr]
    assert answer["type"] == "message" and [(c["type"], c["text"]) for c in answer["content"]] == [("text", "hi")]
    [row] = rows.rows  # finished before the first byte went out
    assert (row.status, row.prompt_tokens, row.completion_tokens) == (200, 3, 1)


async def test_a_forwarded_stream_that_reports_an_error_before_any_event_is_tried_on_the_next_credential(
        tmp_path: Path) -> None:
    """First-event retry for pass-through streams too: the upstream answered 200, then an error
    frame before anything the client would get: another credential, not an in-stream error."""
    chunk = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,' \
            b'"delta":{"content":"hi"},"finish_reason":null}]}'
    provider = ForwardingProvider(Script([]), {
        "c1": [[SSEEvent(event=None, data=b'{"error":{"message":"overloaded"}}')]],
        "c2": [[SSEEvent(event=None, data=chunk)], [SSEEvent(event=None, data=b"[DONE]")]]})
    gw, rows = _gateway(tmp_path, Script([]), provider)
    peer, _ = await _serve(gw, OpenAICodec(DIALECT_OPENAI, openai_error_body), OPENAI_BODY, "/v1/chat/completions")
    text = b"".join(peer.writes())
    assert b'"hi"' in text and text.endswith(b"data: [DONE]\n\n") and b"overloaded" not in text
    assert provider.opened["c1"].closed and provider.opened["c2"].finished
    [row] = rows.rows
    attempts = msgspec.json.decode(row.attempts or "[]")
    assert [(a["credential"], a["status"]) for a in attempts] == [("c1", 502), ("c2", 200)] and row.status == 200


async def test_a_refusal_after_a_retried_failure_is_one_error_naming_both(tmp_path: Path) -> None:
    """c1 fails with a 500 (retried), c2 with a 400 (the request's fault: not retried): the
    caller gets the 400, and the message names both attempts."""
    class TwoWays(ScriptedProvider):
        async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
            status = 500 if credential.id == "c1" else 400
            raise UpstreamError(f"{credential.id} said {status}", provider=self.name, upstream_status=status)

    gw, rows = _gateway(tmp_path, Script([]), TwoWays(Script([])))
    peer = Peer(msgspec.json.encode({**OPENAI_BODY, "stream": False}))
    call = gw.begin("r1", "/v1/chat/completions", DIALECT_OPENAI)
    with pytest.raises(AllUpstreamsFailed) as info:
        await ChatPipeline(gw).serve(_request(peer, "/v1/chat/completions"), call,
                                     OpenAICodec(DIALECT_OPENAI, openai_error_body))
    assert info.value.http_status == 400 and info.value.message.startswith("c2 said 400")
    assert "echo via echo/c1: 502" in info.value.message and "echo via echo/c2: 400" in info.value.message


@pytest.mark.parametrize(("codec", "body", "frames"), [
    (OpenAICodec(DIALECT_OPENAI, openai_error_body), OPENAI_BODY, 7),  # the role chunk, five deltas, the finish
    (CityCodec(stream=True), {"model": "echo", "prompt": "hi"}, 6),  # start, then five text deltas
])
async def test_a_stream_without_usage_is_billed_for_the_frames_the_client_got(
        tmp_path: Path, codec: Any, body: dict[str, Any], frames: int) -> None:
    gw, rows = _gateway(tmp_path, Script([BATCHES[0], BATCHES[1][:3]]))  # no usage report
    _, call = await _serve(gw, codec, body, "/v1/x")
    [row] = rows.rows
    assert row.status == 200 and call.produced == frames  # what settlement bills a cut stream without usage
