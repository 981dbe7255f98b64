"""The gateway's state, built once in the app's lifespan, and the life of one call.

``Gateway`` holds every service a route needs: the identity cache, the model catalog, one
adapter and one credential pool per provider, the request-log buffer. ``Call`` follows one
request from arrival to its request-log row: which key, model, provider and credential,
when the first token left, what it cost, how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.keys import Authenticator, Identity, bearer_token
from tollway.core.billing import ModelRecord
from tollway.core.catalog import Credential, ModelInfo, ProviderConfig
from tollway.core.chat import Usage
from tollway.core.errors import (
    AuthenticationFailed,
    CredentialsDisabled,
    InvalidRequest,
    PermissionDenied,
    PoolExhausted,
    RateLimited,
    TollwayError,
    UpstreamError,
)
from tollway.core.request_log import RequestLog
from tollway.providers.base import ChatProvider, ModelLister
from tollway.providers.media import MediaFetcher
from tollway.routing.admission import Access, Billing, Bound, Ticket
from tollway.routing.catalog import Catalog, Route
from tollway.routing.pools import CredentialPool, Lease, PoolState
from tollway.store import changes
from tollway.store.credentials import CredentialRepository
from tollway.store.keys import KeyRepository
from tollway.store.log_buffer import RequestLogBuffer
from tollway.store.meta import MetaRepository
from tollway.store.redis import Broadcast
from tollway.store.registry import AuthorizationRepository, GroupRepository, ModelRepository
from tollway.store.studios import StudioRepository

log = logging.getLogger("tollway")
_json = msgspec.json.Encoder()
CLAUDE_MAPPING = "claude_mapping"  # the meta row an admin's claude_mapping is kept in


T = TypeVar("T")
Work = Callable[[Route, ChatProvider, Credential], Awaitable[T]]


class Call:
    """One request's bookkeeping. ``finish`` is idempotent and writes the log row once."""

    __slots__ = ("_gateway", "row", "t0", "lease", "pool", "pin", "attempts", "direct", "_done", "identity", "ticket",
                 "served", "produced", "_usage")

    def __init__(self, gateway: Gateway, row: RequestLog) -> None:
        self._gateway = gateway
        self.row = row
        self.t0 = time.perf_counter()
        self.lease: Lease | None = None
        self.pool: CredentialPool | None = None
        self.pin: str | None = None  # X-Tollway-Credential / X-Ds2-Target-Account
        self.attempts: list[dict[str, Any]] = []
        self.direct: Credential | None = None  # direct-token mode: the caller's own upstream credential
        self._done = False
        self.identity: Identity | None = None
        self.ticket: Ticket | None = None  # what admission held for this call (credits, limits)
        self.served: ModelInfo | None = None  # the model of the attempt that answered
        self.produced = 0  # stream events sent to the client (bills a stream cut without usage)
        self._usage = False  # whether the upstream reported usage

    @property
    def credential(self) -> Credential | None:
        return self.lease.credential if self.lease is not None else None

    def identify(self, identity: Identity) -> None:
        self.identity = identity
        if identity.direct_token is not None:
            digest = hashlib.sha256(identity.direct_token.encode()).hexdigest()[:12]
            self.direct = Credential(id=f"direct:{digest}", secret=identity.direct_token)
        self.row.key_id = identity.key_id
        self.row.key_prefix = identity.key_prefix
        self.row.studio_id = identity.key.studio_id if identity.key else None

    async def run(self, model: str, work: Work[T], *, fallbacks: bool = True, bound: Bound | None = None) -> T:
        """``work`` on the model's provider with a credential from its pool: on an upstream
        failure before any byte reached the client, again on another credential (up to the
        gateway's ``max_attempts``), then on each of the model's fallbacks. Every attempt is
        named in the log row. The lease of the attempt that succeeded is held until ``finish``.

        A key's call is admitted first (``routing.admission``): the model must be authorized to
        it; with a ``bound`` (a generation, not a token count), its limits are counted and its
        worst case held in its wallet until ``finish`` settles it."""
        gw = self._gateway
        if self.direct is not None:  # the caller's own credential: no pool, no retries, no fallbacks
            route = gw.catalog.resolve(model)
            if route.provider not in gw.direct_providers:
                raise AuthenticationFailed("Invalid API key.")
            self.row.model, self.row.provider, self.row.credential = route.model.id, route.provider, self.direct.id
            return await work(route, gw.providers[route.provider], self.direct)
        last: TollwayError | None = None
        routes = gw.candidates(model)
        if self.pin is not None or not fallbacks:  # a pin names a credential of this model's provider
            routes = routes[:1]
        key = self.identity.key if self.identity is not None else None
        if key is not None and gw.billing is not None:
            if bound is None:
                routes = gw.billing.check_access(key, model, routes)
            else:
                routes, self.ticket = await gw.billing.admit(key, model, routes, bound)
        for index, route in enumerate(routes):
            if index and self.ticket is not None:
                assert gw.billing is not None  # the ticket came from it
                try:  # a fallback model's own limits (the first model's were counted at admission)
                    await gw.billing.admit_fallback(self.ticket, route.model)
                except (RateLimited, InvalidRequest) as err:
                    self._attempt(route, None, err)
                    last = err
                    continue
            provider, pool = gw.providers[route.provider], gw.pools[route.provider]
            tried: set[str] = set()
            for _ in range(gw.max_attempts):
                try:
                    lease = await pool.acquire(pin=self.pin, exclude=tried)
                except (PoolExhausted, CredentialsDisabled) as err:
                    self._attempt(route, None, err)
                    last = err
                    break  # this model's pool can do no more: its fallback, if any
                self.lease, self.pool = lease, pool
                self.row.model, self.row.provider = route.model.id, route.provider
                self.row.credential = lease.credential.id
                try:
                    result = await work(route, provider, lease.credential)
                except UpstreamError as err:
                    await pool.failed(lease, err)
                    self._attempt(route, lease, err)
                    self.release()
                    last = err
                    if not err.is_retryable or self.pin is not None:
                        raise
                    tried.add(lease.credential.id)
                    if len(tried) >= len(pool.credentials):
                        break
                    continue
                await pool.succeeded(lease)
                self.served = route.model
                if self.attempts:
                    self._attempt(route, lease, None)
                return result
        assert last is not None
        raise last

    def _attempt(self, route: Route, lease: Lease | None, err: TollwayError | None) -> None:
        self.attempts.append({
            "model": route.model.id, "provider": route.provider,
            "credential": lease.credential.id if lease is not None else None,
            "status": err.http_status if err is not None else 200,
            "upstream_status": getattr(err, "upstream_status", None),
            "error": err.code if err is not None else None,
        })

    def release(self) -> None:
        if self.pool is not None and self.lease is not None:
            self.pool.release_nowait(self.lease)
        self.lease = None

    def first_token(self, events: int = 1) -> None:
        """``events`` stream events went to the client (the first of them sets the TTFT)."""
        self.produced += events
        if self.row.ttft_ms is None:
            self.row.ttft_ms = (time.perf_counter() - self.t0) * 1000.0

    def usage(self, usage: Usage) -> None:
        self._usage = True
        self.row.prompt_tokens = usage.input_tokens
        self.row.completion_tokens = usage.output_tokens
        self.row.cached_tokens = usage.cached_tokens
        self.row.reasoning_tokens = usage.reasoning_tokens

    def dropped(self, params: list[str]) -> None:
        if params:
            self.row.dropped_params = ",".join(sorted(params))

    def _settle(self, status: int) -> int:
        """Charge what the call used: a success, or a stream the client cut once it had begun,
        pays for its tokens (estimated when the upstream reported none); anything else is refunded."""
        ticket = self.ticket
        assert ticket is not None and self._gateway.billing is not None
        self.ticket = None
        tokens: tuple[int, int] | None = None
        row = self.row
        if status == 200 and self._usage:
            tokens = (row.prompt_tokens, row.completion_tokens)
        elif status == 200 or (status == 499 and self.produced):
            # a stream cut short (or an upstream that reported no usage): what was reported, else the
            # request's size; and at least one token per event the client received
            tokens = (row.prompt_tokens or ticket.bound.input_tokens, max(row.completion_tokens, self.produced))
            row.prompt_tokens, row.completion_tokens = tokens
        return self._gateway.billing.settle(ticket, self.served, tokens, self.row.id, self.row)

    def finish(self, status: int, error: TollwayError | None = None, note: str | None = None) -> None:
        if self._done:
            return
        self._done = True
        self.release()
        row = self.row
        if self.ticket is not None:
            row.cost_micro = self._settle(status)
        row.status = status
        row.latency_ms = (time.perf_counter() - self.t0) * 1000.0
        if self.attempts:
            row.attempts = _json.encode(self.attempts).decode()
        if error is not None:
            row.error_code = error.code
            row.note = error.message[:500]
            if status >= 500:
                log.warning("request %s failed: %s %s (key=%s provider=%s)", row.id, status, error.code,
                            row.key_prefix, row.provider)
        if note:
            row.note = note
        self._gateway.logs.add(row)


