"""Where the gateway keeps what tasks made (images, videos, audio), and the expiring signed URLs
it serves them under.

``BlobStore`` is the interface (``put``, ``get``, ``delete``); ``FileBlobStore`` keeps each blob
as a file under the data directory (``<data dir>/blobs``), written to a temporary name and
renamed, so a reader never sees half a file. An S3-compatible store implements the same three
calls. Names are the gateway's own (``<task id>-<n>.<ext>``), checked against ``NAME``.

``BlobSigner`` makes a URL that names a blob and when it expires, signed with HMAC-SHA256 under
a key derived from the gateway's secret key: whoever holds the URL may fetch the blob until
then (the URL is given only to the blob's owner); the check is constant-time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import quote

NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MEDIA_TYPES: Final = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp",
                      "gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm", "mp3": "audio/mpeg",
                      "wav": "audio/wav", "ogg": "audio/ogg", "flac": "audio/flac", "aac": "audio/aac",
                      "pcm": "audio/pcm", "bin": "application/octet-stream"}
EXTENSIONS: Final = {v: k for k, v in reversed(MEDIA_TYPES.items())}


def extension(media_type: str) -> str:
    return EXTENSIONS.get(media_type.split(";")[0].strip().lower(), "bin")


def media_type_of(name: str) -> str:
    return MEDIA_TYPES.get(name.rpartition(".")[2].lower(), "application/octet-stream")


class BlobStore(Protocol):
    async def put(self, name: str, data: bytes) -> None: ...

    async def get(self, name: str) -> bytes | None: ...

    async def delete(self, name: str) -> None: ...

    async def sweep(self, prefix: str, before: float) -> int:
        """Delete the blobs named ``prefix``... stored before ``before`` (unix time); how many."""
        ...


def _checked(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"not a blob name: {name!r}")
    return name


class FileBlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _put(self, name: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / _checked(name)
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, name, data)

    def _get(self, name: str) -> bytes | None:
        try:
            return (self.root / _checked(name)).read_bytes()
        except FileNotFoundError:
            return None

    async def get(self, name: str) -> bytes | None:
        if not NAME.match(name):
            return None
        return await asyncio.to_thread(self._get, name)

    async def delete(self, name: str) -> None:
        path = self.root / _checked(name)
        await asyncio.to_thread(path.unlink, True)

    def _sweep(self, prefix: str, before: float) -> int:
        gone = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.glob(f"{prefix}*"):
            try:
                if path.stat().st_mtime < before:
                    path.unlink()
                    gone += 1
            except FileNotFoundError:
                pass
        return gone

    async def sweep(self, prefix: str, before: float) -> int:
        return await asyncio.to_thread(self._sweep, prefix, before)


class BlobSigner:
    """Expiring URLs of blobs: ``/blobs/<name>?expires=<unix time>&signature=<hex>``."""

    PATH: Final = "/blobs/"

    def __init__(self, key: bytes, *, ttl: float = 3600.0, clock: Callable[[], float] | None = None) -> None:
        self._key = hashlib.sha256(b"tollway blob urls\0" + key).digest()
        self.ttl = ttl
        self._clock = clock or time.time

    def _mac(self, name: str, expires: int) -> str:
        return hmac.new(self._key, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def path(self, name: str, ttl: float | None = None) -> tuple[str, int]:
        """The signed path (relative to the gateway's base URL) and when it expires."""
        expires = int(self._clock() + (self.ttl if ttl is None else ttl))
        return f"{self.PATH}{quote(name)}?expires={expires}&signature={self._mac(name, expires)}", expires

    def valid(self, name: str, expires: str, signature: str) -> bool:
        if not expires.isdigit() or int(expires) < self._clock():
            return False
        return hmac.compare_digest(self._mac(name, int(expires)), signature)
