"""Images and documents an upstream needs as bytes: ``data:`` URLs decoded, http(s) URLs fetched.

Gemini and Bedrock take media only inline, so a caller's image URL is fetched by the gateway
on the caller's behalf. That fetch is a server-side request forgery risk and is guarded:

- only http and https; a redirect to any other scheme is refused;
- every address the host resolves to must be public (no private, loopback, link-local,
  carrier-grade NAT, multicast, reserved, unspecified or cloud-metadata address, nor one of
  those inside an IPv6 form: ``::ffff:127.0.0.1``, NAT64, 6to4), unless ``allow_private`` is
  set (tests). A literal IP in the URL, in any spelling the resolver accepts (``2130706433``,
  ``0177.0.0.1``), is normalised and checked before any connection;
- resolution and connection use the same vetted addresses: the media session's connector
  resolves through ``GuardedResolver``, which checks every address it returns, so there is no
  window for DNS rebinding between a check and the connection;
- redirects are followed by hand, at most ``max_redirects``, each hop checked again;
- a size cap (Content-Length first, then counted while streaming) and one total timeout;
- no cookies are kept between fetches, and no proxy is taken from the environment.

Per request (``load_many``, which the adapters use): each URL is fetched once however often the
request names it; at most ``max_urls_per_request`` distinct URLs are fetched (``data:`` URLs are
decoded, not fetched, and do not count; their bytes are bounded by the request body's limit);
at most ``FETCH_CONCURRENCY`` fetches run at a time; and the bytes fetched for the request are
counted as they arrive, so the fetch that takes the total past ``max_total_bytes`` is refused
at once and the others are cancelled.

Across requests (``MediaBudget``): the fetched bytes the process holds at once are bounded by
``max_inflight_bytes``. A request reserves what its URLs may bring (``max_bytes`` each, at most
``max_total_bytes``) before its first fetch, keeps what they brought while the caller uses them
(``loaded``: the adapters hold it until the upstream has their body), and gives it back on every
path. A request that does not fit waits its turn (first come, first served) up to ``timeout``,
then gets 429 ``media_busy`` with Retry-After.

Every refusal is an ``InvalidRequest`` (400) that says what was refused and why.

Large ``data:`` URLs are decoded in steps with the event loop running between them
(``decode_data_url_steps``; ``providers.inline`` codes them into bodies the same way): one
request's 12 MB of images no longer holds every other request up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import ipaddress
import itertools
import socket
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Final

import msgspec

from tollway.core.errors import InvalidRequest, RateLimited

if TYPE_CHECKING:  # aiohttp and yarl are imported with the first URL to check, not at start (issue 19)
    import aiohttp
    from aiohttp.abc import AbstractResolver
    from yarl import URL

    from tollway.providers.media_resolver import GuardedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_SHOWN_URL: Final = 200
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
CHUNK: Final = 64 * 1024
FETCH_CONCURRENCY: Final = 4  # fetches of one request at a time
B64_STEP: Final = 3 * 64 * 1024  # bytes base64 handles in one step, between two turns of the event loop
REQUEST_HEADERS: Final = {
    "Accept": "image/*, application/pdf;q=0.9, */*;q=0.5",
    "User-Agent": "tollway-media-fetch",
}


class Media(msgspec.Struct, frozen=True, kw_only=True):
    media_type: str
    data: bytes

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


class MediaPolicy(msgspec.Struct, frozen=True, kw_only=True):
    max_bytes: int = 20 * 1024 * 1024  # one URL's body
    timeout: float = 10.0  # one URL's fetch, redirects included
    max_redirects: int = 3
    allow_private: bool = False
    max_urls_per_request: int = 16  # distinct non-data URLs ``load_many`` fetches for one request
    max_total_bytes: int = 50 * 1024 * 1024  # all the bodies ``load_many`` fetches for one request
    max_inflight_bytes: int = 128 * 1024 * 1024  # fetched bytes held at once by every request of the process


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


_DECODE_STEP: Final = B64_STEP // 3 * 4  # base64 characters decoded in one step


async def decode_data_url_steps(url: str) -> Media:
    """``decode_data_url``, its base64 decoded in steps with the event loop running between them:
    the same answers and the same refusals (only the last step may end in padding)."""
    head, sep, payload = url.partition(",")
    if len(payload) <= _DECODE_STEP or not sep:
        return decode_data_url(url)
    media_type = decode_data_url(head + ",").media_type  # the head's checks (an empty payload is valid)
    parts = []
    try:
        for i in range(0, len(payload), _DECODE_STEP):
            part = payload[i:i + _DECODE_STEP]
            if "=" in part and i + _DECODE_STEP < len(payload):
                raise binascii.Error("padding before the end")
            parts.append(base64.b64decode(part, validate=True))
            await asyncio.sleep(0)
    except (binascii.Error, ValueError):
        raise InvalidRequest("A data: URL holds invalid base64.") from None
    return Media(media_type=media_type, data=b"".join(parts))


class MediaBudget:
    """Bytes of fetched media held at once by every request of the process: a byte semaphore
    whose waiters are served first come, first served."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def take(self, n: int, timeout: float) -> None:
        """Hold ``n`` bytes (at most ``limit``), waiting up to ``timeout`` for them; RateLimited
        (429 ``media_busy``) when they do not come in time."""
        if not self._waiting and self.held + n <= self.limit:
            self.held += n
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiting.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except BaseException as exc:
            if fut.done() and not fut.cancelled():  # granted just as it gave up: give it back
                self.give(n)
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
                self._grant()  # the next in line may fit now
            if isinstance(exc, TimeoutError):
                raise RateLimited(f"The gateway is holding as much fetched media as it may "
                                  f"({self.limit} bytes) and this request's did not fit within {timeout:g}s; "
                                  "retry shortly.", retry_after=1.0, code="media_busy") from None
            raise

    def give(self, n: int) -> None:
        self.held -= n
        self._grant()

    def _grant(self) -> None:
        while self._waiting:
            n, fut = self._waiting[0]
            if fut.done():
                self._waiting.popleft()
                continue
            if self.held + n > self.limit:
                return
            self._waiting.popleft()
            self.held += n
            fut.set_result(None)


