"""Media inline in an upstream's JSON body (Gemini, Bedrock), made without stalling the event loop.

A body that carries 12 MB of images as base64 took tens of milliseconds of one uninterrupted
step to code and encode, and every other request of the process waited. ``encode_with_media``
encodes the body with a placeholder for each media and splices their base64 in, coded in
``B64_STEP`` pieces with the event loop running between them. (A worker thread did not help:
base64 and JSON hold the interpreter lock, so the stall only became contention.) ``off_loop``
is for work that lets go of the lock (hashing a large body), and ``drop_locals`` frees what an
error's frames hold.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import traceback
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from tollway.core.chat import ChatRequest, DocumentBlock, ImageBlock, ToolResultBlock
from tollway.providers.media import B64_STEP, Media

OFF_LOOP_BYTES: Final = 256 * 1024  # a body this large is hashed in a worker thread
T = TypeVar("T")


async def b64_steps(data: bytes) -> list[bytes]:
    """Base64 of ``data`` in pieces of ``B64_STEP`` bytes, the event loop running between them
    (a piece takes about a millisecond; 12 MiB in one go held the loop for tens of them)."""
    view = memoryview(data)
    pieces = []
    for i in range(0, len(data), B64_STEP):
        if i:
            await asyncio.sleep(0)
        pieces.append(base64.b64encode(view[i:i + B64_STEP]))
    return pieces


def data_urls(req: ChatRequest) -> list[str]:
    """The ``data:`` URLs of a request's images and documents, tool results' included."""
    urls = []
    for message in req.messages:
        for block in message.content:
            for b in (block.content if isinstance(block, ToolResultBlock) else (block,)):
                url = b.url if isinstance(b, ImageBlock | DocumentBlock) else None
                if url and url[:5].lower() == "data:":
                    urls.append(url)
    return list(dict.fromkeys(urls))


class _Slot(Media, frozen=True, kw_only=True):
    """A media whose base64 is a placeholder in the encoded body, spliced in afterwards."""

    token: str

    def b64(self) -> str:
        return self.token


async def encode_with_media(build: Callable[[Mapping[str, Media]], object], media: Mapping[str, Media],
                            encode: Callable[[object], bytes]) -> bytes:
    """``encode(build(media))`` for a JSON body that holds ``media`` as base64 (``Media.b64``):
    the body is encoded with a placeholder for each, and their base64, coded in steps with the
    event loop running between them (``b64_steps``), is spliced in after. Base64 needs no JSON
    escaping, so the bytes are those of encoding the whole; only the final join copies at once."""
    if not media:
        return encode(build(media))
    nonce = secrets.token_hex(8)
    items = list(media.values())
    slots = {url: _Slot(media_type=m.media_type, data=m.data, token=f"tollway-media-{nonce}-{i}")
             for i, (url, m) in enumerate(media.items())}
    raw = encode(build(slots))
    out: list[bytes] = []
    coded: dict[int, list[bytes]] = {}
    at = 0
    for found in re.finditer(rb"tollway-media-" + nonce.encode() + rb"-(\d+)", raw):
        out.append(raw[at:found.start()])
        index = int(found.group(1))
        if index not in coded:
            coded[index] = await b64_steps(items[index].data)
        out.extend(coded[index])
        at = found.end()
    out.append(raw[at:])
    return b"".join(out)


async def off_loop(size: int, work: Callable[[], T]) -> T:
    """``work()``, in a worker thread when it handles ``size`` >= OFF_LOOP_BYTES bytes: for work
    that lets go of the interpreter lock while it runs (hashing a large body). Work that holds it
    (base64, JSON) goes in steps instead: in a thread it only traded the stall for contention."""
    if size < OFF_LOOP_BYTES:
        return work()
    return await asyncio.to_thread(work)


def drop_locals(exc: BaseException) -> None:
    """Clear the locals of the finished frames ``exc`` came up through. An error's traceback
    keeps them, and with them a request's media and upstream body, for as long as the error is
    referenced, and an error caught in an asyncio task is often in a reference cycle that only
    the cyclic collector frees (seldom, at the gateway's collector thresholds)."""
    traceback.clear_frames(exc.__traceback__)
