"""SSEFramer: byte-level Server-Sent Events framing, whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from tollway.providers.sse import SSEEvent, SSEFramer

STREAM = (
    b": keep-alive comment\n"
    b"\n"
    b"event: message_start\n"
    b'data: {"type":"message_start"}\n'
    b"\n"
    b"data: first line\n"
    b"data: second line\n"
    b"id: 7\n"
    b"retry: 1000\n"
    b"\n"
    b": comment between fields\n"
    b"data:no-space\n"
    b"data:  two-spaces\n"
    b"\n"
    b"data: \xff\xfe raw bytes\n"
    b"\n"
    b"event: done\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent("message_start", b'{"type":"message_start"}'),
    SSEEvent(None, b"first line\nsecond line"),
    SSEEvent(None, b"no-space\n two-spaces"),
    SSEEvent(None, b"\xff\xfe raw bytes"),
    SSEEvent("done", b"[DONE]"),
]


def run(chunks: list[bytes]) -> list[SSEEvent]:
    framer = SSEFramer()
    out: list[SSEEvent] = []
    for c in chunks:
        out.extend(framer.feed(c))
    return out + framer.close()


LINE_ENDINGS = {"LF": b"\n", "CRLF": b"\r\n", "CR": b"\r"}


def with_endings(data: bytes, eol: bytes) -> bytes:
    return data.replace(b"\n", eol)


@pytest.mark.parametrize("eol", LINE_ENDINGS.values(), ids=LINE_ENDINGS.keys())
def test_whole_stream_gives_the_expected_events(eol: bytes) -> None:
    assert run([with_endings(STREAM, eol)]) == EXPECTED


@pytest.mark.parametrize("eol", LINE_ENDINGS.values(), ids=LINE_ENDINGS.keys())
def test_a_split_at_every_byte_boundary_gives_the_same_events(eol: bytes) -> None:
    data = with_endings(STREAM, eol)
    for cut in range(len(data) + 1):
        assert run([data[:cut], data[cut:]]) == EXPECTED, f"split at byte {cut}"


@pytest.mark.parametrize("eol", LINE_ENDINGS.values(), ids=LINE_ENDINGS.keys())
def test_one_byte_at_a_time_gives_the_same_events(eol: bytes) -> None:
    data = with_endings(STREAM, eol)
    assert run([data[i : i + 1] for i in range(len(data))]) == EXPECTED


def test_crlf_split_between_cr_and_lf_is_one_line_end_not_two() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: a\r") == []
    assert framer.feed(b"\ndata: b\r\n\r\n") == [SSEEvent(None, b"a\nb")]


def test_events_are_dispatched_as_soon_as_their_blank_line_arrives() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: one\n") == []
    assert framer.feed(b"\n") == [SSEEvent(None, b"one")]
    assert framer.feed(b"data: two\n\ndata: thr") == [SSEEvent(None, b"two")]


def test_comments_and_blank_lines_alone_dispatch_nothing() -> None:
    assert run([b": ping\n\n: ping\n\n\n\n"]) == []


def test_data_line_without_colon_is_an_empty_data_field() -> None:
    assert run([b"data\ndata: x\n\n"]) == [SSEEvent(None, b"\nx")]


@pytest.mark.parametrize("tail", [b"data: tail", b"data: tail\n", b"event: last\ndata: tail"])
def test_close_dispatches_an_unterminated_last_event(tail: bytes) -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: done\n\n" + tail) == [SSEEvent(None, b"done")]
    name = "last" if b"event:" in tail else None
    assert framer.close() == [SSEEvent(name, b"tail")]
    assert framer.close() == []


def test_close_after_a_complete_stream_dispatches_nothing() -> None:
    framer = SSEFramer()
    framer.feed(b"data: x\n\n")
    assert framer.close() == []


def test_event_name_resets_after_each_event() -> None:
    assert run([b"event: a\ndata: 1\n\ndata: 2\n\n"]) == [SSEEvent("a", b"1"), SSEEvent(None, b"2")]


def test_close_strips_a_trailing_cr_line_end() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: tail\r") == []
    assert framer.close() == [SSEEvent(None, b"tail")]


def test_a_leading_byte_order_mark_is_ignored() -> None:
    assert run([b"\xef\xbb\xbfdata: x\n\n"]) == [SSEEvent(None, b"x")]
