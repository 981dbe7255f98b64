"""A bounded fuzz of every JSON surface through one real gateway: no input is a 5xx (issue 17).

Each test sends variations of a valid body of its surface (``tests/fuzz_inputs.py``): values of
other types and sizes, fields removed or added, invalid UTF-8, cut bodies, nesting past the depth
limit. Every answer must be below 500, a stream must carry no internal error, and the gateway
must log no traceback. Chat requests go to every upstream kind: passed through to the fake OpenAI
or Anthropic, translated to echo, the fake Anthropic, Gemini and Bedrock.

The runs are derandomized and small (a few seconds for the module; see ``fuzz_settings``). The
fakes are this module's own, not the session's: a pass-through forwards the client's body as it
came, so the fakes' spec checks (which the e2e conftest asserts) would only report the fuzz's garbage.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.e2e.harness import ADMIN_KEY, GatewayProcess
from tests.fakes.anthropic_server import ANTHROPIC_SECRET, FakeAnthropic
from tests.fakes.bedrock_server import ACCESS_KEY_ID, SECRET_KEY, FakeBedrock
from tests.fakes.gemini_server import GEMINI_KEY, FakeGemini
from tests.fakes.oauth_server import FakeOAuth
from tests.fakes.openai_server import UPSTREAM_SECRET, FakeOpenAI
from tests.fuzz_inputs import (
    ANTHROPIC_MESSAGES,
    CHAT_MODELS,
    CITY_MEDIA,
    CITY_TEXT,
    COMPLETIONS,
    EMBEDDINGS,
    IMAGES,
    MODERATIONS,
    OPENAI_CHAT,
    RESPONSES,
    SPEECH,
    VIDEOS,
    bodies,
    fuzz_settings,
)

FUZZ = fuzz_settings(12)

# --- the gateway -----------------------------------------------------------------------------


class Fuzzed:
    """The gateway under fuzz, a user key of it, and a client that posts raw bodies."""

    def __init__(self, gw: GatewayProcess, key: str) -> None:
        self.gw, self.key = gw, key
        self.http = httpx.Client(base_url=gw.url, timeout=30)
        self._ips = itertools.count()

    def post(self, path: str, raw: bytes, token: str | None, ip: str | None = None) -> httpx.Response:
        """``raw`` to ``path``, from ``ip`` or else an address of its own (the login throttles count
        per address: a fuzzed guest stays below them)."""
        n = next(self._ips)
        headers = {"content-type": "application/json", "anthropic-version": "2023-06-01",
                   "X-Forwarded-For": ip or f"10.77.{n // 250 % 250}.{n % 250 + 1}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post(path, content=raw, headers=headers)


@pytest.fixture(scope="module")
def fz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    fakes = [FakeOpenAI(), FakeAnthropic(), FakeGemini(), FakeBedrock(), FakeOAuth()]
    for f in fakes:
        f.start()
    openai, anthropic, gemini, bedrock, oauth = fakes
    config = {"providers": [{"name": "spare", "kind": "openai_compatible", "base_url": openai.base_url,
                             "credentials": [{"id": "spare-1", "api_key": UPSTREAM_SECRET}]}],
              "models": [{"id": "spare-chat", "provider": "spare", "upstream_id": "spare-chat"}]}
    gw = GatewayProcess(tmp_path_factory.mktemp("fuzz"), config=config, env={
        "OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": openai.base_url,
        "ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "ANTHROPIC_BASE_URL": anthropic.base_url,
        "GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": gemini.base_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
        "BEDROCK_BASE_URL": bedrock.base_url, "TOLLWAY_FIRST_BYTE_TIMEOUT": "10",
        "TOLLWAY_MAX_BODY_BYTES": "2000000", "TOLLWAY_TRUSTED_PROXIES": "127.0.0.1", **oauth.env()}).start()
    try:
        fuzzed = Fuzzed(gw, gw.create_key("fuzz"))
        yield fuzzed
        fuzzed.http.close()
    finally:
        gw.stop()
        for f in fakes:
            f.stop()


@pytest.fixture(autouse=True)
def _no_tracebacks(fz: Fuzzed) -> Iterator[None]:
    logged = len(fz.gw.output())
    yield
    log = fz.gw.output()[logged:]
    assert "Traceback" not in log, log[-4000:]


def check(r: httpx.Response, raw: bytes) -> None:
    shown = raw[:300]
    assert r.status_code < 500, (r.status_code, r.text[:500], shown)
    assert "internal_error" not in r.text, (r.text[:500], shown)  # an in-stream error frame included


# --- the surfaces --------------------------------------------------------------------------------


# the platform door (/api/v1) shares the OpenAI codec: one model is enough there
CHAT_DOORS = [("/v1/chat/completions", m) for m in CHAT_MODELS] + [("/api/v1/chat/completions", "echo")]


@pytest.mark.parametrize(("path", "model"), CHAT_DOORS, ids=[f"{p}-{m}" for p, m in CHAT_DOORS])
def test_openai_chat(fz: Fuzzed, path: str, model: str) -> None:
    @FUZZ
    @given(st.booleans(), st.data())
    def run(stream: bool, data: st.DataObject) -> None:
        raw = data.draw(bodies({**OPENAI_CHAT, "model": model, "stream": stream}))
        check(fz.post(path, raw, fz.key), raw)

    run()


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_responses(fz: Fuzzed, model: str) -> None:
    @FUZZ
    @given(st.booleans(), st.data())
    def run(stream: bool, data: st.DataObject) -> None:
        raw = data.draw(bodies({**RESPONSES, "model": model, "stream": stream}))
        check(fz.post("/v1/responses", raw, fz.key), raw)

    run()


# openai/...: OpenAI's completions endpoint (pass-through); the others translated to chat
@pytest.mark.parametrize("model", ["openai/gpt-3.5-turbo-instruct", *CHAT_MODELS[1:]])
def test_completions(fz: Fuzzed, model: str) -> None:
    @FUZZ
    @given(st.booleans(), st.data())
    def run(stream: bool, data: st.DataObject) -> None:
        raw = data.draw(bodies({**COMPLETIONS, "model": model, "stream": stream}))
        check(fz.post("/v1/completions", raw, fz.key), raw)

    run()


@pytest.mark.parametrize("model", ["omni-moderation-latest", "echo"])  # forwarded; refused (no endpoint)
def test_moderations(fz: Fuzzed, model: str) -> None:
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(bodies({**MODERATIONS, "model": model}))
        check(fz.post("/v1/moderations", raw, fz.key), raw)

    run()


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_anthropic_messages(fz: Fuzzed, model: str) -> None:
    @FUZZ
    @given(st.booleans(), st.data())
    def run(stream: bool, data: st.DataObject) -> None:
        raw = data.draw(bodies({**ANTHROPIC_MESSAGES, "model": model, "stream": stream}))
        check(fz.post("/v1/messages", raw, fz.key), raw)

    run()


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-5", "echo"])
def test_anthropic_count_tokens(fz: Fuzzed, model: str) -> None:
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(bodies({**ANTHROPIC_MESSAGES, "model": model}))
        check(fz.post("/v1/messages/count_tokens", raw, fz.key), raw)

    run()


@pytest.mark.parametrize("path", ["/v1/ai/text", "/v1/ai/stream"])
def test_city_ai(fz: Fuzzed, path: str) -> None:
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(bodies(CITY_TEXT))
        check(fz.post(path, raw, fz.key), raw)

    run()


# the media surfaces: forwarded to the fake OpenAI, translated to Gemini and Bedrock; tasks
MEDIA = [("/v1/embeddings", EMBEDDINGS, m) for m in ("text-embedding-3-small", "gemini-embedding-001",
                                                      "bedrock/titan-embed-text-v2")] + [
    ("/v1/images/generations", IMAGES, m) for m in ("dall-e-2", "bedrock/nova-canvas", "gemini-2.5-flash-image")] + [
    ("/v1/audio/speech", SPEECH, m) for m in ("tts-1", "gemini-2.5-flash-preview-tts")] + [
    ("/api/v1/images/generations", IMAGES, "dall-e-2"), ("/v1/videos", VIDEOS, "sora-2"),
    ("/v1/ai/image", CITY_MEDIA, "dall-e-2"), ("/v1/ai/tts", CITY_MEDIA, "tts-1"),
    ("/v1/ai/asr", CITY_MEDIA, "whisper-1")]


@pytest.mark.parametrize(("path", "base", "model"), MEDIA, ids=[f"{p}-{m}" for p, _, m in MEDIA])
def test_media(fz: Fuzzed, path: str, base: dict[str, Any], model: str) -> None:
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(bodies({**base, "model": model}))
        check(fz.post(path, raw, fz.key), raw)

    run()


GUEST_SURFACES = [
    ("/admin/login", {"admin_key": ADMIN_KEY, "expire_hours": 1}),
    ("/v1/accounts/login", {"email": "nobody@example.com", "password": "correct horse battery"}),
    ("/v1/accounts/oauth/start", {"provider": "github", "studio_id": None}),
]


@pytest.mark.parametrize(("path", "base"), GUEST_SURFACES, ids=[p for p, _ in GUEST_SURFACES])
def test_guest_surfaces(fz: Fuzzed, path: str, base: dict[str, Any]) -> None:
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(bodies(base))
        check(fz.post(path, raw, None), raw)

    run()


# last: these write (keys, models, accounts of the ``spare`` provider) and must not change what
# the surfaces above see
ADMIN_SURFACES = [
    ("/admin/test", {"model": "echo", "message": "hi"}),
    ("/admin/accounts", {"email": "fuzz@example.com", "password": "pw", "token": "tok", "provider": "spare"}),
    ("/admin/accounts/test", {"identifier": "spare-1", "model": "spare-chat", "message": "hi", "provider": "spare"}),
    ("/admin/config", {"keys": [], "accounts": [{"email": "c@example.com", "token": "t"}], "provider": "spare"}),
    ("/admin/import", {"keys": ["tw-imported-0123456789abcdef"], "accounts": [{"id": "i-1", "api_key": "k"}],
                       "provider": "spare"}),
    ("/admin/api-key/apply", {"name": "fuzz", "role": "user", "email": "f@example.com", "balance": 5,
                              "rpm": 100, "models": ["echo"]}),
    ("/admin/model/save", {"name": "fuzz-model", "provider": "echo", "upstream_id": "echo", "display_name": "F",
                           "config": {"modelId": "echo"}}),
    ("/admin/group/save", {"name": "fuzz-group", "description": "g", "multiplier": 1}),
    ("/v1/studios/create", {"name": "Fuzz studio"}),
]


@pytest.mark.parametrize(("path", "base"), ADMIN_SURFACES, ids=[p for p, _ in ADMIN_SURFACES])
def test_admin_surfaces(fz: Fuzzed, path: str, base: dict[str, Any]) -> None:
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(bodies(base))
        check(fz.post(path, raw, ADMIN_KEY, ip="10.1.2.3"), raw)

    run()
