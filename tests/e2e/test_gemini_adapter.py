"""The Gemini adapter against the fake Gemini server over real HTTP on loopback: every request it
sends must pass the fake's GenerateContentRequest checks, and what it decodes must match what the
fake sent (text, thoughts, parallel function calls, signatures, finish reasons, usage, errors)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.fakes.gemini_server import GEMINI_KEY, Behavior, FakeGemini
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import (
    Block,
    ChatRequest,
    Finish,
    FinishReason,
    ImageBlock,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextBlock,
    TextDelta,
    Tool,
    ToolCallBlock,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResultBlock,
    Usage,
    UsageReport,
)
from tollway.core.errors import InvalidRequest, UpstreamError
from tollway.providers import gemini
from tollway.providers.base import ProviderContext
from tollway.providers.http import Timeouts
from tollway.providers.media import MediaFetcher, MediaPolicy

CRED = Credential(id="g1", secret=GEMINI_KEY)
WEATHER = Tool(name="weather", description="current weather",
               parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                           "additionalProperties": False})
PNG = b"\x89PNG\r\n\x1a\n-fake-image"


@pytest.fixture(scope="module")
def gfake() -> Iterator[FakeGemini]:
    server = FakeGemini()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_spec_errors(gfake: FakeGemini) -> Iterator[None]:
    before = len(gfake.spec_errors)
    yield
    assert gfake.spec_errors[before:] == []


def make(fake: FakeGemini, media: MediaFetcher) -> gemini.GeminiProvider:
    config = ProviderConfig(name="gemini", kind="gemini", base_url=fake.base_url, credentials=(CRED,))
    return gemini.build(config, ProviderContext(timeouts=Timeouts(connect=2, first_byte=2.0, idle=2.0), media=media))


@pytest.fixture
async def provider(gfake: FakeGemini) -> AsyncIterator[gemini.GeminiProvider]:
    media = MediaFetcher(MediaPolicy(allow_private=True))  # the fake serves images on loopback
    p = make(gfake, media)
    yield p
    await p.close()
    await media.close()


def ask(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="public-name", messages=messages, **kw)


def user(text: str) -> Message:
    return Message(role="user", content=(TextBlock(text=text),))


async def collect(p: gemini.GeminiProvider, r: ChatRequest, model: str,
                  credential: Credential = CRED) -> list[StreamEvent]:
    return [ev async for batch in p.stream(r, upstream_model=model, credential=credential) for ev in batch]


def blocks_of(events: list[StreamEvent]) -> list[Block]:
    """What a client makes of a stream, Anthropic's way: a signature closes the reasoning block
    it arrives in (or stands alone when no reasoning text is open); tool calls come last."""
    out: list[Block] = []
    reasoning = ""
    calls: dict[int, list[str]] = {}
    for ev in events:
        if isinstance(ev, ReasoningDelta):
            reasoning += ev.text
            if ev.signature:
                out.append(ReasoningBlock(text=reasoning, signature=ev.signature))
                reasoning = ""
            continue
        if reasoning:
            out.append(ReasoningBlock(text=reasoning))
            reasoning = ""
        if isinstance(ev, TextDelta):
            last = out[-1] if out else None
            if isinstance(last, TextBlock):
                out[-1] = TextBlock(text=last.text + ev.text)
            else:
                out.append(TextBlock(text=ev.text))
        elif isinstance(ev, ToolCallStart):
            calls[ev.index] = [ev.id, ev.name, ""]
        elif isinstance(ev, ToolCallDelta):
            calls[ev.index][2] += ev.arguments
    if reasoning:
        out.append(ReasoningBlock(text=reasoning))
    return out + [ToolCallBlock(id=i, name=n, arguments=a) for i, n, a in calls.values()]


# --- text ------------------------------------------------------------------------------------------


async def test_complete_sends_a_valid_request_with_the_key_in_a_header(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-text", Behavior(text="Paris is the capital.", prompt_tokens=9))
    resp = await provider.complete(ask(user("capital of France?"), max_tokens=50, temperature=0.3, top_k=20),
                                   upstream_model="g-text", credential=CRED)
    seen = gfake.seen("g-text")[-1]
    assert seen.method == "generateContent" and seen.api_key == GEMINI_KEY and "key" not in seen.query
    assert seen.body == {"contents": [{"role": "user", "parts": [{"text": "capital of France?"}]}],
                         "generationConfig": {"maxOutputTokens": 50, "temperature": 0.3, "topK": 20}}
    assert resp.content == (TextBlock(text="Paris is the capital."),)
    assert resp.finish_reason == "stop" and resp.model == "g-text" and resp.id.startswith("fake-resp-")
    assert resp.usage == Usage(input_tokens=9, output_tokens=4)


async def test_stream_text_arrives_in_order_and_ends_with_finish_and_usage(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-stream", Behavior(text="one two three four", cached_tokens=5, prompt_tokens=30))
    events = await collect(provider, ask(user("count")), "g-stream")
    assert gfake.seen("g-stream")[-1].method == "streamGenerateContent"
    assert gfake.seen("g-stream")[-1].query == {"alt": "sse"}
    assert isinstance(events[0], StreamStart) and events[0].id.startswith("fake-resp-")
    texts = [e for e in events if isinstance(e, TextDelta)]
    assert len(texts) == 4 and "".join(t.text for t in texts) == "one two three four"
    assert events[-2:] == [Finish(reason="stop"),
                           UsageReport(usage=Usage(input_tokens=30, output_tokens=4, cached_tokens=5))]


async def test_system_and_multi_turn(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-multi", Behavior(text="Blue."))
    r = ask(Message(role="system", content=(TextBlock(text="Answer in one word."),)),
            user("Sky colour?"), Message(role="assistant", content=(TextBlock(text="Blue."),)), user("And grass?"),
            stop=("\n",))
    resp = await provider.complete(r, upstream_model="g-multi", credential=CRED)
    body = gfake.seen("g-multi")[-1].body
    assert body["systemInstruction"] == {"parts": [{"text": "Answer in one word."}]}
    assert [(c["role"], c["parts"][0]["text"]) for c in body["contents"]] == [
        ("user", "Sky colour?"), ("model", "Blue."), ("user", "And grass?")]
    assert body["generationConfig"] == {"stopSequences": ["\n"]}
    assert resp.content == (TextBlock(text="Blue."),)


# --- tools -----------------------------------------------------------------------------------------


async def test_parallel_tool_calls_then_tool_results(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-tools", Behavior(text="", function_calls=[("weather", {"city": "Paris"}),
                                                               ("weather", {"city": "Rome"})]))
    first = ask(user("Weather in Paris and Rome?"), tools=(WEATHER,), tool_choice=ToolChoice(mode="required"))
    resp = await provider.complete(first, upstream_model="g-tools", credential=CRED)
    body = gfake.seen("g-tools")[-1].body
    assert body["tools"] == [{"functionDeclarations": [{"name": "weather", "description": "current weather",
                                                        "parametersJsonSchema": WEATHER.parameters}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    calls = [b for b in resp.content if isinstance(b, ToolCallBlock)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("weather", {"city": "Paris"}),
                                                                  ("weather", {"city": "Rome"})]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert resp.finish_reason == "tool_calls"

    gfake.script("g-tools", Behavior(text="Paris 20C, Rome 25C."))
    results = [Message(role="tool", content=(ToolResultBlock(tool_call_id=c.id, content=(TextBlock(text=t),)),))
               for c, t in zip(calls, ("20C", "25C"), strict=True)]
    second = ask(user("Weather in Paris and Rome?"), Message(role="assistant", content=resp.content), *results,
                 tools=(WEATHER,))
    answer = await provider.complete(second, upstream_model="g-tools", credential=CRED)
    contents = gfake.seen("g-tools")[-1].body["contents"]
    assert len(contents) == 3 and contents[2]["role"] == "user"
    assert [p["functionResponse"] for p in contents[2]["parts"]] == [
        {"name": "weather", "id": calls[0].id, "response": {"output": "20C"}},
        {"name": "weather", "id": calls[1].id, "response": {"output": "25C"}}]
    assert answer.content == (TextBlock(text="Paris 20C, Rome 25C."),) and answer.finish_reason == "stop"


async def test_stream_tool_calls_count_from_zero_and_keep_given_ids(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-stream-tools", Behavior(text="Checking.", call_ids=True, function_calls=[
        ("weather", {"city": "Oslo"}), ("weather", {"city": "Bergen"})]))
    events = await collect(provider, ask(user("Oslo and Bergen?"), tools=(WEATHER,)), "g-stream-tools")
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(s.index, s.name) for s in starts] == [(0, "weather"), (1, "weather")]
    assert all(s.id.startswith("fc-") for s in starts)
    assert [json.loads(d.arguments) for d in deltas] == [{"city": "Oslo"}, {"city": "Bergen"}]
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta(text="Checking.")]
    assert isinstance(events[-2], Finish) and events[-2].reason == "tool_calls"


# --- images ----------------------------------------------------------------------------------------


async def test_an_image_data_url_goes_inline(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-vision", Behavior(text="A tiny PNG."))
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    r = ask(Message(role="user", content=(TextBlock(text="What is this?"), ImageBlock(url=url))))
    resp = await provider.complete(r, upstream_model="g-vision", credential=CRED)
    parts = gfake.seen("g-vision")[-1].body["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == PNG
    assert resp.content == (TextBlock(text="A tiny PNG."),)


async def test_an_http_image_is_fetched_by_the_gateway_once_and_sent_inline(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    url = gfake.serve("cat.png", "image/png", PNG)
    gfake.script("g-vision-url", Behavior(text="A cat."))
    before = len(gfake.file_hits)
    r = ask(Message(role="user", content=(ImageBlock(url=url), TextBlock(text="and again:"), ImageBlock(url=url))))
    events = await collect(provider, r, "g-vision-url")
    assert gfake.file_hits[before:] == ["cat.png"]  # fetched once, though sent twice
    parts = gfake.seen("g-vision-url")[-1].body["contents"][0]["parts"]
    inline = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    assert parts == [inline, {"text": "and again:"}, inline]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "A cat."


async def test_a_refused_image_url_is_a_client_error_before_any_upstream_call(gfake: FakeGemini) -> None:
    media = MediaFetcher(MediaPolicy())  # the production policy: no loopback
    p = make(gfake, media)
    url = gfake.serve("private.png", "image/png", PNG)
    before = len(gfake.requests)
    try:
        with pytest.raises(InvalidRequest, match="refused"):
            await p.complete(ask(Message(role="user", content=(ImageBlock(url=url),))), upstream_model="g-vision",
                             credential=CRED)
    finally:
        await p.close()
        await media.close()
    assert len(gfake.requests) == before


async def test_many_image_urls_are_each_fetched_once_and_inlined_in_order(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    images = {f"many-{n}.png": PNG + bytes([n]) for n in range(6)}
    urls = [gfake.serve(name, "image/png", data) for name, data in images.items()]
    gfake.script("g-vision-many", Behavior(text="Six."))
    before = len(gfake.file_hits)
    blocks = [ImageBlock(url=u) for u in urls + urls[::-1]]
    await provider.complete(ask(Message(role="user", content=(TextBlock(text="count"), *blocks))),
                            upstream_model="g-vision-many", credential=CRED)
    assert sorted(gfake.file_hits[before:]) == sorted(images)
    parts = gfake.seen("g-vision-many")[-1].body["contents"][0]["parts"]
    sent = [base64.b64decode(p["inlineData"]["data"]) for p in parts[1:]]
    assert sent == [*images.values(), *list(images.values())[::-1]]


async def test_too_many_image_urls_are_refused_before_any_fetch_or_upstream_call(gfake: FakeGemini) -> None:
    media = MediaFetcher(MediaPolicy(allow_private=True, max_urls_per_request=3))
    p = make(gfake, media)
    urls = [gfake.serve(f"limit-{n}.png", "image/png", PNG) for n in range(4)]
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    before, hits = len(gfake.requests), len(gfake.file_hits)
    try:
        with pytest.raises(InvalidRequest, match="4 distinct media URLs") as caught:
            await p.complete(ask(Message(role="user", content=tuple(ImageBlock(url=u) for u in urls))),
                             upstream_model="g-vision", credential=CRED)
        assert caught.value.status == 400
        with pytest.raises(InvalidRequest, match="4 distinct media URLs"):
            await collect(p, ask(Message(role="user", content=tuple(ImageBlock(url=u) for u in urls))), "g-vision")
        assert len(gfake.requests) == before and len(gfake.file_hits) == hits
        # three URLs (one of them twice) and data: URLs are within the limit
        gfake.script("g-vision", Behavior(text="ok"))
        allowed = (*[ImageBlock(url=u) for u in urls[:3]], ImageBlock(url=urls[0]), ImageBlock(url=data_url))
        resp = await p.complete(ask(Message(role="user", content=allowed)), upstream_model="g-vision",
                                credential=CRED)
        assert resp.content == (TextBlock(text="ok"),)
    finally:
        await p.close()
        await media.close()


async def test_media_over_the_per_request_total_is_refused(gfake: FakeGemini) -> None:
    media = MediaFetcher(MediaPolicy(allow_private=True, max_total_bytes=2 * len(PNG) + 5))
    p = make(gfake, media)
    urls = [gfake.serve(f"total-{n}.png", "image/png", PNG) for n in range(3)]
    before = len(gfake.requests)
    try:
        with pytest.raises(InvalidRequest, match="limit per request"):
            await p.complete(ask(Message(role="user", content=tuple(ImageBlock(url=u) for u in urls))),
                             upstream_model="g-vision", credential=CRED)
    finally:
        await p.close()
        await media.close()
    assert len(gfake.requests) == before


# --- reasoning and thought signatures -------------------------------------------------------------


@pytest.mark.parametrize(("model", "kw", "thinking"), [
    ("gemini-2.0-flash", {"reasoning_effort": "high"}, None),
    ("gemini-2.0-flash", {"reasoning_budget": 2048}, None),
    ("gemini-2.5-pro", {"reasoning_budget": 50}, {"thinkingBudget": 128, "includeThoughts": True}),
    ("gemini-2.5-pro", {"reasoning_effort": "none"}, {"thinkingBudget": 128, "includeThoughts": True}),
    ("gemini-2.5-flash", {"reasoning_budget": 30000}, {"thinkingBudget": 24576, "includeThoughts": True}),
    ("gemini-2.5-flash-lite", {"reasoning_budget": 100}, {"thinkingBudget": 512, "includeThoughts": True}),
    ("gemini-2.5-flash", {"reasoning_budget": -1}, {"thinkingBudget": -1, "includeThoughts": True}),
])
async def test_the_thinking_budget_sent_fits_the_upstream_model(  # type: ignore[no-untyped-def]
        provider, gfake: FakeGemini, model: str, kw: dict[str, Any], thinking: Any) -> None:
    gfake.script(model, Behavior(text="fine"))
    r = ask(user("think?"), **kw)
    await provider.complete(r, upstream_model=model, credential=CRED)
    assert gfake.seen(model)[-1].body.get("generationConfig", {}).get("thinkingConfig") == thinking
    events = await collect(provider, r, model)
    assert gfake.seen(model)[-1].body.get("generationConfig", {}).get("thinkingConfig") == thinking
    assert events[-2] == Finish(reason="stop")
    # the fake checks each budget against its model's range (the autouse fixture asserts no spec errors)



async def test_thoughts_and_signature_round_trip_onto_the_function_call_part(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    sig = base64.b64encode(b"opaque-thought-state-1").decode()
    gfake.script("g-think", Behavior(text="", thoughts="I should check the weather.", signature=sig,
                                     function_calls=[("weather", {"city": "Lima"}), ("weather", {"city": "Cusco"})]))
    first = ask(user("Lima and Cusco?"), tools=(WEATHER,), reasoning_budget=1024)
    resp = await provider.complete(first, upstream_model="g-think", credential=CRED)
    gc = gfake.seen("g-think")[-1].body["generationConfig"]
    assert gc == {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    assert resp.content[:2] == (ReasoningBlock(text="I should check the weather."), ReasoningBlock(signature=sig))
    assert resp.usage.reasoning_tokens == 5 and resp.usage.output_tokens == 5 + 2

    gfake.script("g-think", Behavior(text="Both sunny."))
    calls = [b for b in resp.content if isinstance(b, ToolCallBlock)]
    second = ask(user("Lima and Cusco?"), Message(role="assistant", content=resp.content),
                 *[Message(role="tool", content=(ToolResultBlock(tool_call_id=c.id, content=(TextBlock(text="sun"),)),))
                   for c in calls], tools=(WEATHER,), reasoning_budget=1024)
    await provider.complete(second, upstream_model="g-think", credential=CRED)
    model_turn = gfake.seen("g-think")[-1].body["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0] == {"text": "I should check the weather.", "thought": True}
    assert model_turn["parts"][1]["thoughtSignature"] == sig
    assert model_turn["parts"][1]["functionCall"]["args"] == {"city": "Lima"}
    assert "thoughtSignature" not in model_turn["parts"][2]


async def test_a_streamed_signature_survives_a_client_folding_it_into_the_thought(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    sig = base64.b64encode(b"opaque-thought-state-2").decode()
    gfake.script("g-think-stream", Behavior(text="", thoughts="Need the weather tool.", signature=sig,
                                            function_calls=[("weather", {"city": "Quito"})]))
    events = await collect(provider, ask(user("Quito?"), tools=(WEATHER,), reasoning_effort="low"), "g-think-stream")
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert "".join(e.text for e in reasoning) == "Need the weather tool."
    assert reasoning[-1] == ReasoningDelta(signature=sig)
    blocks = blocks_of(events)
    assert blocks[0] == ReasoningBlock(text="Need the weather tool.", signature=sig)
    call = blocks[1]
    assert isinstance(call, ToolCallBlock)

    gfake.script("g-think-stream", Behavior(text="Cool and cloudy."))
    second = ask(user("Quito?"), Message(role="assistant", content=tuple(blocks)),
                 Message(role="tool", content=(ToolResultBlock(tool_call_id=call.id,
                                                               content=(TextBlock(text="14C cloudy"),)),)),
                 tools=(WEATHER,), reasoning_effort="low")
    events = await collect(provider, second, "g-think-stream")
    parts = gfake.seen("g-think-stream")[-1].body["contents"][1]["parts"]
    assert parts == [{"text": "Need the weather tool.", "thought": True},
                     {"functionCall": {"name": "weather", "args": {"city": "Quito"}, "id": call.id},
                      "thoughtSignature": sig}]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Cool and cloudy."


async def test_a_text_answer_signature_on_an_empty_part_comes_back_on_the_text(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    sig = base64.b64encode(b"opaque-thought-state-3").decode()
    gfake.script("g-sig-text", Behavior(text="Done thinking.", thoughts="Easy one.", signature=sig,
                                        signature_on_empty_part=True, thoughts_tokens=40))
    events = await collect(provider, ask(user("Easy?")), "g-sig-text")
    assert ReasoningDelta(signature=sig) in events
    assert events[-1] == UsageReport(usage=Usage(input_tokens=12, output_tokens=2 + 40, reasoning_tokens=40))
    blocks = blocks_of(events)
    assert blocks == [ReasoningBlock(text="Easy one."), TextBlock(text="Done thinking."), ReasoningBlock(signature=sig)]
    gfake.script("g-sig-text", Behavior(text="Still easy."))
    await provider.complete(ask(user("Easy?"), Message(role="assistant", content=tuple(blocks)), user("Again?")),
                            upstream_model="g-sig-text", credential=CRED)
    parts = gfake.seen("g-sig-text")[-1].body["contents"][1]["parts"]
    assert parts == [{"text": "Easy one.", "thought": True}, {"text": "Done thinking.", "thoughtSignature": sig}]


# --- finish reasons --------------------------------------------------------------------------------


@pytest.mark.parametrize(("behavior", "reason"), [
    (Behavior(text="cut off here", finish_reason="MAX_TOKENS"), "length"),
    (Behavior(text="", finish_reason="SAFETY"), "content_filter"),
    (Behavior(block_reason="PROHIBITED_CONTENT"), "content_filter"),
])
async def test_finish_reasons_complete_and_stream(provider, gfake: FakeGemini, behavior: Behavior,  # type: ignore[no-untyped-def]
                                                  reason: FinishReason) -> None:
    gfake.script("g-finish", behavior)
    resp = await provider.complete(ask(user("x")), upstream_model="g-finish", credential=CRED)
    assert resp.finish_reason == reason
    assert resp.content == ((TextBlock(text=behavior.text),) if behavior.text and not behavior.block_reason else ())
    events = await collect(provider, ask(user("x")), "g-finish")
    assert isinstance(events[0], StreamStart)
    assert events[-2] == Finish(reason=reason)
    assert isinstance(events[-1], UsageReport) and events[-1].usage.input_tokens == 12


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "google_status"), [
    (400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED"), (429, "RESOURCE_EXHAUSTED"),
    (500, "INTERNAL"), (503, "UNAVAILABLE"),
])
async def test_error_statuses_become_upstream_errors(provider, gfake: FakeGemini, status: int,  # type: ignore[no-untyped-def]
                                                     google_status: str) -> None:
    model = f"g-err-{status}"
    gfake.script(model, Behavior(status=status, error_message=f"scripted failure {status}",
                                 retry_after="7" if status == 429 else None))
    with pytest.raises(UpstreamError) as caught:
        await provider.complete(ask(user("x")), upstream_model=model, credential=CRED)
    err = caught.value
    assert err.upstream_status == status and err.provider == "gemini"
    assert f"{google_status}: scripted failure {status}" in err.message
    assert err.retry_after == (7.0 if status == 429 else None)
    with pytest.raises(UpstreamError) as caught:
        await collect(provider, ask(user("x")), model)
    assert caught.value.upstream_status == status and f"scripted failure {status}" in caught.value.message


@pytest.mark.parametrize(("retry_after", "retry_delay", "want"), [
    (None, "7s", 7.0),  # Google's way: the delay only in the body's RetryInfo
    (None, "0.5s", 0.5),
    ("3", "7s", 3.0),  # a Retry-After header wins
    (None, "86400s", 3600.0),  # clamped like Retry-After
    (None, "soon", None),
])
async def test_a_429_takes_its_retry_after_from_the_bodys_retry_info(  # type: ignore[no-untyped-def]
        provider, gfake: FakeGemini, retry_after: str | None, retry_delay: str, want: float | None) -> None:
    model = f"g-429-{retry_after}-{retry_delay}"
    gfake.script(model, Behavior(status=429, retry_after=retry_after, retry_delay=retry_delay))
    with pytest.raises(UpstreamError) as caught:
        await provider.complete(ask(user("x")), upstream_model=model, credential=CRED)
    assert caught.value.upstream_status == 429 and caught.value.retry_after == want
    with pytest.raises(UpstreamError) as caught:
        await collect(provider, ask(user("x")), model)
    assert caught.value.upstream_status == 429 and caught.value.retry_after == want


async def test_the_api_key_never_appears_in_error_messages(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-echo", Behavior(status=500, echo_key_in_error=True))
    with pytest.raises(UpstreamError) as caught:
        await provider.complete(ask(user("x")), upstream_model="g-echo", credential=CRED)
    assert GEMINI_KEY not in caught.value.message and "***" in caught.value.message
    gfake.script("g-echo-stream", Behavior(text="a b c d", error_in_stream_after=2))
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError) as caught:
        async for batch in provider.stream(ask(user("x")), upstream_model="g-echo-stream", credential=CRED):
            seen.extend(batch)
    assert "mid-stream" in caught.value.message and "overloaded" in caught.value.message
    assert GEMINI_KEY not in caught.value.message
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["a ", "b "]


async def test_a_wrong_key_is_refused_by_the_upstream(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    wrong = Credential(id="g2", secret="AIza-not-the-right-key-000")
    with pytest.raises(UpstreamError) as caught:
        await provider.complete(ask(user("x")), upstream_model="g-text", credential=wrong)
    assert caught.value.upstream_status == 400 and "API key not valid" in caught.value.message
    assert gfake.requests[-1].api_key == wrong.secret and gfake.errors[-1] == "wrong API key"


async def test_a_stream_that_ends_before_a_finish_reason_is_an_error(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-cut", Behavior(text="one two three four five", cut_after=2))
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError, match="closed the stream before it finished") as caught:
        async for batch in provider.stream(ask(user("x")), upstream_model="g-cut", credential=CRED):
            seen.extend(batch)
    assert caught.value.upstream_status is None
    assert isinstance(seen[0], StreamStart) and [e.text for e in seen if isinstance(e, TextDelta)] == ["one ", "two "]
    assert not any(isinstance(e, Finish) for e in seen)


async def test_a_dropped_connection_mid_stream_is_an_error(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-abort", Behavior(text="one two three four five", abort_after=3))
    with pytest.raises(UpstreamError):
        await collect(provider, ask(user("x")), "g-abort")


async def test_an_empty_candidate_is_still_an_answer(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-empty", Behavior(text="", finish_reason="STOP"))
    resp = await provider.complete(ask(user("x")), upstream_model="g-empty", credential=CRED)
    assert resp.content == () and resp.finish_reason == "stop"


@pytest.mark.parametrize("raw", [b"<html>oops</html>", b'{"error": {"code": 500, "message": "in a 200"}}',
                                 b'{"candidates": []}'])
async def test_an_unreadable_answer_is_an_upstream_error(provider, gfake: FakeGemini, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-raw", Behavior(raw_body=raw))
    with pytest.raises(UpstreamError, match="unreadable completion") as caught:
        await provider.complete(ask(user("x")), upstream_model="g-raw", credential=CRED)
    assert caught.value.upstream_status is None


async def test_a_malformed_stream_chunk_is_an_upstream_error(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    gfake.script("g-raw-stream", Behavior(raw_body=b"{not json"))
    with pytest.raises(UpstreamError, match="malformed stream chunk"):
        await collect(provider, ask(user("x")), "g-raw-stream")


WRONG_SHAPES = [
    (b'{"candidates": [{"content": {"parts": ["a string, not a part"]}}]}', "parts[0]"),
    (b'{"candidates": [{"content": {"parts": [{"text": 5}]}, "finishReason": "STOP"}]}', "parts[0].text"),
    (b'{"candidates": [{"content": {"parts": "text"}, "finishReason": "STOP"}]}', "content.parts"),
    (b'{"candidates": ["not a candidate"]}', "candidates[0]"),
    (b'{"candidates": {"0": {}}}', "candidates"),
    (b'{"candidates": [{"content": {"parts": [{"functionCall": "f"}]}, "finishReason": "STOP"}]}', "functionCall"),
    (b'{"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": [1]}}]},'
     b' "finishReason": "STOP"}]}', "functionCall.args"),
    (b'{"candidates": [{"finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": "12"}}',
     "usageMetadata.promptTokenCount"),
    (b'{"candidates": [{"finishReason": {"reason": "STOP"}}]}', "finishReason"),
    (b'{"candidates": [{"finishReason": "STOP"}], "responseId": 42}', "responseId"),
    (b'{"promptFeedback": "blocked"}', "promptFeedback"),
    (b'["not", "an", "object"]', "object"),
    (b'"a string"', "object"),
    (b"null", "object"),
]


@pytest.mark.parametrize(("raw", "where"), WRONG_SHAPES)
async def test_an_answer_of_the_wrong_shape_is_a_502_naming_what_was_wrong(  # type: ignore[no-untyped-def]
        provider, gfake: FakeGemini, raw: bytes, where: str) -> None:
    gfake.script("g-shape", Behavior(raw_body=raw))
    with pytest.raises(UpstreamError, match="unreadable completion") as caught:
        await provider.complete(ask(user("x")), upstream_model="g-shape", credential=CRED)
    assert caught.value.status == 502 and caught.value.upstream_status is None
    assert where in caught.value.message


@pytest.mark.parametrize(("raw", "where"), WRONG_SHAPES)
async def test_a_stream_chunk_of_the_wrong_shape_is_a_502_naming_what_was_wrong(  # type: ignore[no-untyped-def]
        provider, gfake: FakeGemini, raw: bytes, where: str) -> None:
    gfake.script("g-shape-stream", Behavior(raw_body=raw))
    with pytest.raises(UpstreamError, match="malformed stream chunk") as caught:
        await collect(provider, ask(user("x")), "g-shape-stream")
    assert caught.value.status == 502 and caught.value.upstream_status is None
    assert where in caught.value.message


async def test_a_wrong_shape_after_good_chunks_is_a_502_mid_stream(  # type: ignore[no-untyped-def]
        provider, gfake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> None:
    gfake.script("g-shape-late", Behavior(text="one two three"))
    real = gfake._frames

    def broken_last(b: Behavior, model: str, rid: str) -> list[dict[str, Any]]:
        frames = real(b, model, rid)
        frames[-1]["candidates"][0]["content"]["parts"] = [["not", "a", "part"]]
        return frames

    monkeypatch.setattr(gfake, "_frames", broken_last)
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError, match="malformed stream chunk") as caught:
        async for batch in provider.stream(ask(user("x")), upstream_model="g-shape-late", credential=CRED):
            seen.extend(batch)
    assert caught.value.status == 502
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["one ", "two "]


async def test_a_credential_without_a_key_is_refused_by_the_upstream(provider, gfake: FakeGemini) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UpstreamError) as caught:
        await provider.complete(ask(user("x")), upstream_model="g-text", credential=Credential(id="none"))
    assert caught.value.upstream_status == 403 and "PERMISSION_DENIED" in caught.value.message
    assert gfake.requests[-1].api_key is None