# --- which addresses may be fetched ------------------------------------------------------

_METADATA: Final = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))

_V4_BLOCKED: Final = tuple((ipaddress.IPv4Network(net), why) for net, why in (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "a reserved (IETF protocol) address"),
    ("192.0.2.0/24", "a reserved (documentation) address"),
    ("192.88.99.0/24", "a reserved (6to4 relay) address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a reserved (benchmarking) address"),
    ("198.51.100.0/24", "a reserved (documentation) address"),
    ("203.0.113.0/24", "a reserved (documentation) address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
))

_V6_BLOCKED: Final = tuple((ipaddress.IPv6Network(net), why) for net, why in (
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/8", "a reserved address"),
    ("64:ff9b:1::/48", "a local NAT64 address"),
    ("100::/64", "a reserved (discard) address"),
    ("2001::/23", "a reserved (IETF protocol) address"),
    ("2001:db8::/32", "a reserved (documentation) address"),
    ("fc00::/7", "a private (unique local) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
))

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_COMPAT: Final = ipaddress.IPv6Network("::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that reach it."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in _COMPAT and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-compatible"
    return None


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from ("a loopback address" ...), or None when it is public."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(int(ip))  # the zone (fe80::1%eth0) changes nothing here
    if ip in _METADATA:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            v4, form = embedded
            inner = address_refusal(v4)
            return f"{inner} in {form} form ({v4})" if inner else None
        for net6, why in _V6_BLOCKED:
            if ip in net6:
                return why
    else:
        for net4, why in _V4_BLOCKED:
            if ip in net4:
                return why
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return "not a public address"
    return None


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _numeric_host(host: str) -> IPAddress | None:
    """The address a literal IP host stands for, however it is spelled; None for a name.

    Hosts the HTTP client would treat as an address (all digits and dots, or with a colon)
    but that are not canonical (``2130706433``, ``0177.0.0.1``, ``127.1``) are normalised by the
    C library's own numeric parser, as a connection to them would be."""
    ip = _parse_address(host)
    if ip is not None:
        return ip
    if ":" not in host and not host.replace(".", "").isdigit():
        return None
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        raise InvalidRequest(f"The media URL's host {host[:64]!r} is not a valid IP address.") from None
    ip = _parse_address(str(infos[0][4][0]))
    if ip is None:  # pragma: no cover - getaddrinfo returned something ipaddress cannot read
        raise InvalidRequest(f"The media URL's host {host[:64]!r} is not a valid IP address.")
    return ip


class AddressRefused(OSError):
    """Raised by ``GuardedResolver`` (an OSError, so aiohttp wraps it as a connector error)."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"{host} resolves to {address}, {reason}")
        self.host = host
        self.address = address
        self.reason = reason


# --- the fetcher ---------------------------------------------------------------------------


class _RequestTotal:
    """The bytes fetched so far for one request (``load_many``), against its limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def refusal(self, url: URL) -> InvalidRequest:
        return InvalidRequest(f"Media at {shown_url(url)} refused: the media of this request together are larger "
                              f"than the {self.limit}-byte limit per request.")

    def expect(self, length: int, url: URL) -> None:
        """Refuse a body whose announced length cannot fit in what is left."""
        if self.used + length > self.limit:
            raise self.refusal(url)

    def add(self, length: int, url: URL) -> None:
        self.used += length
        if self.used > self.limit:
            raise self.refusal(url)


def shown_url(url: str | URL) -> str:
    """A URL fit for an error message: without user:password, cut to MAX_SHOWN_URL characters."""
    from yarl import URL

    text = str(url)
    try:
        parsed = url if isinstance(url, URL) else URL(text)
        if parsed.user is not None or parsed.password is not None:
            text = str(parsed.with_user(None))
    except (ValueError, TypeError):
        pass
    return text if len(text) <= MAX_SHOWN_URL else text[:MAX_SHOWN_URL] + "..."


_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)


def sniff_media_type(data: bytes) -> str:
    """The media type told by the first bytes (PNG, JPEG, GIF, WEBP, PDF), else octet-stream."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class MediaFetcher:
    """Turns a URL from a request into bytes. One per gateway, shared by every adapter.

    ``resolver`` is the name resolver to wrap (aiohttp's default resolver when None); tests
    pass a stub so that a made-up public name resolves to loopback."""

    def __init__(self, policy: MediaPolicy, *, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.budget = MediaBudget(policy.max_inflight_bytes)
        self._inner_resolver = resolver
        self._resolver: GuardedResolver | None = None
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp
        from aiohttp.resolver import DefaultResolver

        from tollway.providers.media_resolver import GuardedResolver

        if self._session is None or self._session.closed:
            if self._resolver is None:
                inner = self._inner_resolver or DefaultResolver()
                self._resolver = GuardedResolver(inner, allow_private=self.policy.allow_private)
            connector = aiohttp.TCPConnector(resolver=self._resolver, limit=64, ttl_dns_cache=10)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def load(self, url: str) -> Media:
        """One URL's media: a ``data:`` URL decoded, an http(s) URL fetched under the policy."""
        async with self.loaded([url]) as media:
            return media[url]

    async def load_many(self, urls: Sequence[str]) -> dict[str, Media]:
        """The media of every URL in ``urls`` (by URL), each fetched once, under the policy's
        per-request bounds (see the module doc). Any refusal is an InvalidRequest, and the
        fetches still running are cancelled. Their bytes count in the budget while they are
        fetched only: a caller that keeps them long uses ``loaded``."""
        async with self.loaded(urls) as media:
            return dict(media)

    @contextlib.asynccontextmanager
    async def loaded(self, urls: Sequence[str]) -> AsyncIterator[dict[str, Media]]:
        """``load_many``'s media, whose bytes stay in the process's budget until the block ends
        (the caller may ``clear()`` the dict once it has made what it needs of them)."""
        unique = list(dict.fromkeys(urls))
        remote = [url for url in unique if url[:5].lower() != "data:"]
        limit = self.policy.max_urls_per_request
        if len(remote) > limit:
            raise InvalidRequest(f"The request names {len(remote)} distinct media URLs to fetch; at most {limit} "
                                 "are fetched for one request.")
        loaded: dict[str, Media] = {}
        for url in unique:
            if url not in remote:
                loaded[url] = await decode_data_url_steps(url)
        held = min(len(remote) * self.policy.max_bytes, self.policy.max_total_bytes, self.budget.limit)
        if held:
            await self.budget.take(held, self.policy.timeout)
        try:
            if remote:
                fetched = await self._fetch_all(remote, _RequestTotal(held))
                used = sum(len(m.data) for m in fetched.values())
                self.budget.give(held - used)  # keep only what came
                held = used
                loaded.update(fetched)
            yield {url: loaded[url] for url in unique}
        finally:
            loaded.clear()
            self.budget.give(held)

    async def _fetch_all(self, remote: list[str], total: _RequestTotal) -> dict[str, Media]:
        """Every URL of ``remote`` fetched, ``FETCH_CONCURRENCY`` at a time, under ``total``."""
        loaded: dict[str, Media] = {}
        waiting = iter(remote)
        running: dict[asyncio.Task[Media], str] = {}
        try:
            while True:
                for url in itertools.islice(waiting, FETCH_CONCURRENCY - len(running)):
                    task = asyncio.create_task(self._load(url, total), name=f"media fetch {shown_url(url)}")
                    running[task] = url
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    media = task.result()  # the first refusal ends the whole request
                    loaded[running.pop(task)] = media
        finally:
            for task in running:
                task.cancel()
            if running:  # wait for the cancelled fetches (and read what the failed ones raised)
                await asyncio.gather(*running, return_exceptions=True)
        return loaded

    async def _load(self, url: str, total: _RequestTotal | None) -> Media:
        if url[:5].lower() == "data:":
            return decode_data_url(url)
        try:
            async with asyncio.timeout(self.policy.timeout):
                return await self._fetch(url, total)
        except TimeoutError:
            raise InvalidRequest(f"Fetching media from {shown_url(url)} took longer than "
                                 f"{self.policy.timeout:g}s.") from None

    def _check_url(self, raw: str | URL, hop: int) -> URL:
        """The URL to request, or a refusal: scheme, host, and a literal IP's address."""
        from yarl import URL

        try:
            url = raw if isinstance(raw, URL) else URL(raw)
            scheme, host = url.scheme.lower(), url.host
        except (ValueError, TypeError):
            raise InvalidRequest(f"The media URL {shown_url(str(raw))} is not a valid URL.") from None
        via = " (reached by a redirect)" if hop else ""
        if scheme not in ("http", "https"):
            what = f"scheme {scheme!r}" if scheme else "no scheme"
            raise InvalidRequest(f"Media URL {shown_url(url)}{via} refused: it has {what}; only http and https "
                                 "URLs are fetched.")
        if not host:
            raise InvalidRequest(f"Media URL {shown_url(url)}{via} refused: it has no host.")
        ip = _numeric_host(host)
        if ip is not None and not self.policy.allow_private:
            reason = address_refusal(ip)
            if reason:
                raise InvalidRequest(f"Media URL {shown_url(url)}{via} refused: {ip} is {reason}; only public "
                                     "addresses are fetched.")
        return url

    async def _fetch(self, raw: str, total: _RequestTotal | None) -> Media:
        from yarl import URL

        session = self._get_session()
        target: str | URL = raw
        for hop in range(self.policy.max_redirects + 1):
            url = self._check_url(target, hop)
            resp = await self._open(session, url, hop)
            try:
                if resp.status in REDIRECT_STATUSES:
                    location = resp.headers.get("Location")
                    if not location:
                        raise InvalidRequest(f"Media URL {shown_url(url)} answered HTTP {resp.status} "
                                             "without a Location to redirect to.")
                    try:
                        target = url.join(URL(location))
                    except (ValueError, TypeError):
                        raise InvalidRequest(f"Media URL {shown_url(url)} redirected to an invalid URL "
                                             f"{shown_url(location)}.") from None
                    continue
                if not 200 <= resp.status < 300:
                    raise InvalidRequest(f"Media URL {shown_url(url)} answered HTTP {resp.status}"
                                         f"{' ' + resp.reason if resp.reason else ''}; expected 200.")
                data = await self._read_body(resp, url, total)
                resp.release()  # read to the end: the connection may be reused
            finally:
                resp.close()  # a redirect's or an error's unread body: drop the connection (no-op after release)
            header = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not header or header in ("application/octet-stream", "binary/octet-stream"):
                header = sniff_media_type(data)
            return Media(media_type=header, data=data)
        raise InvalidRequest(f"Media URL {shown_url(raw)} refused: more than {self.policy.max_redirects} "
                             "redirects.")

    async def _open(self, session: aiohttp.ClientSession, url: URL, hop: int) -> aiohttp.ClientResponse:
        import aiohttp

        via = " (reached by a redirect)" if hop else ""
        try:
            return await session.get(url, allow_redirects=False, headers=REQUEST_HEADERS)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                refused = exc.os_error
                raise InvalidRequest(f"Media URL {shown_url(url)}{via} refused: its host resolves to "
                                     f"{refused.address}, {refused.reason}; only public addresses are "
                                     "fetched.") from None
            raise InvalidRequest(f"Media URL {shown_url(url)}{via} could not be reached "
                                 f"({type(exc).__name__}).") from None
        except TimeoutError:
            raise
        except (aiohttp.ClientError, ValueError) as exc:
            raise InvalidRequest(f"Fetching media from {shown_url(url)}{via} failed "
                                 f"({type(exc).__name__}).") from None

    async def _read_body(self, resp: aiohttp.ClientResponse, url: URL, total: _RequestTotal | None) -> bytes:
        import aiohttp

        cap = self.policy.max_bytes
        too_big = f"Media at {shown_url(url)} refused: it is larger than the {cap}-byte limit."
        if resp.content_length is not None:
            if resp.content_length > cap:
                raise InvalidRequest(too_big)
            if total is not None:
                total.expect(resp.content_length, url)
        body = bytearray()
        try:
            async for chunk in resp.content.iter_chunked(CHUNK):
                body += chunk
                if len(body) > cap:
                    raise InvalidRequest(too_big)
                if total is not None:
                    total.add(len(chunk), url)
        except aiohttp.ClientError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise InvalidRequest(f"Fetching media from {shown_url(url)} failed while reading "
                                 f"({type(exc).__name__}).") from None
        return bytes(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None
