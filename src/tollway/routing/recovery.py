"""Credentials the upstream disabled come back by themselves.

A pool disables a credential on evidence about the credential (``routing.pools``: a 401, or
403s on several models). ``CredentialRecovery`` probes each such credential in the background,
with a growing delay (``first_delay``, then doubling up to ``max_delay``): a tiny chat call
through the provider's adapter on the first model the catalog lists for that provider. When the
probe passes, the credential is enabled again (in the shared state with Redis, so for every
replica). An admin's re-test (``POST /admin/accounts/test``) enables one at once, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from tollway.core.catalog import Credential
from tollway.core.chat import ChatRequest, Message, TextBlock
from tollway.core.errors import TollwayError, UpstreamTimeout
from tollway.providers.base import ChatProvider
from tollway.routing.catalog import Catalog, Route
from tollway.routing.pools import CredentialPool

log = logging.getLogger("tollway")
PROBE_MAX_TOKENS = 16
PROBE_MESSAGE = "Hello"


async def probe(provider: ChatProvider, route: Route, credential: Credential, message: str = PROBE_MESSAGE, *,
                timeout: float = 60.0) -> tuple[str, TollwayError | None]:
    """A tiny chat call on this one credential: the reply's text, and the error, if any."""
    req = ChatRequest(model=route.model.id, max_tokens=PROBE_MAX_TOKENS,
                      messages=(Message(role="user", content=(TextBlock(text=message or PROBE_MESSAGE),)),))
    try:
        async with asyncio.timeout(timeout):
            resp = await provider.complete(req, upstream_model=route.model.upstream_id, credential=credential)
    except TollwayError as err:
        return "", err
    except TimeoutError:
        return "", UpstreamTimeout(f"no answer within {timeout:g}s", provider=route.provider)
    except Exception as exc:  # an adapter bug must not end a run of probes
        log.exception("probing a credential of %s failed", route.provider)
        return "", TollwayError(f"the test failed: {type(exc).__name__}")
    return "".join(b.text for b in resp.content if isinstance(b, TextBlock)), None


def probe_route(catalog: Catalog, provider: str) -> Route | None:
    """The route a probe of ``provider``'s credentials uses: its first listed model."""
    model = next((m.id for m in catalog.listed() if m.provider == provider), None)
    if model is None:
        return None
    route = catalog.resolve(model)
    return route if route.provider == provider else None


Current = Callable[[], tuple[Mapping[str, ChatProvider], Mapping[str, CredentialPool], Catalog]]


class CredentialRecovery:
    def __init__(self, current: Current, *,
                 first_delay: float = 30.0, max_delay: float = 1800.0, timeout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``current()``: the providers, pools and catalog of now (a topology may be replaced)."""
        self._current = current
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self._clock = clock
        self._due: dict[tuple[str, str], tuple[float, float]] = {}  # (pool, credential) -> (next probe, delay)

    async def run_once(self) -> list[str]:
        """Probe every disabled credential that is due; the ids of those enabled again."""
        providers, pools, catalog = self._current()
        now = self._clock()
        seen: set[tuple[str, str]] = set()
        back: list[str] = []
        for name, pool in pools.items():
            disabled = await pool.auto_disabled()
            route = probe_route(catalog, name) if disabled else None
            for credential in disabled:
                key = (name, credential.id)
                seen.add(key)
                due, delay = self._due.setdefault(key, (now + self.first_delay, self.first_delay))
                if route is None or name not in providers or now < due:
                    continue
                _, error = await probe(providers[name], route, credential, timeout=self.timeout)
                if error is None:
                    await pool.enable(credential.id)
                    log.info("pool %s: credential %s passed its probe and is enabled again", name, credential.id)
                    back.append(credential.id)
                    seen.discard(key)
                    continue
                delay = min(self.max_delay, delay * 2)
                self._due[key] = (self._clock() + delay, delay)
        for key in [k for k in self._due if k not in seen]:  # enabled (by an admin too) or gone
            del self._due[key]
        return back

    async def forever(self, interval: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_once()
            except Exception:
                log.exception("probing disabled credentials failed")