class Topology(Protocol):
    """How the app turns an environment into providers, pools and a catalog (for live env)."""

    def configs(self, env: Mapping[str, str]) -> dict[str, ProviderConfig]: ...

    def provider(self, config: ProviderConfig) -> ChatProvider: ...

    def pool(self, config: ProviderConfig) -> CredentialPool: ...

    def catalog(self, configs: Mapping[str, ProviderConfig]) -> Catalog: ...


class EnvSource(Protocol):
    async def all(self) -> dict[str, str]: ...


def _ours(token: str) -> bool:
    """A Tollway key (``tw-``) or a JWT (three base64url parts, the first a JSON header)."""
    return token.startswith("tw-") or (token.startswith("eyJ") and token.count(".") == 2)


class Gateway:
    def __init__(self, *, engine: AsyncEngine, auth: Authenticator, catalog: Catalog,
                 providers: Mapping[str, ChatProvider], pools: Mapping[str, CredentialPool],
                 logs: RequestLogBuffer, max_body_bytes: int, poll_interval: float,
                 discovery_interval: float = 60.0, media: MediaFetcher | None = None,
                 max_attempts: int = 3, pool_state: PoolState | None = None) -> None:
        self.engine = engine
        self.auth = auth
        self.catalog = catalog
        self.providers = dict(providers)
        self.pools = dict(pools)
        # live env (City's /v1/env): what builds providers, the env they were built from, and
        # where admins' variables come from; set by the app
        self.topology: Topology | None = None
        self.base_env: dict[str, str] = {}
        self.env_repo: EnvSource | None = None
        self.configs: dict[str, ProviderConfig] = {}
        self._env_applied: dict[str, str] | None = None
        self._env_lock = asyncio.Lock()
        self.env: dict[str, str] = {}  # the process env with the variables admins stored (live)
        self._retired: list[ChatProvider] = []
        self.settings: Any = None  # the app's Settings (handlers read their own parts of it)
        self.logs = logs
        self.keys = KeyRepository(engine)
        self.credential_store = CredentialRepository(engine)
        self.meta = MetaRepository(engine)
        # the credentials each provider has from env and YAML (admins' come from the store)
        self.configured_credentials = {name: pool.credentials for name, pool in pools.items()
                                       if not pool.credentials[0].id.endswith(":none")}
        auth.set_lookup(self.keys.by_hash)
        self.max_body_bytes = max_body_bytes
        self.poll_interval = poll_interval
        self.discovery_interval = discovery_interval
        self.media = media
        self.max_attempts = max_attempts
        self.pool_state = pool_state
        self.direct_providers: frozenset[str] = frozenset()
        self.billing: Billing | None = None  # admission and settlement (set by the app)
        self.registry: list[ModelRecord] = []  # the model registry's rows, as of the last reload
        self.paused_studios: frozenset[str] = frozenset()
        # a key of a removed studio is refused even if it was issued as the studio went (a race)
        self.removed_studios: frozenset[str] = frozenset()  # providers whose options say direct_token: true
        self._revision = -1
        self._tasks: list[asyncio.Task[None]] = []
        self.broadcast: Broadcast | None = None  # with Redis: other processes reload at once, not at their poll
        self._wake = asyncio.Event()

    def begin(self, request_id: str, path: str, dialect: str, *, stream: bool = False) -> Call:
        return Call(self, RequestLog(id=request_id, created_at=time.time(), path=path, dialect=dialect,
                                     stream=stream))

    async def identify(self, headers: Mapping[str, str], *, direct: bool = True) -> Identity:
        token = bearer_token(headers.get("authorization"), headers.get("x-api-key"))
        try:
            identity = await self.auth.identify(token)
        except AuthenticationFailed:
            # seed 002's direct-token mode, where a provider opted in; never for what looks like
            # one of ours (a revoked or mistyped Tollway key, an admin JWT): those stay 401s
            if direct and token and self.direct_providers and not _ours(token):
                return Identity(direct_token=token)
            raise
        if identity.key is not None and identity.key.studio_id in self.removed_studios:
            raise AuthenticationFailed("Invalid API key.")
        if identity.key is not None and identity.key.studio_id in self.paused_studios:
            raise PermissionDenied("This studio is paused: its tokens are refused until an admin activates it.",
                                   code="studio_paused")
        return identity

    def resolve(self, model: str) -> tuple[Route, ChatProvider, CredentialPool]:
        route = self.catalog.resolve(model)
        return route, self.providers[route.provider], self.pools[route.provider]

    def candidates(self, model: str) -> list[Route]:
        """The model's route, then its fallbacks' (those that resolve now), without repeats."""
        first = self.catalog.resolve(model)
        routes, seen = [first], {first.model.id}
        for name in first.model.fallbacks:
            try:
                route = self.catalog.resolve(name)
            except TollwayError:
                continue
            if route.model.id not in seen:
                seen.add(route.model.id)
                routes.append(route)
        return routes

    # caches ------------------------------------------------------------------------------

    async def reload(self) -> None:
        self._revision = await changes.current(self.engine)
        self.auth.reload(await self.keys.active())
        await self.apply_env()
        await self.reload_credentials()
        await self.reload_settings()
        await self.reload_studios()
        await self.reload_registry()

    async def reload_registry(self) -> None:
        """The model registry, groups and authorizations admins manage, into the catalog and the
        admission snapshot."""
        self.registry = await ModelRepository(self.engine).all()
        self.catalog.set_registry(self.registry)
        if self.billing is not None:
            group_models, key_models = await AuthorizationRepository(self.engine).snapshot()
            groups = {g.id: g for g in await GroupRepository(self.engine).all()}
            self.billing.access = Access(groups=groups, group_models=group_models, key_models=key_models)

    async def apply_env(self) -> None:
        """Reconfigure providers from the process env plus the variables admins stored (City's
        env service): a provider whose variables appear is built, one whose go away is dropped,
        one whose key changes gets the new credential; then the catalog is rebuilt. Every process
        does this when the change counter moves, so a change reaches every replica."""
        if self.topology is None or self.env_repo is None:
            self.env = dict(self.base_env)
            return
        async with self._env_lock:  # the watcher and a request may both apply: one at a time, in order
            await self._apply_env()

    async def _apply_env(self) -> None:
        assert self.topology is not None and self.env_repo is not None
        stored = await self.env_repo.all()
        if stored == self._env_applied:
            return
        self.env = {**self.base_env, **stored}
        configs = self.topology.configs(self.env)
        for name, cfg in configs.items():
            old = self.configs.get(name)
            if old == cfg and name in self.providers:
                continue
            same_place = old is not None and (old.kind, old.base_url, old.options) == (cfg.kind, cfg.base_url,
                                                                                         cfg.options)
            if not same_place or name not in self.providers:
                if name in self.providers:
                    self._retired.append(self.providers[name])
                self.providers[name] = self.topology.provider(cfg)
            if name not in self.pools:  # an existing pool gets its credentials below, with the stored ones
                self.pools[name] = self.topology.pool(cfg)
        for name in [n for n in self.providers if n not in configs]:
            self._retired.append(self.providers.pop(name))
            self.pools.pop(name, None)
        self.configs = dict(configs)
        self.configured_credentials = {name: cfg.credentials for name, cfg in configs.items() if cfg.credentials}
        catalog = self.topology.catalog(configs)
        catalog.set_discovered_all(self.catalog.discovered_for(set(configs)))  # what servers said stays
        catalog.claude_mapping = self.catalog.claude_mapping or catalog.claude_mapping  # an admin's, kept
        catalog.set_registry(self.registry)
        self.catalog = catalog
        self.direct_providers = frozenset(n for n, c in configs.items() if c.options.get("direct_token"))
        self._env_applied = stored
        await self.reload_credentials()  # env + YAML + stored, in one step; a new or re-keyed one starts healthy
        await self.reload_settings()

    async def reload_studios(self) -> None:
        repo = StudioRepository(self.engine)
        self.paused_studios = await repo.paused()
        self.removed_studios = await repo.removed()

    async def reload_settings(self) -> None:
        """Settings an admin changed at run time (seed 002's claude_mapping), over the config's."""
        raw = await self.meta.get(CLAUDE_MAPPING)
        if raw is not None:
            self.catalog.claude_mapping = msgspec.json.decode(raw, type=dict[str, str])

    async def set_claude_mapping(self, mapping: dict[str, str]) -> None:
        """Store it for every process (they reload on the change counter) and apply it here."""
        await self.meta.set(CLAUDE_MAPPING, msgspec.json.encode(mapping).decode())
        async with self.engine.begin() as conn:
            await changes.bump(conn)
        self.catalog.claude_mapping = dict(mapping)

    async def reload_credentials(self) -> None:
        """Each pool: the credentials of env and YAML, then those admins added (by provider)."""
        stored: dict[str, list[Credential]] = {}
        for row in await self.credential_store.all():
            if row.secret:  # a login without a token serves nobody: no provider here logs in
                stored.setdefault(row.provider, []).append(row.credential())
        for name, pool in self.pools.items():
            configured = self.configured_credentials.get(name, ())
            ids = {c.id for c in configured}
            wanted = configured + tuple(c for c in stored.get(name, ()) if c.id not in ids)
            placeholder = not wanted and pool.credentials[0].id.endswith(":none")
            if wanted != pool.credentials and not placeholder:
                before = {c.id: c.secret for c in pool.credentials}
                pool.set_credentials(wanted)  # () leaves the pool its placeholder
                for cred in wanted:  # a new or re-keyed credential starts healthy, whatever its id had
                    if before.get(cred.id, "\0") != cred.secret:
                        await pool.enable(cred.id)

    def changed(self) -> None:
        """A write that caches depend on has committed: tell every process (with Redis) now."""
        if self.broadcast is not None:
            task = asyncio.ensure_future(self.broadcast.publish())
            self._tasks.append(task)
            task.add_done_callback(self._tasks.remove)

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()
            try:
                revision = await changes.current(self.engine)
                if revision != self._revision:
                    self.auth.reload(await self.keys.active())
                    await self.apply_env()
                    await self.reload_credentials()
                    await self.reload_settings()
                    await self.reload_studios()
                    await self.reload_registry()
                    self._revision = revision  # only once all of it is in: a failure retries next poll
            except Exception:
                log.exception("change poll failed")

    async def discover(self) -> None:
        """Ask each discovering provider's server for its models (Ollama, vLLM ...)."""
        for name in self.catalog.discovering():
            provider = self.providers[name]
            if not isinstance(provider, ModelLister):
                continue
            try:
                async with asyncio.timeout(10):
                    ids = await provider.list_models(credential=self.pools[name].credentials[0])
            except (TollwayError, TimeoutError) as exc:
                log.warning("model discovery for %s failed: %s", name, getattr(exc, "message", "timeout"))
                continue
            self.catalog.set_discovered(name, ids)

    async def _renew_leases(self) -> None:
        """Keep the slots of running calls from expiring (a crashed process's do expire)."""
        interval = min(p.options.lease_ttl for p in self.pools.values()) / 3 if self.pools else 20.0
        while True:
            await asyncio.sleep(interval)
            for pool in self.pools.values():
                try:
                    await pool.renew()
                except Exception:
                    log.exception("renewing the leases of pool %s failed", pool.provider)

    async def _discover_forever(self) -> None:
        while True:
            await self.discover()
            await asyncio.sleep(self.discovery_interval)

    async def start(self) -> None:
        await self.reload()
        self.logs.start()
        if self.billing is not None:
            self.billing.start()
        self._tasks.append(asyncio.create_task(self._watch(), name="change-watcher"))
        if self.broadcast is not None:
            self._tasks.append(asyncio.create_task(self.broadcast.listen(self._wake.set), name="change-listener"))
        self._tasks.append(asyncio.create_task(self._renew_leases(), name="lease-renewal"))
        if self.catalog.discovering():
            self._tasks.append(asyncio.create_task(self._discover_forever(), name="model-discovery"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.logs.close()
        for provider in [*self.providers.values(), *self._retired]:
            await provider.close()
        if self.media is not None:
            await self.media.close()
        for pool in self.pools.values():
            await pool.drain()  # releases still on their way to a shared state
        if self.billing is not None:  # after the pools: they may share its Redis client
            await self.billing.close()
        if self.pool_state is not None:
            await self.pool_state.close()
        if self.broadcast is not None:
            await self.broadcast.close()
        await self.engine.dispose()
