"""Seed 004's Feishu bot API (admin) and the bots' event URL (Feishu's).

Admin (``{"detail": ...}`` errors; see ``bots.config`` for the body):
  ``GET /admin/bot/feishu/list?q=&limit=10&offset=``  ->  ``{"items": [bot...], "total": n}``; ``q``
      matches name, appId, modelId or provider. A bot: ``{"id", "name", "provider", "app_id", "model",
      "key_id", "config": {appId, appSecret, apiKey, modelId, verificationToken, encryptKey, apiBase},
      "event_url", "created_at", "updated_at"}``, its secrets masked (``abcd…``).
  ``POST /admin/bot/feishu/save``  ->  the saved bot; without ``id`` it creates (``name``, and
      ``appId``, ``appSecret``, ``apiKey``, ``modelId`` in ``config`` or at the top level), with
      ``id`` it changes what is given. ``apiKey`` must be a live key of this gateway.
  ``POST /admin/bot/feishu/delete {"id"}``  ->  ``{"success": true, "id"}``.

Feishu: ``POST /bots/feishu/{id}/events`` (no Authorization: the platform signs), the URL to give
the app's event subscription (``event_url`` above). See ``bots.service``.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.admin.base import MAX_INT, admin_endpoint, int_param, json_body, str_param
from tollway.auth.secret_box import SecretBox
from tollway.bots.config import listed, validate
from tollway.bots.service import KIND, FeishuBots
from tollway.core.errors import ConfigError, InternalError, InvalidRequest, NotFound, TollwayError
from tollway.routing.gateway import Gateway
from tollway.routing.responses import JSONBytes, error_response, read_body
from tollway.store.bots import BotRow

log = logging.getLogger("tollway.bots")
MAX_EVENT_BODY = 1024 * 1024
MAX_LIMIT = 100


def feishu_bots(app: Starlette) -> FeishuBots:
    """The app's Feishu bots service, made on first use (after the lifespan built the gateway)."""
    state = app.state
    bots: FeishuBots | None = getattr(state, "feishu_bots", None)
    if bots is None:
        bots = state.feishu_bots = FeishuBots(state.gateway, state.pipeline)
    return bots


async def close_bots(app: Starlette) -> None:
    """Finish the events in hand and close the bots' HTTP session (the lifespan's end)."""
    bots: FeishuBots | None = getattr(app.state, "feishu_bots", None)
    if bots is not None:
        await bots.close()


def _box(gw: Gateway) -> SecretBox:
    if gw.secret_box is None:
        raise ConfigError("bots need the gateway's secret box (TOLLWAY_SECRET_KEY or a generated key)")
    return gw.secret_box


def _public(request: Request, box: SecretBox, row: BotRow) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    return {"id": row.id, "name": row.name, "provider": row.provider, "app_id": row.app_id, "model": row.model,
            "key_id": row.key_id, "config": listed(box, row.config),
            "event_url": f"{base}/bots/feishu/{row.id}/events", "created_at": row.created_at,
            "updated_at": row.updated_at}


def _id(value: Any) -> int:
    bot_id = int_param(value, "id", low=1)
    if bot_id is None:
        raise InvalidRequest("id is required", param="id")
    return bot_id


async def list_bots(request: Request, gw: Gateway) -> dict[str, Any]:
    box = _box(gw)
    query = request.query_params
    limit = int_param(query.get("limit"), "limit", 10, low=1, high=MAX_LIMIT) or 10
    offset = int_param(query.get("offset"), "offset", 0) or 0
    q = str_param(query.get("q"), "q", 200).strip() or None
    rows, total = await feishu_bots(request.app).repo.list(KIND, q=q, limit=limit, offset=offset)
    return {"items": [_public(request, box, r) for r in rows], "total": total}


async def save_bot(request: Request, gw: Gateway) -> dict[str, Any]:
    box = _box(gw)
    body = await json_body(request)
    repo = feishu_bots(request.app).repo
    if body.get("id") is None:
        saved = await validate(gw, box, body, None, None)
        row = await repo.create(kind=KIND, name=saved.name, provider=saved.provider, app_id=saved.app_id,
                                model=saved.model, key_id=saved.key_id, config=saved.config)
        log.info("feishu bot %s created (app %s, model %s, key %s)", row.id, row.app_id, row.model, row.key_id)
        return _public(request, box, row)
    bot_id = _id(body["id"])
    before = await repo.get(bot_id, KIND)
    if before is None:
        raise NotFound(f"no bot with id {bot_id}")
    saved = await validate(gw, box, body, before.config, (before.name, before.provider))
    updated = await repo.update(bot_id, KIND, name=saved.name, provider=saved.provider, app_id=saved.app_id,
                                model=saved.model, key_id=saved.key_id, config=saved.config)
    if updated is None:
        raise NotFound(f"no bot with id {bot_id}")
    return _public(request, box, updated)


async def delete_bot(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await json_body(request)
    bot_id = _id(body.get("id"))
    if not await feishu_bots(request.app).repo.delete(bot_id, KIND):
        raise NotFound(f"no bot with id {bot_id}")
    return {"success": True, "id": bot_id}


def _detail(err: TollwayError) -> dict[str, Any]:
    return {"detail": err.message}


async def feishu_events(request: Request) -> Response:
    """One delivery of a Feishu app's events (``bots.service.FeishuBots.receive``)."""
    try:
        bot_id = int(request.path_params["bot_id"])
        if not 0 < bot_id <= MAX_INT:
            raise NotFound("no such bot")
        raw = await read_body(request, MAX_EVENT_BODY)
        answer = await feishu_bots(request.app).receive(bot_id, request.headers, raw)
    except TollwayError as err:
        if err.http_status >= 500:
            log.warning("feishu event for bot %s: %s", request.path_params.get("bot_id"), err.message)
        return error_response(err, _detail)
    except Exception:
        log.exception("feishu event for bot %s failed", request.path_params.get("bot_id"))
        return JSONBytes(_detail(InternalError("internal error")), status_code=500)
    return JSONBytes(answer)


def admin_bot_routes() -> list[BaseRoute]:
    return [
        Route("/admin/bot/feishu/list", admin_endpoint(list_bots), methods=["GET"]),
        Route("/admin/bot/feishu/save", admin_endpoint(save_bot), methods=["POST"]),
        Route("/admin/bot/feishu/delete", admin_endpoint(delete_bot), methods=["POST"]),
    ]


def bot_routes() -> list[BaseRoute]:
    return [Route("/bots/feishu/{bot_id:int}/events", feishu_events, methods=["POST"])]
