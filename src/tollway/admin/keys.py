"""Key administration: seed 004's ``/admin/api-key/*`` and seed 002's ``/admin/keys``, and
``GET /admin/api-key/detail?id=`` (one active key, as listed; 404 for a revoked or unknown id)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from tollway.admin.base import admin_endpoint, int_param, json_body, str_param
from tollway.auth.key_service import MAX_SECRET, MIN_SECRET, KeyService
from tollway.auth.keys import hash_secret
from tollway.core.errors import InvalidRequest, NotFound
from tollway.core.money import MICRO, to_micro
from tollway.core.names import ROLE_ADMIN, ROLE_USER
from tollway.routing.gateway import Gateway


def _service(gw: Gateway) -> KeyService:
    return KeyService(gw.keys, admin_hash=gw.auth.admin_hash)


MAX_MODELS = 1000


def _limits(body: dict[str, Any]) -> dict[str, Any]:
    """The money and limit fields of an apply or update body that are present, validated."""
    out: dict[str, Any] = {}
    if "month_quota" in body:
        q = body["month_quota"]
        out["month_quota"] = None if q is None else to_micro(q, "month_quota")
    for name in ("rpm", "tpm"):
        if name in body:
            out[name] = int_param(body[name], name, low=0, high=1_000_000_000)
    if "models" in body:
        models = body["models"]
        if models is not None and (not isinstance(models, list) or len(models) > MAX_MODELS or not all(
                isinstance(m, str) and 0 < len(m) <= 200 and "\x00" not in m for m in models)):
            raise InvalidRequest(f"models must be a list of at most {MAX_MODELS} model names (or null: no whitelist)",
                                 param="models")
        out["models"] = None if models is None else list(dict.fromkeys(models))
    return out


async def apply(request: Request, gw: Gateway) -> dict[str, Any]:
    """Seed 004: create a key (its secret is in the answer, once). ``balance`` credits it at once."""
    body = await json_body(request)
    limits = _limits(body)
    initial = to_micro(body["balance"], "balance") if body.get("balance") is not None else 0
    key, secret = await _service(gw).create(
        name=str_param(body.get("name"), "name"), role=str_param(body.get("role"), "role") or "user",
        email=str_param(body.get("email"), "email"), group_id=int_param(body.get("group_id"), "group_id"),
    )
    if limits:
        key = await gw.keys.update(key.id, limits) or key
    if initial:
        assert gw.billing is not None
        await gw.billing.recharge(key.id, initial, note="initial balance")
        key = await gw.keys.get(key.id) or key
    gw.auth.put(key)
    return {**key.public(), "api_key": secret}


async def update(request: Request, gw: Gateway) -> dict[str, Any]:
    """Seed 004: change a key's name, email, role, group, enabled flag, quota, limits or whitelist.
    Money moves only through ``recharge``."""
    body = await json_body(request)
    key_id = int_param(body.get("id"), "id")
    if key_id is None:
        raise InvalidRequest("id is required", param="id")
    fields = _limits(body)
    for name, limit in (("name", 200), ("email", 320)):
        if name in body:
            fields[name] = str_param(body[name], name, limit)
    if "role" in body:
        role = str_param(body["role"], "role")
        if role not in (ROLE_USER, ROLE_ADMIN):
            raise InvalidRequest(f"role must be '{ROLE_USER}' or '{ROLE_ADMIN}'", param="role")
        fields["role"] = role
    if "group_id" in body:
        fields["group_id"] = int_param(body["group_id"], "group_id")
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidRequest("enabled must be true or false", param="enabled")
        fields["enabled"] = body["enabled"]
    if "balance" in body:
        raise InvalidRequest("balance changes only through /admin/api-key/recharge (the ledger records it)",
                             param="balance")
    if not fields:
        raise InvalidRequest("nothing to update: give at least one field besides id")
    key = await gw.keys.update(key_id, fields)
    if key is None:
        raise NotFound(f"no active key with id {key_id}")
    gw.auth.put(key)
    return key.public()


async def recharge(request: Request, gw: Gateway) -> dict[str, Any]:
    """Seed 004: ``{"api_key": <the key, its id or its prefix>, "balance": <credits to add>}``
    (``id`` / ``key_id`` name the key by id too). One ledger row; the answer has the new balance."""
    body = await json_body(request)
    ref = body.get("api_key", body.get("key_id", body.get("id")))
    if ref is None or isinstance(ref, bool) or not isinstance(ref, str | int):
        raise InvalidRequest("api_key (the key, its id or its prefix) is required", param="api_key")
    amount = to_micro(body.get("balance", body.get("amount")), "balance")
    if amount <= 0:
        raise InvalidRequest("balance must be a positive number of credits", param="balance")
    note = str_param(body.get("note"), "note", 500) or None
    key = await _service(gw).find(str(ref))
    if key is None or key.revoked_at is not None:
        raise NotFound("key not found")
    assert gw.billing is not None
    entry, balance = await gw.billing.recharge(key.id, amount, note=note)
    live = await gw.billing.wallet.state(key.id)  # ahead of the stored balance by charges not yet written
    balance = live[0] if live is not None else balance
    return {"success": True, "key_id": key.id, "amount": amount / MICRO, "amount_micro": amount,
            "balance": balance / MICRO, "balance_micro": balance, "payment": entry.public()}


async def list_keys(request: Request, gw: Gateway) -> dict[str, Any]:
    q = request.query_params
    keys, total = await gw.keys.list(
        q=str_param(q.get("q"), "q") or None, name=str_param(q.get("name"), "name") or None,
        group_id=int_param(q.get("group_id"), "group_id"), role=str_param(q.get("role"), "role") or None,
        limit=int_param(q.get("limit"), "limit", 10, low=1, high=1000) or 10,
        offset=int_param(q.get("offset"), "offset", 0) or 0,
    )
    return {"items": [k.public() for k in keys], "total": total}


async def detail(request: Request, gw: Gateway) -> dict[str, Any]:
    """``GET /admin/api-key/detail?id=``: one active key as listed (the console's key page)."""
    key_id = int_param(request.query_params.get("id"), "id")
    if key_id is None:
        raise InvalidRequest("id is required", param="id")
    key = await gw.keys.get(key_id)
    if key is None or key.revoked_at is not None:
        raise NotFound(f"no active key with id {key_id}")
    return key.public()


async def delete(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    key_id = int_param(body.get("id"), "id")
    if key_id is None:
        raise InvalidRequest("id is required", param="id")
    if not await _service(gw).revoke(key_id):
        raise NotFound(f"no active key with id {key_id}")
    gw.auth.drop(key_id)
    return {"success": True, "id": key_id}


async def add_key(request: Request, gw: Gateway) -> dict[str, Any]:
    """Seed 002: ``{"key": "..."}`` imports a chosen key; without it one is generated."""
    body = await json_body(request)
    chosen = body.get("key")
    if chosen is not None and not isinstance(chosen, str):
        raise InvalidRequest("key must be a string", param="key")
    key, secret = await _service(gw).create(name=str_param(body.get("name"), "name") or "ds2api", secret=chosen)
    gw.auth.put(key)
    out: dict[str, Any] = {"success": True, "total_keys": await gw.keys.count_active(), "id": key.id}
    if chosen is None:
        out["key"] = secret
    return out


async def remove_key(request: Request, gw: Gateway) -> dict[str, Any]:
    ref = request.path_params["key"]
    key = await _service(gw).find(ref)
    if key is None or key.revoked_at is not None:
        raise NotFound("key not found")
    await _service(gw).revoke(key.id)
    gw.auth.drop(key.id)
    return {"success": True, "total_keys": await gw.keys.count_active()}


MASK = "..."  # how listings and exports end a key's prefix


async def import_keys(gw: Gateway, secrets: Sequence[object], *, name: str = "ds2api") -> tuple[int, int]:
    """Seed 002's key lists (``POST /admin/config``, ``/admin/import``): each key not stored yet is
    created the way ``POST /admin/keys`` creates one. Returns (created, skipped): keys that exist
    already and masked prefixes (an export's ``abc...``, never a real key) are skipped. Every key is
    checked before any is written, so a bad one leaves nothing half-imported."""
    wanted: list[str] = []
    skipped = 0
    for i, secret in enumerate(secrets):
        if not isinstance(secret, str):
            raise InvalidRequest(f"keys[{i}] must be a string", param="keys")
        secret = secret.strip()
        if not secret or secret.endswith(MASK):
            skipped += 1
            continue
        if not MIN_SECRET <= len(secret) <= MAX_SECRET or any(c.isspace() for c in secret) or "\x00" in secret:
            raise InvalidRequest(f"keys[{i}]: a key must be {MIN_SECRET} to {MAX_SECRET} characters without "
                                 "whitespace", param="keys")
        if gw.auth.is_admin_secret(secret):
            raise InvalidRequest(f"keys[{i}] is the admin secret and cannot be a user key", param="keys")
        if secret in wanted:
            skipped += 1
            continue
        wanted.append(secret)
    service = _service(gw)
    created = 0
    for secret in wanted:
        if await service.repo.by_hash(hash_secret(secret)) is not None:
            skipped += 1
            continue
        key, _ = await service.create(name=name, secret=secret)
        gw.auth.put(key)
        created += 1
    return created, skipped


def key_routes() -> list[BaseRoute]:
    return [
        Route("/admin/api-key/apply", admin_endpoint(apply), methods=["POST"]),
        Route("/admin/api-key/update", admin_endpoint(update), methods=["POST"]),
        Route("/admin/api-key/recharge", admin_endpoint(recharge), methods=["POST"]),
        Route("/admin/api-key/list", admin_endpoint(list_keys), methods=["GET"]),
        Route("/admin/api-key/detail", admin_endpoint(detail), methods=["GET"]),
        Route("/admin/api-key/delete", admin_endpoint(delete), methods=["POST"]),
        Route("/admin/keys", admin_endpoint(add_key), methods=["POST"]),
        Route("/admin/keys/{key:path}", admin_endpoint(remove_key), methods=["DELETE"]),
    ]
