"""Admin sessions and admin-auth throttling (issue 17, items 5 and 7): the JWT signing key has a
part that is never in the database, and failed admin authentications are throttled per address."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import stat
import threading
import time
from pathlib import Path

import jwt as pyjwt
import pytest

from tollway.admin.base import AuthThrottle
from tollway.auth.jwt import KEY_FILE, SECRET_ROW, AdminTokens, SessionExpired, key_file, server_secret
from tollway.core.errors import AuthenticationFailed, ConfigError, RateLimited

ADMIN_HASH = hashlib.sha256(b"tw-admin-generated").hexdigest()


class FakeMeta:
    """MetaRepository's get / set_if_absent over a dict: what a copy of the database holds."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.rows.get(key)

    async def set_if_absent(self, key: str, value: str) -> str:
        return self.rows.setdefault(key, value)


class Clock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now  # PyJWT checks exp against the real time

    def __call__(self) -> float:
        return self.now


def tokens(meta: FakeMeta, server_key: bytes, clock: Clock | None = None) -> AdminTokens:
    return AdminTokens(meta, ADMIN_HASH, server_key, clock=clock or Clock())  # type: ignore[arg-type]


# the server secret ----------------------------------------------------------------------------


def test_the_server_secret_comes_from_the_env_first_then_a_key_file(tmp_path: Path) -> None:
    secret_key = server_secret({"TOLLWAY_SECRET_KEY": "s" * 40, "TOLLWAY_ADMIN_KEY": "tw-admin-x"}, tmp_path)
    admin_key = server_secret({"TOLLWAY_ADMIN_KEY": "tw-admin-x"}, tmp_path)
    assert secret_key != admin_key and b"s" * 40 in secret_key and b"tw-admin-x" in admin_key
    assert not (tmp_path / KEY_FILE).exists()  # no file while the env gives a secret
    from_file = server_secret({"TOLLWAY_SECRET_KEY": "  ", "TOLLWAY_ADMIN_KEY": ""}, tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    assert server_secret({}, tmp_path / "data") == from_file  # kept: sessions survive a restart
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]  # no temporary file left behind


def test_processes_starting_together_agree_on_one_key_file(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        barrier.wait()
        keys.append(key_file(path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(os.listdir(tmp_path)) == [KEY_FILE]


def test_a_damaged_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    path.write_text("not hex")
    with pytest.raises(ConfigError, match=KEY_FILE):
        key_file(path)
    path.write_text("ab" * 8)  # too short
    with pytest.raises(ConfigError):
        key_file(path)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match="TOLLWAY_SECRET_KEY"):  # the data dir cannot be made
        key_file(blocked / "data" / KEY_FILE)


# tokens ------------------------------------------------------------------------------------------


async def test_the_database_alone_cannot_sign_an_admin_token(tmp_path: Path) -> None:
    meta = FakeMeta()
    server_key = server_secret({}, tmp_path)
    mine = tokens(meta, server_key)
    token, _ = await mine.issue(1)
    assert await mine.verify(token) > 0
    # everything a copy of the database holds: the random row and the admin key's hash
    stored = meta.rows[SECRET_ROW]
    now = int(time.time())
    claims = {"sub": "admin", "iat": now, "exp": now + 600}
    candidates = [hmac.new(stored.encode(), ADMIN_HASH.encode(), hashlib.sha256).digest(),  # the old derivation
                  stored.encode(), ADMIN_HASH.encode(),
                  hmac.new(ADMIN_HASH.encode(), stored.encode(), hashlib.sha256).digest()]
    for key in candidates:
        forged = pyjwt.encode(claims, key, algorithm="HS256")
        with pytest.raises(AuthenticationFailed):
            await mine.verify(forged)
    # the same database with another server secret (another data dir) accepts none of them either
    other = tokens(meta, server_secret({}, tmp_path / "elsewhere"))
    with pytest.raises(AuthenticationFailed):
        await other.verify(token)


async def test_the_admin_hash_and_the_stored_row_still_end_sessions(tmp_path: Path) -> None:
    meta, key = FakeMeta(), server_secret({"TOLLWAY_ADMIN_KEY": "tw-admin-x"}, tmp_path)
    token, _ = await tokens(meta, key).issue(1)
    changed_admin = AdminTokens(meta, "0" * 64, key, clock=Clock())  # type: ignore[arg-type]
    with pytest.raises(AuthenticationFailed):
        await changed_admin.verify(token)
    meta.rows.clear()  # the row deleted: a new one is made
    with pytest.raises(AuthenticationFailed):
        await tokens(meta, key).verify(token)


async def test_an_expired_session_is_told_apart_from_a_bad_token(tmp_path: Path) -> None:
    clock = Clock()
    service = tokens(FakeMeta(), server_secret({"TOLLWAY_ADMIN_KEY": "k"}, tmp_path), clock)
    token, ttl = await service.issue(1)
    clock.now += ttl + 1
    with pytest.raises(SessionExpired):
        await service.verify(token)
    with pytest.raises(AuthenticationFailed) as bad:
        await service.verify(token[:-2] + "xx")
    assert not isinstance(bad.value, SessionExpired)


def test_admin_tokens_need_a_server_secret() -> None:
    with pytest.raises(ValueError):
        AdminTokens(FakeMeta(), ADMIN_HASH, b"")  # type: ignore[arg-type]


# the throttle -------------------------------------------------------------------------------------


def test_the_auth_throttle_refuses_an_address_after_its_limit_and_lets_it_back() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=3, window=60.0, clock=clock)
    for _ in range(3):
        throttle.check("10.0.0.1")
        throttle.failed("10.0.0.1")
        clock.now += 1
    with pytest.raises(RateLimited) as limited:
        throttle.check("10.0.0.1")
    assert limited.value.retry_after == pytest.approx(57.0)
    throttle.check("10.0.0.2")  # another address is not touched
    clock.now += 57
    throttle.check("10.0.0.1")


def test_the_auth_throttle_keeps_at_most_max_clients() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=1, window=60.0, max_clients=3, clock=clock)
    for i in range(10):
        throttle.failed(f"10.0.0.{i}")
        clock.now += 1
    assert sum(throttle.wait(f"10.0.0.{i}") > 0 for i in range(10)) == 3
    assert throttle.wait("10.0.0.9") > 0  # the newest stay


def test_sessions_run_without_an_event_loop_of_their_own(tmp_path: Path) -> None:
    service = tokens(FakeMeta(), server_secret({"TOLLWAY_ADMIN_KEY": "k"}, tmp_path))
    token, _ = asyncio.run(service.issue(2))
    assert asyncio.run(service.verify(token)) > 0
