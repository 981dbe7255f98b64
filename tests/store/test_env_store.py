"""The env store (City's /v1/env) on SQLite and PostgreSQL: encrypted at rest, every write
counted, keys and values checked; and the env service's handlers over it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from tollway.auth.secret_box import META_KEY, SecretBox, load_secret_key
from tollway.core.errors import ConfigError, InvalidRequest, NotFound, NotImplementedYet
from tollway.dialects.city.env import env_service
from tollway.store import changes
from tollway.store.env import KEY_RULE, MAX_VALUE_BYTES, EnvRepository
from tollway.store.meta import MetaRepository
from tollway.store.tables import env_vars

SECRET = "sk-live-0123456789abcdefghijklmnop"


@pytest.fixture
def repo(engine: AsyncEngine) -> EnvRepository:
    return EnvRepository(engine, SecretBox(Fernet.generate_key()))


async def raw_values(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        return {str(k): str(v) for k, v in (await conn.execute(sa.select(env_vars.c.key, env_vars.c.value))).all()}


async def test_values_are_encrypted_at_rest(engine: AsyncEngine, repo: EnvRepository) -> None:
    assert await repo.upsert("OPENAI_API_KEY", SECRET) == "added"
    raw = await raw_values(engine)
    assert set(raw) == {"OPENAI_API_KEY"}
    assert SECRET not in raw["OPENAI_API_KEY"] and "0123456789" not in raw["OPENAI_API_KEY"]
    assert repo.box.decrypt(raw["OPENAI_API_KEY"]) == SECRET
    assert await repo.all() == {"OPENAI_API_KEY": SECRET}


async def test_upsert_outcomes_and_the_change_counter(engine: AsyncEngine, repo: EnvRepository) -> None:
    before = await changes.current(engine)
    assert await repo.upsert("A", "1") == "added"
    assert await changes.current(engine) == before + 1
    first = (await repo.entries())[0].updated_at
    assert await repo.upsert("A", "1") == "unchanged"
    assert await changes.current(engine) == before + 1  # nothing written, nothing to reload
    assert (await repo.entries())[0].updated_at == first
    assert await repo.upsert("A", "2") == "updated"
    assert await changes.current(engine) == before + 2
    assert await repo.upsert("B", "") == "added"  # an empty value is a value
    assert [(e.key, e.value) for e in await repo.entries()] == [("A", "2"), ("B", "")]
    assert await repo.remove("A") is True
    assert await changes.current(engine) == before + 4
    assert await repo.remove("A") is False
    assert await changes.current(engine) == before + 4
    assert await repo.all() == {"B": ""}


async def test_upsert_many_is_one_transaction(engine: AsyncEngine, repo: EnvRepository) -> None:
    await repo.upsert_many({"A": "1", "B": "2"})
    before = await changes.current(engine)
    outcomes = await repo.upsert_many({"A": "1", "B": "changed", "C": "3"})
    assert outcomes == {"A": "unchanged", "B": "updated", "C": "added"}
    assert await changes.current(engine) == before + 1
    with pytest.raises(InvalidRequest, match="bad-key"):
        await repo.upsert_many({"D": "4", "bad-key": "5"})
    assert await repo.all() == {"A": "1", "B": "changed", "C": "3"}  # all or nothing
    assert await repo.upsert_many({}) == {}
    assert await changes.current(engine) == before + 1


@pytest.mark.parametrize("key", ["lower", "1ABC", "A-B", "", "A B", "A\n", "K" * 129, "É"])
async def test_keys_follow_the_rule(repo: EnvRepository, key: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await repo.upsert(key, "v")
    assert KEY_RULE in info.value.message and info.value.param == "key"
    with pytest.raises(InvalidRequest):
        await repo.remove(key)
    assert await repo.all() == {}


async def test_values_up_to_64_kib(repo: EnvRepository) -> None:
    big = "é" * (MAX_VALUE_BYTES // 2)  # 64 KiB in UTF-8
    assert await repo.upsert("_K" + "9" * 126, big) == "added"
    assert await repo.all() == {"_K" + "9" * 126: big}
    with pytest.raises(InvalidRequest, match="64 KiB") as info:
        await repo.upsert("BIG", big + "x")
    assert info.value.param == "value"
    with pytest.raises(InvalidRequest, match="NUL"):
        await repo.upsert("NUL", "a\x00b")


async def test_concurrent_adds_of_one_key_both_succeed(repo: EnvRepository) -> None:
    outcomes = await asyncio.gather(*(repo.upsert("SAME", "v") for _ in range(4)))
    assert outcomes.count("added") == 1 and outcomes.count("unchanged") == 3
    assert await repo.all() == {"SAME": "v"}


async def test_a_wrong_key_names_the_values_and_the_setting(engine: AsyncEngine, repo: EnvRepository) -> None:
    await repo.upsert_many({"A": "1", "B": "2"})
    other = EnvRepository(engine, SecretBox(Fernet.generate_key()))
    with pytest.raises(ConfigError) as info:
        await other.all()
    assert "A, B" in info.value.message and "TOLLWAY_SECRET_KEY" in info.value.message
    with pytest.raises(ConfigError, match="stored value of A does not decrypt.*TOLLWAY_SECRET_KEY"):
        await other.upsert("A", "3")
    assert await repo.all() == {"A": "1", "B": "2"}


async def test_secret_key_generated_once_in_the_database(engine: AsyncEngine) -> None:
    meta = MetaRepository(engine)
    keys = await asyncio.gather(*(load_secret_key({}, meta) for _ in range(3)))  # first starts together
    assert len(set(keys)) == 1 and await meta.get(META_KEY) == keys[0].decode()
    assert await load_secret_key({}, MetaRepository(engine)) == keys[0]
    with pytest.raises(ConfigError, match="TOLLWAY_SECRET_KEY"):
        await load_secret_key({"TOLLWAY_SECRET_KEY": "a-different-key-of-at-least-32-characters"}, meta)


async def test_secret_key_from_the_setting_stays_out_of_the_database(engine: AsyncEngine) -> None:
    meta = MetaRepository(engine)
    env = {"TOLLWAY_SECRET_KEY": Fernet.generate_key().decode()}
    key = await load_secret_key(env, meta)
    assert key == env["TOLLWAY_SECRET_KEY"].encode() and await meta.get(META_KEY) is None
    repo = EnvRepository(engine, SecretBox(key))
    await repo.upsert("A", SECRET)
    async with engine.connect() as conn:
        dump = " ".join(str(v) for r in (await conn.execute(sa.text("SELECT * FROM meta"))).all() for v in r)
    assert env["TOLLWAY_SECRET_KEY"] not in dump and SECRET not in dump
    assert await EnvRepository(engine, SecretBox(await load_secret_key(env, meta))).all() == {"A": SECRET}


# --- the env service's handlers ---------------------------------------------------------


class FakeGateway:
    def __init__(self, repo: EnvRepository) -> None:
        self.env_repo = repo
        self.applied = 0

    async def apply_env(self) -> None:
        self.applied += 1


async def call(gw: Any, action: str, body: dict[str, Any] | None = None) -> Any:
    app = SimpleNamespace(state=SimpleNamespace(gateway=gw))
    request = Request({"type": "http", "app": app, "method": "POST", "headers": []})
    return await env_service().actions[action].handler(request, None, body or {}, None)  # type: ignore[arg-type]


async def test_service_actions_are_admin_only() -> None:
    actions = env_service().actions
    assert set(actions) == {"list", "upsert", "remove", "import"}
    assert all(a.allow == ("admin",) and not a.allows("user") and not a.allows("guest") for a in actions.values())
    assert actions["list"].methods == ("GET",) and actions["import"].methods == ("POST",)


async def test_service_list_masks_and_writes_apply(engine: AsyncEngine, repo: EnvRepository) -> None:
    gw = FakeGateway(repo)
    assert await call(gw, "upsert", {"key": "OPENAI_API_KEY", "value": SECRET}) == {
        "key": "OPENAI_API_KEY", "result": "added"}
    assert await call(gw, "upsert", {"key": "SHORT", "value": "abc"}) == {"key": "SHORT", "result": "added"}
    assert gw.applied == 2
    assert await call(gw, "upsert", {"key": "SHORT", "value": "abc"}) == {"key": "SHORT", "result": "unchanged"}
    assert gw.applied == 2
    listed = await call(gw, "list")
    assert [(i["key"], i["value"], i["source"]) for i in listed["items"]] == [
        ("OPENAI_API_KEY", "sk-l…op", "database"), ("SHORT", "***", "database")]
    assert all(isinstance(i["updated_at"], float) for i in listed["items"])
    assert SECRET not in repr(listed) and "abc" not in repr(listed)
    assert await call(gw, "remove", {"key": "SHORT"}) == {"key": "SHORT", "removed": True}
    assert gw.applied == 3
    with pytest.raises(NotFound):
        await call(gw, "remove", {"key": "SHORT"})
    with pytest.raises(InvalidRequest, match="value must be a string"):
        await call(gw, "upsert", {"key": "A", "value": 1})
    with pytest.raises(InvalidRequest, match="key is required"):
        await call(gw, "upsert", {"value": "x"})
    assert gw.applied == 3


async def test_service_import(engine: AsyncEngine, repo: EnvRepository) -> None:
    gw = FakeGateway(repo)
    await repo.upsert_many({"KEEP": "same", "CHANGE": "old"})
    text = "# providers\nexport KEEP=same\nCHANGE='new'\nNEW=\"a\\nb\" # two lines\nbad-key=1\nNEW=last\nnoise\n"
    answer = await call(gw, "import", {"text": text})
    assert answer == {"added": ["NEW"], "updated": ["CHANGE"], "unchanged": ["KEEP"], "skipped": [
        {"line": 4, "key": "NEW", "reason": "NEW is set again on line 6: the last one wins"},
        {"line": 5, "key": "bad-key", "reason": answer["skipped"][1]["reason"]},
        {"line": 7, "key": None, "reason": "no '=' on this line: not a KEY=value assignment"}]}
    assert KEY_RULE in answer["skipped"][1]["reason"]
    assert await repo.all() == {"KEEP": "same", "CHANGE": "new", "NEW": "last"}
    assert gw.applied == 1
    assert (await call(gw, "import", {"env": "KEEP=same"}))["unchanged"] == ["KEEP"]
    assert gw.applied == 1  # nothing changed
    with pytest.raises(InvalidRequest, match="not both"):
        await call(gw, "import", {"text": "A=1", "env": "A=1"})
    with pytest.raises(InvalidRequest, match="text is required"):
        await call(gw, "import", {})


async def test_service_without_apply_env_or_a_repository(repo: EnvRepository) -> None:
    gw = SimpleNamespace(env_repo=repo)  # a gateway before apply_env exists
    assert (await call(gw, "upsert", {"key": "A", "value": "1"}))["result"] == "added"
    with pytest.raises(NotImplementedYet, match="env store is not configured"):
        await call(SimpleNamespace(), "list")
