"""The one way an adapter reads an upstream stream into canonical events.

Every streaming adapter is the same loop around a decoder of its own: send the request and
wait for the headers; then, inside the ``UpstreamStream`` lifecycle, turn each upstream read
(the SSE events of one read, or raw bytes for binary framings) into the events it holds and
hand them on as one list; stop at the stream's last event, and fail when the body ends before
it. ``decode_stream`` is that loop; the decoder, pure, says what a read holds and when the
stream has ended.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

from tollway.core.chat import StreamEvent
from tollway.core.errors import UpstreamError
from tollway.providers.http import UpstreamStream

Read = TypeVar("Read")
Read_contra = TypeVar("Read_contra", contravariant=True)


class ReadDecoder(Protocol[Read_contra]):
    """An upstream's stream decoder, fed one upstream read at a time."""

    @property
    def ended(self) -> bool:
        """The stream's last event was seen."""
        ...

    def feed_read(self, read: Read_contra) -> Iterator[StreamEvent]:
        """The canonical events of one read, up to the stream's last event. What the upstream got
        wrong raises an UpstreamError (the events before it still go out)."""
        ...


async def decode_stream(open_stream: Callable[[], Awaitable[tuple[UpstreamStream, ReadDecoder[Read]]]],
                        reads: Callable[[UpstreamStream], AsyncIterator[Read]], *,
                        provider: str) -> AsyncGenerator[list[StreamEvent], None]:
    """The events of an upstream stream, one non-empty list per upstream read.

    ``open_stream`` sends the request and returns the open stream with its decoder (it runs on
    the first iteration, so an error there is the attempt's failure); ``reads`` is
    ``UpstreamStream.batches`` or ``UpstreamStream.chunks``. Closing the iterator early closes
    the connection; a stream read to its last event is finished (its connection kept).
    """
    upstream, decoder = await open_stream()
    async with upstream:
        async for read in reads(upstream):
            events: list[StreamEvent] = []
            try:
                for event in decoder.feed_read(read):
                    events.append(event)
            except Exception:
                if events:
                    yield events  # what the read held before the error goes out first
                raise
            upstream.ended = decoder.ended
            if events:
                yield events
            if upstream.ended:
                return
        raise UpstreamError(f"{provider} upstream closed the stream before it finished", provider=provider)
