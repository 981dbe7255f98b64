"""The operator pages (the admin key or an admin-role key): each module one area, each returning
its routes. Every form posts to a console route that makes one call to the documented API."""

from __future__ import annotations

from starlette.routing import BaseRoute

from tollway.console.operator.bots import bot_routes
from tollway.console.operator.env import env_routes
from tollway.console.operator.groups import group_routes
from tollway.console.operator.keys import key_routes
from tollway.console.operator.logs import log_routes
from tollway.console.operator.models import model_routes
from tollway.console.operator.overview import overview_routes
from tollway.console.operator.pools import pool_routes
from tollway.console.operator.records import record_routes
from tollway.console.operator.studios import studio_routes
from tollway.console.operator.tasks import task_routes


def operator_routes() -> list[BaseRoute]:
    return [*overview_routes(), *key_routes(), *model_routes(), *group_routes(), *studio_routes(), *env_routes(),
            *pool_routes(), *log_routes(), *record_routes(), *task_routes(), *bot_routes()]
