"""Assembles the ASGI app. Every service is built once, in the lifespan, onto ``app.state``."""

from __future__ import annotations

import contextlib
import gc
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, Router
from starlette.types import Receive, Scope, Send

from tollway import __version__
from tollway.admin.ds2api import ds2api_routes
from tollway.admin.keys import key_routes
from tollway.admin.metrics import metrics_routes
from tollway.admin.records import record_routes
from tollway.admin.registry import registry_routes
from tollway.admin.usage import usage_routes
from tollway.alerts.engine import AlertEngine
from tollway.alerts.routes import admin_alert_routes
from tollway.auth.jwt import AdminTokens, server_secret
from tollway.auth.key_service import ensure_admin_secret
from tollway.auth.keys import Authenticator
from tollway.auth.secret_box import SecretBox, load_secret_key
from tollway.billing.admission import Billing
from tollway.billing.wallet import MemoryWallet, Wallet
from tollway.bots.routes import admin_bot_routes, bot_routes, close_bots
from tollway.config import Settings, load_settings
from tollway.core.catalog import ProviderConfig
from tollway.core.errors import ConfigError, MethodNotAllowed, NotFound, TollwayError
from tollway.core.limiter import Limiter
from tollway.core.names import DIALECT_ANTHROPIC, DIALECT_OPENAI, DIALECT_PLATFORM
from tollway.dialects.anthropic.errors import anthropic_error_body
from tollway.dialects.anthropic.routes import anthropic_routes
from tollway.dialects.anthropic.routes import v1_model as anthropic_v1_model
from tollway.dialects.anthropic.routes import v1_models as anthropic_v1_models
from tollway.dialects.city.accounts import accounts_service
from tollway.dialects.city.ai import ai_service
from tollway.dialects.city.env import env_service
from tollway.dialects.city.routes import city_routes
from tollway.dialects.city.services import Registry
from tollway.dialects.city.studios import studios_service
from tollway.dialects.completions.routes import completions_routes
from tollway.dialects.media.routes import media_routes
from tollway.dialects.openai.errors import openai_error_body, platform_error_body
from tollway.dialects.openai.routes import openai_routes
from tollway.dialects.responses.routes import Background, responses_routes
from tollway.limits.memory import MemoryLimiter
from tollway.middleware import RequestIdMiddleware
from tollway.providers.base import ChatProvider, ProviderContext
from tollway.providers.kinds import SPECS, build_provider, env_provider_configs
from tollway.providers.media import MediaFetcher
from tollway.records.recorder import ChatRecorder
from tollway.routing.call import Call
from tollway.routing.catalog import Catalog
from tollway.routing.gateway import Gateway, GatewayOptions
from tollway.routing.pipeline import ChatPipeline
from tollway.routing.pools import CredentialPool, MemoryState, PoolOptions, PoolState
from tollway.routing.responses import JSONBytes, Render, dialect_endpoint, error_response
from tollway.store.blobs import BlobSigner, FileBlobStore
from tollway.store.credentials import CredentialRepository
from tollway.store.db import create_engine
from tollway.store.env import EnvRepository
from tollway.store.ledger import LedgerRepository
from tollway.store.log_buffer import RequestLogBuffer
from tollway.store.meta import MetaRepository
from tollway.store.records import RecordRepository
from tollway.store.request_logs import RequestLogRepository
from tollway.store.tasks import TaskRepository
from tollway.tasks.engine import TaskEngine
from tollway.tasks.routes import task_routes
from tollway.telemetry import tracing  # tracing (tollway[otel])
from tollway.telemetry.logs import configure as configure_logs
from tollway.telemetry.metrics import Metrics

log = logging.getLogger("tollway")
if TYPE_CHECKING:
    from tollway.store.redis import Broadcast, ScriptBatch

INSTALL_ID = "install_id"  # meta: this database's identity, in the Redis keys of its wallets and limits
# a young-generation collection once 20,000 tracked objects have piled up, not 700: a request's
# short-lived tasks, futures and dicts kept the collector running under load; +12 % req/s in
# Redis mode, billing on and off, in the same run (bench/RESULTS.md)
GC_THRESHOLDS = (20_000, 20, 20)


def provider_configs(settings: Settings) -> dict[str, ProviderConfig]:
    """Providers configured by env variables, then the YAML file (which wins on a name)."""
    configs = {p.name: p for p in env_provider_configs(settings.env)}
    configs.update({p.name: p for p in settings.file.providers})
    return configs


