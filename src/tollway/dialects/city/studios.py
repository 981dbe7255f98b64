"""The ``studios`` service (admin): list, create, pause, activate, remove, tokens/apply.

Each action on one studio names it as ``id`` (the field of a studio object) or ``studio_id``
(the field of every other body, tokens/apply's in the README): either is taken.

A user_token is a Tollway key bound to a studio (``ub_`` + 43 random characters), shown once
and stored as a SHA-256 like every key; it works on every surface, and a paused or removed
studio's tokens are refused everywhere.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request

from tollway.auth.key_service import KeyService
from tollway.core.errors import InvalidRequest, NotFound
from tollway.dialects.city.services import Caller, Kind, Service
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.store.studios import StudioRepository

USER_TOKEN_PREFIX = "ub_"


def _text(body: dict[str, Any], name: str, *, required: bool = True, limit: int = 200) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name} is required", param=name)
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidRequest(f"{name} must be a string of at most {limit} characters", param=name)
    return value.strip()


def _studio_ref(body: dict[str, Any]) -> str:
    """The studio an action is about: ``id`` or ``studio_id`` (the same when both are given)."""
    given = {name: _text(body, name, limit=64) for name in ("id", "studio_id") if body.get(name) not in (None, "")}
    if not given:
        raise InvalidRequest("studio_id (or id) is required", param="studio_id")
    if len(set(given.values())) > 1:
        raise InvalidRequest("id and studio_id name different studios", param="studio_id")
    return next(iter(given.values()))


async def issue_user_token(gw: Gateway, studio_id: str | None, name: str) -> tuple[str, int]:
    """A new user_token bound to ``studio_id`` (shown once): (token, key id)."""
    token = USER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    key, _ = await KeyService(gw.keys, admin_hash=gw.auth.admin_hash).create(
        name=name[:200], role="user", studio_id=studio_id, secret=token)
    gw.auth.put(key)
    return token, key.id


def studios_service() -> Service:
    service = Service(id="studios", name="Studios")
    admin: tuple[Kind, ...] = ("admin",)

    def repo(request: Request) -> StudioRepository:
        gw: Gateway = request.app.state.gateway
        return StudioRepository(gw.engine)

    @service.action("list", methods=("GET",), allow=admin, summary="List studios")
    async def list_(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        return {"items": [s.public() for s in await repo(request).list()]}

    @service.action("create", allow=admin, summary="Create a studio")
    async def create(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        studio = await repo(request).create(_text(body, "name"))
        return studio.public()

    async def set_status(request: Request, body: dict[str, Any], status: str) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        studio = await repo(request).set_status(_studio_ref(body), status)
        if studio is None:
            raise NotFound("no such studio")
        await gw.reload_studios()  # this process at once; the others through the change counter
        return studio.public()

    @service.action("pause", allow=admin, summary="Pause a studio: its tokens get 403")
    async def pause(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        return await set_status(request, body, "paused")

    @service.action("activate", allow=admin, summary="Activate a paused studio")
    async def activate(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        return await set_status(request, body, "active")

    @service.action("remove", allow=admin, summary="Remove a studio and revoke its tokens")
    async def remove(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        studio_id = _studio_ref(body)
        revoked = await repo(request).remove(studio_id)
        if revoked is None:
            raise NotFound("no such studio")
        await gw.reload()  # revoked keys and the studio set, here at once
        return {"id": studio_id, "removed": True, "revoked_tokens": revoked}

    @service.action("tokens/apply", allow=admin, summary="Issue a user_token bound to a studio (shown once)")
    async def apply(request: Request, caller: Caller, body: dict[str, Any], call: Call) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        studio_id = _studio_ref(body)
        studio = await repo(request).get(studio_id)
        if studio is None:
            raise NotFound("no such studio")
        token, key_id = await issue_user_token(gw, studio_id, _text(body, "name", required=False) or "user_token")
        return {"user_token": token, "studio_id": studio_id, "id": key_id}

    return service
