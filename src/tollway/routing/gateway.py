"""The gateway's state, built once in the app's lifespan.

``Gateway`` holds the services a route needs, each built once and never replaced (the engine,
the identity cache, repositories, the request-log buffer, billing, the Redis broadcast), the
fixed ``GatewayOptions``, and one immutable ``Topology``: the providers, their credential pools
and the model catalog, as one snapshot that a change of the runtime env replaces whole (a
request reads ``gateway.topology`` once and sees one consistent set). Caches of the database
(keys, studios, the registry, stored credentials) are reloaded when the change counter moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.keys import Authenticator, Identity, bearer_token
from tollway.auth.secret_box import SecretBox
from tollway.billing.admission import Access, Billing
from tollway.core.billing import ModelRecord
from tollway.core.catalog import Credential, ModelInfo, ProviderConfig
from tollway.core.errors import AuthenticationFailed, PermissionDenied, TollwayError
from tollway.core.keys import ApiKey
from tollway.core.request_log import RequestLog
from tollway.providers.base import ChatProvider, ModelLister
from tollway.providers.media import MediaFetcher
from tollway.records.recorder import ChatRecorder
from tollway.routing.call import Call
from tollway.routing.catalog import Catalog, Route
from tollway.routing.pools import CredentialPool, PoolState
from tollway.routing.recovery import CredentialRecovery
from tollway.store import changes
from tollway.store.credentials import CredentialRepository
from tollway.store.keys import KeyRepository
from tollway.store.log_buffer import RequestLogBuffer, WriteBehind
from tollway.store.meta import MetaRepository
from tollway.store.registry import AuthorizationRepository, GroupRepository, ModelRepository
from tollway.store.responses import ResponseRepository
from tollway.store.studios import StudioRepository
from tollway.telemetry.metrics import Metrics

if TYPE_CHECKING:  # redis is imported only when configured (app.build_gateway)
    from tollway.store.redis import Broadcast

log = logging.getLogger("tollway")
CLAUDE_MAPPING = "claude_mapping"  # the meta row an admin's claude_mapping is kept in


class TopologyBuilder(Protocol):
    """How the app turns an environment into providers, pools and a catalog (for live env)."""

    def configs(self, env: Mapping[str, str]) -> dict[str, ProviderConfig]: ...

    def provider(self, config: ProviderConfig) -> ChatProvider: ...

    def pool(self, config: ProviderConfig) -> CredentialPool: ...

    def catalog(self, configs: Mapping[str, ProviderConfig]) -> Catalog: ...


class EnvSource(Protocol):
    async def all(self) -> dict[str, str]: ...


class GatewayOptions(msgspec.Struct, frozen=True, kw_only=True):
    max_body_bytes: int = 32 * 1024 * 1024
    max_attempts: int = 3  # credentials tried per model before its fallback
    poll_interval: float = 0.5  # how often the change counter is read
    discovery_interval: float = 60.0  # how often discovering providers (Ollama, vLLM) are asked
    probe_delay: float = 30.0  # a credential the upstream disabled is probed after this, then twice as long ...
    probe_max_delay: float = 1800.0  # ... up to this
    response_retention: float = 30 * 86400.0  # how long a stored response is kept (s); 0: until deleted
    background_timeout: float = 3600.0  # how long a background response may run (s)
    max_background: int = 1000  # background responses one process runs at once (more: 429)
    max_upload_bytes: int = 25 * 1024 * 1024  # a multipart upload (audio to transcribe)


class Topology:
    """Providers, their pools and the catalog, built from one environment: one immutable
    snapshot. A change of the env builds the next one (keeping the providers and pools that did
    not change) and the gateway swaps it in whole; so does a change of the catalog's data (the
    registry, claude_mapping, discovered models), on a copy of the catalog. A published
    snapshot's catalog is never changed."""

    __slots__ = ("env", "configs", "providers", "pools", "catalog", "direct_providers", "configured")

    def __init__(self, *, env: Mapping[str, str], configs: Mapping[str, ProviderConfig],
                 providers: Mapping[str, ChatProvider], pools: Mapping[str, CredentialPool], catalog: Catalog) -> None:
        self.env: Mapping[str, str] = MappingProxyType(dict(env))  # the process env with the variables admins stored
        self.configs: Mapping[str, ProviderConfig] = MappingProxyType(dict(configs))
        self.providers: Mapping[str, ChatProvider] = MappingProxyType(dict(providers))
        self.pools: Mapping[str, CredentialPool] = MappingProxyType(dict(pools))
        self.catalog = catalog
        # providers whose options say direct_token: true (seed 002's direct-token mode)
        self.direct_providers = frozenset(n for n, c in configs.items() if c.options.get("direct_token"))
        # the credentials each provider has from env and YAML (admins' come from the store)
        self.configured: Mapping[str, tuple[Credential, ...]] = MappingProxyType(
            {name: cfg.credentials for name, cfg in configs.items() if cfg.credentials})

    @classmethod
    def build(cls, builder: TopologyBuilder, env: Mapping[str, str], previous: Topology | None = None) -> Topology:
        """The topology of ``env``; ``previous`` lends the providers and pools that stay the
        same, and what the catalog learnt (discovered models, an admin's claude_mapping)."""
        configs = builder.configs(env)
        providers: dict[str, ChatProvider] = {}
        pools: dict[str, CredentialPool] = {}
        for name, cfg in configs.items():
            old = previous.configs.get(name) if previous is not None else None
            kept = previous is not None and name in previous.providers and old is not None and (
                (old.kind, old.base_url, old.options) == (cfg.kind, cfg.base_url, cfg.options))
            providers[name] = previous.providers[name] if kept and previous is not None else builder.provider(cfg)
            # an existing pool keeps its state; its credentials are set with the stored ones
            pools[name] = (previous.pools[name] if previous is not None and name in previous.pools
                           else builder.pool(cfg))
        catalog = builder.catalog(configs)
        if previous is not None:
            catalog.set_discovered_all(previous.catalog.discovered_for(set(configs)))  # what servers said stays
            catalog.claude_mapping = previous.catalog.claude_mapping or catalog.claude_mapping  # an admin's, kept
        return cls(env=env, configs=configs, providers=providers, pools=pools, catalog=catalog)

    def with_catalog(self, catalog: Catalog) -> Topology:
        """This topology with another catalog (the registry, a claude_mapping or discovered
        models changed): the providers and pools stay."""
        return Topology(env=self.env, configs=self.configs, providers=self.providers, pools=self.pools,
                        catalog=catalog)

    def retired(self, previous: Topology) -> list[ChatProvider]:
        """The providers of ``previous`` that this topology no longer uses."""
        mine = {id(p) for p in self.providers.values()}
        return [p for p in previous.providers.values() if id(p) not in mine]

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


