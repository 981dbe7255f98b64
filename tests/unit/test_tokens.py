"""count_tokens: behaviour, and the documented rules for what is not plain text.

Most tests use ``TokenCounter()`` (the estimate) so they hold whether or not a real tokenizer
is installed; the numbers checked are derived from the rules in tollway.routing.tokens.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib

import pytest

from tollway.core.chat import (
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
from tollway.routing import tokens
from tollway.routing.tokens import (
    IMAGE_MAX_TOKENS,
    MESSAGE_OVERHEAD,
    PDF_PAGE_TOKENS,
    REQUEST_OVERHEAD,
    TOOL_USE_SYSTEM_PROMPT,
    TokenCounter,
    count_tokens,
    default_counter,
    estimate_text_tokens,
    image_size,
    image_tokens,
    pdf_pages,
)

EST = TokenCounter()
PROSE = ("Measuring performance honestly takes more discipline than most teams expect. A benchmark that "
         "runs for three seconds on a laptop will report numbers that vary from one run to the next. ")
CHINESE = "清晨的江边总是很安静。雾气从水面上慢慢升起，把对岸的楼房遮得只剩下模糊的轮廓。"
CODE = "def merge(a: list[int], b: list[int]) -> list[int]:\n    return sorted(a + b)\n"


def req(*messages: Message, **kw: object) -> ChatRequest:
    return ChatRequest(model="m", messages=messages, **kw)  # type: ignore[arg-type]


def user(*blocks: object) -> Message:
    return Message(role="user", content=tuple(blocks))  # type: ignore[arg-type]


def text(t: str) -> TextBlock:
    return TextBlock(text=t)


def png(width: int, height: int) -> str:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return "data:image/png;base64," + base64.b64encode(data).decode()


def gif(width: int, height: int) -> str:
    data = b"GIF89a" + struct.pack("<HH", width, height) + b"\0" * 8
    return "data:image/gif;base64," + base64.b64encode(data).decode()


def jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\x01\x01\0\0\x01\0\x01\0\0"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\0"
    return "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + app0 + sof + b"\xff\xd9").decode()


def webp_vp8x(width: int, height: int) -> str:
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" \
        + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return "data:image/webp;base64," + base64.b64encode(b"RIFF" + struct.pack("<I", len(body)) + body).decode()


def webp_vp8l(width: int, height: int) -> str:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"WEBP" + b"VP8L" + struct.pack("<I", 5) + b"\x2f" + bits.to_bytes(4, "little")
    return "data:image/webp;base64," + base64.b64encode(b"RIFF" + struct.pack("<I", len(body)) + body).decode()


def anthropic_rule(width: int, height: int) -> int:
    scale = min(1.0, 1568 / max(width, height))
    return min(1600, math.ceil(round(width * scale) * round(height * scale) / 750))


# --- text ------------------------------------------------------------------------------------


def test_empty_text_is_zero() -> None:
    assert estimate_text_tokens("") == 0


@pytest.mark.parametrize("unit", [PROSE, CHINESE, CODE, '{"a": [1, 2, 3], "b": "x"}\n', "Привет, мир! 🚀 "])
def test_monotonic_in_text_length(unit: str) -> None:
    counts = [estimate_text_tokens(unit * n) for n in range(1, 8)]
    assert counts == sorted(counts)
    assert len(set(counts)) == len(counts)  # strictly growing
    assert counts[-1] >= 6 * counts[0]  # and roughly linear


def test_prefix_never_counts_more() -> None:
    for cut in range(0, len(PROSE), 7):
        assert estimate_text_tokens(PROSE[:cut]) <= estimate_text_tokens(PROSE) + 1


def test_english_is_about_one_token_per_word() -> None:
    words = len(PROSE.split())
    assert 0.9 * words <= estimate_text_tokens(PROSE) <= 1.4 * words


def test_chinese_counts_per_character_not_per_four_bytes() -> None:
    n = estimate_text_tokens(CHINESE)
    assert n > len(CHINESE) / 2  # chars/4 would give a quarter of the characters
    assert n <= 1.2 * len(CHINESE)


def test_non_ascii_is_counted() -> None:
    assert estimate_text_tokens("Привет") >= 1
    assert estimate_text_tokens("🚀") >= 1
    assert estimate_text_tokens("ñandú über café") >= 3
    assert estimate_text_tokens("東京の天気は晴れ") >= 4


def test_digit_runs_count_in_groups_of_three() -> None:
    assert estimate_text_tokens("1") == 1
    assert estimate_text_tokens("123") == 1
    assert estimate_text_tokens("1234567") == 3


def test_whitespace_alone_is_cheap() -> None:
    assert estimate_text_tokens("\n") == 1
    assert estimate_text_tokens("   \n\n") == 1


# --- requests --------------------------------------------------------------------------------


def test_request_without_messages_is_the_overhead() -> None:
    assert EST.count(req()) == REQUEST_OVERHEAD


def test_empty_message_costs_the_message_overhead() -> None:
    assert EST.count(req(user())) == REQUEST_OVERHEAD + MESSAGE_OVERHEAD
    assert EST.count(req(user(text("")))) == REQUEST_OVERHEAD + MESSAGE_OVERHEAD


def test_message_text_is_counted() -> None:
    assert EST.count(req(user(text(PROSE)))) == REQUEST_OVERHEAD + MESSAGE_OVERHEAD + estimate_text_tokens(PROSE)


def test_more_messages_count_more() -> None:
    one = EST.count(req(user(text("hello"))))
    two = EST.count(req(user(text("hello")), Message(role="assistant", content=(text("hi there"),))))
    assert two > one


def test_system_is_counted() -> None:
    base = req(user(text("hello")))
    with_system = req(Message(role="system", content=(text(PROSE),)), user(text("hello")))
    assert EST.count(with_system) - EST.count(base) == MESSAGE_OVERHEAD + estimate_text_tokens(PROSE)


def test_message_name_is_counted() -> None:
    plain = EST.count(req(user(text("hi"))))
    named = EST.count(req(Message(role="user", content=(text("hi"),), name="alice")))
    assert named > plain


def test_tools_are_counted() -> None:
    base = req(user(text("weather?")))
    weather = Tool(name="get_weather", description="Current weather for a city.",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    one = req(user(text("weather?")), tools=(weather,))
    assert EST.count(one) - EST.count(base) > TOOL_USE_SYSTEM_PROMPT
    bigger = Tool(name="get_weather", description="Current weather for a city. " * 20, parameters=weather.parameters)
    assert EST.count(req(user(text("weather?")), tools=(bigger,))) > EST.count(one)
    two = req(user(text("weather?")), tools=(weather, Tool(name="get_time")))
    assert EST.count(two) > EST.count(one)


def test_response_format_is_counted() -> None:
    base = req(user(text("x")))
    schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}
    assert EST.count(req(user(text("x")), response_format=schema)) > EST.count(base)


def test_tool_calls_and_results_are_counted() -> None:
    base = EST.count(req(user(text("x"))))
    call_block = ToolCallBlock(id="c1", name="get_weather", arguments='{"city": "Paris"}')
    call = Message(role="assistant", content=(call_block,))
    result = Message(role="tool", content=(ToolResultBlock(tool_call_id="c1", content=(text("18 C and sunny"),)),))
    with_call = EST.count(req(user(text("x")), call))
    with_both = EST.count(req(user(text("x")), call, result))
    assert base < with_call < with_both


def test_reasoning_is_counted() -> None:
    base = EST.count(req(user(text("x"))))
    thought = Message(role="assistant", content=(ReasoningBlock(text=PROSE, signature="sig"),))
    assert EST.count(req(user(text("x")), thought)) - base == MESSAGE_OVERHEAD + estimate_text_tokens(PROSE)
    redacted = Message(role="assistant", content=(ReasoningBlock(redacted_data="QUJD" * 100),))
    assert EST.count(req(user(text("x")), redacted)) - base == MESSAGE_OVERHEAD + 100


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [png, gif, jpeg, webp_vp8x, webp_vp8l])
def test_image_size_is_read_from_the_header(make: object) -> None:
    assert image_size(make(640, 480)) == (640, 480)  # type: ignore[operator]


@pytest.mark.parametrize(("width", "height"), [(1, 1), (200, 100), (640, 480), (1092, 1092), (4000, 3000), (100, 5000)])
def test_image_tokens_follow_the_anthropic_rule(width: int, height: int) -> None:
    assert image_tokens(png(width, height)) == anthropic_rule(width, height)


def test_image_tokens_grow_with_size_up_to_the_cap() -> None:
    sizes = [image_tokens(png(s, s)) for s in (50, 200, 500, 1000, 3000)]
    assert sizes == sorted(sizes)
    assert sizes[-1] == IMAGE_MAX_TOKENS


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "data:image/png;base64,!!!!", "data:image/png;base64,"
                                 + base64.b64encode(b"not an image").decode(), "data:text/plain,hello"])
def test_image_of_unknown_size_counts_the_maximum(url: str) -> None:
    assert image_tokens(url) == IMAGE_MAX_TOKENS


def test_images_are_counted_in_requests() -> None:
    base = EST.count(req(user(text("what is this?"))))
    small = EST.count(req(user(text("what is this?"), ImageBlock(url=png(200, 100)))))
    assert small - base == anthropic_rule(200, 100)
    two = EST.count(req(user(text("what is this?"), ImageBlock(url=png(200, 100)), ImageBlock(url=png(200, 100)))))
    assert two - base == 2 * anthropic_rule(200, 100)
    result = ToolResultBlock(tool_call_id="c", content=(ImageBlock(url=png(200, 100)),))
    in_result = Message(role="tool", content=(result,))
    assert EST.count(req(user(text("what is this?")), in_result)) - base > anthropic_rule(200, 100)


# --- documents -------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_text_document_counts_as_its_text() -> None:
    base = EST.count(req(user(text("summarise"))))
    doc = DocumentBlock(data=b64(PROSE.encode()), media_type="text/plain")
    assert EST.count(req(user(text("summarise"), doc))) - base == estimate_text_tokens(PROSE)


def test_pdf_counts_per_page() -> None:
    pdf = b"%PDF-1.4\n" + b"".join(b"%d 0 obj << /Type /Page /Parent 1 0 R >> endobj\n" % i for i in range(3)) \
        + b"1 0 obj << /Type /Pages /Count 3 >> endobj\n%%EOF"
    assert pdf_pages(pdf) == 3
    base = EST.count(req(user(text("summarise"))))
    doc = DocumentBlock(data=b64(pdf), media_type="application/pdf")
    assert EST.count(req(user(text("summarise"), doc))) - base == 3 * PDF_PAGE_TOKENS


def test_binary_document_counts_by_decoded_size() -> None:
    small = DocumentBlock(data=b64(b"\0" * 1600), media_type="application/pdf")  # no visible pages
    big = DocumentBlock(data=b64(b"\0" * 16000), media_type="application/pdf")
    count_small = EST.count(req(user(small)))
    count_big = EST.count(req(user(big)))
    assert count_big - count_small == (16000 - 1600) // tokens.BINARY_BYTES_PER_TOKEN


def test_document_by_url_counts_one_page() -> None:
    doc = DocumentBlock(url="https://example.com/a.pdf")
    assert EST.count(req(user(doc))) == REQUEST_OVERHEAD + MESSAGE_OVERHEAD + PDF_PAGE_TOKENS


# --- which text counter ----------------------------------------------------------------------


def test_count_tokens_uses_the_default_counter() -> None:
    r = req(user(text(PROSE)))
    assert count_tokens(r) == default_counter().count(r)
    assert default_counter().name in ("estimate", "o200k_base (bpe-openai)")
    assert count_tokens(r, EST) == EST.count(r)


def test_a_real_tokenizer_is_used_when_given() -> None:
    words = TokenCounter(lambda t: len(t.split()), name="words")
    assert words.count(req(user(text("one two three")))) == REQUEST_OVERHEAD + MESSAGE_OVERHEAD + 3


class FakeEncoding:
    """Stands in for bpe-openai's encoding: one token per word; refuses over-long input."""

    def encode_ordinary(self, t: str) -> list[int]:
        assert len(t) <= tokens.CHUNK_CHARS
        return [0] * len(t.split())


def test_long_text_is_encoded_in_chunks_without_losing_tokens() -> None:
    counter = tokens._BpeOpenAI(FakeEncoding())
    long_text = "alpha beta gamma " * 50_000  # 850k characters
    assert counter(long_text) == 150_000


def test_a_long_text_without_spaces_is_counted_not_refused() -> None:
    """bpe-openai refuses one input of more than 200k tokens: chunks must stay under that."""
    from tollway.core.chat import ChatRequest, Message, TextBlock
    from tollway.routing.tokens import count_tokens

    def of(n: int) -> int:
        text = "a\U00010400" * n
        return count_tokens(ChatRequest(model="m", messages=(Message(role="user", content=(TextBlock(text=text),)),)))

    assert of(50_000) > of(25_000) > 0
