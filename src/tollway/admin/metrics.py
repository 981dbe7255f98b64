"""``GET /metrics``: Prometheus's text format, for a metrics token or the admin.

With ``TOLLWAY_METRICS_TOKEN`` set, a bearer equal to it (compared in constant time) may scrape;
the admin identity always may; anyone else gets 401/403. ``TOLLWAY_METRICS=off`` removes the
route (404). Besides the counters (``telemetry.metrics``), each scrape reads the live state:
credential pools per provider (in flight, queued, cooling down, disabled), wallet holds of this
process, the write-behind buffers (rows pending, rows dropped), tasks (running here; pending and
running in the database, oldest pending age), and the gateway's start time and version.
"""

from __future__ import annotations

import hmac
import time

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway import __version__
from tollway.admin.base import guarded_authentication
from tollway.auth.keys import bearer_token
from tollway.core.errors import TollwayError
from tollway.routing.gateway import Gateway
from tollway.routing.responses import error_response
from tollway.telemetry.metrics import START, Metrics, gauge


async def live_state(request: Request, gw: Gateway) -> list[GaugeMetricFamily]:
    out = [gauge("tollway_info", "The gateway's version", ["version"], [((__version__,), 1.0)]),
           gauge("tollway_start_time_seconds", "When this process started (unix time)", [], [((), START)])]
    in_flight, queued, cooling, disabled, total = [], [], [], [], []
    for name, pool in sorted(gw.pools.items()):
        try:
            status = await pool.status()
        except Exception:
            continue
        flights = status.get("in_flight")
        in_flight.append(((name,), float(sum(flights.values()) if isinstance(flights, dict) else 0)))
        queued.append(((name,), float(status.get("queued") or 0)))  # type: ignore[arg-type]
        cooling.append(((name,), float(len(status.get("cooling") or {}))))  # type: ignore[arg-type]
        disabled.append(((name,), float(len(status.get("disabled") or {}))))  # type: ignore[arg-type]
        total.append(((name,), float(status.get("total") or 0)))  # type: ignore[arg-type]
    out += [gauge("tollway_pool_in_flight", "Upstream calls in flight", ["provider"], in_flight),
            gauge("tollway_pool_queued", "Calls waiting for a credential (this process)", ["provider"], queued),
            gauge("tollway_pool_cooling_down", "Credentials cooling down", ["provider"], cooling),
            gauge("tollway_pool_disabled", "Credentials disabled", ["provider"], disabled),
            gauge("tollway_pool_credentials", "Credentials", ["provider"], total)]
    if gw.billing is not None:
        holding = getattr(gw.billing.wallet, "holding", None)
        if isinstance(holding, int):
            out.append(gauge("tollway_wallet_holds", "Credit holds this process keeps alive", [], [((), holding)]))
    out.append(gauge("tollway_write_behind_pending", "Rows waiting to be written", ["buffer"],
                     [((b.name,), float(b.pending)) for b in gw.writers]))
    out.append(gauge("tollway_write_behind_dropped", "Rows given up (refused, or over the bound)", ["buffer"],
                     [((b.name,), float(b.dropped)) for b in gw.writers]))
    engine = getattr(request.app.state, "tasks", None)
    if engine is not None:
        out.append(gauge("tollway_tasks_running_here", "Tasks this process runs", [], [((), len(engine.running))]))
        counts, oldest = engine.queue
        out.append(gauge("tollway_tasks", "Tasks in the database by status (refreshed every few seconds)",
                         ["status"], [((k,), float(v)) for k, v in sorted(counts.items())]))
        age = time.time() - oldest if oldest else 0.0
        out.append(gauge("tollway_tasks_oldest_pending_age_seconds", "Age of the oldest pending task", [],
                         [((), age)]))
    return out


async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    collected: Metrics | None = gw.metrics
    try:
        token = gw.env.get("TOLLWAY_METRICS_TOKEN", "")
        given = bearer_token(request.headers.get("authorization"), request.headers.get("x-api-key")) or ""
        if not (token and hmac.compare_digest(given.encode(), token.encode())):
            await guarded_authentication(request, gw)
    except TollwayError as err:
        return error_response(err, lambda e: {"detail": e.message})
    if collected is None:
        return Response("metrics are off (TOLLWAY_METRICS=off)\n", status_code=404, media_type="text/plain")
    return Response(collected.render(await live_state(request, gw)), media_type=CONTENT_TYPE_LATEST)


def metrics_routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics, methods=["GET"])]
