"""Incremental Server-Sent Events framing over raw bytes.

Upstream streams arrive as arbitrary byte chunks. ``SSEFramer`` cuts them into events
(``event:`` name plus joined ``data:`` lines) per the WHATWG rules that LLM APIs use
(LF, CRLF or CR line ends; a leading BOM skipped; a blank line ends an event that has data;
``:`` comments ignored), without
decoding to text, so a pass-through stream forwards the upstream's bytes untouched.
"""

from __future__ import annotations

import re

import msgspec

_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEEvent(msgspec.Struct, frozen=True):
    event: str | None
    data: bytes


class SSEFramer:
    def __init__(self) -> None:
        self._started = False
        self._buf = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if not self._started:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf  # maybe the start of a byte order mark: wait for more
                return []
            self._started = True
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
        out: list[SSEEvent] = []
        pos = 0
        if b"\r" not in buf:  # the common case: LF only
            while True:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    break
                self._line(buf[pos:nl], out)
                pos = nl + 1
        else:
            for m in _LINE_END.finditer(buf):
                if m.group() == b"\r" and m.end() == len(buf):
                    break  # a CR at the end may be the first half of CRLF
                self._line(buf[pos:m.start()], out)
                pos = m.end()
        self._buf = buf[pos:]
        return out

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                out.append(SSEEvent(self._event, b"\n".join(self._data)))
            self._event, self._data = None, []
            return
        if line[0] == 0x3A:  # ':' comment
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def close(self) -> list[SSEEvent]:
        """Events left when the stream ends (an unterminated last event is dispatched)."""
        out: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf.rstrip(b"\r"), out)
            self._buf = b""
        self._line(b"", out)
        return out
