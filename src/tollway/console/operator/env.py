"""The runtime env (City's ``/v1/env/*``): values listed masked (as the API lists them), set,
removed, and a ``.env`` text imported with the result of every line."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.dispatch import error_message
from tollway.console.forms import Form
from tollway.console.operator.actions import act
from tollway.console.pages import Paging, page_route, render
from tollway.console.session import Viewer


async def env(request: Request, viewer: Viewer, *, imported: dict[str, object] | None = None,
              status: int = 200) -> Response:
    paging = Paging(request, per=50)
    data = await viewer.api("GET", "/v1/env/list")
    everything = data.get("items") or []
    paging.total = len(everything)
    return await render(request, viewer, "ops/env.html", {
        "items": everything[paging.offset:paging.offset + paging.limit], "paging": paging, "imported": imported},
        status=status, active="env", title="Runtime env")


async def env_page(request: Request, viewer: Viewer) -> Response:
    return await env(request, viewer)


async def upsert(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    key = form.text("key")
    return await act(request, viewer, "POST", "/v1/env/upsert", {"key": key, "value": form.raw("value")},
                     back="/ui/env", done=f"{key} saved.")


async def remove(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    key = form.text("key")
    return await act(request, viewer, "POST", "/v1/env/remove", {"key": key}, back="/ui/env", done=f"{key} removed.")


_ASSIGN = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*=")


def import_rows(text: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The import's answer line by line: each key at the line that set it (the last one, which
    wins), and each skipped line with the API's reason; in the text's order."""
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        found = _ASSIGN.match(line)
        if found:
            lines[found.group(1)] = number
    rows = [{"line": lines.get(key), "key": key, "result": outcome, "reason": ""}
            for outcome in ("added", "updated", "unchanged") for key in result.get(outcome) or []]
    rows += [{"line": s.get("line"), "key": s.get("key") or "", "result": "skipped", "reason": s.get("reason", "")}
             for s in result.get("skipped") or [] if isinstance(s, dict)]
    return sorted(rows, key=lambda r: (r["line"] is None, r["line"] or 0))


async def import_env(request: Request, viewer: Viewer) -> Response:
    """The import's answer is the page: every line's outcome (added, updated, unchanged, skipped
    and why)."""
    form = await Form.read(request)
    text = form.raw("text")
    answer = await viewer.answer("POST", "/v1/env/import", json={"text": text})
    if answer.ok:
        return await env(request, viewer, imported={"rows": import_rows(text, answer.data)})
    return await env(request, viewer, imported={"error": error_message(answer.data, answer.status)},
                     status=answer.status)


def env_routes() -> list[BaseRoute]:
    post = ("POST",)
    return [
        page_route("/env", env_page),
        page_route("/env/upsert", upsert, methods=post),
        page_route("/env/remove", remove, methods=post),
        page_route("/env/import", import_env, methods=post),
    ]
