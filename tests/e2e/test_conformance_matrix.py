"""One scenario suite over every registered provider, through a real gateway process.

Each provider declares its features in its spec (``ProviderSpec.features``); the suite runs
exactly those scenarios against it and fails if a registered provider declares none. Providers
that speak OpenAI's wire are pointed at the fake OpenAI server here; ``echo`` answers by itself.
Providers with a wire of their own (Anthropic, Gemini, Bedrock) run the same scenarios, and
more, against their own fakes in ``test_pairing_matrix``, for both client dialects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.test_pairing_matrix import KINDS as PAIRING_KINDS
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI
from tollway.core.names import PROVIDER_ECHO
from tollway.providers.kinds import SPECS

SCENARIOS = ("chat", "stream", "tools", "reasoning", "usage", "errors", "images")
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {
    "q": {"type": "string"}}}}}
OWN_WIRE = frozenset({"anthropic", "gemini", "bedrock"})  # covered with their own fakes by the pairing matrix
OPENAI_WIRE = [spec for spec in SPECS if spec.kind not in OWN_WIRE]
MATRIX = [(spec.kind, feature) for spec in OPENAI_WIRE for feature in sorted(spec.features)]


def test_every_registered_provider_declares_scenarios() -> None:
    assert SPECS
    for spec in SPECS:
        assert spec.features, f"provider {spec.kind} declares no conformance scenarios"
        assert spec.features <= set(SCENARIOS), f"{spec.kind} declares unknown scenarios"
        if spec.kind in OWN_WIRE:
            assert spec.kind in PAIRING_KINDS, f"{spec.kind} has its own wire but no place in the pairing matrix"


@pytest.fixture(scope="module")
def matrix_gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    creds = [{"id": "m", "api_key": UPSTREAM_SECRET}]
    providers = [{"name": f"m-{spec.kind}", "kind": spec.kind, "credentials": creds,
                  "base_url": fake.base_url.removesuffix("/v1") if spec.kind == "ollama" else fake.base_url}
                 for spec in OPENAI_WIRE if spec.kind != PROVIDER_ECHO]
    gw = GatewayProcess(tmp_path_factory.mktemp("matrix"), config={"providers": providers},
                        env={"TOLLWAY_FIRST_BYTE_TIMEOUT": "5"}).start()
    yield gw
    gw.stop()


class Case:
    """One provider under test: which model to call, and how to script what it answers."""

    def __init__(self, kind: str, scenario: str, fake: FakeOpenAI) -> None:
        self.kind, self.fake = kind, fake
        self.upstream = f"matrix-{kind}-{scenario}"
        self.model = "echo" if kind == PROVIDER_ECHO else f"m-{kind}/{self.upstream}"

    def answer(self, behavior: Behavior, echo_prompt: str) -> str:
        """Script the upstream (or pick the echo prompt); return the prompt to send."""
        if self.kind == PROVIDER_ECHO:
            return echo_prompt
        self.fake.script(self.upstream, behavior)
        return "question"

    def sent(self) -> dict[str, Any]:
        return self.fake.seen(self.upstream)[-1].body


def _chat(c: openai.OpenAI, case: Case) -> None:
    prompt = case.answer(Behavior(text="The answer is four."), "The answer is four.")
    resp = c.chat.completions.create(model=case.model, messages=[{"role": "system", "content": "be brief"},
                                                                 {"role": "user", "content": prompt}])
    assert resp.choices[0].message.content == "The answer is four."
    assert resp.choices[0].finish_reason == "stop"


def _stream(c: openai.OpenAI, case: Case) -> None:
    prompt = case.answer(Behavior(text="one two three four"), "one two three four")
    chunks = list(c.chat.completions.create(model=case.model, stream=True,
                                            messages=[{"role": "user", "content": prompt}]))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "one two three four"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"


def _tools(c: openai.OpenAI, case: Case) -> None:
    prompt = case.answer(Behavior(text="", tool_calls=[("lookup", '{"q": "a"}'), ("lookup", '{"q": "b"}')]),
                         '/tool lookup {"q": "a"}\n/tool lookup {"q": "b"}')
    args: dict[int, str] = {}
    for ch in c.chat.completions.create(model=case.model, stream=True, tools=[TOOL],  # type: ignore[list-item]
                                        messages=[{"role": "user", "content": prompt}]):
        for call in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
            args[call.index] = args.get(call.index, "") + ((call.function.arguments or "") if call.function else "")
    assert [json.loads(args[i]) for i in sorted(args)] == [{"q": "a"}, {"q": "b"}]


def _reasoning(c: openai.OpenAI, case: Case) -> None:
    prompt = case.answer(Behavior(text="Yes.", reasoning="Check first."), "/think Check first.\nYes.")
    msg = c.chat.completions.create(model=case.model, messages=[{"role": "user", "content": prompt}]).choices[0].message
    assert (msg.model_extra or {}).get("reasoning_content") == "Check first." and msg.content == "Yes."


def _usage(c: openai.OpenAI, case: Case) -> None:
    prompt = case.answer(Behavior(text="a b c", prompt_tokens=2), "a b c")
    chunks = list(c.chat.completions.create(model=case.model, stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": prompt}]))
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 3 and usage.total_tokens == usage.prompt_tokens + 3


def _errors(c: openai.OpenAI, case: Case) -> None:
    case.answer(Behavior(status=503, error_message="overloaded"), "")
    with pytest.raises(openai.APIStatusError) as exc:
        c.chat.completions.create(model=case.model, messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 502 and "overloaded" in exc.value.message


def _images(c: openai.OpenAI, case: Case) -> None:
    case.answer(Behavior(text="A red dot."), "")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    resp = c.chat.completions.create(model=case.model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, image]}])  # type: ignore[list-item]
    assert resp.choices[0].message.content == "A red dot."
    assert case.sent()["messages"][0]["content"][1] == image


RUN: dict[str, Callable[[openai.OpenAI, Case], None]] = {
    "chat": _chat, "stream": _stream, "tools": _tools, "reasoning": _reasoning, "usage": _usage,
    "errors": _errors, "images": _images,
}


@pytest.mark.parametrize(("kind", "scenario"), MATRIX, ids=[f"{k}-{s}" for k, s in MATRIX])
def test_scenario(kind: str, scenario: str, matrix_gateway: GatewayProcess, fake: FakeOpenAI) -> None:
    client = openai.OpenAI(api_key=matrix_gateway.create_key(), base_url=matrix_gateway.url + "/v1", max_retries=0)
    RUN[scenario](client, Case(kind, scenario, fake))
