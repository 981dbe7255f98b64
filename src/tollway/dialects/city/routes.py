"""The City route: ``GET`` and ``POST /v1/{service}/{action}`` over the service registry.

The bearer decides the identity: none -> guest; the admin secret or an admin-role key -> admin
(as on the admin API); any other valid key (a studio's user_token included) -> user (bound to
the key's studio). An action refuses identities it does not allow (401 for a guest, 403
otherwise); a body's ``studio_id`` that differs from the user's studio is 403 (``studio_matches``,
also the check of ``/v1/ai/chat/completions``); a paused studio's tokens are refused before any
of that (by the gateway's identify). Explicit routes of the other
surfaces (``/v1/models``, ``/v1/chat/completions``, ``/v1/messages`` ...) are registered first
and win.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from tollway.auth.keys import Identity, bearer_token
from tollway.core.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
)
from tollway.core.json_input import loads
from tollway.core.names import DIALECT_CITY
from tollway.dialects.city.errors import city_error_body
from tollway.dialects.city.services import Caller, Registry
from tollway.routing.call import Call
from tollway.routing.gateway import Gateway
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.responses import EventStreamResponse, JSONBytes, dialect_endpoint, read_body


async def resolve_caller(request: Request, call: Call) -> Caller:
    token = bearer_token(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if not token:
        return Caller(kind="guest")
    pipeline: ChatPipeline = request.app.state.pipeline
    identity = await pipeline.identify(request, call, direct=False)
    if identity.is_admin:  # the admin secret, or an admin-role key (the README's and the admin API's rule)
        return Caller(kind="admin", identity=identity)
    return Caller(kind="user", identity=identity, studio_id=identity.key.studio_id if identity.key else None)


def studio_matches(identity: Identity, wanted: object) -> None:
    """Seed 000: a body's ``studio_id`` must be the studio the caller's token is bound to (the
    admin has none to differ from); 403 ``studio_mismatch`` otherwise."""
    if wanted is None or identity.is_admin:
        return
    if wanted != (identity.key.studio_id if identity.key else None):
        raise PermissionDenied("studio_id differs from the studio this user_token is bound to.",
                               code="studio_mismatch")


async def _body(request: Request, gw: Gateway) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query_params)
    raw = await read_body(request, gw.options.max_body_bytes)
    if not raw.strip():
        return {}
    data = loads(raw, invalid="The body is not valid JSON")
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return data


def city_endpoint(registry: Registry) -> Any:
    async def handle(request: Request, call: Call) -> Response | EventStreamResponse:
        gw: Gateway = request.app.state.gateway
        service, action_name = request.path_params["service"], request.path_params["action"]
        action = registry.find(service, action_name)
        if action is None:
            what = f"action '{action_name}'" if service in registry.services else f"service '{service}'"
            raise NotFound(f"Unknown {what}: /v1/{service}/{action_name}")
        if request.method not in action.methods:
            raise MethodNotAllowed(f"/v1/{service}/{action_name} takes {' or '.join(action.methods)}, "
                                   f"not {request.method}")
        caller = await resolve_caller(request, call)
        if not action.allows(caller.kind):
            if caller.kind == "guest":
                raise AuthenticationFailed(f"/v1/{service}/{action_name} needs a user_token: send "
                                           "'Authorization: Bearer <user_token>'.")
            raise PermissionDenied(f"/v1/{service}/{action_name} is for {' or '.join(action.allow)} "
                                   f"identities, not {caller.kind}.")
        body = await _body(request, gw)
        if caller.identity is not None:
            studio_matches(caller.identity, body.get("studio_id"))
        out = await action.handler(request, caller, body, call)
        if service != "ai" and request.method == "POST":
            gw.changed()  # studios, env, users: other processes reload at once
        if isinstance(out, Response | EventStreamResponse):
            return out
        return JSONBytes(out)

    return dialect_endpoint(DIALECT_CITY, city_error_body, handle)


async def services(request: Request, call: Call) -> Response:
    """Seed 000's GET /v1/services: every service with the env it declares."""
    registry: Registry = request.app.state.city
    items = []
    for s in registry.services.values():
        env = s.env() if s.env is not None else []
        items.append({"id": s.id, "name": s.name,
                      "env": [{"key": e.key, "description": e.description, "required": e.required} for e in env],
                      "actions": [{"name": a.name, "methods": list(a.methods), "allow": list(a.allow)}
                                  for a in s.actions.values()]})
    return JSONBytes({"items": items})


class _ServiceRoute(Route):
    """``/v1/{service}/{action}`` for registered services only: any other path (``/v1/chat/...``
    with a method its own route does not take, say) keeps its surface's 404/405."""

    def __init__(self, registry: Registry, endpoint: Any) -> None:
        super().__init__("/v1/{service}/{action:path}", endpoint, methods=["GET", "POST"])
        self.registry = registry

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        params = child.get("path_params", {})
        if match is not Match.NONE and self.registry.find(params.get("service", ""), params.get("action", "")) is None:
            return Match.NONE, {}  # not an action: the path's own surface answers (404, or 405 for its route)
        return match, child


def city_routes(registry: Registry) -> list[BaseRoute]:
    return [
        Route("/v1/services", dialect_endpoint(DIALECT_CITY, city_error_body, services), methods=["GET"]),
        _ServiceRoute(registry, city_endpoint(registry)),
    ]
