"""The Bedrock adapter against the fake Bedrock over real HTTP: every request must carry a SigV4
signature the fake recomputes with botocore and a body that passes botocore's service model;
ConverseStream answers arrive as binary event-stream frames."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.fakes.bedrock_server import (
    ACCESS_KEY_ID,
    SECRET_KEY,
    SESSION_TOKEN,
    TEMP_ACCESS_KEY_ID,
    TEMP_SECRET_KEY,
    Behavior,
    FakeBedrock,
)
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import (
    ChatRequest,
    DocumentBlock,
    Finish,
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
from tollway.core.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from tollway.providers import bedrock
from tollway.providers.base import ProviderContext
from tollway.providers.http import Timeouts
from tollway.providers.media import MediaFetcher, MediaPolicy

CRED = Credential(id="b1", secret=SECRET_KEY, extra={"access_key_id": ACCESS_KEY_ID})
TEMP_CRED = Credential(id="b2", secret=TEMP_SECRET_KEY,
                       extra={"access_key_id": TEMP_ACCESS_KEY_ID, "session_token": SESSION_TOKEN})
CLAUDE = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
TOOL = Tool(name="lookup", description="look it up",
            parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]})
PNG_BYTES = b"\x89PNG\r\n\x1a\nfake-image"
PDF_BYTES = b"%PDF-1.7\nfake document\n%%EOF"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    server = FakeBedrock()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_spec_errors(fake: FakeBedrock) -> Iterator[None]:
    before = len(fake.spec_errors)
    yield
    assert fake.spec_errors[before:] == []


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[bedrock.BedrockProvider]:
    media = MediaFetcher(MediaPolicy(allow_private=True))
    p = bedrock.build(ProviderConfig(name="bedrock", kind="bedrock", base_url=fake.base_url,
                                     credentials=(CRED, TEMP_CRED), options={"region": "us-east-1"}),
                      ProviderContext(timeouts=Timeouts(connect=2, first_byte=3, idle=2), media=media))
    yield p
    await p.close()
    await media.close()


def user(*blocks: Any) -> Message:
    return Message(role="user", content=tuple(TextBlock(text=b) if isinstance(b, str) else b for b in blocks))


def chat(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="bedrock/claude-sonnet-4-5", messages=messages, **kw)


async def collect(provider: bedrock.BedrockProvider, req: ChatRequest, model: str,
                  credential: Credential = CRED) -> list[StreamEvent]:
    return [e async for batch in provider.stream(req, upstream_model=model, credential=credential) for e in batch]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# --- text --------------------------------------------------------------------------------


async def test_complete_signs_encodes_and_decodes(provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    fake.script(CLAUDE, Behavior(text="An owl, most likely."))
    req = chat(Message(role="system", content=(TextBlock(text="be exact"),)), user("what hoots?"),
               Message(role="assistant", content=(TextBlock(text="at night?"),)), user("yes"), user("at night"),
               max_tokens=100, temperature=0.2)
    resp = await provider.complete(req, upstream_model=CLAUDE, credential=CRED)
    assert resp.content == (TextBlock(text="An owl, most likely."),)
    assert resp.finish_reason == "stop" and resp.model == CLAUDE and resp.id.startswith("bedrock-")
    assert resp.usage == Usage(input_tokens=28, output_tokens=4, cached_tokens=5, cache_write_tokens=3)
    seen = fake.seen(CLAUDE)[-1]
    assert seen.operation == "Converse"
    assert seen.raw_path == "/model/global.anthropic.claude-sonnet-4-5-20250929-v1:0/converse"
    assert seen.body["system"] == [{"text": "be exact"}]
    assert [m["role"] for m in seen.body["messages"]] == ["user", "assistant", "user"]
    assert seen.body["messages"][2]["content"] == [{"text": "yes"}, {"text": "at night"}]
    assert seen.body["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.2}
    assert seen.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert "content-type;host;x-amz-date" in seen.headers["Authorization"]
    assert SECRET_KEY not in json.dumps(seen.headers)


async def test_stream_text_reassembles_frames_split_across_reads(provider: bedrock.BedrockProvider,
                                                                 fake: FakeBedrock) -> None:
    model = "amazon.nova-lite-v1:0"
    fake.script(model, Behavior(text="Frames may arrive in pieces.", piece=9))
    events = await collect(provider, chat(user("hi")), model)
    assert events[0] == StreamStart(id="req-stream-1", model=model, created=events[0].created)  # type: ignore[union-attr]
    assert text_of(events) == "Frames may arrive in pieces."
    assert events[-2:] == [Finish(reason="stop"),
                           UsageReport(usage=Usage(input_tokens=28, output_tokens=5, cached_tokens=5,
                                                   cache_write_tokens=3))]
    assert fake.seen(model)[-1].operation == "ConverseStream"
    assert fake.seen(model)[-1].headers["Accept"] == "application/vnd.amazon.eventstream"


async def test_model_ids_with_colons_and_arn_slashes_are_one_signed_path_segment(
        provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0"
    fake.script(arn, Behavior(text="via a profile"))
    resp = await provider.complete(chat(user("hi")), upstream_model=arn, credential=CRED)
    assert resp.content == (TextBlock(text="via a profile"),)
    assert "inference-profile%2Fus.anthropic" in fake.seen(arn)[-1].raw_path
    assert text_of(await collect(provider, chat(user("hi")), arn)) == "via a profile"


async def test_temporary_credentials_send_and_sign_the_session_token(provider: bedrock.BedrockProvider,
                                                                      fake: FakeBedrock) -> None:
    model = "amazon.nova-micro-v1:0"
    fake.script(model, Behavior(text="ok"))
    resp = await provider.complete(chat(user("hi")), upstream_model=model, credential=TEMP_CRED)
    assert resp.content == (TextBlock(text="ok"),)
    seen = fake.seen(model)[-1]
    assert seen.headers["X-Amz-Security-Token"] == SESSION_TOKEN
    assert "x-amz-security-token" in seen.headers["Authorization"]
    no_token = Credential(id="b3", secret=TEMP_SECRET_KEY, extra={"access_key_id": TEMP_ACCESS_KEY_ID})
    with pytest.raises(UpstreamError) as info:
        await provider.complete(chat(user("hi")), upstream_model=model, credential=no_token)
    assert info.value.upstream_status == 403


# --- tools -------------------------------------------------------------------------------


async def test_parallel_tool_calls_then_tool_results(provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    fake.script(model, Behavior(text="Looking both up.", tool_calls=[("lookup", '{"q": "owl"}'),
                                                                      ("lookup", '{"q": "lark"}')]))
    req = chat(user("owl or lark?"), tools=(TOOL,), tool_choice=ToolChoice(mode="required"))
    resp = await provider.complete(req, upstream_model=model, credential=CRED)
    calls = [b for b in resp.content if isinstance(b, ToolCallBlock)]
    assert [(c.id, c.name, json.loads(c.arguments)) for c in calls] == [("tooluse_0", "lookup", {"q": "owl"}),
                                                                        ("tooluse_1", "lookup", {"q": "lark"})]
    assert resp.finish_reason == "tool_calls"
    assert fake.seen(model)[-1].body["toolConfig"]["toolChoice"] == {"any": {}}

    fake.script(model, Behavior(text="The owl."))
    follow = chat(user("owl or lark?"), Message(role="assistant", content=resp.content),
                  Message(role="tool", content=(ToolResultBlock(tool_call_id="tooluse_0",
                                                                content=(TextBlock(text="hoots"),)),)),
                  Message(role="tool", content=(ToolResultBlock(tool_call_id="tooluse_1",
                                                                content=(TextBlock(text="not found"),),
                                                                is_error=True),)),
                  tools=(TOOL,))
    resp2 = await provider.complete(follow, upstream_model=model, credential=CRED)
    assert resp2.content == (TextBlock(text="The owl."),)
    sent = fake.seen(model)[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_0", "content": [{"text": "hoots"}]}},
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "not found"}], "status": "error"}}]


async def test_stream_tool_calls_arrive_as_indexed_argument_deltas(provider: bedrock.BedrockProvider,
                                                                   fake: FakeBedrock) -> None:
    model = "amazon.nova-pro-v1:0"
    args = ['{"q": "first owl of the night"}', '{"q": "second"}']
    fake.script(model, Behavior(text="", tool_calls=[("lookup", args[0]), ("lookup", args[1])]))
    events = await collect(provider, chat(user("go"), tools=(TOOL,)), model)
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert starts == [ToolCallStart(index=0, id="tooluse_0", name="lookup"),
                      ToolCallStart(index=1, id="tooluse_1", name="lookup")]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len([d for d in deltas if d.index == 0]) > 3  # the input came in several pieces
    for i in (0, 1):
        assert "".join(d.arguments for d in deltas if d.index == i) == args[i]
    assert Finish(reason="tool_calls") in events


# --- media -------------------------------------------------------------------------------


async def test_images_from_data_and_http_urls_go_inline(provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    model = "amazon.nova-pro-v1:0"
    fake.script(model, Behavior(text="Two pictures."))
    fake.media["pic.webp"] = ("image/webp", b"RIFF....WEBPfake")
    data_url = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()
    req = chat(user("compare", ImageBlock(url=data_url), ImageBlock(url=f"{fake.base_url}/media/pic.webp")))
    resp = await provider.complete(req, upstream_model=model, credential=CRED)
    assert resp.content == (TextBlock(text="Two pictures."),)
    content = fake.seen(model)[-1].body["messages"][0]["content"]
    assert content[1] == {"image": {"format": "png", "source": {"bytes": base64.b64encode(PNG_BYTES).decode()}}}
    assert content[2]["image"]["format"] == "webp"
    assert base64.b64decode(content[2]["image"]["source"]["bytes"]) == b"RIFF....WEBPfake"


def count_fetches(monkeypatch: pytest.MonkeyPatch, media: MediaFetcher) -> list[str]:
    """The URLs ``media`` fetches over HTTP from now on, in order."""
    fetched: list[str] = []
    real = media._fetch

    async def counting(url: str, total: Any) -> Any:
        fetched.append(url)
        return await real(url, total)

    monkeypatch.setattr(media, "_fetch", counting)
    return fetched


def build_with(fake: FakeBedrock, media: MediaFetcher) -> bedrock.BedrockProvider:
    return bedrock.build(ProviderConfig(name="bedrock", kind="bedrock", base_url=fake.base_url, credentials=(CRED,),
                                        options={"region": "us-east-1"}),
                         ProviderContext(timeouts=Timeouts(connect=2, first_byte=3, idle=2), media=media))


async def test_each_media_url_is_fetched_once_through_load_many(provider: bedrock.BedrockProvider, fake: FakeBedrock,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = "amazon.nova-pro-v1:0"
    fake.script(model, Behavior(text="Seen."))
    fake.media["a.png"] = ("image/png", PNG_BYTES + b"a")
    fake.media["b.png"] = ("image/png", PNG_BYTES + b"b")
    fake.media["doc.pdf"] = ("application/pdf", PDF_BYTES)
    a, b, doc = (f"{fake.base_url}/media/{n}" for n in ("a.png", "b.png", "doc.pdf"))
    fetched = count_fetches(monkeypatch, provider.media)
    tool_result = ToolResultBlock(tool_call_id="t1", content=(TextBlock(text="here"), ImageBlock(url=a)))
    req = chat(user("look", ImageBlock(url=a), ImageBlock(url=b), DocumentBlock(url=doc, name="doc")),
               Message(role="assistant", content=(ToolCallBlock(id="t1", name="lookup", arguments='{"q": "a"}'),)),
               Message(role="tool", content=(tool_result,)), user(ImageBlock(url=b), "again"), tools=(TOOL,))
    events = await collect(provider, req, model)
    assert text_of(events) == "Seen."
    assert sorted(fetched) == sorted([a, b, doc])
    messages = fake.seen(model)[-1].body["messages"]
    assert base64.b64decode(messages[0]["content"][1]["image"]["source"]["bytes"]) == PNG_BYTES + b"a"
    assert base64.b64decode(messages[0]["content"][2]["image"]["source"]["bytes"]) == PNG_BYTES + b"b"
    assert base64.b64decode(messages[0]["content"][3]["document"]["source"]["bytes"]) == PDF_BYTES
    assert base64.b64decode(messages[2]["content"][1]["image"]["source"]["bytes"]) == PNG_BYTES + b"b"


async def test_too_many_media_urls_are_refused_before_any_fetch_or_call(fake: FakeBedrock,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    media = MediaFetcher(MediaPolicy(allow_private=True, max_urls_per_request=2))
    p = build_with(fake, media)
    fetched = count_fetches(monkeypatch, media)
    for n in range(3):
        fake.media[f"many-{n}.png"] = ("image/png", PNG_BYTES)
    images = [ImageBlock(url=f"{fake.base_url}/media/many-{n}.png") for n in range(3)]
    before = len(fake.requests)
    try:
        with pytest.raises(InvalidRequest, match="3 distinct media URLs") as info:
            await p.complete(chat(user("x", *images)), upstream_model="amazon.nova-pro-v1:0", credential=CRED)
        assert info.value.status == 400
        with pytest.raises(InvalidRequest, match="at most 2"):
            await collect(p, chat(user("x", *images)), "amazon.nova-pro-v1:0")
    finally:
        await p.close()
        await media.close()
    assert fetched == [] and len(fake.requests) == before


async def test_media_over_the_per_request_total_is_refused_before_any_call(fake: FakeBedrock) -> None:
    media = MediaFetcher(MediaPolicy(allow_private=True, max_total_bytes=len(PNG_BYTES) * 2))
    p = build_with(fake, media)
    for n in range(3):
        fake.media[f"total-{n}.png"] = ("image/png", PNG_BYTES)
    images = [ImageBlock(url=f"{fake.base_url}/media/total-{n}.png") for n in range(3)]
    before = len(fake.requests)
    try:
        with pytest.raises(InvalidRequest, match="limit per request"):
            await p.complete(chat(user("x", *images)), upstream_model="amazon.nova-pro-v1:0", credential=CRED)
        fake.script("amazon.nova-pro-v1:0", Behavior(text="Two."))
        resp = await p.complete(chat(user("x", *images[:2])), upstream_model="amazon.nova-pro-v1:0",
                                credential=CRED)
        assert resp.content == (TextBlock(text="Two."),)
    finally:
        await p.close()
        await media.close()
    assert len(fake.requests) == before + 1


async def test_pdf_document(provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    fake.script(CLAUDE, Behavior(text="It is a fake."))
    doc = DocumentBlock(data=base64.b64encode(PDF_BYTES).decode(), name="annual_report.2024.pdf")
    events = await collect(provider, chat(user(doc, "summarise")), CLAUDE)
    assert text_of(events) == "It is a fake."
    block = fake.seen(CLAUDE)[-1].body["messages"][0]["content"][0]["document"]
    assert block["format"] == "pdf" and block["name"] == "annual-report-2024"
    assert base64.b64decode(block["source"]["bytes"]) == PDF_BYTES


# --- reasoning ---------------------------------------------------------------------------


async def test_reasoning_round_trip_with_signature_and_redacted_content(provider: bedrock.BedrockProvider,
                                                                        fake: FakeBedrock) -> None:
    redacted = base64.b64encode(b"encrypted-thoughts").decode()
    fake.script(CLAUDE, Behavior(text="42.", reasoning="Six times seven.", signature="sig-abc==", redacted=redacted))
    req = chat(user("6*7?"), reasoning_budget=2048, max_tokens=4096)
    resp = await provider.complete(req, upstream_model=CLAUDE, credential=CRED)
    assert resp.content == (ReasoningBlock(redacted_data=redacted),
                            ReasoningBlock(text="Six times seven.", signature="sig-abc=="), TextBlock(text="42."))
    assert fake.seen(CLAUDE)[-1].body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}}

    events = await collect(provider, req, CLAUDE)
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning[0] == ReasoningDelta(redacted_data=redacted)
    assert "".join(e.text for e in reasoning) == "Six times seven."
    assert reasoning[-1] == ReasoningDelta(signature="sig-abc==")
    assert text_of(events) == "42."

    fake.script(CLAUDE, Behavior(text="Yes."))
    again = chat(user("6*7?"), Message(role="assistant", content=resp.content), user("sure?"), reasoning_budget=2048)
    await provider.complete(again, upstream_model=CLAUDE, credential=CRED)
    assert fake.seen(CLAUDE)[-1].body["messages"][1]["content"] == [
        {"reasoningContent": {"redactedContent": redacted}},
        {"reasoningContent": {"reasoningText": {"text": "Six times seven.", "signature": "sig-abc=="}}},
        {"text": "42."}]


# --- stop reasons ------------------------------------------------------------------------


async def test_max_tokens_and_stop_sequence(provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    model = "anthropic.claude-haiku-4-5-20251001-v1:0"
    fake.script(model, Behavior(text="cut", stop_reason="max_tokens"))
    resp = await provider.complete(chat(user("x"), max_tokens=1), upstream_model=model, credential=CRED)
    assert resp.finish_reason == "length"
    assert Finish(reason="length") in await collect(provider, chat(user("x")), model)

    fake.script(model, Behavior(text="one two", stop_reason="stop_sequence", stop_sequence="END"))
    req = chat(user("count"), stop=("END",))
    resp = await provider.complete(req, upstream_model=model, credential=CRED)
    assert (resp.finish_reason, resp.stop_sequence) == ("stop", "END")
    assert Finish(reason="stop", stop_sequence="END") in await collect(provider, req, model)
    assert fake.seen(model)[-1].body["inferenceConfig"]["stopSequences"] == ["END"]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("error_type", "status", "http_status", "retry_after"), [
    ("ValidationException", 400, 400, None), ("AccessDeniedException", 403, 403, None),  # the request's refusal
    ("ThrottlingException", 429, 429, "7"), ("ModelTimeoutException", 408, 502, None),
    ("ServiceUnavailableException", 503, 502, None)])
@pytest.mark.parametrize("streaming", [False, True])
async def test_error_statuses_map(provider: bedrock.BedrockProvider, fake: FakeBedrock, error_type: str,
                                  status: int, http_status: int, retry_after: str | None, streaming: bool) -> None:
    model = f"amazon.nova-error-{status}-v1:0"
    fake.script(model, Behavior(status=status, error_type=error_type, error_message=f"{error_type} happened",
                                retry_after=retry_after, echo_secret_in_error=True))
    with pytest.raises(UpstreamError) as info:
        if streaming:
            await collect(provider, chat(user("x")), model, TEMP_CRED)
        else:
            await provider.complete(chat(user("x")), upstream_model=model, credential=TEMP_CRED)
    err = info.value
    assert (err.upstream_status, err.http_status) == (status, http_status)
    assert err.retry_after == (float(retry_after) if retry_after else None)
    assert f"{error_type} happened" in err.message and "HTTP" in err.message
    for secret in (SECRET_KEY, TEMP_SECRET_KEY, SESSION_TOKEN):
        assert secret not in err.message


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_wrong_secret_fails_the_fakes_signature_check(provider: bedrock.BedrockProvider, fake: FakeBedrock,
                                                              streaming: bool) -> None:
    model = "amazon.nova-micro-v1:0"
    fake.script(model, Behavior(text="never"))
    wrong = Credential(id="bad", secret="not-the-secret-key-at-all", extra={"access_key_id": ACCESS_KEY_ID})
    with pytest.raises(UpstreamError) as info:
        if streaming:
            await collect(provider, chat(user("x")), model, wrong)
        else:
            await provider.complete(chat(user("x")), upstream_model=model, credential=wrong)
    assert info.value.upstream_status == 403
    assert "signature we calculated does not match" in info.value.message
    assert "not-the-secret-key-at-all" not in info.value.message


async def test_a_provider_in_another_region_is_refused(fake: FakeBedrock) -> None:
    media = MediaFetcher(MediaPolicy(allow_private=True))
    p = bedrock.build(ProviderConfig(name="bedrock", kind="bedrock", base_url=fake.base_url, credentials=(CRED,),
                                     options={"region": "eu-west-1"}),
                      ProviderContext(timeouts=Timeouts(connect=2, first_byte=3, idle=2), media=media))
    try:
        with pytest.raises(UpstreamError) as info:
            await p.complete(chat(user("x")), upstream_model=CLAUDE, credential=CRED)
        assert info.value.upstream_status == 403 and "us-east-1" in info.value.message
    finally:
        await p.close()


async def test_in_stream_exception_is_an_upstream_error_without_secrets(provider: bedrock.BedrockProvider,
                                                                        fake: FakeBedrock) -> None:
    model = "amazon.nova-lite-v1:0"
    fake.script(model, Behavior(text="one two three four", exception_after=3, echo_secret_in_error=True))
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError) as info:
        async for batch in provider.stream(chat(user("x")), upstream_model=model, credential=TEMP_CRED):
            seen.extend(batch)
    assert text_of(seen) == "one two "
    err = info.value
    assert err.upstream_status == 429 and err.http_status == 429 and "throttlingException" in err.message
    assert TEMP_SECRET_KEY not in err.message and SESSION_TOKEN not in err.message and SECRET_KEY not in err.message

    fake.script(model, Behavior(text="x", exception_after=1, exception_type="modelStreamErrorException"))
    with pytest.raises(UpstreamError) as info:
        await collect(provider, chat(user("x")), model)
    assert info.value.upstream_status == 424 and info.value.http_status == 502


async def test_stream_cut_is_an_upstream_error(provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    model = "amazon.nova-lite-v1:0"
    fake.script(model, Behavior(text="one two three four five", drop_after=3))
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError) as info:
        async for batch in provider.stream(chat(user("x")), upstream_model=model, credential=CRED):
            seen.extend(batch)
    assert text_of(seen) == "one two "
    assert info.value.upstream_status is None


# events: messageStart, five text deltas, contentBlockStop, messageStop, metadata (nine in all)
@pytest.mark.parametrize("end_after", [0, 3, 7, 8])  # nothing, mid-text, no messageStop, no metadata
async def test_a_stream_ending_before_stop_and_metadata_is_an_upstream_error(
        provider: bedrock.BedrockProvider, fake: FakeBedrock, end_after: int) -> None:
    model = "amazon.nova-lite-v1:0"
    fake.script(model, Behavior(text="one two three four five", end_after=end_after))
    with pytest.raises(UpstreamError, match="before it finished"):
        await collect(provider, chat(user("x")), model)


async def test_a_complete_stream_is_read_to_its_end(provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    model = "amazon.nova-lite-v1:0"
    fake.script(model, Behavior(text="one two three four five", end_after=9))  # all nine events
    events = await collect(provider, chat(user("x")), model)
    assert isinstance(events[-1], UsageReport) and text_of(events) == "one two three four five"


async def test_the_stream_ends_at_metadata_without_waiting_for_the_body_to_close(
        provider: bedrock.BedrockProvider, fake: FakeBedrock) -> None:
    model = "amazon.nova-lite-v1:0"
    fake.script(model, Behavior(text="quick", linger=4.0))  # longer than the 2 s idle timeout
    started = time.monotonic()
    events = await asyncio.wait_for(collect(provider, chat(user("x")), model), 3)
    assert isinstance(events[-1], UsageReport) and time.monotonic() - started < 1.5


async def test_a_stalled_stream_times_out_idle(fake: FakeBedrock) -> None:
    model = "amazon.nova-lite-v1:0"
    fake.script(model, Behavior(text="one two three", end_after=3, linger=2.0))
    media = MediaFetcher(MediaPolicy(allow_private=True))
    p = bedrock.build(ProviderConfig(name="bedrock", kind="bedrock", base_url=fake.base_url, credentials=(CRED,),
                                     options={"region": "us-east-1"}),
                      ProviderContext(timeouts=Timeouts(connect=2, first_byte=3, idle=0.3), media=media))
    seen: list[StreamEvent] = []
    try:
        with pytest.raises(UpstreamTimeout, match="idle"):
            async for batch in p.stream(chat(user("x")), upstream_model=model, credential=CRED):
                seen.extend(batch)
        assert text_of(seen) == "one two "
    finally:
        await p.close()