def build_catalog(settings: Settings, configs: dict[str, ProviderConfig] | None = None) -> Catalog:
    configs = provider_configs(settings) if configs is None else configs
    return Catalog(SPECS, configs.values(), settings.file.models, settings.file.aliases,
                   settings.file.claude_mapping)


_POOL_FIELDS = ("queue_size", "queue_timeout", "cooldown_base", "cooldown_max")
_CAP_OPTIONS = ("max_inflight", "account_max_inflight", "api_key_max_inflight")


def pool_options(defaults: PoolOptions, cfg: ProviderConfig) -> PoolOptions:
    """The settings' pool options, with what a provider's YAML ``options`` set for it.

    In-flight caps: ``max_inflight`` sets every credential's of the provider;
    ``account_max_inflight`` (DS2API logins) and ``api_key_max_inflight`` one kind's, over it.
    The settings' (TOLLWAY_MAX_INFLIGHT_PER_ACCOUNT / _PER_API_KEY) apply where it sets none."""
    options = cfg.options
    for k in _CAP_OPTIONS:
        v = options.get(k)
        if k in options and not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1_000_000):
            raise ConfigError(f"provider {cfg.name!r}: options: {k} must be an integer from 1 to 1000000, not {v!r}")
    chosen = {k: options[k] for k in _POOL_FIELDS if k in options}
    every = options.get("max_inflight")
    if "account_max_inflight" in options or every is not None:
        chosen["max_inflight"] = options.get("account_max_inflight", every)
    if "api_key_max_inflight" in options or every is not None:
        chosen["api_key_max_inflight"] = options.get("api_key_max_inflight", every)
    try:
        return msgspec.convert({**msgspec.structs.asdict(defaults), **chosen}, PoolOptions)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"provider {cfg.name!r}: options: {exc}") from None


class AppTopology:
    """How this app builds providers, pools and the catalog from an environment (live env)."""

    def __init__(self, settings: Settings, ctx: ProviderContext, state: PoolState) -> None:
        self.settings, self.ctx, self.state = settings, ctx, state

    def configs(self, env: Mapping[str, str]) -> dict[str, ProviderConfig]:
        configs = {p.name: p for p in env_provider_configs(env)}
        configs.update({p.name: p for p in self.settings.file.providers})
        return configs

    def provider(self, config: ProviderConfig) -> ChatProvider:
        return build_provider(config, self.ctx)

    def pool(self, config: ProviderConfig) -> CredentialPool:
        return CredentialPool(config.name, config.credentials, options=pool_options(self.settings.pool, config),
                              state=self.state)

    def catalog(self, configs: Mapping[str, ProviderConfig]) -> Catalog:
        return build_catalog(self.settings, dict(configs))


def city_registry() -> Registry:
    registry = Registry()
    for service in (ai_service(), studios_service(), env_service(), accounts_service()):
        registry.add(service)
    return registry


async def build_gateway(settings: Settings) -> Gateway:
    engine = create_engine(settings.database_url)
    meta = MetaRepository(engine)
    admin_hash, _ = await ensure_admin_secret(meta, settings.admin_key)
    ctx = ProviderContext(timeouts=settings.timeouts, media=MediaFetcher(settings.media))
    state: PoolState = MemoryState()
    batch: ScriptBatch | None = None
    broadcast: Broadcast | None = None
    if settings.redis_url:  # redis (and its modules) are imported only when configured: start-up time and memory
        from tollway.routing.redis_state import RedisState
        from tollway.store.redis import Broadcast, ScriptBatch
        from tollway.store.redis import connect as connect_redis_client

        # one client for pools, limits and wallets, whose scripts of one loop turn share a round trip
        batch = ScriptBatch(await connect_redis_client(settings.redis_url))
        state = RedisState(batch.client, prefix=settings.redis_prefix, batch=batch)
        broadcast = Broadcast(await connect_redis_client(settings.redis_url), f"{settings.redis_prefix}changes")
    box = SecretBox(await load_secret_key(settings.env, meta))
    gateway = Gateway(
        engine=engine, auth=Authenticator(admin_hash, []), builder=AppTopology(settings, ctx, state),
        base_env=settings.env,
        logs=RequestLogBuffer(RequestLogRepository(engine), interval=settings.log_flush_interval,
                              batch=settings.log_batch),
        options=GatewayOptions(max_body_bytes=settings.max_body_bytes, max_attempts=settings.max_attempts,
                               poll_interval=settings.change_poll_interval,
                               discovery_interval=settings.discovery_interval,
                               response_retention=settings.response_retention_days * 86400.0,
                               background_timeout=settings.background_timeout,
                               max_background=settings.max_background,
                               max_upload_bytes=settings.max_upload_bytes),
        env_repo=EnvRepository(engine, box),
        billing=await build_billing(settings, engine, batch), media=ctx.media, pool_state=state,
        broadcast=broadcast, credentials=CredentialRepository(engine, box),  # accounts' secrets are sealed
        secret_box=box,
        records=ChatRecorder(RecordRepository(engine), default=settings.record_chats,
                             retention=settings.record_retention_days * 86400.0, max_chars=settings.record_max_chars),
        metrics=metrics_for(settings))
    if gateway.metrics is not None:
        # a label only for a model the catalog lists: names clients make up fold into "other"
        gateway.metrics.known_models = lambda name: name in gateway.catalog.known
        for buffer in gateway.writers:
            buffer.on_flush = gateway.metrics.flushed
    return gateway


