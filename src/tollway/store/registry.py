"""The model registry, groups and model authorization (seed 004). Returns ``core.billing`` types.

Authorization is by model name (``group_models``, ``key_models``), so a code-catalog or YAML
model can be authorized as well as a registry row. Every write bumps the change counter in its
own transaction: other processes reload their caches when it moves.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Table, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.core.billing import Group, ModelRecord
from tollway.core.errors import InvalidRequest, NotFound
from tollway.core.money import MICRO
from tollway.store import changes
from tollway.store.tables import api_keys, group_models, groups, key_models, models

_names = msgspec.json.Decoder(tuple[str, ...])
_object = msgspec.json.Decoder(dict[str, Any])
_LISTS = ("capabilities", "modalities", "aliases")

# the columns ``ModelRepository.save`` writes; the rest (id, timestamps) are the repository's own
MODEL_FIELDS = frozenset({
    "name", "provider", "upstream_id", "display_name", "description", "category", *_LISTS, "config",
    "price_in", "price_out", "credit_cost", "unit_price", "price_unit", "rpm", "tpm", "max_output_tokens", "group_id",
    "multiple", "enabled",
})
GROUP_FIELDS = frozenset({"name", "description", "multiplier", "restricted"})
# what a new row gets for a field not given: ModelRecord's defaults, not the table's empty lists
_MODEL_DEFAULTS: dict[str, Any] = {
    "upstream_id": "", "display_name": "", "description": "", "category": "chat",
    "capabilities": ("chat",), "modalities": ("text", "stream", "openai"), "aliases": (), "config": {},
    "price_in": 0, "price_out": 0, "credit_cost": 0, "unit_price": 0, "price_unit": "", "group_id": None,
    "multiple": False, "enabled": True,
}


def _record(r: Any) -> ModelRecord:
    return ModelRecord(
        id=r.id, name=r.name, provider=r.provider, upstream_id=r.upstream_id, display_name=r.display_name,
        description=r.description, category=r.category, capabilities=_names.decode(r.capabilities),
        modalities=_names.decode(r.modalities), aliases=_names.decode(r.aliases), config=_object.decode(r.config),
        price_in=r.price_in, price_out=r.price_out, credit_cost=r.credit_cost, unit_price=r.unit_price,
        price_unit=r.price_unit, rpm=r.rpm, tpm=r.tpm,
        max_output_tokens=r.max_output_tokens, group_id=r.group_id, multiple=r.multiple, enabled=r.enabled,
        created_at=r.created_at, updated_at=r.updated_at,
    )


def _group(r: Any) -> Group:
    return Group(id=r.id, name=r.name, description=r.description, multiplier=r.multiplier,
                 restricted=r.restricted, created_at=r.created_at, updated_at=r.updated_at)


def _checked(values: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
    return dict(values)


def _encoded(values: dict[str, Any]) -> dict[str, Any]:
    """JSON list and object columns as the JSON text they are stored as."""
    for name in (*_LISTS, "config"):
        if name in values:
            value = values[name]
            values[name] = msgspec.json.encode(list(value) if name in _LISTS else dict(value)).decode()
    return values


def _like(q: str) -> str:
    """A case-insensitive substring pattern; ``%``, ``_`` and ``\\`` in ``q`` match themselves."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search(table: Table, q: str | None, columns: Iterable[str]) -> list[ColumnElement[bool]]:
    if not q:
        return []
    pattern = _like(q)
    return [or_(*(table.c[name].ilike(pattern, escape="\\") for name in columns))]


async def _page(conn: AsyncConnection, table: Table, cond: list[ColumnElement[bool]], limit: int,
                offset: int) -> tuple[list[Any], int]:
    total = (await conn.execute(select(func.count()).select_from(table).where(*cond))).scalar() or 0
    rows = await conn.execute(select(table).where(*cond).order_by(table.c.id).limit(limit).offset(offset))
    return list(rows), int(total)


