"""SecretBox and the choice of its key: TOLLWAY_SECRET_KEY, or generated once and kept in meta."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.exc import IntegrityError

from tollway.auth.secret_box import META_CHECK, META_KEY, SecretBox, fernet_key, load_secret_key
from tollway.core.errors import ConfigError

PASSPHRASE = "0123456789abcdef0123456789abcdef-long-enough"


class FakeMeta:
    """MetaRepository's get / set_if_absent over a dict; ``races`` first calls fail as a
    concurrent first insert does."""

    def __init__(self, races: int = 0) -> None:
        self.rows: dict[str, str] = {}
        self.races = races

    async def get(self, key: str) -> str | None:
        return self.rows.get(key)

    async def set_if_absent(self, key: str, value: str) -> str:
        await asyncio.sleep(0)
        if self.races:
            self.races -= 1
            self.rows.setdefault(key, Fernet.generate_key().decode() if key == META_KEY else value)
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        return self.rows.setdefault(key, value)


async def load(env: dict[str, str], meta: FakeMeta) -> bytes:
    return await load_secret_key(env, meta)  # type: ignore[arg-type]


def test_round_trip_and_tokens_hide_the_text() -> None:
    box = SecretBox(Fernet.generate_key())
    for text in ["sk-secret-value", "", "ünïcödé ✓", "x" * 65536]:
        token = box.encrypt(text)
        assert box.decrypt(token) == text
        if text:
            assert text not in token
    assert box.encrypt("same") != box.encrypt("same")  # a fresh IV each time


def test_a_wrong_key_is_a_clear_config_error() -> None:
    token = SecretBox(Fernet.generate_key()).encrypt("sk-secret")
    other = SecretBox(Fernet.generate_key())
    with pytest.raises(ConfigError) as info:
        other.decrypt(token)
    assert "TOLLWAY_SECRET_KEY" in info.value.message and info.value.code == "config_error"
    assert "sk-secret" not in info.value.message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert other.can_decrypt(token) is False
    with pytest.raises(ConfigError, match="TOLLWAY_SECRET_KEY"):
        other.decrypt("not a token at all")


def test_fernet_key_takes_a_fernet_key_or_derives_one() -> None:
    key = Fernet.generate_key()
    assert fernet_key(key.decode()) == key
    assert fernet_key(f"  {key.decode()}\n") == key
    derived = fernet_key(PASSPHRASE)
    assert derived == fernet_key(PASSPHRASE) != fernet_key(PASSPHRASE + "!")
    assert len(base64.urlsafe_b64decode(derived)) == 32
    assert SecretBox(derived).decrypt(SecretBox(fernet_key(PASSPHRASE)).encrypt("v")) == "v"
    with pytest.raises(ConfigError, match="TOLLWAY_SECRET_KEY.*at least 32 characters"):
        fernet_key("too-short-passphrase")


async def test_the_configured_key_stays_out_of_the_database() -> None:
    meta = FakeMeta()
    key = await load({"TOLLWAY_SECRET_KEY": PASSPHRASE}, meta)
    assert key == fernet_key(PASSPHRASE)
    assert META_KEY not in meta.rows
    assert SecretBox(key).decrypt(meta.rows[META_CHECK])  # the check value, for the next start
    assert await load({"TOLLWAY_SECRET_KEY": PASSPHRASE}, meta) == key


async def test_a_key_is_generated_once_and_stored() -> None:
    meta = FakeMeta()
    first = await load({}, meta)
    assert meta.rows[META_KEY] == first.decode()
    assert await load({"TOLLWAY_SECRET_KEY": ""}, meta) == first


async def test_racing_first_starts_agree() -> None:
    meta = FakeMeta(races=1)  # our insert loses to another process's
    key = await load({}, meta)
    assert key.decode() == meta.rows[META_KEY]


async def test_a_changed_key_is_refused_at_start() -> None:
    meta = FakeMeta()
    await load({"TOLLWAY_SECRET_KEY": PASSPHRASE}, meta)
    with pytest.raises(ConfigError, match="TOLLWAY_SECRET_KEY is not the key"):
        await load({"TOLLWAY_SECRET_KEY": PASSPHRASE + "-other"}, meta)
    with pytest.raises(ConfigError, match="written with TOLLWAY_SECRET_KEY, which is not set now"):
        await load({}, meta)
    assert META_KEY not in meta.rows  # no key generated over values it cannot read


async def test_setting_a_key_after_a_generated_one_says_where_the_old_one_is() -> None:
    meta = FakeMeta()
    await load({}, meta)
    with pytest.raises(ConfigError, match="generated at first start.*meta row 'secret_key'"):
        await load({"TOLLWAY_SECRET_KEY": PASSPHRASE}, meta)
    generated = meta.rows[META_KEY]
    assert await load({"TOLLWAY_SECRET_KEY": generated}, meta) == generated.encode()
