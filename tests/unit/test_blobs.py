"""The blob store and its signed URLs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tollway.store.blobs import BlobSigner, FileBlobStore, extension, media_type_of


async def test_put_get_delete_sweep(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    await store.put("task_1-0.png", b"png")
    await store.put("req_9-0.png", b"old")
    assert await store.get("task_1-0.png") == b"png"
    assert await store.get("../etc/passwd") is None and await store.get("nope.png") is None
    with pytest.raises(ValueError):
        await store.put("../escape", b"x")
    old = time.time() - 3600
    os.utime(tmp_path / "blobs" / "req_9-0.png", (old, old))
    assert await store.sweep("req_", time.time() - 60) == 1
    assert await store.get("req_9-0.png") is None and await store.get("task_1-0.png") == b"png"
    await store.delete("task_1-0.png")
    assert await store.get("task_1-0.png") is None
    assert not list((tmp_path / "blobs").glob(".*tmp"))  # written whole, renamed in place


def test_signed_urls_expire_and_cannot_be_forged() -> None:
    now = [1000.0]
    signer = BlobSigner(b"k" * 32, ttl=60, clock=lambda: now[0])
    path, expires = signer.path("task_1-0.png")
    assert expires == 1060 and path.startswith("/blobs/task_1-0.png?expires=1060&signature=")
    sig = path.rpartition("signature=")[2]
    assert signer.valid("task_1-0.png", "1060", sig)
    assert not signer.valid("task_2-0.png", "1060", sig)  # another blob
    assert not signer.valid("task_1-0.png", "1061", sig)  # a later expiry
    assert not signer.valid("task_1-0.png", "1060", "0" + sig[1:])
    assert not BlobSigner(b"x" * 32, clock=lambda: now[0]).valid("task_1-0.png", "1060", sig)  # another key
    now[0] = 1061.0
    assert not signer.valid("task_1-0.png", "1060", sig)  # expired
    assert not signer.valid("task_1-0.png", "soon", sig)


def test_media_types() -> None:
    assert extension("image/png") == "png" and extension("audio/L16;rate=24000") == "bin"
    assert extension("image/jpeg") == "jpeg" and media_type_of("a.mp4") == "video/mp4"
