"""Seed 004's model registry, groups and model authorization. Every endpoint needs admin auth;
errors are ``{"detail": ...}`` (400 for a bad field, naming it; 404 for a missing row). Money in
bodies is credits (a JSON number or a decimal string, at most 6 decimals); answers carry credits
and the exact ``*_micro`` integers. In save bodies ``null`` means "not given", except for the
nullable fields (``group_id``, ``rpm``, ``tpm``, ``max_output_tokens``), where it clears them.

Models
  ``GET /admin/model/list?q=&limit=10&offset=``  ->  ``{"items": [model...], "total": n}``
      ``q`` matches name, display_name or provider (case-insensitive substring).
  ``POST /admin/model/save``  ->  the saved model
      ``{"id"?, "name", "provider", "group_id"?, "multiple"?, "config"?, "price_in"?, "price_out"?,
      "upstream_id"?, "display_name"?, "description"?, "category"?, "capabilities"?, "modalities"?,
      "aliases"?, "credit_cost"?, "unit_price"?, "price_unit"?, "rpm"?, "tpm"?, "max_output_tokens"?,
      "enabled"?}``. Without ``id``
      it creates (``name`` and ``provider`` required); with ``id`` it changes the fields given.
      ``config`` is a JSON object or a string holding one (at most 16 KB); its string ``modelId``
      becomes ``upstream_id`` unless that is given. A row named like a code or YAML model on the same
      provider overlays it: without ``upstream_id``, ``display_name`` or ``description`` it keeps that
      model's, and it keeps its fallbacks and aliases. ``provider`` is a configured provider or a known
      provider kind (``bedrock-converse`` means ``bedrock``). Prices are credits per million tokens,
      ``credit_cost`` credits per request (per image for an image model), ``unit_price`` credits per
      unit of ``price_unit`` (``character`` of speech input, ``second`` of audio transcribed or video
      made; ``""`` none). Renaming a model carries its authorizations over.
  ``POST /admin/model/delete {"id"}``  ->  ``{"success": true, "id"}``; its authorizations go too.

Groups
  ``GET /admin/group/list?q=&limit=10&offset=``  ->  ``{"items": [group...], "total": n}``
  ``POST /admin/group/save {"id"?, "name", "description"?, "multiplier"?, "restricted"?}``  ->  the
      saved group; ``multiplier`` is a decimal price factor, above 0 and at most 1000 (default 1);
      ``restricted``: its keys call only authorized models (the first authorization sets it; it
      stays set when authorizations are removed, until a save clears it).
  ``POST /admin/group/delete {"id"}``  ->  ``{"success": true, "id"}``; refused (400) while active
      keys are in the group; its model authorizations go too.

Model authorization: by model name, so code-catalog and YAML models can be authorized as well
as registry rows. A body names models as ``"model": "<name>"``, ``"models": ["<name>", ...]`` or
``"model_id": <registry id>`` (any of them, together). A name must be known: a registry row, a
catalog model, or a name the catalog resolves (an alias, ``<provider>/<id>``); else 400 with
param ``model``. Deauthorizing also takes a name that is authorized but no longer known.
  1. List models of a group: ``GET /admin/group/model/list?group_id=``  ->
     ``{"group_id", "items": [{"model", "display_name", "authorized_at"}], "total"}``
  2. Authorize models to a group: ``POST /admin/group/model/authorize {"group_id", "model"}``  ->
     ``{"success": true, "group_id", "models": [...], "added": n}`` (pairs already there stay one)
  3. Deauthorize models from a group: ``POST /admin/group/model/deauthorize {"group_id", "model"}``
     ->  ``{"success": true, "group_id", "models": [...], "removed": n}``
  4. List models of an API key: ``GET /admin/api-key/model/list?key_id=``  ->
     ``{"key_id", "items": [{"model", "display_name", "authorized_at"}], "total"}``
  5. Authorize models to an API key: ``POST /admin/api-key/model/authorize {"key_id", "model"}``  ->
     ``{"success": true, "key_id", "models": [...], "added": n}``
  6. Deauthorize models from an API key: ``POST /admin/api-key/model/deauthorize {"key_id", "model"}``
     ->  ``{"success": true, "key_id", "models": [...], "removed": n}``
  The group, or the (active) key, must exist: else 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

import msgspec
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from tollway.admin.base import MAX_INT, admin_endpoint, int_param, json_body, log, str_param
from tollway.core.errors import InvalidRequest, NotFound, TollwayError
from tollway.core.json_input import loads
from tollway.core.media import UNITS
from tollway.core.money import MICRO, ppm, to_micro
from tollway.routing.gateway import Gateway
from tollway.store.registry import AuthorizationRepository, GroupRepository, ModelRepository

MAX_CONFIG = 16 * 1024
MAX_NAME = 200
MAX_LIST = 64  # entries of capabilities, modalities, aliases
MAX_MODELS = 1000  # names in one authorization call
MAX_MULTIPLIER = 1000 * MICRO
PROVIDER_ALIASES = {"bedrock-converse": "bedrock"}  # seed 004's provider names
_READ_ONLY = frozenset({"created_at", "updated_at", "price_in_micro", "price_out_micro", "credit_cost_micro",
                        "unit_price_micro",
                        "multiplier_ppm"})  # what a listing answers and a client may send back
_MODEL_TEXT = {"upstream_id": MAX_NAME, "display_name": MAX_NAME, "description": 4000, "category": 32}
_MODEL_LISTS = ("capabilities", "modalities", "aliases")
_MODEL_PRICES = ("price_in", "price_out", "credit_cost", "unit_price")
_MODEL_COUNTS = ("rpm", "tpm", "max_output_tokens")
_MODEL_FLAGS = ("multiple", "enabled")
_MODEL_BODY = frozenset({"id", "name", "provider", "config", "group_id", "price_unit", *_MODEL_TEXT, *_MODEL_LISTS,
                         *_MODEL_PRICES, *_MODEL_COUNTS, *_MODEL_FLAGS})
_GROUP_BODY = frozenset({"id", "name", "description", "multiplier", "restricted"})


# --- field parsing ---------------------------------------------------------------------------

def _known_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed - _READ_ONLY)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", param=unknown[0])


def _name(value: Any, param: str = "name") -> str:
    """A model name: 1 to 200 characters, without whitespace or control characters."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{param} must be a non-empty string", param=param)
    if len(value) > MAX_NAME or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidRequest(f"{param} must be at most {MAX_NAME} characters, without whitespace", param=param)
    return value


