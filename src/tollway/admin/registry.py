"""Seed 004's model registry, groups and model authorization (``/admin/model/*``, ``/admin/group/*``,
``/admin/api-key/model/*``). Being written: see the issue notes."""

from __future__ import annotations

from starlette.routing import BaseRoute


def registry_routes() -> list[BaseRoute]:
    return []
