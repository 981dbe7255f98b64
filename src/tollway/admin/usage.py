"""Request logs, usage and payments: ``/admin/log/list``, ``/admin/usage``, ``/admin/payment/list``
and a key's own ``/user/usage``. Being written."""

from __future__ import annotations

from starlette.routing import BaseRoute


def usage_routes() -> list[BaseRoute]:
    return []
