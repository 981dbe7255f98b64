"""Key administration: seed 004's ``/admin/api-key/*`` and seed 002's ``/admin/keys``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from tollway.admin.base import admin_endpoint, int_param, json_body, str_param
from tollway.auth.key_service import MAX_SECRET, MIN_SECRET, KeyService
from tollway.auth.keys import hash_secret
from tollway.core.errors import InvalidRequest, NotFound
from tollway.routing.gateway import Gateway


def _service(gw: Gateway) -> KeyService:
    return KeyService(gw.keys, admin_hash=gw.auth.admin_hash)


async def apply(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    key, secret = await _service(gw).create(
        name=str_param(body.get("name"), "name"), role=str_param(body.get("role"), "role") or "user",
        email=str_param(body.get("email"), "email"), group_id=int_param(body.get("group_id"), "group_id"),
    )
    gw.auth.put(key)
    return {**key.public(), "api_key": secret}


async def list_keys(request: Request, gw: Gateway) -> dict[str, Any]:
    q = request.query_params
    keys, total = await gw.keys.list(
        q=str_param(q.get("q"), "q") or None, name=str_param(q.get("name"), "name") or None,
        group_id=int_param(q.get("group_id"), "group_id"), role=str_param(q.get("role"), "role") or None,
        limit=int_param(q.get("limit"), "limit", 10, low=1, high=1000) or 10,
        offset=int_param(q.get("offset"), "offset", 0) or 0,
    )
    return {"items": [k.public() for k in keys], "total": total}


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
        Route("/admin/api-key/list", admin_endpoint(list_keys), methods=["GET"]),
        Route("/admin/api-key/delete", admin_endpoint(delete), methods=["POST"]),
        Route("/admin/keys", admin_endpoint(add_key), methods=["POST"]),
        Route("/admin/keys/{key:path}", admin_endpoint(remove_key), methods=["DELETE"]),
    ]
