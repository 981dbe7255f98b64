from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess, fake_config
from tests.fakes.openai_server import UPSTREAM_SECRET, FakeOpenAI


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_spec_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test: the fake upstream saw and sent only spec-conforming payloads."""
    if "fake" not in request.fixturenames:
        yield
        return
    server: FakeOpenAI = request.getfixturevalue("fake")
    before = len(server.spec_errors)
    yield
    assert server.spec_errors[before:] == []


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
