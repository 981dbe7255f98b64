"""The gateway's state, built once in the app's lifespan, and the life of one call.

``Gateway`` holds every service a route needs: the identity cache, the model catalog, one
adapter and one credential pool per provider, the request-log buffer. ``Call`` follows one
request from arrival to its request-log row: which key, model, provider and credential,
when the first token left, what it cost, how it ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.keys import Authenticator, Identity, bearer_token
from tollway.core.catalog import Credential
from tollway.core.chat import Usage
from tollway.core.errors import TollwayError
from tollway.core.request_log import RequestLog
from tollway.providers.base import ChatProvider, ModelLister
from tollway.providers.media import MediaFetcher
from tollway.routing.catalog import Catalog, Route
from tollway.routing.pools import CredentialPool
from tollway.store import changes
from tollway.store.keys import KeyRepository
from tollway.store.log_buffer import RequestLogBuffer

log = logging.getLogger("tollway")


class Call:
    """One request's bookkeeping. ``finish`` is idempotent and writes the log row once."""

    __slots__ = ("_gateway", "row", "t0", "credential", "pool", "_done")

    def __init__(self, gateway: Gateway, row: RequestLog) -> None:
        self._gateway = gateway
        self.row = row
        self.t0 = time.perf_counter()
        self.credential: Credential | None = None
        self.pool: CredentialPool | None = None
        self._done = False

    def identify(self, identity: Identity) -> None:
        self.row.key_id = identity.key_id
        self.row.key_prefix = identity.key_prefix
        self.row.studio_id = identity.key.studio_id if identity.key else None

    def use(self, route: Route, pool: CredentialPool) -> Credential:
        self.row.model = route.model.id
        self.row.provider = route.provider
        self.pool = pool
        self.credential = pool.acquire()
        self.row.credential = self.credential.id
        return self.credential

    def first_token(self) -> None:
        if self.row.ttft_ms is None:
            self.row.ttft_ms = (time.perf_counter() - self.t0) * 1000.0

    def usage(self, usage: Usage) -> None:
        self.row.prompt_tokens = usage.input_tokens
        self.row.completion_tokens = usage.output_tokens
        self.row.cached_tokens = usage.cached_tokens
        self.row.reasoning_tokens = usage.reasoning_tokens

    def dropped(self, params: list[str]) -> None:
        if params:
            self.row.dropped_params = ",".join(sorted(params))

    def finish(self, status: int, error: TollwayError | None = None, note: str | None = None) -> None:
        if self._done:
            return
        self._done = True
        if self.pool is not None and self.credential is not None:
            self.pool.release(self.credential)
        row = self.row
        row.status = status
        row.latency_ms = (time.perf_counter() - self.t0) * 1000.0
        if error is not None:
            row.error_code = error.code
            row.note = error.message[:500]
            if status >= 500:
                log.warning("request %s failed: %s %s (key=%s provider=%s)", row.id, status, error.code,
                            row.key_prefix, row.provider)
        if note:
            row.note = note
        self._gateway.logs.add(row)


class Gateway:
    def __init__(self, *, engine: AsyncEngine, auth: Authenticator, catalog: Catalog,
                 providers: Mapping[str, ChatProvider], pools: Mapping[str, CredentialPool],
                 logs: RequestLogBuffer, max_body_bytes: int, poll_interval: float,
                 discovery_interval: float = 60.0, media: MediaFetcher | None = None) -> None:
        self.engine = engine
        self.auth = auth
        self.catalog = catalog
        self.providers = providers
        self.pools = pools
        self.logs = logs
        self.keys = KeyRepository(engine)
        auth.set_lookup(self.keys.by_hash)
        self.max_body_bytes = max_body_bytes
        self.poll_interval = poll_interval
        self.discovery_interval = discovery_interval
        self.media = media
        self._revision = -1
        self._tasks: list[asyncio.Task[None]] = []

    def begin(self, request_id: str, path: str, dialect: str, *, stream: bool = False) -> Call:
        return Call(self, RequestLog(id=request_id, created_at=time.time(), path=path, dialect=dialect,
                                     stream=stream))

    async def identify(self, headers: Mapping[str, str]) -> Identity:
        return await self.auth.identify(bearer_token(headers.get("authorization"), headers.get("x-api-key")))

    def resolve(self, model: str) -> tuple[Route, ChatProvider, CredentialPool]:
        route = self.catalog.resolve(model)
        return route, self.providers[route.provider], self.pools[route.provider]

    # caches ------------------------------------------------------------------------------

    async def reload(self) -> None:
        self._revision = await changes.current(self.engine)
        self.auth.reload(await self.keys.active())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                revision = await changes.current(self.engine)
                if revision != self._revision:
                    self._revision = revision
                    self.auth.reload(await self.keys.active())
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

    async def _discover_forever(self) -> None:
        while True:
            await self.discover()
            await asyncio.sleep(self.discovery_interval)

    async def start(self) -> None:
        await self.reload()
        self.logs.start()
        self._tasks.append(asyncio.create_task(self._watch(), name="change-watcher"))
        if self.catalog.discovering():
            self._tasks.append(asyncio.create_task(self._discover_forever(), name="model-discovery"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.logs.close()
        for provider in self.providers.values():
            await provider.close()
        if self.media is not None:
            await self.media.close()
        await self.engine.dispose()
