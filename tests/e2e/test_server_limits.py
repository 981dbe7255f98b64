"""What ``tollway serve`` allows a client at the connection level (issue 17, items 7 and 8):
forwarded headers are believed only from configured proxies, and idle or slow connections
(slowloris: idle, slow headers, slow body, a body shorter than its Content-Length) are closed
after configurable deadlines, with the number of open connections bounded."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.e2e.test_openai_chat import log_rows
from tollway.config import load_settings
from tollway.core.errors import ConfigError

LIMITS = {"TOLLWAY_CLIENT_HEADER_TIMEOUT": "1.5", "TOLLWAY_CLIENT_BODY_TIMEOUT": "3",
          "TOLLWAY_CLIENT_READ_TIMEOUT": "1", "TOLLWAY_KEEPALIVE_TIMEOUT": "1"}
SLACK = 1.5  # what a deadline may be late by on a shared machine
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(tmp_path_factory.mktemp("limits"), env=LIMITS).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayProcess) -> str:
    return gw.create_key()


class Conn:
    """A raw client connection, watched for the server closing it."""

    def __init__(self, port: int, first: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.received = b""
        self.closed_at: float | None = None
        if first:
            self.send(first)

    def send(self, data: bytes) -> None:
        if self.closed_at is None:
            try:
                self.sock.send(data)
            except OSError:
                self.poll()

    def poll(self) -> None:
        """Read what arrived; note when the server closed the connection."""
        while self.closed_at is None and select.select([self.sock], [], [], 0)[0]:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.closed_at = time.monotonic()
            self.received += data

    @property
    def status(self) -> int | None:
        line = self.received.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None

    def close(self) -> None:
        self.sock.close()


def headers(key: str, length: int) -> bytes:
    return (f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def chat_ok(gw: GatewayProcess, key: str) -> bool:
    r = httpx.post(gw.url + CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
                   headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return r.status_code == 200


# item 8: slow and idle clients -------------------------------------------------------------------


def test_slowloris_connections_of_every_kind_are_closed_in_time(gw: GatewayProcess, key: str) -> None:
    """Before: every one of these stayed open (uvicorn waits for a request for ever)."""
    n = 40
    start = time.monotonic()
    idle = [Conn(gw.port) for _ in range(n)]
    slow_headers = [Conn(gw.port, f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\n".encode()) for _ in range(n)]
    slow_body = [Conn(gw.port, headers(key, 1000) + b"{") for _ in range(n)]
    short_body = [Conn(gw.port, headers(key, 1000) + b'{"model":') for _ in range(n)]
    every = idle + slow_headers + slow_body + short_body
    try:
        while time.monotonic() - start < 3 + 2 * SLACK + 2 and any(c.closed_at is None for c in every):
            for c in slow_headers:
                c.send(b"X")  # a header that never ends: one byte every 0.3 s
            for c in slow_body:
                c.send(b" ")  # a body that trickles: never a 1 s gap, never done
            time.sleep(0.3)
            for c in every:
                c.poll()
            assert chat_ok(gw, key)  # the gateway keeps serving meanwhile
        took = {name: max((c.closed_at or float("inf")) - start for c in conns)
                for name, conns in (("idle", idle), ("slow headers", slow_headers), ("slow body", slow_body),
                                    ("short body", short_body))}
        assert took["idle"] < 1.5 + SLACK, took
        assert took["slow headers"] < 1.5 + SLACK, took
        assert took["short body"] < 1 + SLACK, took  # the read gap
        assert 2.5 < took["slow body"] < 3 + SLACK, took  # the body's whole deadline
        assert {c.status for c in idle} == {None}  # nothing asked, nothing answered
        assert {c.status for c in slow_headers + slow_body + short_body} == {408}
        assert b"request_timeout" in slow_body[0].received
    finally:
        for c in every:
            c.close()
    assert chat_ok(gw, key)


def test_a_body_at_a_steady_pace_and_keep_alive_are_served(gw: GatewayProcess, key: str) -> None:
    body = b'{"model": "echo", "messages": [{"role": "user", "content": "paced body"}]}'

    def paced() -> Iterator[bytes]:
        for i in range(0, len(body), 20):  # 0.4 s between reads, 1.6 s in all: under both deadlines
            yield body[i:i + 20]
            time.sleep(0.4)

    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        r = client.post(CHAT, content=paced(), headers={"Content-Type": "application/json",
                                                        "Content-Length": str(len(body))})
        assert r.status_code == 200 and "paced body" in r.text
        time.sleep(0.5)  # an idle keep-alive connection under TOLLWAY_KEEPALIVE_TIMEOUT is reused
        assert client.post(CHAT, json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}
                           ).status_code == 200
    c = Conn(gw.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
    try:
        deadline = time.monotonic() + 1 + 2 * SLACK
        while c.closed_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
            c.poll()
        assert c.status == 200 and c.closed_at is not None  # then closed after the keep-alive timeout
    finally:
        c.close()


def test_a_slow_body_is_logged_as_the_client_gone(gw: GatewayProcess, key: str) -> None:
    c = Conn(gw.port, headers(key, 500) + b"{")
    try:
        deadline = time.monotonic() + 1 + 2 * SLACK
        while c.closed_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
            c.poll()
        assert c.status == 408
    finally:
        c.close()
    rows: list[dict[str, object]] = []
    for _ in range(60):
        rows = log_rows(gw, "status = 499 AND error_code = ?", ("client_closed_request",))
        if rows:
            break
        time.sleep(0.05)
    assert rows, "no 499 row for the request whose body timed out"


def test_headers_past_the_limit_get_431(gw: GatewayProcess) -> None:
    c = Conn(gw.port, f"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: {'a' * 70_000}".encode())
    try:
        deadline = time.monotonic() + 3
        while c.closed_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
            c.poll()
        assert c.status == 431 and c.closed_at is not None
    finally:
        c.close()


def test_open_connections_are_bounded(tmp_path: Path) -> None:
    g = GatewayProcess(tmp_path, env={**LIMITS, "TOLLWAY_CLIENT_HEADER_TIMEOUT": "3",
                                      "TOLLWAY_MAX_CONNECTIONS": "20"}).start()
    held = [Conn(g.port) for _ in range(20)]
    extra: list[Conn] = []
    try:
        time.sleep(0.3)
        extra = [Conn(g.port) for _ in range(5)]
        time.sleep(0.5)
        for c in extra:
            c.poll()
        assert all(c.closed_at is not None and c.status == 503 for c in extra)  # refused at once
        assert b"retry-after: 1" in extra[0].received
        for c in held:
            c.close()
        time.sleep(0.3)
        assert httpx.get(g.url + "/healthz", timeout=5).status_code == 200  # room again
    finally:
        for c in held + extra:
            c.close()
        g.stop()


# item 7: forwarded headers -----------------------------------------------------------------------


def wrong_admin_guesses(gw: GatewayProcess, n: int, forwarded: list[str]) -> list[int]:
    codes = []
    with httpx.Client(timeout=10) as client:  # from 127.0.0.1, which uvicorn trusted by default
        for i in range(n):
            r = client.get(gw.url + "/admin/queue/status", headers={
                "Authorization": f"Bearer tw-guess-{i:040}", "X-Forwarded-For": forwarded[i % len(forwarded)]})
            codes.append(r.status_code)
    return codes


def test_rotating_x_forwarded_for_does_not_escape_a_throttle(gw: GatewayProcess) -> None:
    """Before: uvicorn believed X-Forwarded-For from 127.0.0.1, so each guess came from a new
    "address" and the throttle of failed admin logins never closed."""
    codes = wrong_admin_guesses(gw, 12, [f"203.0.113.{i}" for i in range(1, 13)])
    assert codes == [401] * 10 + [429] * 2, codes


def test_a_configured_proxy_is_believed(tmp_path: Path) -> None:
    g = GatewayProcess(tmp_path, env={"TOLLWAY_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}).start()
    try:
        # each forwarded client is its own address: ten guesses each, none throttled
        assert wrong_admin_guesses(g, 12, [f"203.0.113.{i}" for i in range(1, 13)]) == [401] * 12
        # one forwarded client is throttled like a direct one
        assert wrong_admin_guesses(g, 11, ["198.51.100.7"]) == [401] * 10 + [429]
        with httpx.Client(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10) as admin:
            assert admin.get(g.url + "/admin/api-key/list", headers={"X-Forwarded-For": "198.51.100.7"}
                             ).status_code == 429
            assert admin.get(g.url + "/admin/api-key/list", headers={"X-Forwarded-For": "198.51.100.8"}
                             ).status_code == 200
    finally:
        g.stop()


def test_uvicorn_believes_forwarded_headers_only_from_configured_proxies() -> None:
    from tollway.cli import uvicorn_options  # (imported here: the other tests also run against older code)

    plain = uvicorn_options(load_settings(environ={}))
    assert plain["proxy_headers"] is False and plain["forwarded_allow_ips"] is None
    proxied = uvicorn_options(load_settings(environ={"TOLLWAY_TRUSTED_PROXIES": "10.0.0.5,fd00::/8"}))
    assert proxied["proxy_headers"] is True and proxied["forwarded_allow_ips"] == ["10.0.0.5", "fd00::/8"]
    assert uvicorn_options(load_settings(environ={"TOLLWAY_TRUSTED_PROXIES": "*"}))["forwarded_allow_ips"] == ["*"]
    with pytest.raises(ConfigError, match="TOLLWAY_TRUSTED_PROXIES"):
        load_settings(environ={"TOLLWAY_TRUSTED_PROXIES": "proxy.internal"})
