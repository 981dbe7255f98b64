"""In-flight caps per credential (issue 17, item 11): seed 002's cap of 2 is for logged-in web
accounts; an API key serves many calls at once out of the box. Caps per kind come from the
settings and a provider's YAML options, and one credential may name its own. The Redis twin of
these is in test_redis_state.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tollway.app import pool_options
from tollway.config import load_file_config, load_settings
from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.errors import ConfigError, PoolExhausted
from tollway.routing.pools import CredentialPool, Lease, MemoryState, PoolOptions, cap_of, is_account

KEY = Credential(id="key", secret="sk-key")
ACCOUNT = Credential(id="acct@example.com", secret="token", extra={"email": "acct@example.com"})
PHONE = Credential(id="13800000000", secret="token-2", extra={"mobile": "13800000000"})
OWN = Credential(id="own", secret="sk-own", extra={"max_inflight": "3"})


async def take(pool: CredentialPool, n: int, **kw: Any) -> list[Lease]:
    """``n`` leases, each granted at once (a wait for a free slot fails the test)."""
    async with asyncio.timeout(1):
        return [await pool.acquire(**kw) for _ in range(n)]


async def refused_at_once(pool: CredentialPool, **kw: Any) -> None:
    """The next call would wait: every slot it may take is held."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.15):
            await pool.acquire(**kw)


