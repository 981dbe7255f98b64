"""When a credential is disabled, and how it comes back: only evidence about the credential
disables it (a 401, or 403s on several models with no success between); the background probe
enables it again once a tiny call passes, trying less and less often while it fails."""

from __future__ import annotations

from collections.abc import AsyncIterator

from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import ChatRequest, ChatResponse, StreamEvent, TextBlock, Usage
from tollway.core.errors import UpstreamError
from tollway.providers import echo
from tollway.routing.catalog import Catalog
from tollway.routing.pools import REFUSED_MODELS, CredentialPool, Lease
from tollway.routing.recovery import CredentialRecovery

A, B = Credential(id="a", secret="sa"), Credential(id="b", secret="sb")


def _lease(credential: Credential) -> Lease:
    return Lease(credential=credential, token="t", pool="echo")


def _refusal(status: int) -> UpstreamError:
    return UpstreamError(f"upstream returned HTTP {status}", provider="echo", upstream_status=status)


async def _disabled(pool: CredentialPool) -> set[str]:
    return {c.id for c in await pool.auto_disabled()}


async def test_a_401_disables_and_a_403_does_not() -> None:
    pool = CredentialPool("echo", (A, B))
    await pool.failed(_lease(A), _refusal(403), "gpt-x")
    await pool.failed(_lease(A), _refusal(403), "gpt-x")  # the same model again: still one refused model
    assert await _disabled(pool) == set()
    await pool.failed(_lease(B), _refusal(401), "gpt-x")
    assert await _disabled(pool) == {"b"}
    assert (await pool.status())["disabled"]["b"].startswith("upstream answered 401")


async def test_403s_on_several_models_disable_unless_a_success_came_between() -> None:
    pool = CredentialPool("echo", (A, B))
    for i in range(REFUSED_MODELS - 1):
        await pool.failed(_lease(A), _refusal(403), f"m{i}")
    await pool.succeeded(_lease(A))  # it serves: the refusals were about those requests
    for i in range(REFUSED_MODELS - 1):
        await pool.failed(_lease(A), _refusal(403), f"n{i}")
    assert await _disabled(pool) == set()
    await pool.failed(_lease(A), _refusal(403), "n-last")
    assert await _disabled(pool) == {"a"}


class Probed:
    """A provider whose answer to a probe is scripted: fails ``failures`` times, then answers."""

    name = "echo"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        return []

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        self.calls.append(credential.id)
        if len(self.calls) <= self.failures:
            raise _refusal(401)
        return ChatResponse(id="p", model=upstream_model, created=0, content=(TextBlock(text="hi"),),
                            finish_reason="stop", usage=Usage())

    def stream(self, req: ChatRequest, *, upstream_model: str,
               credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        raise AssertionError("a probe does not stream")

    async def close(self) -> None:
        return None


async def test_a_disabled_credential_is_probed_with_a_growing_delay_and_comes_back() -> None:
    pool = CredentialPool("echo", (A, B))
    catalog = Catalog([echo.SPEC], [ProviderConfig(name="echo", kind="echo")])
    provider = Probed(failures=2)
    now = [0.0]
    recovery = CredentialRecovery(lambda: ({"echo": provider}, {"echo": pool}, catalog),  # type: ignore[dict-item]
                                  first_delay=30, max_delay=100, clock=lambda: now[0])
    await pool.failed(_lease(A), _refusal(401))
    assert await recovery.run_once() == [] and provider.calls == []  # not due before the first delay
    now[0] = 30
    assert await recovery.run_once() == [] and provider.calls == ["a"]  # fails: next in 60 s
    now[0] = 80
    assert await recovery.run_once() == [] and provider.calls == ["a"]
    now[0] = 90
    assert await recovery.run_once() == [] and provider.calls == ["a", "a"]  # fails: next in 100 s (the cap)
    now[0] = 190
    assert await recovery.run_once() == ["a"] and provider.calls == ["a", "a", "a"]
    assert await _disabled(pool) == set()
    lease = await pool.acquire(pin="a")  # it serves again
    await pool.release(lease)
