"""Chat records over HTTP (seed 004), and a key's own standing.

Admin (admin auth; errors ``{"detail": ...}``):
  ``GET /admin/session/list?q=&limit=10&offset=&key_id=``  ->  ``{"items": [session...], "total": n}``
  ``GET /admin/session/detail/{id}``  ->  the session with its threads (``items``)
  ``POST /admin/session/delete {"id"}``  ->  ``{"success": true, "id"}``
  ``GET /admin/thread/list?q=&limit=10&offset=&key_id=&session_id=``  ->  ``{"items": [thread...], "total": n}``
  ``GET /admin/thread/detail/{id}``  ->  one thread: ``input`` (the messages), ``output`` (the answer)
  ``GET /admin/record/settings``  ->  ``{"default": bool, "items": [{scope, id, enabled}]}``
  ``POST /admin/record/save {"scope": "key"|"group"|"studio", "id", "enabled": true|false|null}``
      (null: follow the next scope out: key, then group, then studio, then the gateway default)
User (the calling key's own records; another key's id is 404):
  ``GET /user/session/list?q=&limit=10&offset=``, ``GET /user/session/detail/{id}``,
  ``GET /user/thread/list?q=&limit=10&offset=&session_id=``, ``GET /user/thread/detail/{id}``,
  ``POST /user/session/delete {"id"}`` (or ``DELETE /user/session/{id}``),
  ``GET /user/me``: the key's name, role, group, studio, balance, month quota and what is left of
  it, limits, whether its chats are recorded, and the models it may call.
``q`` searches session titles and thread text. A session lists ``id, key_id, studio_id, title,
model, dialect, threads, client_ref, created_at, updated_at``; a thread ``id, session_id, key_id,
request_id, dialect, model, status, stream, prompt_tokens, completion_tokens, cost, cost_micro,
latency_ms, truncated, created_at`` (and a ``preview`` of the answer in lists).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from tollway.admin.base import admin_endpoint, int_param, json_body
from tollway.auth.keys import Identity
from tollway.core.errors import AuthenticationFailed, InvalidRequest, NotFound
from tollway.core.money import MICRO
from tollway.records.recorder import SCOPES, ChatRecorder
from tollway.routing.gateway import Gateway
from tollway.store.ledger import month_of
from tollway.store.records import RecordRepository

MAX_LIMIT = 100


def _records(gw: Gateway) -> ChatRecorder:
    if gw.records is None:
        raise NotFound("Chat records are not kept by this gateway.")
    return gw.records


def _repo(gw: Gateway) -> RecordRepository:
    return _records(gw).repo


def _page(request: Request) -> tuple[str, int, int]:
    q = request.query_params
    query = q.get("q", "").strip()[:200]
    limit = int_param(q.get("limit"), "limit", 10, low=1, high=MAX_LIMIT) or 10
    offset = int_param(q.get("offset"), "offset", 0) or 0
    return query, limit, offset


def _path_id(request: Request) -> int:
    value = int_param(request.path_params["id"], "id")
    assert value is not None
    return value


async def _key_identity(request: Request, gw: Gateway) -> Identity:
    identity = await gw.identify(request.headers, direct=False)
    if identity.key is None:
        raise InvalidRequest("This endpoint is a key's own view; the admin uses /admin/session/* and /admin/thread/*.")
    return identity


# admin ---------------------------------------------------------------------------------------

async def admin_sessions(request: Request, gw: Gateway) -> dict[str, Any]:
    q, limit, offset = _page(request)
    items, total = await _repo(gw).sessions(q=q, limit=limit, offset=offset,
                                            key_id=int_param(request.query_params.get("key_id"), "key_id"))
    return {"items": items, "total": total}


async def admin_session(request: Request, gw: Gateway) -> dict[str, Any]:
    found = await _repo(gw).session(_path_id(request))
    if found is None:
        raise NotFound("No such session.")
    return found


async def admin_delete_session(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    sid = int_param(body.get("id"), "id")
    if sid is None or not await _repo(gw).delete_session(sid, None):
        raise NotFound("No such session.")
    return {"success": True, "id": sid}


async def admin_threads(request: Request, gw: Gateway) -> dict[str, Any]:
    q, limit, offset = _page(request)
    qp = request.query_params
    items, total = await _repo(gw).threads(q=q, limit=limit, offset=offset,
                                           key_id=int_param(qp.get("key_id"), "key_id"),
                                           session_id=int_param(qp.get("session_id"), "session_id"))
    return {"items": items, "total": total}


async def admin_thread(request: Request, gw: Gateway) -> dict[str, Any]:
    found = await _repo(gw).thread(_path_id(request))
    if found is None:
        raise NotFound("No such thread.")
    return found


async def record_settings(request: Request, gw: Gateway) -> dict[str, Any]:
    records = _records(gw)
    await records.reload()
    items = [{"scope": scope, "id": sid, "enabled": on} for (scope, sid), on in sorted(records.settings.items())]
    return {"default": records.default, "items": items}


async def save_record_setting(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    scope = body.get("scope")
    if scope not in SCOPES:
        raise InvalidRequest(f"scope must be one of {', '.join(SCOPES)}", param="scope")
    sid = body.get("id")
    if isinstance(sid, bool) or not isinstance(sid, int | str) or str(sid) == "" or len(str(sid)) > 64:
        raise InvalidRequest("id must be the key's or group's id, or the studio's id", param="id")
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise InvalidRequest("enabled must be true, false or null", param="enabled")
    records = _records(gw)
    await records.repo.set(scope, str(sid), enabled)
    await records.reload()
    return {"scope": scope, "id": str(sid), "enabled": enabled}


# user ----------------------------------------------------------------------------------------

async def user_sessions(request: Request, gw: Gateway) -> dict[str, Any]:
    owner = (await _key_identity(request, gw)).owner
    q, limit, offset = _page(request)
    items, total = await _repo(gw).sessions(owner=owner, q=q, limit=limit, offset=offset)
    return {"items": items, "total": total}


async def user_session(request: Request, gw: Gateway) -> dict[str, Any]:
    owner = (await _key_identity(request, gw)).owner
    found = await _repo(gw).session(_path_id(request), owner)
    if found is None:
        raise NotFound("No such session.")
    return found


async def user_delete_session(request: Request, gw: Gateway) -> dict[str, Any]:
    owner = (await _key_identity(request, gw)).owner
    sid = _path_id(request) if "id" in request.path_params else int_param((await json_body(request)).get("id"), "id")
    if sid is None or not await _repo(gw).delete_session(sid, owner):
        raise NotFound("No such session.")
    return {"success": True, "id": sid}


async def user_threads(request: Request, gw: Gateway) -> dict[str, Any]:
    owner = (await _key_identity(request, gw)).owner
    q, limit, offset = _page(request)
    items, total = await _repo(gw).threads(owner=owner, q=q, limit=limit, offset=offset,
                                           session_id=int_param(request.query_params.get("session_id"),
                                                                "session_id"))
    return {"items": items, "total": total}


async def user_thread(request: Request, gw: Gateway) -> dict[str, Any]:
    owner = (await _key_identity(request, gw)).owner
    found = await _repo(gw).thread(_path_id(request), owner)
    if found is None:
        raise NotFound("No such thread.")
    return found


async def user_me(request: Request, gw: Gateway) -> dict[str, Any]:
    """Where the calling key stands: identity, money, limits, recording, models."""
    identity = await _key_identity(request, gw)
    assert identity.key is not None
    key = await gw.keys.get(identity.key.id)
    if key is None or key.revoked_at is not None:
        raise AuthenticationFailed("Invalid API key.")
    group = None
    if gw.billing is not None and key.group_id is not None:
        found = gw.billing.access.groups.get(key.group_id)
        if found is not None:
            group = {"id": found.id, "name": found.name, "multiplier": found.multiplier / MICRO,
                     "restricted": found.restricted}
    spent = 0
    if gw.billing is not None:
        state = await gw.billing.ledger.state(key.id, month_of(time.time()))
        spent = state[1] if state is not None else 0
    quota_left = None if key.month_quota is None else max(0, key.month_quota - spent)
    models = [m.id for m in gw.catalog.listed()
              if gw.billing is None or gw.billing.access.allowed(key, (m.id,))]
    return {
        "id": key.id, "name": key.name, "prefix": key.prefix, "role": key.role, "email": key.email,
        "enabled": key.enabled, "studio_id": key.studio_id, "group": group,
        "balance": key.balance / MICRO, "balance_micro": key.balance,
        "month_quota": None if key.month_quota is None else key.month_quota / MICRO,
        "month_quota_micro": key.month_quota, "month_spent_micro": spent,
        "quota_left": None if quota_left is None else quota_left / MICRO, "quota_left_micro": quota_left,
        "limits": {"rpm": key.rpm, "tpm": key.tpm},
        "whitelist": list(key.models) if key.models is not None else None,
        "records_chats": gw.records.wants(Identity(key=key)) if gw.records is not None else False,
        "models": models,
    }


def record_routes() -> list[BaseRoute]:
    user = {"public": True}
    return [
        Route("/admin/session/list", admin_endpoint(admin_sessions), methods=["GET"]),
        Route("/admin/session/detail/{id}", admin_endpoint(admin_session), methods=["GET"]),
        Route("/admin/session/delete", admin_endpoint(admin_delete_session), methods=["POST"]),
        Route("/admin/thread/list", admin_endpoint(admin_threads), methods=["GET"]),
        Route("/admin/thread/detail/{id}", admin_endpoint(admin_thread), methods=["GET"]),
        Route("/admin/record/settings", admin_endpoint(record_settings), methods=["GET"]),
        Route("/admin/record/save", admin_endpoint(save_record_setting), methods=["POST"]),
        Route("/user/session/list", admin_endpoint(user_sessions, **user), methods=["GET"]),
        Route("/user/session/detail/{id}", admin_endpoint(user_session, **user), methods=["GET"]),
        Route("/user/session/delete", admin_endpoint(user_delete_session, **user), methods=["POST"]),
        Route("/user/session/{id}", admin_endpoint(user_delete_session, **user), methods=["DELETE"]),
        Route("/user/thread/list", admin_endpoint(user_threads, **user), methods=["GET"]),
        Route("/user/thread/detail/{id}", admin_endpoint(user_thread, **user), methods=["GET"]),
        Route("/user/me", admin_endpoint(user_me, **user), methods=["GET"]),
    ]
