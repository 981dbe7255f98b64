"""The alert rules' admin API (``{"detail": ...}`` errors; see ``alerts.config`` for the body):

  ``GET /admin/alert/list?limit=10&offset=``  ->  ``{"items": [rule...], "total": n}``. A rule:
      ``{"id", "name", "kind", "enabled", "filter", "threshold", "minutes", "window", "min_requests",
      "webhook" (masked: ``https://host/…``), "format", "secret" (masked), "debounce",
      "created_at", "updated_at", "last_fired"}`` (``last_fired``: ``{"subject", "status", "at",
      "message"}`` of its newest firing, or null); a ``low_balance`` rule also has
      ``threshold_micro``.
  ``POST /admin/alert/save``  ->  the saved rule; without ``id`` it creates, with ``id`` it changes
      what is given.
  ``POST /admin/alert/delete {"id"}``  ->  ``{"success": true, "id"}`` (its firings go too).
  ``POST /admin/alert/test {"id"}``  ->  ``{"success", "status", "error"}``: a test alert sent to
      the rule's webhook now (nothing recorded, no debounce).
  ``GET /admin/alert/firings?rule_id=&limit=20``  ->  ``{"items": [firing...]}``, newest first.

The engine is ``app.state.alerts`` (an ``AlertEngine`` the lifespan starts); the handlers make
one on first use when the app has none, to send tests.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from tollway.admin.base import admin_endpoint, int_param, json_body
from tollway.alerts.config import listed, validate
from tollway.alerts.engine import AlertEngine
from tollway.auth.secret_box import SecretBox
from tollway.core.errors import ConfigError, InvalidRequest, NotFound
from tollway.routing.gateway import Gateway
from tollway.store.alerts import AlertRepository, Firing

MAX_LIMIT = 100


def alert_engine(app: Starlette) -> AlertEngine:
    """The app's alert engine (``app.state.alerts``); one made on first use when there is none."""
    engine: AlertEngine | None = getattr(app.state, "alerts", None)
    if engine is None:
        engine = app.state.alerts = AlertEngine(app.state.gateway)
    return engine


def _box(gw: Gateway) -> SecretBox:
    if gw.secret_box is None:
        raise ConfigError("alerts need the gateway's secret box (TOLLWAY_SECRET_KEY or a generated key)")
    return gw.secret_box


def _id(value: Any) -> int:
    rule_id = int_param(value, "id", low=1)
    if rule_id is None:
        raise InvalidRequest("id is required", param="id")
    return rule_id


def firing_public(f: Firing) -> dict[str, Any]:
    return {"id": f.id, "rule_id": f.rule_id, "subject": f.subject, "period": f.period, "value": f.value,
            "message": f.message, "status": f.status, "error": f.error, "at": f.fired_at}


async def list_rules(request: Request, gw: Gateway) -> dict[str, Any]:
    box = _box(gw)
    query = request.query_params
    limit = int_param(query.get("limit"), "limit", 10, low=1, high=MAX_LIMIT) or 10
    offset = int_param(query.get("offset"), "offset", 0) or 0
    repo = alert_engine(request.app).repo
    rules, total = await repo.page(limit=limit, offset=offset)
    items = []
    for rule in rules:
        item = listed(box, rule)
        newest = await repo.firings(rule_id=rule.id, limit=1)
        item["last_fired"] = ({"subject": newest[0].subject, "status": newest[0].status, "at": newest[0].fired_at,
                               "message": newest[0].message} if newest else None)
        items.append(item)
    return {"items": items, "total": total}


async def save_rule(request: Request, gw: Gateway) -> dict[str, Any]:
    box = _box(gw)
    body = await json_body(request)
    repo = alert_engine(request.app).repo
    if body.get("id") is None:
        return listed(box, await repo.create(validate(box, body, None)))
    rule_id = _id(body["id"])
    before = await repo.get(rule_id)
    if before is None:
        raise NotFound(f"no alert rule with id {rule_id}")
    updated = await repo.update(rule_id, validate(box, body, before))
    if updated is None:
        raise NotFound(f"no alert rule with id {rule_id}")
    return listed(box, updated)


async def delete_rule(request: Request, gw: Gateway) -> dict[str, Any]:
    rule_id = _id((await json_body(request)).get("id"))
    if not await alert_engine(request.app).repo.delete(rule_id):
        raise NotFound(f"no alert rule with id {rule_id}")
    return {"success": True, "id": rule_id}


async def send_test(request: Request, gw: Gateway) -> dict[str, Any]:
    _box(gw)
    rule_id = _id((await json_body(request)).get("id"))
    engine = alert_engine(request.app)
    rule = await engine.repo.get(rule_id)
    if rule is None:
        raise NotFound(f"no alert rule with id {rule_id}")
    delivery = await engine.test(rule)
    return {"success": delivery.ok, "id": rule_id, "status": delivery.status, "error": delivery.error}


async def list_firings(request: Request, gw: Gateway) -> dict[str, Any]:
    query = request.query_params
    rule_id = int_param(query.get("rule_id"), "rule_id", None, low=1)
    limit = int_param(query.get("limit"), "limit", 20, low=1, high=MAX_LIMIT) or 20
    firings = await AlertRepository(gw.engine).firings(rule_id=rule_id, limit=limit)
    return {"items": [firing_public(f) for f in firings]}


def admin_alert_routes() -> list[BaseRoute]:
    return [
        Route("/admin/alert/list", admin_endpoint(list_rules), methods=["GET"]),
        Route("/admin/alert/save", admin_endpoint(save_rule), methods=["POST"]),
        Route("/admin/alert/delete", admin_endpoint(delete_rule), methods=["POST"]),
        Route("/admin/alert/test", admin_endpoint(send_test), methods=["POST"]),
        Route("/admin/alert/firings", admin_endpoint(list_firings), methods=["GET"]),
    ]