def configured(options: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> PoolOptions:
    settings = load_settings(environ=env or {})
    return pool_options(settings.pool, ProviderConfig(name="p", kind="openai", options=options or {}))


# out of the box ----------------------------------------------------------------------------------


async def test_out_of_the_box_one_api_key_serves_many_calls_at_once() -> None:
    """Before: the default cap of 2 applied to an OPENAI_API_KEY too, and call 3 waited."""
    pool = CredentialPool("openai", (KEY,), options=configured())
    leases = await take(pool, 200)
    assert {le.credential.id for le in leases} == {"key"}
    status = await pool.status()
    assert status["in_flight"] == {"key": 200} and status["available_accounts"] == ["key"]
    assert status["max_inflight"] == {"key": 1000} and status["recommended_concurrency"] == 1000


async def test_out_of_the_box_an_account_keeps_seed_002s_cap_of_two() -> None:
    pool = CredentialPool("deepseek", (KEY, ACCOUNT, PHONE), options=configured())
    await take(pool, 2, pin="acct@example.com")
    await refused_at_once(pool, pin="acct@example.com")
    await take(pool, 2, pin="13800000000")  # a login by mobile is an account too
    await refused_at_once(pool, pin="13800000000")
    await take(pool, 50, pin="key")
    status = await pool.status()
    assert status["max_inflight"] == {"key": 1000, "acct@example.com": 2, "13800000000": 2}
    assert status["max_inflight_per_account"] == 2  # seed 002's figure: the accounts' cap
    assert status["recommended_concurrency"] == 1004
    assert status["available_accounts"] == ["key"]


def test_which_credentials_are_accounts() -> None:
    assert is_account(ACCOUNT) and is_account(PHONE)
    assert not is_account(KEY) and not is_account(OWN)
    assert not is_account(Credential(id="aws", secret="s", extra={"access_key_id": "AKIA"}))


# caps per kind and per credential ----------------------------------------------------------------


def test_a_credential_may_name_its_own_cap() -> None:
    opts = PoolOptions(max_inflight=2, api_key_max_inflight=50)
    assert [cap_of(c, opts) for c in (KEY, ACCOUNT, OWN)] == [50, 2, 3]
    mine = Credential(id="a", secret="t", extra={"email": "a@example.com", "max_inflight": "7"})
    assert cap_of(mine, opts) == 7
    # without an API-key cap (PoolOptions' own default), max_inflight is every credential's
    assert [cap_of(c, PoolOptions(max_inflight=4)) for c in (KEY, ACCOUNT)] == [4, 4]


async def test_each_credential_is_held_to_its_own_cap() -> None:
    pool = CredentialPool("p", (ACCOUNT, KEY, OWN),
                          options=PoolOptions(max_inflight=2, api_key_max_inflight=5, queue_size=0))
    leases = await take(pool, 10)
    counts = {cid: sum(le.credential.id == cid for le in leases) for cid in ("acct@example.com", "key", "own")}
    assert counts == {"acct@example.com": 2, "key": 5, "own": 3}
    with pytest.raises(PoolExhausted) as info:  # every credential at its own cap, no queue
        await pool.acquire()
    assert "10 in flight" in info.value.message
    status = await pool.status()
    assert status["recommended_concurrency"] == 10 and status["available"] == 0
    await pool.release(next(le for le in leases if le.credential.id == "key"))
    assert (await take(pool, 1))[0].credential.id == "key"


async def test_the_least_busy_credential_under_its_cap_wins() -> None:
    state = MemoryState()
    # "a" holds 1 of 1, "b" holds 2 of 5: the full one is skipped though it is less busy
    assert await state.take("p", ["a"], [1], 30) is not None
    for _ in range(2):
        assert await state.take("p", ["b"], [5], 30) is not None
    assert (await state.take("p", ["a", "b", "c"], [1, 5, 5], 30) or ("",))[0] == "c"
    assert (await state.take("p", ["a", "b", "c"], [1, 5, 5], 30) or ("",))[0] == "c"  # c 1, b 2
    assert (await state.take("p", ["a", "b"], [1, 5], 30) or ("",))[0] == "b"
    assert await state.take("p", ["a"], [1], 30) is None
    assert await state.take("p", ["a", "b"], 1, 30) is None  # one int: the same cap for all
    with pytest.raises(ValueError):
        await state.take("p", ["a", "b"], [1], 30)


async def test_new_credentials_bring_their_caps_and_wake_waiters() -> None:
    pool = CredentialPool("p", (ACCOUNT,), options=PoolOptions(max_inflight=1, api_key_max_inflight=3,
                                                                queue_timeout=2))
    await take(pool, 1)
    waiters = [asyncio.create_task(pool.acquire()) for _ in range(3)]
    await asyncio.sleep(0.05)
    pool.set_credentials((ACCOUNT, KEY))
    async with asyncio.timeout(1):
        got = await asyncio.gather(*waiters)
    assert [le.credential.id for le in got] == ["key"] * 3
    assert (await pool.status())["recommended_concurrency"] == 4


# settings and YAML options -----------------------------------------------------------------------


@pytest.mark.parametrize(("env", "account", "api_key"), [
    ({}, 2, 1000),
    ({"TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL": "16"}, 16, 16),  # as before: every credential's cap
    ({"TOLLWAY_MAX_INFLIGHT_PER_API_KEY": "64"}, 2, 64),
    ({"TOLLWAY_MAX_INFLIGHT_PER_ACCOUNT": "1"}, 1, 1000),
    ({"TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL": "8", "TOLLWAY_MAX_INFLIGHT_PER_API_KEY": "100"}, 8, 100),
])
def test_caps_from_the_environment(env: dict[str, str], account: int, api_key: int) -> None:
    opts = configured(env=env)
    assert (cap_of(ACCOUNT, opts), cap_of(KEY, opts)) == (account, api_key)


@pytest.mark.parametrize(("options", "account", "api_key"), [
    ({}, 2, 1000),
    ({"max_inflight": 4}, 4, 4),  # a provider's max_inflight is every credential's, as before
    ({"api_key_max_inflight": 8}, 2, 8),
    ({"account_max_inflight": 1}, 1, 1000),
    ({"max_inflight": 4, "api_key_max_inflight": 32}, 4, 32),
])
def test_caps_from_a_providers_yaml_options(options: dict[str, Any], account: int, api_key: int) -> None:
    opts = configured(options)
    assert (cap_of(ACCOUNT, opts), cap_of(KEY, opts)) == (account, api_key)
    # what a provider's options set wins over the environment's defaults; the rest comes from them
    env_opts = configured(options, {"TOLLWAY_MAX_INFLIGHT_PER_API_KEY": "64"})
    sets_keys = "max_inflight" in options or "api_key_max_inflight" in options
    assert cap_of(KEY, env_opts) == (api_key if sets_keys else 64)


@pytest.mark.parametrize("bad", [0, -1, "8", 1.5, True, 10**7])
def test_a_cap_option_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_inflight must be an integer"):
        configured({"max_inflight": bad})
    with pytest.raises(ConfigError, match="api_key_max_inflight"):
        configured({"api_key_max_inflight": bad})


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_bad_cap_variable_is_a_config_error(value: str) -> None:
    for name in ("TOLLWAY_MAX_INFLIGHT_PER_API_KEY", "TOLLWAY_MAX_INFLIGHT_PER_ACCOUNT",
                 "TOLLWAY_MAX_INFLIGHT_PER_CREDENTIAL"):
        with pytest.raises(ConfigError, match=name):
            load_settings(environ={name: value})


def test_a_yaml_credential_names_its_own_cap(tmp_path: Any) -> None:
    path = tmp_path / "tollway.yaml"
    path.write_text("providers:\n  - name: v\n    kind: openai_compatible\n    base_url: http://127.0.0.1:9/v1\n"
                    "    credentials:\n      - {id: a, api_key: sk-a, max_inflight: 6}\n"
                    "      - {id: b, api_key: sk-b}\n")
    creds = load_file_config(str(path), {}).providers[0].credentials
    assert [c.extra for c in creds] == [{"max_inflight": "6"}, {}]
    opts = configured()
    assert [cap_of(c, opts) for c in creds] == [6, 1000]
    path.write_text(path.read_text().replace("max_inflight: 6", "max_inflight: 0"))
    with pytest.raises(ConfigError, match="credential 0: max_inflight"):
        load_file_config(str(path), {})