def _ours(token: str) -> bool:
    """A Tollway key (``tw-``) or a JWT (three base64url parts, the first a JSON header)."""
    return token.startswith("tw-") or (token.startswith("eyJ") and token.count(".") == 2)


class Gateway:
    def __init__(self, *, engine: AsyncEngine, auth: Authenticator, builder: TopologyBuilder,
                 base_env: Mapping[str, str], logs: RequestLogBuffer, options: GatewayOptions,
                 env_repo: EnvSource | None = None, billing: Billing | None = None,
                 media: MediaFetcher | None = None, pool_state: PoolState | None = None,
                 broadcast: Broadcast | None = None, credentials: CredentialRepository | None = None,
                 secret_box: SecretBox | None = None, records: ChatRecorder | None = None,
                 metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.auth = auth
        self.options = options
        self.logs = logs
        self.billing = billing  # admission and settlement; None: nothing is authorized, limited or billed
        self.media = media
        self.pool_state = pool_state
        self.broadcast = broadcast  # with Redis: other processes reload at once, not at their poll
        self.env_repo = env_repo  # where admins' variables come from (City's /v1/env)
        self.keys = KeyRepository(engine)
        # the upstream accounts admins added (their secrets sealed when given a repository with the key)
        self.credential_store = credentials or CredentialRepository(engine)
        self.meta = MetaRepository(engine)
        self.secret_box = secret_box  # encrypts what admins store (env values, accounts, bots' secrets)
        self.records = records  # chat records (sessions and threads); None: nothing is recorded
        self.metrics = metrics  # Prometheus counters, updated as calls finish; None: off
        self.responses = ResponseRepository(engine)  # the Responses API's stored responses
        # every write-behind: backpressure (``room``), and the metrics' flush times and gauges
        self.writers: tuple[WriteBehind[Any], ...] = tuple(
            w for w in (logs, billing.writer if billing else None, records.writer if records else None,
                        self.responses.writer) if w is not None)
        auth.set_lookup(self.keys.by_hash)
        self._builder = builder
        self._base_env = dict(base_env)
        self._topology = Topology.build(builder, self._base_env)
        self._env_applied: dict[str, str] | None = None
        self._env_lock = asyncio.Lock()
        self._retired: list[ChatProvider] = []
        # caches of the database, reloaded when the change counter moves
        self.registry: list[ModelRecord] = []  # the model registry's rows, as of the last reload
        self.paused_studios: frozenset[str] = frozenset()
        # a key of a removed studio is refused even if it was issued as the studio went (a race)
        self.removed_studios: frozenset[str] = frozenset()
        self._revision = -1
        self.recovery = CredentialRecovery(lambda: (self._topology.providers, self._topology.pools,
                                                    self._topology.catalog),
                                           first_delay=options.probe_delay, max_delay=options.probe_max_delay)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    # the current topology (a request reads it once) ---------------------------------------

    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def catalog(self) -> Catalog:
        return self._topology.catalog

    def model_for(self, name: str, key: ApiKey | None) -> ModelInfo | None:
        """The model a caller looks up by ``name`` (``Catalog.find``), if ``key`` may call it (as
        the model lists filter)."""
        model = self._topology.catalog.find(name)
        if model is None:
            return None
        if key is not None and self.billing is not None and not self.billing.access.allowed(key, (name, model.id)):
            return None
        return model

    @property
    def providers(self) -> Mapping[str, ChatProvider]:
        return self._topology.providers

    @property
    def pools(self) -> Mapping[str, CredentialPool]:
        return self._topology.pools

    @property
    def env(self) -> Mapping[str, str]:
        return self._topology.env

    @property
    def configured_credentials(self) -> Mapping[str, tuple[Credential, ...]]:
        return self._topology.configured

    async def room(self) -> None:
        """Backpressure: a new request waits while a write-behind (request log, ledger, chat
        records, stored responses) is far behind (``store.log_buffer``); otherwise nothing (a flag per writer)."""
        for writer in self.writers:
            if writer.behind:
                await writer.room()

    def begin(self, request_id: str, path: str, dialect: str, *, stream: bool = False) -> Call:
        return Call(self.logs, RequestLog(id=request_id, created_at=time.time(), path=path, dialect=dialect,
                                          stream=stream), self.billing, self.records, self.metrics)

    def _change_catalog(self, change: Callable[[Catalog], object]) -> None:
        """Apply ``change`` to a copy of the current catalog and swap in the topology with it
        (every change of the catalog's data replaces the whole catalog: a request holding the
        old topology keeps seeing one consistent catalog)."""
        catalog = copy.copy(self._topology.catalog)  # its tables are replaced, never changed in place
        change(catalog)
        self._topology = self._topology.with_catalog(catalog)

    async def identify(self, headers: Mapping[str, str], *, direct: bool = True) -> Identity:
        token = bearer_token(headers.get("authorization"), headers.get("x-api-key"))
        try:
            identity = await self.auth.identify(token)
        except AuthenticationFailed:
            # seed 002's direct-token mode, where a provider opted in; never for what looks like
            # one of ours (a revoked or mistyped Tollway key, an admin JWT): those stay 401s
            if direct and token and self._topology.direct_providers and not _ours(token):
                return Identity(direct_token=token)
            raise
        if identity.key is not None and identity.key.studio_id in self.removed_studios:
            raise AuthenticationFailed("Invalid API key.")
        if identity.key is not None and identity.key.studio_id in self.paused_studios:
            raise PermissionDenied("This studio is paused: its tokens are refused until an admin activates it.",
                                   code="studio_paused")
        return identity

    # caches ------------------------------------------------------------------------------

    async def reload(self) -> None:
        self._revision = await changes.current(self.engine)
        self.auth.reload(await self.keys.active())
        await self.apply_env()
        await self.reload_credentials()
        await self.reload_settings()
        await self.reload_studios()
        await self.reload_registry()
        if self.records is not None:
            await self.records.reload()

    async def reload_registry(self) -> None:
        """The model registry, groups and authorizations admins manage, into the catalog and the
        admission snapshot."""
        self.registry = registry = await ModelRepository(self.engine).all()
        self._change_catalog(lambda catalog: catalog.set_registry(registry))
        if self.billing is not None:
            group_models, key_models = await AuthorizationRepository(self.engine).snapshot()
            groups = {g.id: g for g in await GroupRepository(self.engine).all()}
            self.billing.access = Access(groups=groups, group_models=group_models, key_models=key_models)

    async def apply_env(self) -> None:
        """Reconfigure providers from the process env plus the variables admins stored (City's
        env service): a provider whose variables appear is built, one whose go away is dropped,
        one whose key changes gets the new credential; the catalog is rebuilt; the new topology
        replaces the old one whole. Every process does this when the change counter moves, so a
        change reaches every replica."""
        if self.env_repo is None:
            return
        async with self._env_lock:  # the watcher and a request may both apply: one at a time, in order
            stored = await self.env_repo.all()
            if stored == self._env_applied:
                return
            previous = self._topology
            topology = Topology.build(self._builder, {**self._base_env, **stored}, previous)
            topology.catalog.set_registry(self.registry)
            self._retired.extend(topology.retired(previous))
            self._topology = topology
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
            mapping = msgspec.json.decode(raw, type=dict[str, str])
            self._change_catalog(lambda catalog: setattr(catalog, "claude_mapping", mapping))

    async def set_claude_mapping(self, mapping: dict[str, str]) -> None:
        """Store it for every process (they reload on the change counter) and apply it here."""
        await self.meta.set(CLAUDE_MAPPING, msgspec.json.encode(mapping).decode())
        async with self.engine.begin() as conn:
            await changes.bump(conn)
        self._change_catalog(lambda catalog: setattr(catalog, "claude_mapping", dict(mapping)))

    async def reload_credentials(self) -> None:
        """Each pool: the credentials of env and YAML, then those admins added (by provider)."""
        stored: dict[str, list[Credential]] = {}
        for row in await self.credential_store.all():
            if row.secret:  # a login without a token serves nobody: no provider here logs in
                stored.setdefault(row.provider, []).append(row.credential())
        topology = self._topology
        for name, pool in topology.pools.items():
            configured = topology.configured.get(name, ())
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
                await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
            self._wake.clear()
            try:
                revision = await changes.current(self.engine)
                if revision != self._revision:
                    mark = self.auth.mark()
                    if not self.auth.reload(await self.keys.active(), mark):
                        continue  # a key was revoked (or added) here during the read: read again next poll
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
        topology = self._topology
        for name in topology.catalog.discovering():
            provider = topology.providers[name]
            if not isinstance(provider, ModelLister):
                continue
            try:
                async with asyncio.timeout(10):
                    ids = await provider.list_models(credential=topology.pools[name].credentials[0])
            except (TollwayError, TimeoutError) as exc:
                log.warning("model discovery for %s failed: %s", name, getattr(exc, "message", "timeout"))
                continue
            if name in self._topology.providers:  # into the catalog of now (an env change may have come meanwhile)
                self._change_catalog(functools.partial(Catalog.set_discovered, provider=name, upstream_ids=ids))

    async def _renew_leases(self) -> None:
        """Keep the slots and credit holds of running calls from expiring (a crashed process's do
        expire), every third of the shortest lease."""
        while True:
            leases = [p.options.lease_ttl for p in self._topology.pools.values()]
            if self.billing is not None and self.billing.lease is not None:
                leases.append(self.billing.lease)
            await asyncio.sleep(min(leases) / 3 if leases else 20.0)
            for pool in self._topology.pools.values():
                try:
                    await pool.renew()
                except Exception:
                    log.exception("renewing the leases of pool %s failed", pool.provider)
            if self.billing is not None:
                await self.billing.renew()  # logs its own failure (Redis away): the holds last their lease

    async def _discover_forever(self) -> None:
        while True:
            await self.discover()
            await asyncio.sleep(self.options.discovery_interval)

    async def start(self) -> None:
        await self.reload()
        self.logs.start()
        self.responses.start()
        if self.records is not None:
            self.records.start_writing()
        if self.billing is not None:
            self.billing.start()
        self._tasks.append(asyncio.create_task(self._watch(), name="change-watcher"))
        if self.broadcast is not None:
            self._tasks.append(asyncio.create_task(self.broadcast.listen(self._wake.set), name="change-listener"))
        self._tasks.append(asyncio.create_task(self._renew_leases(), name="lease-renewal"))
        self._tasks.append(asyncio.create_task(self.recovery.forever(), name="credential-recovery"))
        if self._topology.catalog.discovering():
            self._tasks.append(asyncio.create_task(self._discover_forever(), name="model-discovery"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.responses.close()
        await self.logs.close()
        if self.records is not None:
            await self.records.close()
        for provider in [*self._topology.providers.values(), *self._retired]:
            await provider.close()
        if self.media is not None:
            await self.media.close()
        for pool in self._topology.pools.values():
            await pool.drain()  # releases still on their way to a shared state
        if self.billing is not None:  # after the pools: they may share its Redis client
            await self.billing.close()
        if self.pool_state is not None:
            await self.pool_state.close()
        if self.broadcast is not None:
            await self.broadcast.close()
        await self.engine.dispose()
