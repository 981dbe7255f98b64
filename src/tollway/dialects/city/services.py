"""The City service registry: services, their actions, and who may call each.

An action declares the identities allowed to call it: ``("user",)`` by default; ``()`` means
guests too. The admin may call every action. A handler gets the request, the resolved
``Caller`` and the JSON body (or the query parameters for GET) and returns a JSON-able dict or
a Response (a stream).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tollway.auth.keys import Identity
from tollway.core.catalog import EnvRequirement
from tollway.routing.call import Call
from tollway.routing.responses import EventStreamResponse

Kind = Literal["guest", "user", "admin"]


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    identity: Identity | None = None
    studio_id: str | None = None  # the studio a user_token is bound to


Handler = Callable[[Request, Caller, dict[str, Any], Call], Awaitable[dict[str, Any] | Response | EventStreamResponse]]


class Action(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    handler: Handler
    methods: tuple[str, ...] = ("POST",)
    allow: tuple[Kind, ...] = ("user",)  # () = guests too; the admin may always call
    summary: str = ""

    def allows(self, kind: Kind) -> bool:
        return kind == "admin" or not self.allow or kind in self.allow


class Service(msgspec.Struct, kw_only=True):
    id: str
    name: str
    actions: dict[str, Action] = msgspec.field(default_factory=dict)
    # the runtime env the service depends on (seed 000's GET /v1/services)
    env: Callable[[], list[EnvRequirement]] | None = None

    def action(self, name: str, *, methods: tuple[str, ...] = ("POST",), allow: tuple[Kind, ...] = ("user",),
               summary: str = "") -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.actions[name] = Action(name=name, handler=handler, methods=methods, allow=allow, summary=summary)
            return handler

        return register


class Registry:
    def __init__(self) -> None:
        self.services: dict[str, Service] = {}

    def add(self, service: Service) -> Service:
        self.services[service.id] = service
        return service

    def find(self, service: str, action: str) -> Action | None:
        s = self.services.get(service)
        return s.actions.get(action) if s is not None else None
