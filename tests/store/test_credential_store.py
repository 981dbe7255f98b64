"""The accounts' credential store on SQLite and PostgreSQL (issue 17, items 6 and 10): passwords
and tokens encrypted at rest, rows written in clear before still served (and sealed on the
first read), and an id inserted twice at once is one row and one refusal, never an error."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.secret_box import SecretBox
from tollway.core.errors import ConfigError
from tollway.store import changes
from tollway.store.credentials import SEALED, CredentialRepository, StoredCredential
from tollway.store.tables import credentials

API_KEY, PASSWORD, TOKEN = "sk-account-api-key-0123456789", "pw-account-SECRET-1", "sess-token-SECRET-0123456789"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


async def raw_rows(engine: AsyncEngine) -> dict[str, dict[str, object]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(credentials))).all()
    return {str(r._mapping["id"]): {str(k): v for k, v in r._mapping.items()} for r in rows}


async def insert_clear(engine: AsyncEngine, ident: str, *, password: str | None, secret: str | None) -> None:
    """A row as this table held it before encryption."""
    now = time.time()
    async with engine.begin() as conn:
        await conn.execute(credentials.insert().values(id=ident, provider="p", email="", mobile="", password=password,
                                                       secret=secret, created_at=now, updated_at=now))


async def test_passwords_and_tokens_are_encrypted_at_rest(engine: AsyncEngine, box: SecretBox) -> None:
    repo = CredentialRepository(engine, box)
    await repo.upsert([StoredCredential(id="key", provider="p", secret=API_KEY),
                       StoredCredential(id="a@x.io", provider="p", email="a@x.io", password=PASSWORD, secret=TOKEN)])
    raw = await raw_rows(engine)
    text = repr(raw)
    for secret in (API_KEY, PASSWORD, TOKEN, "0123456789", "SECRET"):
        assert secret not in text
    assert all(str(raw[i][f]).startswith(SEALED) for i, f in (("key", "secret"), ("a@x.io", "password"),
                                                                ("a@x.io", "secret")))
    assert raw["key"]["password"] is None  # nothing is not encrypted into something
    assert box.decrypt(str(raw["key"]["secret"])[len(SEALED):]) == API_KEY
    by_id = {c.id: c for c in await repo.all()}
    assert by_id["key"].secret == API_KEY and by_id["key"].password is None
    assert (by_id["a@x.io"].password, by_id["a@x.io"].secret) == (PASSWORD, TOKEN)
    found = await repo.get("a@x.io", "p")
    assert found is not None and found.credential().secret == TOKEN
    assert found.public()["token_preview"] == "sess-..."


async def test_rows_written_in_clear_still_serve_and_are_sealed_on_first_read(engine: AsyncEngine,
                                                                              box: SecretBox) -> None:
    await insert_clear(engine, "old-key", password=None, secret=API_KEY)
    await insert_clear(engine, "old-login", password=PASSWORD, secret=TOKEN)
    before = await changes.current(engine)
    repo = CredentialRepository(engine, box)
    assert {c.id: (c.password, c.secret) for c in await repo.all()} == {
        "old-key": (None, API_KEY), "old-login": (PASSWORD, TOKEN)}
    raw = repr(await raw_rows(engine))
    assert API_KEY not in raw and PASSWORD not in raw and TOKEN not in raw
    assert await changes.current(engine) == before  # same values: nothing for other processes to reload
    assert {c.id: (c.password, c.secret) for c in await repo.all()} == {
        "old-key": (None, API_KEY), "old-login": (PASSWORD, TOKEN)}


async def test_a_repository_without_the_key_never_passes_a_sealed_value_on(engine: AsyncEngine,
                                                                            box: SecretBox) -> None:
    await CredentialRepository(engine, box).upsert([StoredCredential(id="key", provider="p", secret=API_KEY)])
    with pytest.raises(ConfigError, match="TOLLWAY_SECRET_KEY"):
        await CredentialRepository(engine).all()
    with pytest.raises(ConfigError, match="TOLLWAY_SECRET_KEY"):
        await CredentialRepository(engine, SecretBox(Fernet.generate_key())).all()  # another key
    await insert_clear(engine, "clear", password=None, secret="sk-clear-0123456789")
    with pytest.raises(ConfigError):
        await CredentialRepository(engine).get("key")
    clear = await CredentialRepository(engine).get("clear")
    assert clear is not None and clear.secret == "sk-clear-0123456789"


async def test_an_id_inserted_ten_times_at_once_is_one_row(engine: AsyncEngine, box: SecretBox) -> None:
    repo = CredentialRepository(engine, box)
    account = StoredCredential(id="same@x.io", provider="p", email="same@x.io", password=PASSWORD)
    results = await asyncio.gather(*(repo.insert(account) for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]
    assert [c.id for c in await repo.all()] == ["same@x.io"]
    assert await repo.insert(account) is False


async def test_concurrent_upserts_of_one_id_update_instead_of_failing(engine: AsyncEngine, box: SecretBox) -> None:
    repo = CredentialRepository(engine, box)
    items = [StoredCredential(id="u", provider="p", secret=f"sk-upsert-{i}-0123456789") for i in range(8)]
    assert await asyncio.gather(*(repo.upsert([c]) for c in items)) == [1] * 8
    stored = await repo.all()
    assert len(stored) == 1 and stored[0].secret in {c.secret for c in items}
