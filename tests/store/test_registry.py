"""The model registry, groups and model authorization repositories, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.key_service import KeyService
from tollway.core.errors import InvalidRequest, NotFound
from tollway.store import changes
from tollway.store.keys import KeyRepository
from tollway.store.registry import AuthorizationRepository, GroupRepository, ModelRepository


async def test_models_insert_update_and_read_back(engine: AsyncEngine) -> None:
    repo = ModelRepository(engine)
    before = await changes.current(engine)
    plain = await repo.save({"name": "plain", "provider": "echo"})
    assert await changes.current(engine) == before + 1
    # a row without lists gets ModelRecord's defaults, not empty lists
    assert plain.capabilities == ("chat",) and plain.modalities == ("text", "stream", "openai")
    assert plain.config == {} and plain.enabled and not plain.multiple and plain.created_at > 0
    rich = await repo.save({
        "name": "claude-x", "provider": "bedrock", "upstream_id": "anthropic.claude-x", "display_name": "Claude X",
        "capabilities": ["chat", "tools"], "modalities": ("text",), "aliases": ["cx"],
        "config": {"modelId": "anthropic.claude-x", "nested": {"a": [1, 2]}}, "price_in": 3_000_000,
        "price_out": 15_000_000, "credit_cost": 10, "rpm": 60, "tpm": None, "max_output_tokens": 4096,
        "group_id": 7, "multiple": True,
    })
    assert rich.capabilities == ("chat", "tools") and rich.modalities == ("text",) and rich.aliases == ("cx",)
    assert rich.config == {"modelId": "anthropic.claude-x", "nested": {"a": [1, 2]}}
    assert (rich.price_in, rich.price_out, rich.credit_cost, rich.rpm, rich.tpm) == (3_000_000, 15_000_000, 10, 60,
                                                                                    None)
    assert await repo.get(rich.id) == rich and await repo.by_name("claude-x") == rich
    assert await repo.get(999_999) is None and await repo.by_name("nope") is None
    info = rich.info()
    assert info.id == "claude-x" and info.upstream_id == "anthropic.claude-x" and info.meta["registry_id"] == rich.id

    updated = await repo.save({"enabled": False, "capabilities": [], "rpm": None}, rich.id)
    assert not updated.enabled and updated.capabilities == () and updated.rpm is None
    assert updated.display_name == "Claude X" and updated.price_in == 3_000_000  # untouched
    assert updated.updated_at >= rich.updated_at and updated.created_at == rich.created_at
    assert [m.name for m in await repo.all()] == ["plain", "claude-x"]  # disabled rows too
    assert await repo.by_names(["claude-x", "nope"]) == {"claude-x": updated}


async def test_models_errors(engine: AsyncEngine) -> None:
    repo = ModelRepository(engine)
    first = await repo.save({"name": "m1", "provider": "echo"})
    other = await repo.save({"name": "m2", "provider": "echo"})
    before = await changes.current(engine)
    with pytest.raises(InvalidRequest, match="exists already") as err:
        await repo.save({"name": "m1", "provider": "openai"})
    assert err.value.param == "name"
    with pytest.raises(InvalidRequest, match="exists already"):
        await repo.save({"name": "m1"}, other.id)  # a rename onto a taken name
    with pytest.raises(NotFound):
        await repo.save({"display_name": "x"}, 424242)
    with pytest.raises(InvalidRequest, match="provider is required"):
        await repo.save({"name": "m3"})
    with pytest.raises(ValueError, match="not writable"):
        await repo.save({"id": 5, "name": "m4", "provider": "echo"})
    assert await changes.current(engine) == before  # nothing failed half-way
    assert await repo.get(first.id) == first and (await repo.get(other.id)) == other


async def test_models_list_search_and_paging(engine: AsyncEngine) -> None:
    repo = ModelRepository(engine)
    for i in range(12):
        await repo.save({"name": f"model-{i:02d}", "provider": "openai" if i % 2 else "echo",
                         "display_name": "Special" if i == 5 else ""})
    await repo.save({"name": "under_score", "provider": "echo"})
    page, total = await repo.list(limit=5, offset=10)
    assert total == 13 and [m.name for m in page] == ["model-10", "model-11", "under_score"]
    found, total = await repo.list(q="OPENAI")  # case-insensitive on both backends
    assert total == 6 and all(m.provider == "openai" for m in found)
    found, total = await repo.list(q="special")
    assert [m.name for m in found] == ["model-05"] and total == 1
    found, total = await repo.list(q="_")  # LIKE wildcards match themselves
    assert [m.name for m in found] == ["under_score"]
    found, total = await repo.list(q="%")
    assert (found, total) == ([], 0)


async def test_model_delete_and_rename_carry_authorizations(engine: AsyncEngine) -> None:
    repo, auth = ModelRepository(engine), AuthorizationRepository(engine)
    model = await repo.save({"name": "old", "provider": "echo"})
    assert await auth.authorize_group(1, ["old", "echo"]) == 2
    assert await auth.authorize_group(2, ["old", "new"]) == 2
    assert await auth.authorize_key(9, ["old"]) == 1
    renamed = await repo.save({"name": "new"}, model.id)
    assert renamed.name == "new"
    groups, keys = await auth.snapshot()
    assert groups == {1: frozenset({"new", "echo"}), 2: frozenset({"new"})} and keys == {9: frozenset({"new"})}
    before = await changes.current(engine)
    deleted = await repo.delete(model.id)
    assert deleted is not None and deleted.name == "new"
    assert await changes.current(engine) == before + 1
    groups, keys = await auth.snapshot()
    assert groups == {1: frozenset({"echo"})} and keys == {}
    assert await repo.delete(model.id) is None
    assert await changes.current(engine) == before + 1


async def test_groups(engine: AsyncEngine) -> None:
    repo, auth = GroupRepository(engine), AuthorizationRepository(engine)
    before = await changes.current(engine)
    vip = await repo.save({"name": "vip", "description": "paying", "multiplier": 1_500_000})
    free = await repo.save({"name": "free"})
    assert await changes.current(engine) == before + 2
    assert free.multiplier == 1_000_000 and free.description == ""
    assert vip.public()["multiplier"] == 1.5
    with pytest.raises(InvalidRequest, match="exists already"):
        await repo.save({"name": "vip"})
    with pytest.raises(InvalidRequest, match="exists already"):
        await repo.save({"name": "vip"}, free.id)
    with pytest.raises(NotFound):
        await repo.save({"description": "x"}, 424242)
    with pytest.raises(InvalidRequest, match="name is required"):
        await repo.save({"description": "x"})
    changed = await repo.save({"multiplier": 500_000}, vip.id)
    assert changed.multiplier == 500_000 and changed.name == "vip" and changed.description == "paying"
    assert await repo.get(vip.id) == changed and await repo.get(424242) is None
    assert [g.name for g in await repo.all()] == ["vip", "free"]
    found, total = await repo.list(q="PAY")
    assert [g.name for g in found] == ["vip"] and total == 1
    page, total = await repo.list(limit=1, offset=1)
    assert [g.name for g in page] == ["free"] and total == 2

    keys = KeyService(KeyRepository(engine))
    member, _ = await keys.create(name="m", group_id=vip.id)
    other, _ = await keys.create(name="o", group_id=vip.id)
    await auth.authorize_group(vip.id, ["echo"])
    with pytest.raises(InvalidRequest, match="still has 2 active key"):
        await repo.delete(vip.id)
    await keys.revoke(member.id)
    await keys.revoke(other.id)  # revoked keys do not hold a group
    deleted = await repo.delete(vip.id)
    assert deleted is not None and deleted.name == "vip"
    assert await auth.group_models(vip.id) == [] and await repo.get(vip.id) is None
    assert await repo.delete(vip.id) is None


async def test_authorizations(engine: AsyncEngine) -> None:
    auth = AuthorizationRepository(engine)
    assert await auth.snapshot() == ({}, {})
    before = await changes.current(engine)
    assert await auth.authorize_group(1, ["b", "a", "a"]) == 2
    assert await auth.authorize_group(1, ["a", "c"]) == 1  # existing pairs are not duplicated
    assert await auth.authorize_group(1, ["a"]) == 0
    assert await auth.authorize_group(1, []) == 0
    assert await changes.current(engine) == before + 2  # only writes that changed something
    listed = await auth.group_models(1)
    assert [name for name, _ in listed] == ["a", "b", "c"] and all(t > 0 for _, t in listed)
    assert await auth.deauthorize_group(1, ["a", "zzz"]) == 1
    assert await auth.deauthorize_group(1, ["a"]) == 0
    assert await auth.authorize_key(5, ["a", "b"]) == 2
    assert await auth.authorize_key(6, ["a"]) == 1
    assert await auth.deauthorize_key(5, ["b"]) == 1
    assert [name for name, _ in await auth.key_models(5)] == ["a"]
    assert await auth.key_models(7) == []
    assert await auth.snapshot() == ({1: frozenset({"b", "c"})}, {5: frozenset({"a"}), 6: frozenset({"a"})})
    assert await changes.current(engine) == before + 6


async def test_concurrent_authorizations_do_not_fail(engine: AsyncEngine) -> None:
    auth = AuthorizationRepository(engine)
    added = await asyncio.gather(*(auth.authorize_group(3, ["x", "y"]) for _ in range(4)))
    assert sum(added) == 2
    assert [name for name, _ in await auth.group_models(3)] == ["x", "y"]
