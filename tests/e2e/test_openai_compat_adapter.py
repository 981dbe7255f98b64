"""The shared OpenAI-compatible adapter's canonical path (used when the caller's dialect differs
from the upstream's), against the fake upstream over real HTTP: requests it encodes must pass the
OpenAI spec, and what it decodes must match what the upstream sent."""

from __future__ import annotations

import json

import pytest

from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import (
    ChatRequest,
    Finish,
    ImageBlock,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    StreamStart,
    TextBlock,
    TextDelta,
    Tool,
    ToolCallBlock,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResultBlock,
    UsageReport,
)
from tollway.core.errors import UpstreamError, UpstreamTimeout
from tollway.providers import deepseek, openai
from tollway.providers.base import ProviderContext
from tollway.providers.http import Timeouts
from tollway.providers.media import MediaFetcher, MediaPolicy

CRED = Credential(id="c1", secret=UPSTREAM_SECRET)
TOOL = Tool(name="lookup", description="look it up",
            parameters={"type": "object", "properties": {"q": {"type": "string"}}})


def request(**kw: object) -> ChatRequest:
    messages = (
        Message(role="system", content=(TextBlock(text="be exact"),)),
        Message(role="user", content=(TextBlock(text="what is this?"), ImageBlock(url="data:image/png;base64,AAAA"))),
        Message(role="assistant", content=(ReasoningBlock(text="hmm"), ToolCallBlock(id="call_a", name="lookup",
                                                                                      arguments='{"q": "x"}'))),
        Message(role="tool", content=(ToolResultBlock(tool_call_id="call_a", content=(TextBlock(text="an owl"),)),)),
    )
    base: dict[str, object] = {"model": "public-name", "messages": messages, "tools": (TOOL,),
                               "tool_choice": ToolChoice(mode="required", name="lookup"), "max_tokens": 64,
                               "temperature": 0.5, "stop": ("END",), "seed": 3}
    base.update(kw)
    return ChatRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def provider(fake: FakeOpenAI):  # type: ignore[no-untyped-def]
    p = openai.build(ProviderConfig(name="openai", kind="openai", base_url=fake.base_url, credentials=(CRED,)),
                     ProviderContext(timeouts=Timeouts(connect=2, first_byte=1.0, idle=1.0),
                                     media=MediaFetcher(MediaPolicy())))
    yield p


async def test_complete_encodes_a_spec_valid_request_and_decodes_the_answer(provider, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    fake.script("adapter-model", Behavior(text="An owl.", reasoning="It hoots."))
    resp = await provider.complete(request(), upstream_model="adapter-model", credential=CRED)
    await provider.close()
    sent = fake.seen("adapter-model")[-1]
    assert sent.authorization == f"Bearer {UPSTREAM_SECRET}"
    body = sent.body
    assert body["model"] == "adapter-model" and "stream" not in body
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body  # the OpenAI quirk
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert body["messages"][1]["content"][1] == image
    assert body["messages"][2]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"q": "x"}'}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "call_a", "content": "an owl"}
    assert resp.content == (ReasoningBlock(text="It hoots."), TextBlock(text="An owl."))
    assert resp.usage.input_tokens == 11 and resp.usage.output_tokens == 2 and resp.usage.cached_tokens == 3


