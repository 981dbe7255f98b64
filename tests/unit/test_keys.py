"""Key secrets, bearer parsing and the in-memory Authenticator."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest

from tollway.auth.keys import (
    KEY_PREFIX,
    Authenticator,
    bearer_token,
    hash_secret,
    new_secret,
    prefix_of,
)
from tollway.core.errors import AuthenticationFailed, PermissionDenied
from tollway.core.keys import ApiKey

ADMIN_SECRET = "tw-admin-correct-horse"


def make_key(key_id: int, secret: str, **kw: object) -> ApiKey:
    return ApiKey(id=key_id, name=f"key{key_id}", prefix=prefix_of(secret), key_hash=hash_secret(secret), **kw)


@pytest.fixture
def secrets_() -> tuple[str, str, str]:
    return new_secret(), new_secret(), new_secret()


# --- secrets and hashes -------------------------------------------------------------------------


def test_new_secret_has_the_tw_prefix_and_256_bits_of_url_safe_randomness() -> None:
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50
    for s in made:
        assert s.startswith(KEY_PREFIX) and KEY_PREFIX == "tw-"
        assert re.fullmatch(r"tw-[A-Za-z0-9_-]{43}", s)


def test_hash_is_64_hex_chars_of_sha256() -> None:
    h = hash_secret("tw-example")
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert h == hashlib.sha256(b"tw-example").hexdigest()
    assert hash_secret("tw-example2") != h


def test_prefix_shows_ten_characters_of_a_long_key_and_a_quarter_of_a_short_one() -> None:
    secret = new_secret()
    assert prefix_of(secret) == secret[:10]
    assert prefix_of("00000001") == "00"  # an 8-character imported key: 2 shown, never most of it
    assert prefix_of("my-own-key-123") == "my-"


# --- bearer_token --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "token"),
    [
        ("Bearer tw-abc", None, "tw-abc"),
        ("bearer tw-abc", None, "tw-abc"),
        ("BEARER   tw-abc  ", None, "tw-abc"),
        (None, "tw-xyz", "tw-xyz"),
        (None, "  tw-xyz ", "tw-xyz"),
        ("Bearer tw-abc", "tw-xyz", "tw-abc"),
        ("Basic dXNlcjpwYXNz", "tw-xyz", "tw-xyz"),
        ("Bearer ", "tw-xyz", "tw-xyz"),
        ("Basic dXNlcjpwYXNz", None, None),
        ("tw-abc", None, None),
        ("Bearer    ", None, None),
        (None, None, None),
        ("", "   ", None),
    ],
)
def test_bearer_token_prefers_authorization_bearer_then_x_api_key(
        authorization: str | None, x_api_key: str | None, token: str | None) -> None:
    assert bearer_token(authorization, x_api_key) == token


# --- Authenticator ---------------------------------------------------------------------------------


async def test_the_admin_secret_is_accepted_as_admin() -> None:
    auth = Authenticator(hash_secret(ADMIN_SECRET), [])
    ident = await auth.identify(ADMIN_SECRET)
    assert ident.is_admin and ident.key is None
    assert (ident.key_id, ident.key_prefix) == (None, "admin")
    assert auth.is_admin_secret(ADMIN_SECRET)
    assert not auth.is_admin_secret(ADMIN_SECRET + "x")


async def test_a_valid_key_identifies_its_key(secrets_: tuple[str, str, str]) -> None:
    s1, s2, _ = secrets_
    k1, k2 = make_key(1, s1), make_key(2, s2, role="admin")
    auth = Authenticator(hash_secret(ADMIN_SECRET), [k1, k2])
    ident = await auth.identify(s1)
    assert ident.key == k1 and not ident.is_admin
    assert (ident.key_id, ident.key_prefix) == (1, s1[:10])
    assert (await auth.identify(s2)).is_admin  # an admin-role key is an admin identity
    assert not auth.is_admin_secret(s2)


async def test_a_disabled_key_is_denied_with_api_disabled(secrets_: tuple[str, str, str]) -> None:
    s1 = secrets_[0]
    auth = Authenticator(hash_secret(ADMIN_SECRET), [make_key(1, s1, enabled=False)])
    with pytest.raises(PermissionDenied) as info:
        await auth.identify(s1)
    assert (info.value.code, info.value.status) == ("api_disabled", 403)


@pytest.mark.parametrize("token", ["tw-not-a-key", ADMIN_SECRET.upper(), ADMIN_SECRET + " "])
async def test_an_unknown_token_fails_authentication(token: str) -> None:
    auth = Authenticator(hash_secret(ADMIN_SECRET), [make_key(1, new_secret())])
    with pytest.raises(AuthenticationFailed) as info:
        await auth.identify(token)
    assert (info.value.code, info.value.status) == ("invalid_api_key", 401)


@pytest.mark.parametrize("token", [None, ""])
async def test_a_missing_token_fails_authentication(token: str | None) -> None:
    with pytest.raises(AuthenticationFailed, match="Missing API key"):
        await Authenticator(hash_secret(ADMIN_SECRET), []).identify(token)


async def test_revoked_keys_are_never_loaded(secrets_: tuple[str, str, str]) -> None:
    s1, s2, _ = secrets_
    auth = Authenticator(hash_secret(ADMIN_SECRET), [make_key(1, s1), make_key(2, s2, revoked_at=1.0)])
    assert (await auth.identify(s1)).key_id == 1
    with pytest.raises(AuthenticationFailed):
        await auth.identify(s2)


async def test_reload_swaps_the_table_and_drops_revoked_keys(secrets_: tuple[str, str, str]) -> None:
    s1, s2, s3 = secrets_
    auth = Authenticator(hash_secret(ADMIN_SECRET), [make_key(1, s1), make_key(2, s2)])
    assert (await auth.identify(s2)).key_id == 2
    auth.reload([make_key(1, s1), make_key(2, s2, revoked_at=1700000000.0), make_key(3, s3)])
    with pytest.raises(AuthenticationFailed):
        await auth.identify(s2)
    assert (await auth.identify(s1)).key_id == 1
    assert (await auth.identify(s3)).key_id == 3
    assert (await auth.identify(ADMIN_SECRET)).is_admin  # the admin secret survives a reload


async def test_put_and_drop_update_single_keys(secrets_: tuple[str, str, str]) -> None:
    s1, s2, _ = secrets_
    auth = Authenticator(hash_secret(ADMIN_SECRET), [make_key(1, s1)])
    auth.put(make_key(2, s2))
    assert (await auth.identify(s2)).key_id == 2
    auth.drop(1)
    with pytest.raises(AuthenticationFailed):
        await auth.identify(s1)
    assert (await auth.identify(s2)).key_id == 2


async def test_a_miss_is_looked_up_once_then_remembered_until_reload(secrets_: tuple[str, str, str]) -> None:
    s1, s2, _ = secrets_
    store = {hash_secret(s1): make_key(1, s1)}
    calls: list[str] = []

    async def lookup(h: str) -> ApiKey | None:
        calls.append(h)
        return store.get(h)

    auth = Authenticator(hash_secret(ADMIN_SECRET), [], lookup)
    assert (await auth.identify(s1)).key_id == 1  # created elsewhere: found in the store
    assert (await auth.identify(s1)).key_id == 1  # now from memory
    assert calls == [hash_secret(s1)]
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await auth.identify(s2)
    assert calls == [hash_secret(s1), hash_secret(s2)]  # an unknown token costs one lookup
    store[hash_secret(s2)] = make_key(2, s2)
    auth.reload([])
    assert (await auth.identify(s2)).key_id == 2  # a reload forgets misses


async def test_lookups_of_unknown_tokens_are_rate_limited_and_single_flight(secrets_: tuple[str, str, str]) -> None:
    s1, _, _ = secrets_
    now = [0.0]
    calls: list[str] = []
    gate = asyncio.Event()

    async def lookup(h: str) -> ApiKey | None:
        calls.append(h)
        await gate.wait()
        return make_key(1, s1) if h == hash_secret(s1) else None

    auth = Authenticator(hash_secret(ADMIN_SECRET), [], lookup, lookups_per_second=2, clock=lambda: now[0])
    same = [asyncio.create_task(auth.identify(s1)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert [(await t).key_id for t in same] == [1] * 5
    assert calls == [hash_secret(s1)]  # five concurrent callers, one query
    for i in range(5):  # budget: 2 per second, one already spent
        with pytest.raises(AuthenticationFailed):
            await auth.identify(f"tw-made-up-{i}")
    assert len(calls) == 2
    now[0] += 1.0  # the bucket refills
    with pytest.raises(AuthenticationFailed):
        await auth.identify("tw-made-up-later")
    assert len(calls) == 3


async def test_a_reload_read_before_a_local_revocation_does_not_bring_the_key_back() -> None:
    secret = new_secret()
    key = make_key(1, secret)
    auth = Authenticator(hash_secret(ADMIN_SECRET), [key])
    mark = auth.mark()  # the change poll starts reading the keys ...
    auth.drop(1)  # ... while an admin revokes one here
    assert auth.reload([key], mark) is False  # the stale read is not applied
    with pytest.raises(AuthenticationFailed):
        await auth.identify(secret)
    assert auth.reload([], auth.mark()) is True  # the next poll's read is
