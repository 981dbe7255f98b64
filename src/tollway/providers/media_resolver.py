"""The resolver under media fetches (``providers.media``): aiohttp's, wrapped so that a host
resolving to any address that is not public is refused. Its own module so that aiohttp is
imported with the first fetch, not at start (issue 19)."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from tollway.providers import media


class GuardedResolver(AbstractResolver):
    """Wraps a resolver and refuses a host when any address it resolves to is not public.

    The connector connects only to the addresses this returns, so the addresses checked are
    the addresses used."""

    def __init__(self, inner: AbstractResolver, *, allow_private: bool = False) -> None:
        self._inner = inner
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for result in results:
                ip = media._parse_address(result["host"])
                reason = "not a valid address" if ip is None else media.address_refusal(ip)
                if reason:
                    raise media.AddressRefused(host, result["host"], reason)
        return results

    async def close(self) -> None:
        await self._inner.close()
