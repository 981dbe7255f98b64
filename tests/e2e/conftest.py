from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import GatewayProcess, fake_config
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import UPSTREAM_SECRET, FakeOpenAI

FAKES = ("fake", "fake_anthropic", "fake_gemini", "fake_bedrock")


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_gemini() -> Iterator[FakeGemini]:
    server = FakeGemini()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_bedrock() -> Iterator[FakeBedrock]:
    server = FakeBedrock()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def admin(gw: GatewayProcess) -> Iterator[httpx.Client]:
    """An admin-key client of the module's own ``gw`` gateway."""
    with gw.admin() as client:
        yield client


@pytest.fixture(autouse=True)
def _no_spec_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test: each fake upstream it used saw and sent only spec-conforming payloads."""
    servers = [request.getfixturevalue(name) for name in FAKES if name in request.fixturenames]
    before = [len(s.spec_errors) for s in servers]
    yield
    for server, n in zip(servers, before, strict=True):
        assert server.spec_errors[n:] == [], type(server).__name__


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("gw")
    gw = GatewayProcess(
        workdir,
        config=fake_config(fake.base_url, UPSTREAM_SECRET),
        env={"OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url,
             "TOLLWAY_FIRST_BYTE_TIMEOUT": "1.5", "TOLLWAY_IDLE_TIMEOUT": "1.5",
             "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1", "TOLLWAY_MAX_BODY_BYTES": "200000"},
    ).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def user_key(gateway: GatewayProcess) -> str:
    return gateway.create_key("e2e-user")
