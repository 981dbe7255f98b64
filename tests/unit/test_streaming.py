"""decode_stream: one non-empty list per upstream read, the stream finished at its last event and
closed on every other way out (cut short, an error, the caller gone), opened only when read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest

from tollway.core.chat import StreamEvent, TextDelta
from tollway.core.errors import UpstreamError
from tollway.providers.http import UpstreamStream
from tollway.providers.streaming import decode_stream


class FakeUpstream:
    """UpstreamStream's lifecycle: ``fate`` is what leaving the block did to the connection."""

    def __init__(self, reads: list[list[str]]) -> None:
        self._reads = reads
        self.ended = False
        self.fate: str | None = None
        self.opened = False
        self.taken = 0  # reads taken from the body

    async def __aenter__(self) -> FakeUpstream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.fate = "finished" if self.ended else "closed"

    async def batches(self) -> AsyncIterator[list[str]]:
        for read in self._reads:
            self.taken += 1
            yield read


class WordDecoder:
    """A word per event; ``END`` ends the stream, ``BAD`` is something the upstream got wrong."""

    def __init__(self) -> None:
        self.ended = False

    def feed_read(self, read: list[str]) -> Iterator[StreamEvent]:
        for word in read:
            if word == "END":
                self.ended = True
                return
            if word == "BAD":
                raise UpstreamError("p upstream sent a malformed stream chunk", provider="p")
            yield TextDelta(text=word)


def run(upstream: FakeUpstream) -> AsyncIterator[list[StreamEvent]]:
    async def open_stream() -> tuple[UpstreamStream, WordDecoder]:
        upstream.opened = True
        return cast(UpstreamStream, upstream), WordDecoder()

    return decode_stream(open_stream, cast(Any, FakeUpstream.batches), provider="p")


def texts(batches: list[list[StreamEvent]]) -> list[list[str]]:
    return [[cast(TextDelta, e).text for e in b] for b in batches]


async def test_one_list_per_read_up_to_the_last_event_then_the_stream_is_finished() -> None:
    upstream = FakeUpstream([["a", "b"], [], ["c"], ["d", "END", "ignored"], ["never read"]])
    batches = [b async for b in run(upstream)]
    assert texts(batches) == [["a", "b"], ["c"], ["d"]]
    assert upstream.fate == "finished" and upstream.ended and upstream.taken == 4


async def test_a_read_holding_only_the_end_finishes_without_an_empty_list() -> None:
    upstream = FakeUpstream([["a"], ["END"]])
    assert texts([b async for b in run(upstream)]) == [["a"]]
    assert upstream.fate == "finished"


async def test_a_body_that_ends_before_the_last_event_is_an_error_and_closes() -> None:
    upstream = FakeUpstream([["a"], ["b"]])
    seen: list[list[StreamEvent]] = []
    with pytest.raises(UpstreamError, match="^p upstream closed the stream before it finished$"):
        async for b in run(upstream):
            seen.append(b)
    assert texts(seen) == [["a"], ["b"]] and upstream.fate == "closed"


async def test_the_events_of_a_read_before_an_error_go_out_first() -> None:
    upstream = FakeUpstream([["a"], ["b", "c", "BAD", "d"], ["e", "END"]])
    seen: list[list[StreamEvent]] = []
    with pytest.raises(UpstreamError, match="malformed"):
        async for b in run(upstream):
            seen.append(b)
    assert texts(seen) == [["a"], ["b", "c"]] and upstream.fate == "closed" and upstream.taken == 2


async def test_an_error_in_the_first_read_comes_before_any_list() -> None:
    upstream = FakeUpstream([["BAD"]])
    with pytest.raises(UpstreamError, match="malformed"):
        await anext(run(upstream))
    assert upstream.fate == "closed"


async def test_a_caller_that_goes_away_mid_stream_closes_it() -> None:
    upstream = FakeUpstream([["a"], ["b"], ["END"]])
    stream = run(upstream)
    assert texts([await anext(stream)]) == [["a"]]
    await stream.aclose()  # type: ignore[attr-defined]
    assert upstream.fate == "closed" and upstream.taken == 1


async def test_a_caller_that_stops_at_the_last_list_still_finishes_the_stream() -> None:
    upstream = FakeUpstream([["a"], ["b", "END"]])
    stream = run(upstream)
    await anext(stream)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert upstream.fate == "finished"


async def test_nothing_is_opened_until_the_stream_is_read() -> None:
    upstream = FakeUpstream([["END"]])
    stream = run(upstream)
    assert not upstream.opened
    assert [b async for b in stream] == [] and upstream.opened and upstream.fate == "finished"
