"""One form, one API call: the shape of every operator action."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tollway.console.dispatch import Answer, error_message
from tollway.console.pages import redirect
from tollway.console.session import Viewer


async def act(request: Request, viewer: Viewer, method: str, path: str, body: Any = None, *, back: str,
              done: str | None = None, query: dict[str, Any] | None = None) -> Response:
    """Make the call; back to ``back`` with ``done`` (or the API's refusal) as the page's message."""
    answer = await viewer.answer(method, path, json=body, query=query)
    return await outcome(request, answer, back=back, done=done or "Done.")


async def outcome(request: Request, answer: Answer, *, back: str, done: str) -> Response:
    if answer.ok:
        return await redirect(request, back, done)
    return await redirect(request, back, f"Refused (HTTP {answer.status}): "
                          f"{error_message(answer.data, answer.status)}", "error")


async def options(viewer: Viewer, path: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Every item of a listing for a drop-down (groups, say); empty if the API refuses."""
    answer = await viewer.answer("GET", path, query={"limit": limit})
    if not answer.ok or not isinstance(answer.data, dict):
        return []
    items = answer.data.get("items") or []
    return [i for i in items if isinstance(i, dict)]