class ModelRepository:
    """The model registry: models admins add at run time (``/admin/model/*``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def all(self) -> list[ModelRecord]:
        """Every row, enabled or not."""
        async with self.engine.connect() as conn:
            return [_record(r) for r in await conn.execute(select(models).order_by(models.c.id))]

    async def list(self, q: str | None = None, limit: int = 10, offset: int = 0) -> tuple[list[ModelRecord], int]:
        cond = _search(models, q, ("name", "display_name", "provider"))
        async with self.engine.connect() as conn:
            rows, total = await _page(conn, models, cond, limit, offset)
        return [_record(r) for r in rows], total

    async def get(self, model_id: int) -> ModelRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(models).where(models.c.id == model_id))).first()
        return _record(row) if row is not None else None

    async def by_name(self, name: str) -> ModelRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(models).where(models.c.name == name))).first()
        return _record(row) if row is not None else None

    async def by_names(self, names: Iterable[str]) -> dict[str, ModelRecord]:
        wanted = sorted(set(names))
        if not wanted:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(models).where(models.c.name.in_(wanted)))
            return {r.name: _record(r) for r in rows}

    async def save(self, values: Mapping[str, Any], model_id: int | None = None) -> ModelRecord:
        """Insert (``model_id`` None: ``name`` and ``provider`` required) or change the columns given.

        Renaming a model carries its group and key authorizations over to the new name."""
        fields = _checked(values, MODEL_FIELDS)
        now = time.time()
        try:
            async with self.engine.begin() as conn:
                if model_id is None:
                    for name in ("name", "provider"):
                        if not fields.get(name):
                            raise InvalidRequest(f"{name} is required", param=name)
                    row = _encoded({**_MODEL_DEFAULTS, **fields, "created_at": now, "updated_at": now})
                    result = await conn.execute(models.insert().values(**row))
                    model_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
                else:
                    old = (await conn.execute(select(models.c.name).where(models.c.id == model_id))).scalar()
                    if old is None:
                        raise NotFound(f"no model with id {model_id}")
                    await conn.execute(models.update().where(models.c.id == model_id)
                                       .values(**_encoded(fields), updated_at=now))
                    if fields.get("name", old) != old:
                        await _rename(conn, old, fields["name"])
                await changes.bump(conn)
                saved = (await conn.execute(select(models).where(models.c.id == model_id))).one()
        except IntegrityError:
            raise InvalidRequest(f"a model named {values.get('name')!r} exists already", param="name") from None
        return _record(saved)

    async def delete(self, model_id: int) -> ModelRecord | None:
        """Remove a row and every authorization naming it; None if there is no such row."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(models).where(models.c.id == model_id))).first()
            if row is None:
                return None
            await conn.execute(models.delete().where(models.c.id == model_id))
            await conn.execute(group_models.delete().where(group_models.c.model == row.name))
            await conn.execute(key_models.delete().where(key_models.c.model == row.name))
            await changes.bump(conn)
        return _record(row)


async def _rename(conn: AsyncConnection, old: str, new: str) -> None:
    """Move authorizations of ``old`` to ``new``; an owner that has both keeps one row."""
    for table, owner in ((group_models, group_models.c.group_id), (key_models, key_models.c.key_id)):
        has_new = select(owner).where(table.c.model == new).scalar_subquery()
        await conn.execute(table.delete().where(table.c.model == old, owner.in_(has_new)))
        await conn.execute(table.update().where(table.c.model == old).values(model=new))


class GroupRepository:
    """Key groups (seed 004's ``/admin/group/*``): a name and a price multiplier."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def all(self) -> list[Group]:
        async with self.engine.connect() as conn:
            return [_group(r) for r in await conn.execute(select(groups).order_by(groups.c.id))]

    async def list(self, q: str | None = None, limit: int = 10, offset: int = 0) -> tuple[list[Group], int]:
        cond = _search(groups, q, ("name", "description"))
        async with self.engine.connect() as conn:
            rows, total = await _page(conn, groups, cond, limit, offset)
        return [_group(r) for r in rows], total

    async def get(self, group_id: int) -> Group | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(groups).where(groups.c.id == group_id))).first()
        return _group(row) if row is not None else None

    async def save(self, values: Mapping[str, Any], group_id: int | None = None) -> Group:
        """Insert (``group_id`` None: ``name`` required) or change the columns given."""
        fields = _checked(values, GROUP_FIELDS)
        now = time.time()
        try:
            async with self.engine.begin() as conn:
                if group_id is None:
                    if not fields.get("name"):
                        raise InvalidRequest("name is required", param="name")
                    result = await conn.execute(groups.insert().values(
                        **{"description": "", "multiplier": MICRO, "restricted": False, **fields},
                        created_at=now, updated_at=now))
                    group_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
                else:
                    result = await conn.execute(groups.update().where(groups.c.id == group_id)
                                                .values(**fields, updated_at=now))
                    if not result.rowcount:
                        raise NotFound(f"no group with id {group_id}")
                await changes.bump(conn)
                saved = (await conn.execute(select(groups).where(groups.c.id == group_id))).one()
        except IntegrityError:
            raise InvalidRequest(f"a group named {values.get('name')!r} exists already", param="name") from None
        return _group(saved)

    async def delete(self, group_id: int) -> Group | None:
        """Remove a group and its model authorizations; refused while active keys are in it."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(groups).where(groups.c.id == group_id))).first()
            if row is None:
                return None
            members = (await conn.execute(select(func.count()).select_from(api_keys).where(
                api_keys.c.group_id == group_id, api_keys.c.revoked_at.is_(None)))).scalar() or 0
            if members:
                raise InvalidRequest(f"group {group_id} still has {members} active key(s); move or delete them "
                                     "first", param="id")
            await conn.execute(groups.delete().where(groups.c.id == group_id))
            await conn.execute(group_models.delete().where(group_models.c.group_id == group_id))
            await changes.bump(conn)
        return _group(row)