_METRICS: Metrics | None = None


def metrics_for(settings: Settings) -> Metrics | None:
    """The process's counters (one set per process: prometheus-client's registry is global in
    multiprocess mode), or None with TOLLWAY_METRICS=off."""
    global _METRICS
    if not settings.metrics:
        return None
    if _METRICS is None:
        _METRICS = Metrics(raw_models=settings.metrics_raw_models)
    return _METRICS


async def build_billing(settings: Settings, engine: AsyncEngine, batch: ScriptBatch | None) -> Billing:
    """Wallets and limits in this process, or in Redis for every process sharing it. Redis keys
    carry this database's install id, so a fresh database never meets an old one's balances. A
    hold in Redis is a lease as long as a credential slot's (TOLLWAY_LEASE_TTL), renewed with them."""
    ledger = LedgerRepository(engine)
    wallet: Wallet
    limiter: Limiter
    if batch is not None:
        from tollway.billing.redis_wallet import RedisWallet
        from tollway.limits.redis import RedisLimiter

        install = await MetaRepository(engine).set_if_absent(INSTALL_ID, secrets.token_hex(6))
        prefix = f"{settings.redis_prefix}{install}:"
        wallet = RedisWallet(batch.client, ledger.state, prefix=prefix, batch=batch, hold_ttl=settings.pool.lease_ttl)
        limiter = RedisLimiter(batch.client, prefix, batch=batch)
    else:
        wallet, limiter = MemoryWallet(ledger.state), MemoryLimiter()
    return Billing(wallet, limiter, ledger, enabled=settings.billing, flush_interval=settings.ledger_flush_interval,
                   default_output=settings.reserve_output_tokens, deny_unpriced=settings.unpriced_models == "deny")


async def blob_key(meta: MetaRepository) -> bytes:
    """The key of the blob store's signed URLs: random, made once and shared through the
    database, so that a URL one replica signed is good on every other."""
    return bytes.fromhex(await meta.set_if_absent(BLOB_URL_KEY, secrets.token_hex(32)))


async def root(request: Request) -> Response:
    """``GET /`` and ``HEAD /``: the gateway's name, no key needed (Claude Code probes ``HEAD /``)."""
    return JSONBytes({"name": "Tollway", "version": __version__})


async def healthz(request: Request) -> Response:
    return JSONBytes({"status": "ok"})


