"""The SSRF-guarded media fetcher, against a real aiohttp server on 127.0.0.1.

No traffic leaves 127.0.0.1: names resolve through a stub resolver (or /etc/hosts for
``localhost``), and every test runs with the event loop's ``sock_connect`` wrapped so that a
connection to anything but 127.0.0.1 fails the test, and every connection is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from tollway.core.errors import InvalidRequest, RateLimited
from tollway.providers import inline, media
from tollway.providers.media import (
    MediaFetcher,
    MediaPolicy,
    address_refusal,
    decode_data_url,
    shown_url,
    sniff_media_type,
)
from tollway.providers.media_resolver import GuardedResolver

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 2  # 528 bytes, under CAP
CAP = 1000


class Upstream:
    """A loopback server that records every request path it receives."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0
        self.active = 0  # /paced requests being answered now
        self.peak = 0  # the most at once

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path_qs)
        path = request.path
        if path == "/image.png":
            return web.Response(body=PNG, content_type="image/png")
        if path == "/with-params":
            return web.Response(body=PNG, headers={"Content-Type": "image/png; charset=binary"})
        if path == "/untyped":
            return web.Response(body=PNG)  # aiohttp says application/octet-stream: sniffed
        if path == "/exact":
            return web.Response(body=b"x" * CAP, content_type="image/png")
        if path == "/big":
            return web.Response(body=b"x" * (CAP + 1), content_type="image/png")
        if path == "/big-then-stall":  # a huge Content-Length, then nothing: refused without waiting
            resp = web.StreamResponse(headers={"Content-Type": "image/png", "Content-Length": str(10**9)})
            await resp.prepare(request)
            await asyncio.sleep(30)
            return resp
        if path == "/chunked-big":
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for _ in range(10):
                await resp.write(b"y" * 300)
            await resp.write_eof()
            return resp
        if path == "/slow":
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b"z" * 10)
            await asyncio.sleep(30)
            return resp
        if path.startswith("/hop/"):  # /hop/n takes n + 1 redirects to reach the image
            n = int(path.rsplit("/", 1)[1])
            status = (301, 302, 303, 307, 308)[n % 5]
            target = f"/hop/{n - 1}" if n > 0 else f"http://127.0.0.1:{self.port}/image.png"
            return web.Response(status=status, headers={"Location": target})
        if path == "/to-loopback":
            return web.Response(status=302, headers={"Location": f"http://127.0.0.1:{self.port}/image.png"})
        if path == "/to-localhost":
            return web.Response(status=302, headers={"Location": f"http://localhost:{self.port}/image.png"})
        if path == "/to-metadata":
            return web.Response(status=307, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        if path == "/to-file":
            return web.Response(status=302, headers={"Location": "file:///etc/passwd"})
        if path == "/no-location":
            return web.Response(status=302)
        if path == "/paced":  # an image after a short wait, counting how many are answered at once
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                await asyncio.sleep(0.05)
            finally:
                self.active -= 1
            return web.Response(body=PNG, content_type="image/png")
        return web.Response(status=404, text="not here")


class StubResolver(AbstractResolver):
    """Names from a table; anything else does not resolve. Never asks a real DNS server."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"stub resolver: {host} is unknown")
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for a in self.table[host]]

    async def close(self) -> None:
        return None


STUB_TABLE = {
    "images.example.com": ["127.0.0.1"],  # a "public" name that resolves to loopback
    "public.test": ["127.0.0.1"],
    "localhost": ["127.0.0.1"],
    "mixed.example.com": ["93.184.215.14", "127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "mapped.example.com": ["::ffff:10.1.2.3"],
}


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address the loop is asked to connect to; anything but 127.0.0.1 fails the test."""
    loop = asyncio.get_running_loop()
    seen: list[Any] = []
    real: Callable[[socket.socket, Any], Awaitable[None]] = loop.sock_connect

    async def guarded(sock: socket.socket, address: Any) -> None:
        seen.append(address)
        if address[0] != "127.0.0.1":
            raise AssertionError(f"a test tried to connect to {address}")
        await real(sock, address)

    monkeypatch.setattr(loop, "sock_connect", guarded)
    return seen


@pytest.fixture
async def upstream(connects: list[Any]) -> AsyncIterator[Upstream]:
    up = Upstream()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", up.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up.port = runner.addresses[0][1]
    try:
        yield up
    finally:
        await runner.cleanup()


def make_fetcher(allow_private: bool = False, *, resolver: AbstractResolver | None = None,
                 **policy: Any) -> MediaFetcher:
    policy.setdefault("max_bytes", CAP)
    policy.setdefault("timeout", 2.0)
    return MediaFetcher(MediaPolicy(allow_private=allow_private, **policy), resolver=resolver)


@pytest.fixture
async def private_ok() -> AsyncIterator[MediaFetcher]:
    f = make_fetcher(True, resolver=StubResolver(STUB_TABLE))
    yield f
    await f.close()


@pytest.fixture
async def guarded() -> AsyncIterator[MediaFetcher]:
    f = make_fetcher(False, resolver=StubResolver(STUB_TABLE))
    yield f
    await f.close()


async def refused(fetcher: MediaFetcher, url: str) -> str:
    with pytest.raises(InvalidRequest) as info:
        await fetcher.load(url)
    assert info.value.status == 400
    return info.value.message


# --- fetching what is allowed ---------------------------------------------------------------


async def test_loads_image_when_private_allowed(upstream: Upstream, private_ok: MediaFetcher) -> None:
    got = await private_ok.load(f"http://127.0.0.1:{upstream.port}/image.png")
    assert got.data == PNG
    assert got.media_type == "image/png"
    assert got.b64() == base64.b64encode(PNG).decode()
    assert upstream.seen == ["/image.png"]


async def test_name_is_connected_through_the_injected_resolver(upstream: Upstream) -> None:
    stub = StubResolver(STUB_TABLE)
    f = make_fetcher(True, resolver=stub)
    try:
        got = await f.load(f"http://public.test:{upstream.port}/image.png")
    finally:
        await f.close()
    assert got.data == PNG
    assert stub.asked == ["public.test"]


async def test_media_type_without_parameters(upstream: Upstream, private_ok: MediaFetcher) -> None:
    got = await private_ok.load(f"http://127.0.0.1:{upstream.port}/with-params")
    assert got.media_type == "image/png"


async def test_untyped_body_is_sniffed(upstream: Upstream, private_ok: MediaFetcher) -> None:
    got = await private_ok.load(f"http://127.0.0.1:{upstream.port}/untyped")
    assert got.media_type == "image/png"


@pytest.mark.parametrize(("head", "expected"), [
    (b"\x89PNG\r\n\x1a\n....", "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
    (b"GIF89a\x01\x00", "image/gif"),
    (b"GIF87a\x01\x00", "image/gif"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"%PDF-1.7\n", "application/pdf"),
    (b"hello", "application/octet-stream"),
    (b"", "application/octet-stream"),
])
def test_sniff_media_type(head: bytes, expected: str) -> None:
    assert sniff_media_type(head) == expected


async def test_data_url_is_decoded_without_any_connection(connects: list[Any]) -> None:
    f = make_fetcher(False)
    try:
        got = await f.load("data:image/png;base64," + base64.b64encode(PNG).decode())
    finally:
        await f.close()
    assert got == media.Media(media_type="image/png", data=PNG)
    assert connects == []


@pytest.mark.parametrize("url", [
    "data:image/png;base64,***not base64***",
    "data:image/png;base64,abc",  # bad padding
    "data:image/png,rawbytes",  # not base64
    "data:image/png;base64",  # no comma
])
def test_bad_data_url(url: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_data_url(url)


def test_data_url_without_media_type() -> None:
    assert decode_data_url("data:;base64,aGk=").media_type == "application/octet-stream"


# --- refused before any connection --------------------------------------------------------------


@pytest.mark.parametrize(("host", "why"), [
    ("127.0.0.1", "loopback"),
    ("[::1]", "loopback"),
    ("169.254.169.254", "metadata"),
    ("10.0.0.1", "private"),
    ("2130706433", "loopback"),  # decimal 127.0.0.1
    ("0177.0.0.1", "loopback"),  # octal
    ("127.1", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[::ffff:169.254.169.254]", "metadata"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("[fd00:ec2::254]", "metadata"),
    ("100.100.100.200", "metadata"),
    ("[fe80::1]", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("192.168.1.1", "private"),
    ("172.16.0.1", "private"),
])
async def test_literal_private_addresses_are_refused_before_connecting(
        upstream: Upstream, connects: list[Any], host: str, why: str) -> None:
    f = make_fetcher(False)
    try:
        message = await refused(f, f"http://{host}:{upstream.port}/image.png")
    finally:
        await f.close()
    assert why in message
    assert "refused" in message
    assert upstream.seen == []
    assert connects == []


async def test_localhost_is_refused_with_the_default_resolver(upstream: Upstream, connects: list[Any]) -> None:
    f = make_fetcher(False)  # aiohttp's threaded getaddrinfo resolver: localhost comes from /etc/hosts
    try:
        message = await refused(f, f"http://localhost:{upstream.port}/image.png")
    finally:
        await f.close()
    assert "loopback" in message
    assert upstream.seen == []
    assert connects == []


@pytest.mark.parametrize(("host", "why"), [
    ("images.example.com", "resolves to 127.0.0.1, a loopback address"),
    ("mixed.example.com", "resolves to 127.0.0.1, a loopback address"),  # one bad answer is enough
    ("metadata.example.com", "cloud metadata"),
    ("mapped.example.com", "private address in IPv4-mapped form"),
])
async def test_public_name_resolving_to_private_address_is_refused(
        upstream: Upstream, connects: list[Any], guarded: MediaFetcher, host: str, why: str) -> None:
    message = await refused(guarded, f"http://{host}:{upstream.port}/image.png")
    assert why in message
    assert upstream.seen == []
    assert connects == []


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "ftp://example.com/a.png",
    "gopher://example.com:70/_x",
    "example.com/image.png",
    "//example.com/image.png",
    "javascript:alert(1)",
])
async def test_other_schemes_are_refused(connects: list[Any], guarded: MediaFetcher, url: str) -> None:
    message = await refused(guarded, url)
    assert "only http and https" in message
    assert connects == []


async def test_url_without_host_is_refused(guarded: MediaFetcher) -> None:
    assert "no host" in await refused(guarded, "http:///image.png")


async def test_unknown_name_is_an_invalid_request(guarded: MediaFetcher) -> None:
    assert "could not be reached" in await refused(guarded, "http://nowhere.invalid/image.png")


def test_huge_url_is_cut_in_messages() -> None:
    url = "http://127.0.0.1/" + "a" * 10_000
    shown = shown_url(url)
    assert len(shown) <= 210 and shown.endswith("...")


def test_credentials_are_not_shown() -> None:
    assert "secret" not in shown_url("http://user:secret@example.com/x.png")


async def test_refusal_message_is_short_for_a_huge_url(connects: list[Any]) -> None:
    f = make_fetcher(False)
    try:
        message = await refused(f, "http://127.0.0.1/" + "a" * 50_000)
    finally:
        await f.close()
    assert len(message) < 400


# --- redirects ----------------------------------------------------------------------------------


async def test_redirect_chain_is_followed(upstream: Upstream, private_ok: MediaFetcher) -> None:
    got = await private_ok.load(f"http://127.0.0.1:{upstream.port}/hop/2")  # 3 redirects, the limit
    assert got.data == PNG
    assert upstream.seen == ["/hop/2", "/hop/1", "/hop/0", "/image.png"]


async def test_too_many_redirects(upstream: Upstream, private_ok: MediaFetcher) -> None:
    message = await refused(private_ok, f"http://127.0.0.1:{upstream.port}/hop/3")  # 4 redirects
    assert "more than 3 redirects" in message
    assert upstream.seen == ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]


async def test_no_redirects_allowed(upstream: Upstream) -> None:
    f = make_fetcher(True, max_redirects=0)
    try:
        message = await refused(f, f"http://127.0.0.1:{upstream.port}/hop/0")
    finally:
        await f.close()
    assert "more than 0 redirects" in message


@pytest.fixture
def loopback_public_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the first address check pass (the first hop stands in for a public host), then be real."""
    calls = 0

    def first_passes(ip: media.IPAddress) -> str | None:
        nonlocal calls
        calls += 1
        return None if calls == 1 else address_refusal(ip)

    monkeypatch.setattr(media, "address_refusal", first_passes)


@pytest.mark.parametrize(("path", "why"), [
    ("/to-loopback", "127.0.0.1 is a loopback address"),
    ("/to-localhost", "resolves to 127.0.0.1, a loopback address"),
    ("/to-metadata", "cloud metadata"),
])
async def test_redirect_to_private_address_is_refused(
        upstream: Upstream, connects: list[Any], guarded: MediaFetcher, loopback_public_once: None,
        path: str, why: str) -> None:
    message = await refused(guarded, f"http://public.test:{upstream.port}{path}")
    assert why in message
    assert "reached by a redirect" in message
    assert upstream.seen == [path]  # the image behind the redirect was never requested
    assert len(connects) == 1


async def test_redirect_to_loopback_refused_without_the_stand_in(upstream: Upstream, guarded: MediaFetcher) -> None:
    # with the real check even the first hop (a name resolving to loopback) is refused
    assert "loopback" in await refused(guarded, f"http://public.test:{upstream.port}/to-loopback")
    assert upstream.seen == []


async def test_redirect_to_file_scheme_is_refused(upstream: Upstream, private_ok: MediaFetcher) -> None:
    message = await refused(private_ok, f"http://127.0.0.1:{upstream.port}/to-file")
    assert "scheme 'file'" in message and "reached by a redirect" in message


async def test_redirect_without_location(upstream: Upstream, private_ok: MediaFetcher) -> None:
    assert "without a Location" in await refused(private_ok, f"http://127.0.0.1:{upstream.port}/no-location")


# --- status, size, time ---------------------------------------------------------------------


async def test_not_found_names_the_status(upstream: Upstream, private_ok: MediaFetcher) -> None:
    assert "HTTP 404" in await refused(private_ok, f"http://127.0.0.1:{upstream.port}/missing.png")


async def test_body_at_the_cap_loads(upstream: Upstream, private_ok: MediaFetcher) -> None:
    got = await private_ok.load(f"http://127.0.0.1:{upstream.port}/exact")
    assert len(got.data) == CAP


async def test_content_length_over_cap_is_refused(upstream: Upstream, private_ok: MediaFetcher) -> None:
    assert "larger than the 1000-byte limit" in await refused(private_ok, f"http://127.0.0.1:{upstream.port}/big")


async def test_content_length_over_cap_is_refused_before_the_body(upstream: Upstream, private_ok: MediaFetcher) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    message = await refused(private_ok, f"http://127.0.0.1:{upstream.port}/big-then-stall")
    assert "larger than" in message  # not the timeout: the body was never waited for
    assert loop.time() - start < 1.5


async def test_chunked_body_over_cap_is_cut_while_streaming(upstream: Upstream, private_ok: MediaFetcher) -> None:
    assert "larger than the 1000-byte limit" in await refused(
        private_ok, f"http://127.0.0.1:{upstream.port}/chunked-big")


async def test_slow_body_times_out(upstream: Upstream) -> None:
    f = make_fetcher(True, timeout=0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        message = await refused(f, f"http://127.0.0.1:{upstream.port}/slow")
    finally:
        await f.close()
    assert "took longer than 0.3s" in message
    assert loop.time() - start < 2.0


async def test_close_is_idempotent_and_fetcher_reopens(upstream: Upstream, private_ok: MediaFetcher) -> None:
    await private_ok.load(f"http://127.0.0.1:{upstream.port}/image.png")
    await private_ok.close()
    await private_ok.close()
    got = await private_ok.load(f"http://127.0.0.1:{upstream.port}/image.png")
    assert got.data == PNG


# --- the address rules ---------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.255.0.9", "10.1.2.3", "172.31.255.255", "192.168.0.1", "169.254.0.1",
    "169.254.169.254", "100.64.0.1", "100.127.255.255", "100.100.100.200", "0.0.0.0", "224.0.0.251",
    "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "192.0.0.192",
    "::", "::1", "fe80::1", "fe80::1%1", "fc00::1", "fd12:3456::1", "fd00:ec2::254", "ff02::1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "64:ff9b::a00:1",
    "64:ff9b::7f00:1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "2001:db8::1", "100::1", "64:ff9b:1::1",
])
def test_addresses_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001::200e",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public_addresses_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


async def test_guarded_resolver_passes_public_answers_through() -> None:
    stub = StubResolver({"pub.example": ["8.8.8.8", "2606:4700:4700::1111"]})
    resolver = GuardedResolver(stub)
    got = await resolver.resolve("pub.example", 443)
    assert [r["host"] for r in got] == ["8.8.8.8", "2606:4700:4700::1111"]
    await resolver.close()


async def test_guarded_resolver_allow_private() -> None:
    resolver = GuardedResolver(StubResolver(STUB_TABLE), allow_private=True)
    got = await resolver.resolve("images.example.com", 80)
    assert got[0]["host"] == "127.0.0.1"


async def test_guarded_resolver_refuses_as_an_os_error() -> None:
    resolver = GuardedResolver(StubResolver(STUB_TABLE))
    with pytest.raises(OSError) as info:
        await resolver.resolve("images.example.com", 80)
    assert isinstance(info.value, media.AddressRefused)
    assert info.value.reason == "a loopback address"



# --- many URLs for one request ---------------------------------------------------------------


def fetch_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("media fetch") and not t.done()]


async def refused_many(fetcher: MediaFetcher, urls: list[str]) -> str:
    with pytest.raises(InvalidRequest) as info:
        await fetcher.load_many(urls)
    assert info.value.status == 400
    return info.value.message


def test_policy_defaults_bound_each_request() -> None:
    policy = MediaPolicy()
    assert policy.max_urls_per_request == 16
    assert policy.max_total_bytes == 50 * 1024 * 1024
    assert media.FETCH_CONCURRENCY == 4


async def test_load_many_fetches_each_url_once_and_decodes_data_urls(upstream: Upstream,
                                                                      private_ok: MediaFetcher) -> None:
    a = f"http://127.0.0.1:{upstream.port}/image.png"
    b = f"http://127.0.0.1:{upstream.port}/untyped"
    data_url = "data:image/gif;base64," + base64.b64encode(b"GIF89a").decode()
    got = await private_ok.load_many([a, data_url, b, a, data_url, b])
    assert list(got) == [a, data_url, b]
    assert got[a] == got[b] == media.Media(media_type="image/png", data=PNG)
    assert got[data_url] == media.Media(media_type="image/gif", data=b"GIF89a")
    assert sorted(upstream.seen) == ["/image.png", "/untyped"]


async def test_load_many_of_nothing(connects: list[Any], private_ok: MediaFetcher) -> None:
    assert await private_ok.load_many([]) == {}
    assert connects == []


async def test_load_many_refuses_too_many_distinct_urls_before_any_connection(
        upstream: Upstream, connects: list[Any]) -> None:
    f = make_fetcher(True, max_urls_per_request=2)
    urls = [f"http://127.0.0.1:{upstream.port}/image.png?n={n}" for n in range(3)]
    try:
        message = await refused_many(f, urls)
        # the same URLs again, and data: URLs, do not count
        data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
        got = await f.load_many([urls[0], urls[1], urls[0], data_url, urls[1], data_url])
    finally:
        await f.close()
    assert "3 distinct media URLs" in message and "at most 2" in message
    assert len(got) == 3
    assert sorted(upstream.seen) == ["/image.png?n=0", "/image.png?n=1"]


async def test_load_many_counts_refused_schemes_as_urls(connects: list[Any]) -> None:
    f = make_fetcher(False, max_urls_per_request=1)
    try:
        assert "2 distinct media URLs" in await refused_many(f, ["file:///etc/passwd", "ftp://example.com/a"])
        assert "only http and https" in await refused_many(f, ["file:///etc/passwd"])
    finally:
        await f.close()
    assert connects == []


async def test_load_many_runs_at_most_four_fetches_at_once(upstream: Upstream, private_ok: MediaFetcher) -> None:
    urls = [f"http://127.0.0.1:{upstream.port}/paced?n={n}" for n in range(10)]
    got = await private_ok.load_many(urls)
    assert list(got) == urls and all(m.data == PNG for m in got.values())
    assert upstream.peak == media.FETCH_CONCURRENCY
    assert len(upstream.seen) == 10


async def test_load_many_at_the_total_limit_loads(upstream: Upstream) -> None:
    f = make_fetcher(True, max_total_bytes=2 * len(PNG))
    urls = [f"http://127.0.0.1:{upstream.port}/image.png?n={n}" for n in range(2)]
    try:
        got = await f.load_many(urls)
    finally:
        await f.close()
    assert [len(m.data) for m in got.values()] == [len(PNG), len(PNG)]


@pytest.mark.parametrize("path", ["/image.png", "/chunked-big"])  # told by Content-Length / counted as read
async def test_load_many_refuses_once_the_total_is_exceeded(upstream: Upstream, path: str) -> None:
    f = make_fetcher(True, max_total_bytes=2 * len(PNG) - 1, max_bytes=10_000)
    urls = [f"http://127.0.0.1:{upstream.port}{path}?n={n}" for n in range(2)]
    try:
        message = await refused_many(f, urls)
        assert fetch_tasks() == []
    finally:
        await f.close()
    assert f"larger than the {2 * len(PNG) - 1}-byte limit per request" in message


async def test_exceeding_the_total_cancels_the_fetches_still_running(upstream: Upstream) -> None:
    f = make_fetcher(True, max_total_bytes=1500, max_bytes=10_000, timeout=10.0)
    base = f"http://127.0.0.1:{upstream.port}"
    # three bodies that stall after 10 bytes and one of 3000 that takes the total past 1500
    urls = [f"{base}/slow?n=1", f"{base}/slow?n=2", f"{base}/slow?n=3", f"{base}/chunked-big", f"{base}/paced"]
    start = time.monotonic()
    try:
        message = await refused_many(f, urls)
        assert fetch_tasks() == []  # the stalled fetches were cancelled, not left running
    finally:
        await f.close()
    assert "limit per request" in message
    assert time.monotonic() - start < 2.0  # nobody waited for the stalled bodies
    assert "/paced" not in upstream.seen  # the fifth URL never started


async def test_one_refused_url_fails_the_request_and_cancels_the_rest(upstream: Upstream,
                                                                      private_ok: MediaFetcher) -> None:
    base = f"http://127.0.0.1:{upstream.port}"
    start = time.monotonic()
    message = await refused_many(private_ok, [f"{base}/slow", f"{base}/missing.png", f"{base}/image.png"])
    assert "HTTP 404" in message
    assert fetch_tasks() == []
    assert time.monotonic() - start < 2.0


async def test_the_total_is_per_call(upstream: Upstream) -> None:
    f = make_fetcher(True, max_total_bytes=len(PNG))
    url = f"http://127.0.0.1:{upstream.port}/image.png"
    try:
        for _ in range(3):
            assert (await f.load_many([url]))[url].data == PNG
        assert (await f.load(url)).data == PNG
    finally:
        await f.close()


# --- the process's budget of fetched bytes (issue 17, item 9) -----------------------------------


async def test_the_budget_bounds_media_bytes_in_flight_across_requests(upstream: Upstream) -> None:
    """Before: every request fetched at once, whatever the others held. Here the budget holds
    two requests' worth (a request reserves max_bytes per URL before fetching): the rest wait."""
    f = make_fetcher(True, max_bytes=CAP, max_inflight_bytes=2 * CAP, timeout=5.0)
    url = f"http://127.0.0.1:{upstream.port}/paced"
    try:
        got = await asyncio.gather(*(f.load_many([f"{url}?n={n}"]) for n in range(8)))
    finally:
        await f.close()
    assert all(list(g.values())[0].data == PNG for g in got)
    assert upstream.peak == 2  # never more than the budget's worth fetched at once
    assert f.budget.held == 0


async def test_loaded_media_stay_in_the_budget_until_the_block_ends(upstream: Upstream) -> None:
    f = make_fetcher(True, max_bytes=CAP, max_inflight_bytes=CAP + len(PNG), timeout=0.3)
    url = f"http://127.0.0.1:{upstream.port}/image.png"
    try:
        async with f.loaded([url, url]) as media:
            assert f.budget.held == len(PNG)  # the reservation (CAP) shrank to what came
            assert media[url].data == PNG
            async with f.loaded([url + "?again"]):  # CAP more fits beside it
                assert f.budget.held == 2 * len(PNG)
            with pytest.raises(RateLimited) as info:  # but not while a second CAP is reserved
                async with f.loaded([url + "?1", url + "?2"]):
                    pass
            assert info.value.status == 429 and info.value.code == "media_busy" and info.value.retry_after == 1.0
            assert f.budget.held == len(PNG)
        assert f.budget.held == 0
        data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
        async with f.loaded([data_url]) as media:  # data: URLs are not fetched: nothing reserved
            assert media[data_url].data == PNG and f.budget.held == 0
    finally:
        await f.close()


async def test_waiters_for_the_budget_are_served_in_arrival_order(upstream: Upstream) -> None:
    budget = media.MediaBudget(100)
    await budget.take(100, 1)
    order: list[str] = []

    async def want(name: str, n: int) -> None:
        await budget.take(n, 2)
        order.append(name)

    big = asyncio.create_task(want("big", 80))
    await asyncio.sleep(0.01)
    small = asyncio.create_task(want("small", 10))  # fits sooner, but arrived later: waits its turn
    await asyncio.sleep(0.01)
    budget.give(30)
    await asyncio.sleep(0.01)
    assert order == []
    budget.give(70)
    await asyncio.gather(big, small)
    assert order == ["big", "small"] and budget.held == 90


async def test_a_waiter_that_gives_up_passes_its_turn_on() -> None:
    budget = media.MediaBudget(100)
    await budget.take(60, 1)
    first = asyncio.create_task(budget.take(80, 5))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(budget.take(40, 5))
    await asyncio.sleep(0.01)
    assert not second.done()  # behind the first in line
    first.cancel()
    await asyncio.sleep(0.01)
    assert second.done() and budget.held == 100
    with pytest.raises(asyncio.CancelledError):
        await first


@pytest.mark.parametrize("path", ["/missing.png", "/big", "/chunked-big", "/slow", "/to-file"])
async def test_the_budget_is_given_back_on_every_failure(upstream: Upstream, path: str) -> None:
    f = make_fetcher(True, max_inflight_bytes=10 * CAP, timeout=0.3)
    try:
        with pytest.raises(InvalidRequest):
            await f.load_many([f"http://127.0.0.1:{upstream.port}{path}", f"http://127.0.0.1:{upstream.port}/paced"])
        assert f.budget.held == 0
        with pytest.raises(RuntimeError):  # the caller's own failure inside the block
            async with f.loaded([f"http://127.0.0.1:{upstream.port}/image.png"]):
                raise RuntimeError("boom")
        assert f.budget.held == 0
        task = asyncio.create_task(f.load_many([f"http://127.0.0.1:{upstream.port}/slow"]))
        await asyncio.sleep(0.1)
        assert f.budget.held == CAP
        task.cancel()  # the client went away mid-fetch
        with pytest.raises(asyncio.CancelledError):
            await task
        assert f.budget.held == 0 and fetch_tasks() == []
    finally:
        await f.close()


async def test_a_request_larger_than_the_budget_is_held_to_it(upstream: Upstream) -> None:
    f = make_fetcher(True, max_bytes=10_000, max_total_bytes=50_000, max_inflight_bytes=2 * len(PNG) + 10)
    base = f"http://127.0.0.1:{upstream.port}/image.png"
    try:
        assert len(await f.load_many([f"{base}?n={n}" for n in range(2)])) == 2
        message = await refused_many(f, [f"{base}?n={n}" for n in range(3)])
        assert "limit per request" in message and f.budget.held == 0
    finally:
        await f.close()


# --- base64 in steps, the event loop running between them ----------------------------------------


SIZES = [0, 1, 2, 3, media.B64_STEP - 1, media.B64_STEP, media.B64_STEP + 1, 3 * media.B64_STEP + 2]


@pytest.mark.parametrize("size", SIZES)
async def test_a_body_with_media_spliced_in_steps_is_the_body_encoded_at_once(size: int) -> None:
    data = bytes(i * 7 % 256 for i in range(size))
    loaded = {"http://a/1.png": media.Media(media_type="image/png", data=data),
              "http://a/2.gif": media.Media(media_type="image/gif", data=b"GIF89a" + data[:100])}

    def build(m: Any) -> dict[str, Any]:  # as a codec does: each media's base64, one of them twice
        parts = [{"mime": x.media_type, "data": x.b64()} for x in m.values()]
        return {"parts": [*parts, {"again": m["http://a/1.png"].b64(), "note": 'quote " and \\ kept'}]}

    expected = json.dumps(build(loaded), separators=(",", ":")).encode()
    assert await inline.encode_with_media(build, loaded, msgspec.json.encode) == expected
    assert await inline.encode_with_media(lambda m: {"n": len(m)}, {}, msgspec.json.encode) == b'{"n":0}'


@pytest.mark.parametrize("size", SIZES)
async def test_a_data_url_decoded_in_steps_is_the_data_url_decoded(size: int) -> None:
    data = bytes(i * 13 % 256 for i in range(size))
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert await media.decode_data_url_steps(url) == decode_data_url(url)


LONG = "QUJD" * (media.B64_STEP // 3 * 2)


@pytest.mark.parametrize("bad", ["QQ==" + LONG, LONG + "QQ=", LONG + "Q$==", LONG + "\nQUJD", LONG[:-1]])
async def test_invalid_base64_is_refused_in_steps_too(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid base64"):
        await media.decode_data_url_steps("data:image/png;base64," + bad)
    with pytest.raises(InvalidRequest, match="invalid base64"):
        decode_data_url("data:image/png;base64," + bad)  # as in one go
    with pytest.raises(InvalidRequest, match="must be a base64 data: URL"):
        await media.decode_data_url_steps("data:image/png," + LONG)


async def test_off_loop_runs_large_work_in_a_thread() -> None:
    here = threading.get_ident()
    assert await inline.off_loop(inline.OFF_LOOP_BYTES - 1, threading.get_ident) == here
    assert await inline.off_loop(inline.OFF_LOOP_BYTES, threading.get_ident) != here


async def test_large_media_leave_the_event_loop_running() -> None:
    """Twelve MiB decoded and coded in one go hold the loop throughout; in steps, a ticking
    coroutine keeps its pace."""
    data = bytes(range(256)) * (12 * 4096)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    started = time.perf_counter()
    msgspec.json.encode({"data": decode_data_url(url).b64()})
    whole = time.perf_counter() - started
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    decoded = await media.decode_data_url_steps(url)
    body = await inline.encode_with_media(lambda m: {"data": m["u"].b64()}, {"u": decoded}, msgspec.json.encode)
    done = True
    await ticker
    assert decoded.data == data and json.loads(body)["data"] == url.partition(",")[2]
    assert len(gaps) > 100 and max(gaps) < max(0.02, whole / 4), (max(gaps), whole)


def test_drop_locals_clears_the_frames_an_error_came_through() -> None:
    def inner(body: bytes) -> None:
        raise ValueError("upstream said no")

    def outer() -> None:
        body = b"x" * 1000
        inner(body)

    try:
        outer()
    except ValueError as exc:
        err = exc
    tb = err.__traceback__
    assert tb is not None and tb.tb_next is not None and "body" in tb.tb_next.tb_frame.f_locals
    inline.drop_locals(err)
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    assert all("body" not in f.f_locals for f in frames[1:])
