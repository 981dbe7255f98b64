"""The Gemini and Bedrock adapters with large media (issue 17, item 9), against their fakes on
loopback: fetched bytes count in the process's media budget until the upstream has the body and
are given back after, a body with large media is made off the event loop, and an upstream error
does not keep the request's body and media alive in its traceback's frames (before, 8 requests
naming 3 MiB images that failed upstream left 733 MB in the process: the frames of an error held
by a reference cycle waited for the rarely-running cycle collector)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from tests.fakes.bedrock_server import ACCESS_KEY_ID, SECRET_KEY, FakeBedrock
from tests.fakes.bedrock_server import Behavior as BedrockBehavior
from tests.fakes.gemini_server import GEMINI_KEY, FakeGemini
from tests.fakes.gemini_server import Behavior as GeminiBehavior
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import ChatRequest, ImageBlock, Message, TextBlock
from tollway.core.errors import UpstreamError
from tollway.providers import bedrock, gemini
from tollway.providers.base import ProviderContext
from tollway.providers.http import Timeouts
from tollway.providers.media import Media, MediaFetcher, MediaPolicy

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2400  # 600 KiB: past the off-loop threshold
BIG = 100_000
CLAUDE = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
GCRED = Credential(id="g1", secret=GEMINI_KEY)
BCRED = Credential(id="b1", secret=SECRET_KEY, extra={"access_key_id": ACCESS_KEY_ID})


def ask(url: str) -> ChatRequest:
    return ChatRequest(model="m", messages=(Message(role="user", content=(
        TextBlock(text="what is in it?"), ImageBlock(url=url))),))


def big_locals(exc: BaseException) -> list[tuple[str, str]]:
    """(function, local) of every frame in the error's traceback that still holds a body or media."""
    held = []
    tb = exc.__traceback__
    while tb is not None:
        for name, value in tb.tb_frame.f_locals.items() if tb.tb_frame.f_code.co_filename != __file__ else ():
            if isinstance(value, bytes | bytearray | str) and len(value) > BIG or (
                    isinstance(value, dict) and any(isinstance(v, Media) for v in value.values())):
                held.append((tb.tb_frame.f_code.co_name, name))
        tb = tb.tb_next
    return held


@pytest.fixture
async def fetcher() -> AsyncIterator[MediaFetcher]:
    f = MediaFetcher(MediaPolicy(allow_private=True))
    yield f
    await f.close()


def gemini_provider(fake: FakeGemini, media: MediaFetcher) -> gemini.GeminiProvider:
    config = ProviderConfig(name="gemini", kind="gemini", base_url=fake.base_url,
                            credentials=(GCRED,))
    return gemini.build(config, ProviderContext(timeouts=Timeouts(connect=2, first_byte=5, idle=5), media=media))


def bedrock_provider(fake: FakeBedrock, media: MediaFetcher) -> bedrock.BedrockProvider:
    config = ProviderConfig(name="bedrock", kind="bedrock", base_url=fake.base_url, options={"region": "us-east-1"},
                            credentials=(BCRED,))
    return bedrock.build(config, ProviderContext(timeouts=Timeouts(connect=2, first_byte=5, idle=5), media=media))


async def test_gemini_fetches_under_the_budget_and_gives_it_back(fake_gemini: FakeGemini,
                                                                 fetcher: MediaFetcher) -> None:
    url = fake_gemini.serve("big.png", "image/png", IMAGE)
    p, cred = gemini_provider(fake_gemini, fetcher), GCRED
    try:
        fake_gemini.script("gemini-2.5-flash", GeminiBehavior(text="a test pattern"))
        answer = await p.complete(ask(url), upstream_model="gemini-2.5-flash", credential=cred)
        assert "test pattern" in "".join(b.text for b in answer.content if isinstance(b, TextBlock))
        sent = fake_gemini.seen("gemini-2.5-flash")[-1].body
        inline = sent["contents"][0]["parts"][1]["inlineData"]
        assert base64.b64decode(inline["data"]) == IMAGE and inline["mimeType"] == "image/png"
        assert fetcher.budget.held == 0
        events = [e async for batch in p.stream(ask(url + "?s"), upstream_model="gemini-2.5-flash",
                                                credential=cred) for e in batch]
        assert events and fetcher.budget.held == 0
    finally:
        await p.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_gemini_error_does_not_keep_the_body(fake_gemini: FakeGemini, fetcher: MediaFetcher,
                                                     stream: bool) -> None:
    url = fake_gemini.serve("err.png", "image/png", IMAGE)
    p, cred = gemini_provider(fake_gemini, fetcher), GCRED
    fake_gemini.script("gemini-err", GeminiBehavior(status=400, error_message="bad image"))
    try:
        with pytest.raises(UpstreamError) as info:
            if stream:
                async for _ in p.stream(ask(url), upstream_model="gemini-err", credential=cred):
                    pass
            else:
                await p.complete(ask(url), upstream_model="gemini-err", credential=cred)
        assert big_locals(info.value) == []  # before: complete/_open_stream, post, fetch held the body
        assert fetcher.budget.held == 0
    finally:
        await p.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_bedrock_makes_a_large_body_and_an_error_does_not_keep_it(fake_bedrock: FakeBedrock,
                                                                        fetcher: MediaFetcher, stream: bool) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(IMAGE).decode()
    p, cred = bedrock_provider(fake_bedrock, fetcher), BCRED
    try:
        fake_bedrock.script(CLAUDE, BedrockBehavior(text="a test pattern"))
        if stream:
            events = [e async for batch in p.stream(ask(data_url), upstream_model=CLAUDE, credential=cred)
                      for e in batch]
            assert events
        else:
            answer = await p.complete(ask(data_url), upstream_model=CLAUDE, credential=cred)
            assert "test pattern" in "".join(b.text for b in answer.content if isinstance(b, TextBlock))
        assert fetcher.budget.held == 0
        fake_bedrock.script(CLAUDE, BedrockBehavior(status=400, error_type="ValidationException"))
        with pytest.raises(UpstreamError) as info:
            if stream:
                async for _ in p.stream(ask(data_url), upstream_model=CLAUDE, credential=cred):
                    pass
            else:
                await p.complete(ask(data_url), upstream_model=CLAUDE, credential=cred)
        assert big_locals(info.value) == []
        assert fetcher.budget.held == 0
    finally:
        await p.close()