async def readyz(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    try:
        async with gw.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return JSONBytes({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
    return JSONBytes({"status": "ready"})


def _surface(request: Request) -> tuple[str, Render]:
    """The dialect a request that matched no route speaks: Anthropic's for a caller that sends
    ``anthropic-version`` (every Anthropic SDK does) or an Anthropic path, the platform's under
    ``/api/``, else OpenAI's."""
    path = request.url.path
    if "anthropic-version" in request.headers or path.startswith(("/anthropic/", "/v1/messages")):
        return DIALECT_ANTHROPIC, anthropic_error_body
    if path.startswith("/api/"):
        return DIALECT_PLATFORM, platform_error_body
    return DIALECT_OPENAI, openai_error_body


async def unrouted(request: Request, exc: Exception) -> Response:
    """404/405 in the shape of the caller's surface, through that dialect's route guard: logged
    like any of its requests, with its error headers (the admin API keeps no request log)."""
    path = request.url.path
    err: TollwayError = (NotFound(f"Unknown path {path}") if getattr(exc, "status_code", 404) == 404
                         else MethodNotAllowed(f"Method {request.method} is not allowed on {path}"))
    if path.startswith("/admin"):
        return error_response(err, lambda e: {"detail": e.message})

    async def refuse(request: Request, call: Call) -> Response:
        raise err

    dialect, render = _surface(request)
    response = await dialect_endpoint(dialect, render, refuse)(request)
    assert isinstance(response, Response)  # an error is a plain response
    return response


def by_dialect(openai: list[BaseRoute], path: str,
               anthropic: Callable[[Request], Awaitable[object]]) -> Callable[[Request], Awaitable[Response]]:
    """OpenAI's route at ``path`` (``GET /v1/models``, ``GET /v1/models/{id}``), or Anthropic's
    answer there to a caller that sends ``anthropic-version`` (every Anthropic SDK does)."""
    openai_endpoint = next(r.endpoint for r in openai if isinstance(r, Route) and r.path == path)

    async def endpoint(request: Request) -> Response:
        if "anthropic-version" in request.headers:
            return await anthropic(request)  # type: ignore[return-value]
        return await openai_endpoint(request)  # type: ignore[no-any-return]

    return endpoint


BLOB_URL_KEY = "blob_url_key"


class LazyRoutes(BaseRoute):
    """Every route under ``prefix`` (and ``prefix`` itself), imported and built on the first
    request that reaches one. The console (``/ui``: Jinja2 and its pages) is one: a gateway whose
    console nobody opens does not keep it (2.7 MB, ~25 ms of start-up; issue 19). Paths it does
    not know go to its own catch-all or, as before, to the app's 404 and 405 handlers."""

    def __init__(self, prefix: str, build: Callable[[], list[BaseRoute]]) -> None:
        self.prefix = prefix
        self.build = build
        self._router: Router | None = None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path = get_route_path(scope)  # under a root path too, as Starlette's own routes match
            if path == self.prefix or path.startswith(self.prefix + "/"):
                return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            self._router = Router(routes=self.build(), redirect_slashes=False)
        await self._router(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: object) -> NoReturn:
        raise NoMatchFound(name, path_params)


def _console_routes() -> list[BaseRoute]:
    from tollway.console import console_routes

    return console_routes()


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        configure_logs(settings.log_format)
        tracing.setup()  # tracing (telemetry/tracing.py): OpenTelemetry when tollway[otel] and OTEL_* ask for it
        gateway = await build_gateway(settings)
        await gateway.start()
        app.state.gateway = gateway
        # the admin JWT's key: part of it is never in the database (env, or a file in the data dir)
        app.state.admin_tokens = AdminTokens(gateway.meta, gateway.auth.admin_hash,
                                             server_secret(settings.env, settings.data_dir))
        app.state.pipeline = pipeline = ChatPipeline(gateway)
        app.state.city = registry
        app.state.tasks = tasks = TaskEngine(
            gateway, pipeline, TaskRepository(gateway.engine), FileBlobStore(Path(settings.data_dir) / "blobs"),
            BlobSigner(await blob_key(gateway.meta), ttl=settings.blob_url_ttl), workers=settings.task_workers,
            lease=settings.task_lease, timeout=settings.task_timeout, poll_min=settings.task_poll_interval,
            poll_max=max(settings.task_poll_interval, 30.0), look_every=min(1.0, settings.task_lease / 6),
            retention=settings.task_retention_days * 86400.0)
        tasks.start()
        app.state.alerts = alerts = AlertEngine(gateway)
        alerts.start()
        # everything allocated so far lives as long as the process: keep it out of the
        # collector's generations so full collections stay short under load (p99)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield
        finally:
            await background.stop()
            await tasks.stop()
            await close_bots(app)
            await alerts.stop()
            await gateway.close()
            tracing.shutdown()  # tracing: flush the spans still queued

    openai = openai_routes()
    registry = city_registry()
    background = Background()  # the Responses API's background responses
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/", root, methods=["GET"]),  # and HEAD
        Route("/v1/models", by_dialect(openai, "/v1/models", anthropic_v1_models), methods=["GET"]),
        Route("/v1/models/{id:path}", by_dialect(openai, "/v1/models/{id:path}", anthropic_v1_model), methods=["GET"]),
        *openai,
        *completions_routes(),
        *media_routes(),
        *task_routes(),
        *responses_routes(background),
        *anthropic_routes(),
        *key_routes(),
        *registry_routes(),
        *usage_routes(),
        *record_routes(),
        *metrics_routes(),
        *admin_bot_routes(),
        *admin_alert_routes(),
        *bot_routes(),
        *ds2api_routes(),
        LazyRoutes("/ui", _console_routes),  # the console, imported on its first request
        *city_routes(registry),  # last: every explicit route above wins over /v1/{service}/{action}
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: unrouted, 405: unrouted})
    app.router.redirect_slashes = False  # a path that is not ours is a 404 in its surface's shape, not a redirect
    app.add_middleware(RequestIdMiddleware)
    return app
