"""Input-token counts for a canonical request (``POST /v1/messages/count_tokens``).

Claude's own tokenizer is not published, so no count made here is Anthropic's. Two ways to
count text, chosen once per process (``default_counter``):

- **o200k_base**, the real BPE of OpenAI's GPT-4o family, when the optional package
  ``bpe-openai`` (``bpe-openai==0.1.4``) is installed. It ships the vocabulary inside the
  wheel (the same bytes tiktoken downloads, SHA-256 ``446a9538...``), so it needs no network
  at run time. Exact for GPT-4o-family text; for other models, a close proxy.
- **the estimate** (``estimate_text_tokens``) otherwise: pure Python, no data files. It
  splits text the way o200k_base's pre-tokenizer does (letter runs, camelCase humps, digit
  groups of three, punctuation runs, whitespace) and prices each piece with constants fitted
  against o200k_base. bench/COUNT_TOKENS.md gives its measured error per kind of text.

Everything that is not plain text follows documented rules:

- messages: the text of every block, plus ``MESSAGE_OVERHEAD`` per message (role and
  separators) and ``REQUEST_OVERHEAD`` once (the primed reply), as in OpenAI's published
  counting recipe for chat models;
- tools: name, description and the JSON schema of each, ``TOOL_OVERHEAD`` each, and once
  ``TOOL_USE_SYSTEM_PROMPT``: the tool-use system prompt Anthropic adds (its pricing page
  gives 346 tokens for Claude 3.7/4 models with tool_choice auto or none, 313 with any/tool);
- tool calls: name and argument JSON plus ``TOOL_CALL_OVERHEAD``; tool results: their blocks
  plus ``TOOL_CALL_OVERHEAD``; reasoning: its text (an opaque redacted block by its size);
- images: Anthropic's rule, tokens = width x height / 750 after scaling the long edge down to
  1568 px, at most ``IMAGE_MAX_TOKENS``; the size is read from a ``data:`` URL's PNG, JPEG,
  GIF or WEBP header. An image whose size cannot be known (an http(s) URL; we do not fetch
  to count) counts ``IMAGE_MAX_TOKENS``, the most one image can cost;
- documents: text ones (text/*, JSON, XML) are decoded and counted as text; a PDF counts
  ``PDF_PAGE_TOKENS`` per page when its pages can be counted in its bytes, else one token per
  ``BINARY_BYTES_PER_TOKEN`` decoded bytes, as does any other binary document; a document
  given only by URL counts one PDF page.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib
import math
import re
import struct
from collections.abc import Callable
from typing import Any, Final

import msgspec

from tollway.core.chat import (
    Block,
    ChatRequest,
    DocumentBlock,
    ImageBlock,
    Message,
    ReasoningBlock,
    TextBlock,
    Tool,
    ToolCallBlock,
    ToolResultBlock,
)

TextCount = Callable[[str], int]

REQUEST_OVERHEAD: Final = 3
MESSAGE_OVERHEAD: Final = 3
NAME_OVERHEAD: Final = 1
TOOL_OVERHEAD: Final = 8
TOOL_USE_SYSTEM_PROMPT: Final = 346
TOOL_CALL_OVERHEAD: Final = 5

IMAGE_PIXELS_PER_TOKEN: Final = 750
IMAGE_MAX_EDGE: Final = 1568
IMAGE_MAX_TOKENS: Final = 1600
PDF_PAGE_TOKENS: Final = 2250  # Anthropic: "1,500 to 3,000 tokens per page"; the midpoint
BINARY_BYTES_PER_TOKEN: Final = 16
REDACTED_BYTES_PER_TOKEN: Final = 4
MAX_HEADER_B64: Final = 256 * 1024  # how much of a data: URL is decoded to find an image's size

# --- the estimate ----------------------------------------------------------------------------
# Fitted against o200k_base on texts outside bench/corpus (see bench/COUNT_TOKENS.md).
WORD_FREE_CHARS: Final = 9.0  # an ASCII word (or camelCase hump) this long is one token
WORD_CHARS_PER_TOKEN: Final = 6.0  # each further token covers this many letters
OTHER_FREE_CHARS: Final = 6.0  # the same for words in other alphabets (Cyrillic, accented Latin)
OTHER_CHARS_PER_TOKEN: Final = 3.0
CJK_TOKENS_PER_CHAR: Final = 0.7  # Han, kana, hangul
DIGITS_PER_TOKEN: Final = 3  # o200k_base splits digit runs into groups of at most three
PUNCT_CHARS_PER_TOKEN: Final = 2.5  # ASCII punctuation runs: '":', '});', '->' are one token each
PUNCT_BEFORE_WORD: Final = 0.5  # one mark glued to the word after it ('.get', '(self') often merges
SYMBOL_TOKENS: Final = 1.0  # a non-ASCII symbol in the BMP (¥, ✅, Chinese punctuation)
ASTRAL_SYMBOL_TOKENS: Final = 2.0  # outside the BMP (most emoji)

_PIECES: Final = re.compile(r"([^\W\d_]+)|(\d+)|(\s+)|((?:[^\w\s]|_)+)")
_HUMPS: Final = re.compile(r"[A-Z]*[a-z]+|[A-Z]+(?![a-z])")
_CJK: Final = re.compile("[\u1100-\u11ff\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
                         "\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]")


def _word_tokens(length: int, free: float, per_token: float) -> float:
    return 1.0 if length <= free else 1.0 + (length - free) / per_token


def _letters_tokens(run: str) -> float:
    if run.isascii():
        return sum(_word_tokens(len(h), WORD_FREE_CHARS, WORD_CHARS_PER_TOKEN) for h in _HUMPS.findall(run))
    cjk = len(_CJK.findall(run))
    if cjk == len(run):
        return cjk * CJK_TOKENS_PER_CHAR
    rest = len(run) - cjk
    return cjk * CJK_TOKENS_PER_CHAR + _word_tokens(rest, OTHER_FREE_CHARS, OTHER_CHARS_PER_TOKEN)


def _space_tokens(run: str, after_punct: bool, before_digits: bool) -> float:
    """o200k_base: newlines (with the spaces before them) are one piece, and glue onto the
    punctuation before them; of a run of spaces, all but the last are one piece, and the last
    joins the word after it (not digits: a space before a number is a token of its own)."""
    if after_punct:
        run = run.lstrip("\r\n")
    head, newline, tail = run.rpartition("\n")
    tokens = 1.0 if newline or "\r" in head else 0.0
    if len(tail) > 1 or (tail and before_digits):
        tokens += 1.0
    return tokens


def _punct_tokens(run: str, before_word: bool) -> float:
    ascii_marks = sum(1 for c in run if c.isascii())
    tokens = 0.0
    for c in run:
        if not c.isascii():
            tokens += ASTRAL_SYMBOL_TOKENS if ord(c) > 0xFFFF else SYMBOL_TOKENS
    if ascii_marks:
        if before_word and ascii_marks == 1 and len(run) == 1:
            return PUNCT_BEFORE_WORD
        tokens += math.ceil(ascii_marks / PUNCT_CHARS_PER_TOKEN)
    return tokens


def estimate_text_tokens(text: str) -> int:
    """An o200k_base-like token count without a vocabulary; 0 for empty text."""
    total = 0.0
    pieces = _PIECES.findall(text)
    for i, (letters, digits, spaces, punct) in enumerate(pieces):
        if letters:
            total += _letters_tokens(letters)
        elif digits:
            total += math.ceil(len(digits) / DIGITS_PER_TOKEN)
        elif spaces:
            after_punct = i > 0 and bool(pieces[i - 1][3])
            before_digits = i + 1 < len(pieces) and bool(pieces[i + 1][1])
            total += _space_tokens(spaces, after_punct, before_digits)
        else:
            before_word = i + 1 < len(pieces) and bool(pieces[i + 1][0])
            total += _punct_tokens(punct, before_word)
    return math.ceil(total) if text else 0


# --- a real tokenizer, when one is installed -------------------------------------------------

# bpe-openai refuses a single input of 1M characters or 200k tokens; a character is at most 4
# tokens, so 40k characters always fit
CHUNK_CHARS: Final = 40_000


class _BpeOpenAI:
    name = "o200k_base (bpe-openai)"

    def __init__(self, encoding: Any) -> None:
        self._encode = encoding.encode_ordinary

    def __call__(self, text: str) -> int:
        total = 0
        start = 0
        while start < len(text):
            end = min(len(text), start + CHUNK_CHARS)
            if end < len(text):  # cut at whitespace so no token straddles two chunks
                cut = text.rfind(" ", start + CHUNK_CHARS // 2, end)
                end = cut if cut > start else end
            try:
                total += len(self._encode(text[start:end]))
            except Exception:  # the tokenizer refused a piece: count that piece with the estimate
                total += estimate_text_tokens(text[start:end])
            start = end
        return total


class TokenCounter:
    """Counts a request's input tokens with one text counter (``count_text``)."""

    def __init__(self, count_text: TextCount | None = None, name: str = "estimate") -> None:
        self.count_text: TextCount = count_text or estimate_text_tokens
        self.name = name

    def count(self, req: ChatRequest) -> int:
        total = REQUEST_OVERHEAD
        for message in req.messages:
            total += self._message(message)
        if req.tools:
            total += TOOL_USE_SYSTEM_PROMPT + sum(self._tool(t) for t in req.tools)
        if req.response_format:
            total += self.count_text(msgspec.json.encode(req.response_format).decode())
        return total

    def _message(self, message: Message) -> int:
        total = MESSAGE_OVERHEAD + (NAME_OVERHEAD + self.count_text(message.name) if message.name else 0)
        return total + sum(self._block(b) for b in message.content)

    def _tool(self, tool: Tool) -> int:
        schema = msgspec.json.encode(tool.parameters).decode() if tool.parameters else ""
        return TOOL_OVERHEAD + self.count_text(tool.name) + self.count_text(tool.description or "") \
            + self.count_text(schema)

    def _block(self, block: Block) -> int:
        if isinstance(block, TextBlock):
            return self.count_text(block.text)
        if isinstance(block, ImageBlock):
            return image_tokens(block.url)
        if isinstance(block, DocumentBlock):
            return self._document(block)
        if isinstance(block, ToolCallBlock):
            return TOOL_CALL_OVERHEAD + self.count_text(block.name) + self.count_text(block.arguments)
        if isinstance(block, ToolResultBlock):
            return TOOL_CALL_OVERHEAD + sum(self._block(b) for b in block.content)
        if isinstance(block, ReasoningBlock):
            redacted = math.ceil(len(block.redacted_data or "") / REDACTED_BYTES_PER_TOKEN)
            return self.count_text(block.text) + redacted
        return 0  # pragma: no cover - every Block kind is handled above

    def _document(self, doc: DocumentBlock) -> int:
        name = self.count_text(doc.name) if doc.name else 0
        if not doc.data:
            return name + PDF_PAGE_TOKENS
        try:
            raw = base64.b64decode(doc.data, validate=False)
        except (binascii.Error, ValueError):
            raw = doc.data.encode()
        media_type = doc.media_type.split(";")[0].strip().lower()
        if media_type.startswith("text/") or media_type in ("application/json", "application/xml"):
            return name + self.count_text(raw.decode("utf-8", errors="replace"))
        if media_type == "application/pdf":
            pages = pdf_pages(raw)
            if pages:
                return name + pages * PDF_PAGE_TOKENS
        return name + math.ceil(len(raw) / BINARY_BYTES_PER_TOKEN)