def _label(value: Any, param: str = "name") -> str:
    """A group name: 1 to 200 printable characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{param} must be a non-empty string", param=param)
    if len(value) > MAX_NAME or not value.isprintable():
        raise InvalidRequest(f"{param} must be at most {MAX_NAME} printable characters", param=param)
    return value


def _names(value: Any, param: str, *, limit: int = MAX_LIST, length: int = 64) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{param} must be a list of strings", param=param)
    if len(value) > limit:
        raise InvalidRequest(f"{param} may hold at most {limit} entries", param=param)
    for item in value:
        if not isinstance(item, str) or not item or len(item) > length or not item.isprintable():
            raise InvalidRequest(f"{param} entries must be non-empty strings of at most {length} characters",
                                 param=param)
    return tuple(dict.fromkeys(value))


def _count(value: Any, param: str) -> int | None:
    """A non-negative JSON integer, or null."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise InvalidRequest(f"{param} must be an integer between 0 and {MAX_INT}, or null", param=param)
    return value


def _flag(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{param} must be true or false", param=param)
    return value


def _config(value: Any) -> dict[str, Any]:
    """Seed 004's ``config``: a JSON object, or a string holding one; at most 16 KB encoded."""
    if isinstance(value, str):
        if len(value.encode()) > MAX_CONFIG:
            raise InvalidRequest(f"config must be at most {MAX_CONFIG} bytes", param="config")
        value = loads(value, invalid="config is not valid JSON", param="config")
    if not isinstance(value, dict):
        raise InvalidRequest("config must be a JSON object (or a string holding one)", param="config")
    if len(msgspec.json.encode(value)) > MAX_CONFIG:
        raise InvalidRequest(f"config must be at most {MAX_CONFIG} bytes", param="config")
    return value


def _provider(value: Any, gw: Gateway) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest("provider must be a non-empty string", param="provider")
    name = PROVIDER_ALIASES.get(value, value)
    catalog = gw.catalog
    if name not in catalog.providers and name not in catalog.specs:
        choices = ", ".join(sorted({*catalog.providers, *catalog.specs, *PROVIDER_ALIASES}))
        raise InvalidRequest(f"unknown provider {value!r}; one of: {choices}", param="provider")
    return name


def _model_values(body: dict[str, Any], gw: Gateway) -> dict[str, Any]:
    """The columns a save body sets, validated; ``null`` is "not given" but clears nullable fields."""
    _known_fields(body, _MODEL_BODY)
    given = {k: v for k, v in body.items() if v is not None and k in _MODEL_BODY}
    values: dict[str, Any] = {}
    if "name" in given:
        values["name"] = _name(given["name"])
    if "provider" in given:
        values["provider"] = _provider(given["provider"], gw)
    for field, limit in _MODEL_TEXT.items():
        if field in given:
            values[field] = str_param(given[field], field, limit)
    if values.get("category") == "":
        raise InvalidRequest("category must not be empty", param="category")
    if "price_unit" in given:
        if given["price_unit"] not in UNITS:
            raise InvalidRequest(f"price_unit must be one of: {', '.join(sorted(u for u in UNITS if u))}, or \"\"",
                                 param="price_unit")
        values["price_unit"] = given["price_unit"]
    for field in _MODEL_LISTS:
        if field in given:
            values[field] = _names(given[field], field, length=MAX_NAME if field == "aliases" else 64)
    for field in _MODEL_PRICES:
        if field in given:
            values[field] = to_micro(given[field], field)
    for field in _MODEL_COUNTS:
        if field in body:
            values[field] = _count(body[field], field)
    for field in _MODEL_FLAGS:
        if field in given:
            values[field] = _flag(given[field], field)
    if "group_id" in body:
        values["group_id"] = int_param(body["group_id"], "group_id")
    if "config" in given:
        values["config"] = config = _config(given["config"])
        upstream = config.get("modelId")
        if "upstream_id" not in given and isinstance(upstream, str) and upstream:
            values["upstream_id"] = str_param(upstream, "config.modelId", MAX_NAME)
    return values


def _required_id(body: dict[str, Any], param: str) -> int:
    value = int_param(body.get(param), param)
    if value is None:
        raise InvalidRequest(f"{param} is required", param=param)
    return value


async def _changed(gw: Gateway) -> None:
    """Show a write to this process at once; others (and this one, should this fail) pick it up
    when they see the change counter move."""
    try:
        await gw.reload_registry()
    except Exception:
        log.exception("reloading the model registry after an admin write failed; the next poll retries")


def _paging(request: Request) -> tuple[str | None, int, int]:
    q = request.query_params
    return (str_param(q.get("q"), "q", MAX_NAME) or None,
            int_param(q.get("limit"), "limit", 10, low=1, high=1000) or 10,
            int_param(q.get("offset"), "offset", 0) or 0)


# --- models ----------------------------------------------------------------------------------

async def list_models(request: Request, gw: Gateway) -> dict[str, Any]:
    q, limit, offset = _paging(request)
    records, total = await ModelRepository(gw.engine).list(q, limit, offset)
    return {"items": [m.public() for m in records], "total": total}


async def save_model(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    model_id = int_param(body.get("id"), "id")
    values = _model_values(body, gw)
    if model_id is None:
        for field in ("name", "provider"):
            if field not in values:
                raise InvalidRequest(f"{field} is required to create a model", param=field)
    saved = await ModelRepository(gw.engine).save(values, model_id)
    await _changed(gw)
    return saved.public()


async def delete_model(request: Request, gw: Gateway) -> dict[str, Any]:
    model_id = _required_id(await json_body(request), "id")
    if await ModelRepository(gw.engine).delete(model_id) is None:
        raise NotFound(f"no model with id {model_id}")
    await _changed(gw)
    return {"success": True, "id": model_id}


# --- groups ----------------------------------------------------------------------------------

async def list_groups(request: Request, gw: Gateway) -> dict[str, Any]:
    q, limit, offset = _paging(request)
    found, total = await GroupRepository(gw.engine).list(q, limit, offset)
    return {"items": [g.public() for g in found], "total": total}


async def save_group(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    _known_fields(body, _GROUP_BODY)
    group_id = int_param(body.get("id"), "id")
    values: dict[str, Any] = {}
    if body.get("name") is not None:
        values["name"] = _label(body["name"])
    elif group_id is None:
        raise InvalidRequest("name is required to create a group", param="name")
    if body.get("description") is not None:
        values["description"] = str_param(body["description"], "description", 4000)
    if body.get("multiplier") is not None:
        multiplier = ppm(body["multiplier"], "multiplier")
        if not 0 < multiplier <= MAX_MULTIPLIER:
            raise InvalidRequest(f"multiplier must be above 0 and at most {MAX_MULTIPLIER // MICRO}",
                                 param="multiplier")
        values["multiplier"] = multiplier
    if body.get("restricted") is not None:
        if not isinstance(body["restricted"], bool):
            raise InvalidRequest("restricted must be true or false", param="restricted")
        values["restricted"] = body["restricted"]
    saved = await GroupRepository(gw.engine).save(values, group_id)
    await _changed(gw)
    return saved.public()


async def delete_group(request: Request, gw: Gateway) -> dict[str, Any]:
    group_id = _required_id(await json_body(request), "id")
    if await GroupRepository(gw.engine).delete(group_id) is None:
        raise NotFound(f"no group with id {group_id}")
    await _changed(gw)
    return {"success": True, "id": group_id}


# --- model authorization ---------------------------------------------------------------------

async def _group_id(gw: Gateway, value: Any) -> int:
    group_id = _required_id({"group_id": value}, "group_id")
    if await GroupRepository(gw.engine).get(group_id) is None:
        raise NotFound(f"no group with id {group_id}")
    return group_id


async def _key_id(gw: Gateway, value: Any) -> int:
    key_id = _required_id({"key_id": value}, "key_id")
    key = await gw.keys.get(key_id)
    if key is None or key.revoked_at is not None:
        raise NotFound(f"no active key with id {key_id}")
    return key_id


async def _requested(body: dict[str, Any], gw: Gateway) -> list[str]:
    """The model names a body gives as ``model``, ``models`` and ``model_id``, in order, once each."""
    names: list[str] = []
    if body.get("model") is not None:
        names.append(_name(body["model"], "model"))
    if body.get("models") is not None:
        names.extend(_names(body["models"], "models", limit=MAX_MODELS, length=MAX_NAME))
    if body.get("model_id") is not None:
        model_id = _required_id(body, "model_id")
        record = await ModelRepository(gw.engine).get(model_id)
        if record is None:
            raise InvalidRequest(f"no model with id {model_id}", param="model_id")
        names.append(record.name)
    if not names:
        raise InvalidRequest("name a model: model, models or model_id", param="model")
    return list(dict.fromkeys(names))


async def _check_known(gw: Gateway, names: Iterable[str], also: Iterable[str] = ()) -> None:
    """Raise for a name that is no registry row, catalog model or resolvable name (nor in ``also``)."""
    skip = {*gw.catalog.known, *also}
    pending = [n for n in names if n not in skip]
    rows = await ModelRepository(gw.engine).by_names(pending)
    for name in pending:
        if name in rows:
            continue
        try:
            gw.catalog.resolve(name)
        except TollwayError:
            raise InvalidRequest(f"unknown model {name!r}", param="model") from None


async def _listing(gw: Gateway, pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    rows = await ModelRepository(gw.engine).by_names(name for name, _ in pairs)
    items = []
    for name, at in pairs:
        row, known = rows.get(name), gw.catalog.known.get(name)
        display = (row.display_name if row is not None else known.display_name if known is not None else "")
        items.append({"model": name, "display_name": display or name, "authorized_at": at})
    return items


class _Owner(NamedTuple):
    """Who models are authorized to: a group or a key (the three operations are the same)."""

    field: str  # the body / query field naming it
    find: Callable[[Gateway, Any], Awaitable[int]]
    listed: Callable[[AuthorizationRepository, int], Awaitable[list[tuple[str, float]]]]
    add: Callable[[AuthorizationRepository, int, list[str]], Awaitable[int]]
    remove: Callable[[AuthorizationRepository, int, list[str]], Awaitable[int]]


GROUP = _Owner("group_id", _group_id, AuthorizationRepository.group_models, AuthorizationRepository.authorize_group,
               AuthorizationRepository.deauthorize_group)
KEY = _Owner("key_id", _key_id, AuthorizationRepository.key_models, AuthorizationRepository.authorize_key,
             AuthorizationRepository.deauthorize_key)


def _authorizations(owner: _Owner) -> dict[str, Callable[[Request, Gateway], Awaitable[dict[str, Any]]]]:
    """List, authorize and deauthorize for ``owner``: the handlers of seed 004's six operations."""

    async def listing(request: Request, gw: Gateway) -> dict[str, Any]:
        owner_id = await owner.find(gw, request.query_params.get(owner.field))
        items = await _listing(gw, await owner.listed(AuthorizationRepository(gw.engine), owner_id))
        return {owner.field: owner_id, "items": items, "total": len(items)}

    async def authorize(request: Request, gw: Gateway) -> dict[str, Any]:
        body = await json_body(request)
        owner_id = await owner.find(gw, body.get(owner.field))
        names = await _requested(body, gw)
        await _check_known(gw, names)
        added = await owner.add(AuthorizationRepository(gw.engine), owner_id, names)
        await _changed(gw)  # also when nothing was added: a group's first authorization restricts it
        return {"success": True, owner.field: owner_id, "models": names, "added": added}

    async def deauthorize(request: Request, gw: Gateway) -> dict[str, Any]:
        body = await json_body(request)
        owner_id = await owner.find(gw, body.get(owner.field))
        names = await _requested(body, gw)
        auth = AuthorizationRepository(gw.engine)
        # a name authorized before it stopped being known can still be removed
        await _check_known(gw, names, also=[name for name, _ in await owner.listed(auth, owner_id)])
        removed = await owner.remove(auth, owner_id, names)
        if removed:
            await _changed(gw)
        return {"success": True, owner.field: owner_id, "models": names, "removed": removed}

    return {"list": listing, "authorize": authorize, "deauthorize": deauthorize}


def registry_routes() -> list[BaseRoute]:
    return [
        Route("/admin/model/list", admin_endpoint(list_models), methods=["GET"]),
        Route("/admin/model/save", admin_endpoint(save_model), methods=["POST"]),
        Route("/admin/model/delete", admin_endpoint(delete_model), methods=["POST"]),
        Route("/admin/group/list", admin_endpoint(list_groups), methods=["GET"]),
        Route("/admin/group/save", admin_endpoint(save_group), methods=["POST"]),
        Route("/admin/group/delete", admin_endpoint(delete_group), methods=["POST"]),
        *(Route(f"/admin/{prefix}/model/{op}", admin_endpoint(handler), methods=["GET" if op == "list" else "POST"])
          for prefix, owner in (("group", GROUP), ("api-key", KEY))
          for op, handler in _authorizations(owner).items()),
    ]
