"""Credential pools: each credential's state (calls in flight against its cap, cooling down
until, disabled and why) from ``GET /admin/queue/status``; its last error from the request log
(``GET /admin/log/list``: the newest failed attempts naming it); the stored accounts of each
provider (``/admin/accounts``); re-testing one (``POST /admin/accounts/test``: a passing test
re-enables it) or all of a provider's (``/admin/accounts/test-all``)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from tollway.console.dispatch import error_message
from tollway.console.forms import Form, compact
from tollway.console.operator.actions import act
from tollway.console.operator.overview import pool_status
from tollway.console.pages import page_route, redirect, render
from tollway.console.session import Viewer

SCANNED = 200  # failed requests read for the last errors


async def last_errors(viewer: Viewer) -> dict[tuple[str, str], dict[str, Any]]:
    """(provider, credential) -> the newest failed attempt on it among the latest failed requests."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for status in ("5xx", "429"):
        answer = await viewer.answer("GET", "/admin/log/list", query={"status": status, "limit": SCANNED})
        if not answer.ok:
            continue
        for row in answer.data.get("items") or []:
            attempts = row.get("attempts") if isinstance(row.get("attempts"), list) else []
            failed = [a for a in attempts if isinstance(a, dict) and a.get("error")]
            if not failed and row.get("credential"):
                failed = [{"provider": row.get("provider"), "credential": row.get("credential"),
                           "status": row.get("status"), "error": row.get("error_code"), "message": row.get("note")}]
            for a in failed:
                key = (str(a.get("provider")), str(a.get("credential")))
                if key not in found or found[key]["at"] < row.get("created_at", 0):
                    found[key] = {"at": row.get("created_at", 0), "status": a.get("status"),
                                  "code": a.get("error"), "message": a.get("message") or "",
                                  "request_id": row.get("id")}
    return found


async def pools(request: Request, viewer: Viewer) -> Response:
    status = await pool_status(viewer)
    errors = await last_errors(viewer)
    now = time.time()
    providers = []
    for name, pool in sorted(status.items()):
        ids = list((pool.get("max_inflight") or {}).keys())
        accounts = await viewer.answer("GET", "/admin/accounts", query={"provider": name, "page_size": 100})
        stored = {a.get("id"): a for a in (accounts.data or {}).get("items") or []} if accounts.ok else {}
        creds = []
        for cid in ids:
            cooling = (pool.get("cooling") or {}).get(cid)
            creds.append({
                "id": cid, "in_flight": (pool.get("in_flight") or {}).get(cid, 0),
                "cap": (pool.get("max_inflight") or {}).get(cid),
                "cooling_until": now + cooling if cooling else None, "cooling_for": cooling,
                "disabled": (pool.get("disabled") or {}).get(cid), "last_error": errors.get((name, cid)),
                "stored": cid in stored})
        providers.append({"name": name, "pool": pool, "credentials": creds})
    return await render(request, viewer, "ops/pools.html", {"providers": providers}, active="pools",
                        title="Credential pools")


async def retest(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    provider, ident = form.text("provider"), form.text("identifier")
    answer = await viewer.answer("POST", "/admin/accounts/test", json=compact({
        "provider": provider, "identifier": ident, "model": form.given("model")}))
    if not answer.ok:
        return await redirect(request, "/ui/pools", f"Test refused (HTTP {answer.status}): "
                              f"{error_message(answer.data, answer.status)}", "error")
    result = answer.data
    text = (f"{provider}/{ident}: {'passed' if result.get('success') else 'failed'} in "
            f"{result.get('response_time', 0)} ms on {result.get('model', '?')}: {result.get('message', '')}")
    return await redirect(request, "/ui/pools", text, "ok" if result.get("success") else "error")


async def test_all(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    provider = form.text("provider")
    answer = await viewer.answer("POST", "/admin/accounts/test-all", json={"provider": provider})
    if not answer.ok:
        return await redirect(request, "/ui/pools", f"Test refused (HTTP {answer.status}): "
                              f"{error_message(answer.data, answer.status)}", "error")
    data = answer.data
    return await redirect(request, "/ui/pools", f"{provider}: {data.get('success', 0)} of {data.get('total', 0)} "
                          "stored accounts passed.", "ok" if not data.get("failed") else "warn")


async def add_account(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    body = compact({"provider": form.text("provider"), "id": form.given("id"), "api_key": form.given("api_key"),
                    "email": form.given("email"), "password": form.given("password")})
    return await act(request, viewer, "POST", "/admin/accounts", body, back="/ui/pools", done="Account added.")


async def delete_account(request: Request, viewer: Viewer) -> Response:
    form = await Form.read(request)
    ident = form.text("identifier")
    return await act(request, viewer, "DELETE", f"/admin/accounts/{quote(ident, safe='')}", None, back="/ui/pools",
                     done=f"Account {ident} deleted.", query={"provider": form.text("provider")})


def pool_routes() -> list[BaseRoute]:
    post = ("POST",)
    return [
        page_route("/pools", pools),
        page_route("/pools/test", retest, methods=post),
        page_route("/pools/test-all", test_all, methods=post),
        page_route("/pools/accounts", add_account, methods=post),
        page_route("/pools/accounts/delete", delete_account, methods=post),
    ]