class AuthorizationRepository:
    """Which model names a group and a key are authorized for."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _listed(self, table: Table, owner: ColumnElement[int], owner_id: int) -> list[tuple[str, float]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(table.c.model, table.c.created_at).where(owner == owner_id)
                                      .order_by(table.c.model))
            return [(r.model, r.created_at) for r in rows]

    async def _authorize(self, table: Table, owner: str, owner_id: int, names: Iterable[str]) -> int:
        wanted = sorted(set(names))
        if not wanted:
            return 0
        column = table.c[owner]
        for attempt in range(2):  # a concurrent writer may insert the same pair between select and insert
            try:
                async with self.engine.begin() as conn:
                    have = set((await conn.execute(select(table.c.model).where(
                        column == owner_id, table.c.model.in_(wanted)))).scalars())
                    missing = [m for m in wanted if m not in have]
                    if missing:
                        now = time.time()
                        await conn.execute(table.insert(), [{owner: owner_id, "model": m, "created_at": now}
                                                            for m in missing])
                        await changes.bump(conn)
                    return len(missing)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _deauthorize(self, table: Table, owner: ColumnElement[int], owner_id: int,
                           names: Iterable[str]) -> int:
        wanted = sorted(set(names))
        if not wanted:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(table.delete().where(owner == owner_id, table.c.model.in_(wanted)))
            if result.rowcount:
                await changes.bump(conn)
            return int(result.rowcount)

    async def group_models(self, group_id: int) -> list[tuple[str, float]]:
        """(model name, authorized at) for each model the group is authorized for, by name."""
        return await self._listed(group_models, group_models.c.group_id, group_id)

    async def key_models(self, key_id: int) -> list[tuple[str, float]]:
        return await self._listed(key_models, key_models.c.key_id, key_id)

    async def authorize_group(self, group_id: int, models: Iterable[str]) -> int:
        """Authorize the names not authorized yet; returns how many were added. The group becomes
        restricted (and stays so when its authorizations are removed again)."""
        added = await self._authorize(group_models, "group_id", group_id, models)
        async with self.engine.begin() as conn:
            result = await conn.execute(groups.update().where(groups.c.id == group_id, groups.c.restricted.is_(False))
                                        .values(restricted=True, updated_at=time.time()))
            if result.rowcount:
                await changes.bump(conn)
        return added

    async def deauthorize_group(self, group_id: int, models: Iterable[str]) -> int:
        """Returns how many authorizations were removed."""
        return await self._deauthorize(group_models, group_models.c.group_id, group_id, models)

    async def authorize_key(self, key_id: int, models: Iterable[str]) -> int:
        return await self._authorize(key_models, "key_id", key_id, models)

    async def deauthorize_key(self, key_id: int, models: Iterable[str]) -> int:
        return await self._deauthorize(key_models, key_models.c.key_id, key_id, models)

    async def snapshot(self) -> tuple[dict[int, frozenset[str]], dict[int, frozenset[str]]]:
        """Every group's and every key's authorized model names (the gateway's in-memory cache)."""
        by_group: dict[int, set[str]] = {}
        by_key: dict[int, set[str]] = {}
        async with self.engine.connect() as conn:
            for r in await conn.execute(select(group_models.c.group_id, group_models.c.model)):
                by_group.setdefault(r.group_id, set()).add(r.model)
            for r in await conn.execute(select(key_models.c.key_id, key_models.c.model)):
                by_key.setdefault(r.key_id, set()).add(r.model)
        return ({g: frozenset(m) for g, m in by_group.items()}, {k: frozenset(m) for k, m in by_key.items()})
