"""The lean upstream HTTP/1.1 client (``providers.h1``) against raw servers on 127.0.0.1 that
answer byte for byte what a test scripts: framing, keep-alive and its race, flow control,
compression, limits and failures."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tollway.providers.h1 import ConnectError, ConnectTimeout, Pool, ResponseError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A TCP server whose every connection runs ``handler``; counts connections and keeps the
    requests' heads."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return await reader.readexactly(length) if length else b""

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/echo"


async def serve(handler: Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                ) -> AsyncIterator[Server]:
    srv = Server(lambda r, w: handler(srv, r, w))
    srv.server = await asyncio.start_server(srv._serve, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.server.close()


def response(body: bytes, *, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


async def keep_alive_echo(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        body = await srv.read_request(reader)
        writer.write(response(b'{"echo":' + (body or b"null") + b"}"))
        await writer.drain()


@pytest.fixture
async def echo() -> AsyncIterator[Server]:
    async for srv in serve(keep_alive_echo):
        yield srv


async def test_keep_alive_reuses_one_connection_and_sends_a_clean_head(echo: Server) -> None:
    pool = Pool(connect_timeout=2)
    for i in range(5):
        resp = await pool.request("POST", echo.url, {"Authorization": "Bearer k", "Content-Type": "application/json"},
                                  b"%d" % i)
        assert resp.status == 200 and resp.headers.get("Content-Type") == "application/json"
        assert await resp.read() == b'{"echo":%d}' % i
        resp.release()
    await pool.close()
    assert echo.connections == 1
    head = echo.heads[0].decode()
    assert head.startswith("POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1:")
    assert "Authorization: Bearer k\r\n" in head and "Content-Length: 1\r\n" in head
    assert "Accept-Encoding: identity\r\n" in head


async def test_a_released_unread_body_closes_the_connection_instead_of_reusing_it(echo: Server) -> None:
    pool = Pool(connect_timeout=2)
    first = await pool.request("POST", echo.url, {}, b"1")
    first.release()  # body not read: the connection cannot serve another response
    second = await pool.request("POST", echo.url, {}, b"2")
    assert await second.read() == b'{"echo":2}'
    second.release()
    await pool.close()
    assert echo.connections == 2


async def test_the_keep_alive_race_is_sent_again_on_a_new_connection() -> None:
    """The server answers one request per connection and then closes it while the client still
    holds it as idle: the next request finds it closed before any byte came back."""
    async def one_then_close(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await srv.read_request(reader)
        writer.write(response(b"[" + body + b"]", extra="connection: keep-alive\r\n"))
        await writer.drain()
        await srv.read_request(reader)  # the next request arrives: close without answering

    async for srv in serve(one_then_close):
        pool = Pool(connect_timeout=2)
        for i in range(3):
            resp = await pool.request("POST", srv.url, {}, b"%d" % i)
            assert await resp.read() == b"[%d]" % i
            resp.release()
        await pool.close()
        # each later request went out twice: on the idle connection the server then closed, and again
        assert srv.connections == 3 and len(srv.heads) == 5


async def test_a_new_connection_closed_before_an_answer_is_an_error() -> None:
    async def hang_up(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)

    async for srv in serve(hang_up):
        pool = Pool(connect_timeout=2)
        with pytest.raises(ResponseError):
            await pool.request("POST", srv.url, {}, b"{}")
        await pool.close()
        assert srv.connections == 1  # not sent again: nothing says the upstream did not act on it


async def test_chunked_and_close_delimited_bodies_and_a_cut_body() -> None:
    async def framings(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await srv.read_request(reader)
        if body == b"chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        elif body == b"close":
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
            await writer.drain()
            writer.close()
            return
        else:  # says 100 bytes, sends 5, goes away
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
            await writer.drain()
            writer.close()
            return
        await writer.drain()
        await srv.read_request(reader)

    async for srv in serve(framings):
        pool = Pool(connect_timeout=2)
        resp = await pool.request("POST", srv.url, {}, b"chunked")
        assert await resp.read() == b"hello world"
        resp.release()
        resp = await pool.request("POST", srv.url, {}, b"close")
        assert await resp.read() == b"until the end"
        resp.release()
        resp = await pool.request("POST", srv.url, {}, b"cut")
        assert await resp.readany() == b"short"
        with pytest.raises(ResponseError):
            await resp.readany()
        resp.close()
        await pool.close()


async def test_gzip_and_deflate_sent_unasked_are_decoded() -> None:
    text = b'{"answer":"' + b"x" * 5000 + b'"}'

    async def compressed(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            kind = await srv.read_request(reader)
            data = gzip.compress(text) if kind == b"gzip" else zlib.compress(text)
            writer.write(response(data, extra=f"content-encoding: {kind.decode()}\r\n"))
            await writer.drain()

    async for srv in serve(compressed):
        pool = Pool(connect_timeout=2)
        for kind in (b"gzip", b"deflate"):
            resp = await pool.request("POST", srv.url, {}, kind)
            assert await resp.read() == text
            resp.release()
        await pool.close()
        assert srv.connections == 1


async def test_a_slow_reader_pauses_the_socket_and_gets_every_byte() -> None:
    size = 4 * 1024 * 1024
    block = bytes(range(256)) * 256

    async def big(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n".encode())
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()

    async for srv in serve(big):
        pool = Pool(connect_timeout=2)
        resp = await pool.request("POST", srv.url, {}, b"")
        await asyncio.sleep(0.3)  # let the server fill what it can
        conn = resp._conn
        assert conn.paused and conn.buffered < 2 * 1024 * 1024  # stopped reading well before the end
        got = 0
        while chunk := await resp.readany():
            got += len(chunk)
        assert got == size
        resp.release()
        await pool.close()


async def test_at_most_limit_requests_in_flight_and_slots_come_back(echo: Server) -> None:
    pool = Pool(connect_timeout=2, limit=2)
    a = await pool.request("POST", echo.url, {}, b"1")
    b = await pool.request("POST", echo.url, {}, b"2")
    third = asyncio.ensure_future(pool.request("POST", echo.url, {}, b"3"))
    await asyncio.sleep(0.05)
    assert not third.done()  # waits for a slot
    a.close()
    c = await asyncio.wait_for(third, 2)
    assert await c.read() == b'{"echo":3}'
    b.close()
    c.release()
    c.release()  # twice is harmless: the slot is given back once
    for i in range(3):  # every slot is back
        r = await pool.request("POST", echo.url, {}, b"%d" % i)
        await r.read()
        r.release()
    await pool.close()


async def test_a_cancelled_request_gives_its_slot_back_and_drops_its_connection() -> None:
    async def never(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        await asyncio.sleep(30)

    async for srv in serve(never):
        pool = Pool(connect_timeout=2, limit=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await pool.request("POST", srv.url, {}, b"{}")
        assert not pool._slots.locked()
        await pool.close()


async def test_headers_that_would_split_the_request_are_refused_before_sending(echo: Server) -> None:
    pool = Pool(connect_timeout=2)
    for headers in ({"x-a": "1\r\nx-injected: 1"}, {"x-a\nb": "1"}, {"x:a": "1"}, {"x-a": "nul\0"}):
        with pytest.raises(ValueError):
            await pool.request("POST", echo.url, headers, b"{}")
    with pytest.raises(ValueError):
        await pool.request("POST", "ftp://127.0.0.1/x", {}, b"{}")
    await pool.close()
    assert echo.connections == 0


async def test_a_malformed_response_is_an_error() -> None:
    async def garbage(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async for srv in serve(garbage):
        pool = Pool(connect_timeout=2)
        with pytest.raises(ResponseError):
            await pool.request("POST", srv.url, {}, b"{}")
        await pool.close()


async def test_refused_and_timed_out_connections() -> None:
    pool = Pool(connect_timeout=0.3)
    with pytest.raises(ConnectError):
        await pool.request("GET", "http://127.0.0.1:9/nothing-listens", {})

    async def silent(srv: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts TCP, never speaks TLS: the handshake cannot finish

    async for srv in serve(silent):
        with pytest.raises(ConnectTimeout):
            await pool.request("GET", srv.url.replace("http://", "https://"), {})
    await pool.close()


async def test_idle_connections_past_keepalive_are_not_reused(echo: Server) -> None:
    pool = Pool(connect_timeout=2, keepalive=0.05)
    r = await pool.request("GET", echo.url, {})
    await r.read()
    r.release()
    await asyncio.sleep(0.1)
    r = await pool.request("GET", echo.url, {})
    await r.read()
    r.release()
    await pool.close()
    assert echo.connections == 2


async def test_https_with_sni_and_certificate_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    seen: list[str] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen.append(name)  # type: ignore[assignment,misc,func-returns-value]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(response(head.split(b" ", 2)[1]))
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    pool = Pool(connect_timeout=2, ssl_context=trusting)
    # "localhost" resolves to 127.0.0.1 here; the name is what the certificate is checked against
    for path in ("/a", "/b?q=1"):
        resp = await pool.request("GET", f"https://localhost:{port}{path}", {})
        assert await resp.read() == path.encode()
        resp.release()
    await pool.close()
    assert seen == ["localhost"]  # one handshake (both requests on one connection), with SNI
    untrusting = Pool(connect_timeout=2)  # the system's trust store does not know this certificate
    with pytest.raises(ConnectError):
        await untrusting.request("GET", f"https://localhost:{port}/a", {})
    await untrusting.close()
    server.close()