@functools.cache
def default_counter() -> TokenCounter:
    """The process's counter: o200k_base through ``bpe-openai`` when that is installed, else the
    estimate. Loaded once (the vocabulary takes about a second) and read-only afterwards."""
    try:
        bpe_openai = importlib.import_module("bpe_openai")
        encoding = bpe_openai.get_encoding("o200k_base")
    except Exception:  # not installed, or a build that cannot load: the estimate is the fallback
        return TokenCounter()
    return TokenCounter(_BpeOpenAI(encoding), name=_BpeOpenAI.name)


def count_tokens(req: ChatRequest, counter: TokenCounter | None = None) -> int:
    """The request's input tokens: system, messages, tools (see the module doc for the rules)."""
    return (counter or default_counter()).count(req)


# --- images and PDFs -------------------------------------------------------------------------


def image_tokens(url: str) -> int:
    """Anthropic's rule for one image; ``IMAGE_MAX_TOKENS`` when its size is unknown."""
    size = image_size(url)
    if size is None:
        return IMAGE_MAX_TOKENS
    width, height = size
    scale = min(1.0, IMAGE_MAX_EDGE / max(width, height, 1))
    pixels = round(width * scale) * round(height * scale)
    return max(1, min(IMAGE_MAX_TOKENS, math.ceil(pixels / IMAGE_PIXELS_PER_TOKEN)))


def image_size(url: str) -> tuple[int, int] | None:
    """Width and height from a base64 ``data:`` URL's PNG, GIF, WEBP or JPEG header."""
    head, sep, payload = url.partition(",")
    if not sep or head[:5].lower() != "data:" or ";base64" not in head.lower():
        return None
    chunk = payload[:MAX_HEADER_B64]
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        data = base64.b64decode(chunk, validate=False)
    except (binascii.Error, ValueError):
        return None
    try:
        return _dimensions(data)
    except (struct.error, IndexError):
        return None


def _dimensions(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return _positive(w, h)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        w, h = struct.unpack("<HH", data[6:10])
        return _positive(w, h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg(data)
    return None


def _positive(w: int, h: int) -> tuple[int, int] | None:
    return (w, h) if w > 0 and h > 0 else None


def _webp(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return _positive(w, h)
    if kind == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return _positive(w & 0x3FFF, h & 0x3FFF)
    return None


_SOF: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return _positive(w, h)
        i += 2 + length
    return None


_PDF_PAGE: Final = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def pdf_pages(data: bytes) -> int:
    """Page objects visible in a PDF's bytes (0 when they sit in compressed object streams)."""
    return len(_PDF_PAGE.findall(data))