async def test_stream_decodes_text_reasoning_tools_and_usage(provider, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    fake.script("adapter-stream", Behavior(text="", reasoning="think first", tool_calls=[("lookup", '{"q": "owls"}')]))
    events = [e async for batch in provider.stream(request(stream=True), upstream_model="adapter-stream",
                                                   credential=CRED) for e in batch]
    await provider.close()
    assert fake.seen("adapter-stream")[-1].body["stream_options"] == {"include_usage": True}
    assert isinstance(events[0], StreamStart)
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "think first"
    assert [e for e in events if isinstance(e, ToolCallStart)] == [ToolCallStart(index=0, id="call_0", name="lookup")]
    assert json.loads("".join(e.arguments for e in events if isinstance(e, ToolCallDelta))) == {"q": "owls"}
    assert [e.reason for e in events if isinstance(e, Finish)] == ["tool_calls"]
    usage = [e.usage for e in events if isinstance(e, UsageReport)]
    assert len(usage) == 1 and usage[0].reasoning_tokens == 2
    assert not [e for e in events if isinstance(e, TextDelta)]


async def test_stream_cut_short_raises(provider, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    fake.script("adapter-cut", Behavior(text="a b c d", drop_after=2))
    with pytest.raises(UpstreamError, match="broke|before it finished"):
        async for _ in provider.stream(request(stream=True), upstream_model="adapter-cut", credential=CRED):
            pass
    await provider.close()


async def test_errors_and_timeouts_map_to_tollway_errors(provider, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    fake.script("adapter-400", Behavior(status=400, error_message="bad temperature", echo_secret_in_error=True))
    with pytest.raises(UpstreamError) as exc:
        await provider.complete(request(), upstream_model="adapter-400", credential=CRED)
    assert exc.value.http_status == 400 and "bad temperature" in exc.value.message
    assert UPSTREAM_SECRET not in exc.value.message
    fake.script("adapter-slow", Behavior(headers_delay=2.0))
    with pytest.raises(UpstreamTimeout):
        await provider.complete(request(), upstream_model="adapter-slow", credential=CRED)
    await provider.close()


async def test_deepseek_quirks_rename_and_drop(fake: FakeOpenAI) -> None:
    p = deepseek.build(ProviderConfig(name="deepseek", kind="deepseek", base_url=fake.base_url, credentials=(CRED,)),
                       ProviderContext(timeouts=Timeouts(), media=MediaFetcher(MediaPolicy())))
    fake.script("deepseek-chat", Behavior(text="ok"))
    wire = {"model": "deepseek-chat", "max_completion_tokens": 5, "seed": 1}
    assert p.adapt(wire) == ["seed"]
    assert wire == {"model": "deepseek-chat", "max_tokens": 5}
    await p.complete(request(), upstream_model="deepseek-chat", credential=CRED)
    await p.close()
    body = fake.seen("deepseek-chat")[-1].body
    assert body["max_tokens"] == 64 and "seed" not in body and "max_completion_tokens" not in body


async def test_an_error_frame_mid_stream_raises_redacted(provider, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    fake.script("adapter-errframe", Behavior(text="a b c d", error_in_stream_after=2))
    with pytest.raises(UpstreamError) as exc:
        async for _ in provider.stream(request(stream=True), upstream_model="adapter-errframe", credential=CRED):
            pass
    await provider.close()
    assert "overloaded mid-stream" in exc.value.message and UPSTREAM_SECRET not in exc.value.message


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini", "bedrock", "deepseek"])
async def test_every_adapter_sends_through_the_transport_its_context_gives(kind: str) -> None:
    """The transport seam: ``ProviderContext.transport`` makes every adapter's HTTP session, so a
    test (or an operator's proxying connector) replaces the network under any provider."""
    from tollway.providers.h1 import Pool
    from tollway.providers.http import tcp_transport
    from tollway.providers.kinds import build_provider

    made: list[Pool] = []

    def recording(timeouts: Timeouts, max_connections: int) -> Pool:
        session = tcp_transport(timeouts, max_connections)
        made.append(session)
        return session

    ctx = ProviderContext(timeouts=Timeouts(connect=0.5, first_byte=0.5, idle=0.5), media=MediaFetcher(MediaPolicy()),
                          transport=recording)
    extra = {"region": "us-east-1"} if kind == "bedrock" else {}
    config = ProviderConfig(name=kind, kind=kind, base_url="http://127.0.0.1:9", options=extra,
                            credentials=(Credential(id="c", secret="s", extra={"access_key_id": "AKIDEXAMPLE"}),))
    adapter = build_provider(config, ctx)
    with pytest.raises(UpstreamError):  # nothing listens on port 9: the call fails, through our session
        await adapter.complete(request(tools=(), tool_choice=None), upstream_model="m",
                               credential=config.credentials[0])
    await adapter.close()
    assert len(made) == 1 and made[0].closed
