"""Real clients of the Responses API against ``tollway serve``: OpenAI's Codex CLI, the OpenAI Agents
SDK and the Vercel AI SDK, each through a tool-using turn, as a new user would run them.

The upstream is the fake OpenAI chat server (a translated path: ``openai_compatible`` without
``responses_path``), the same fake with its Responses API (``responses_path``, a pass-through), or the
``echo`` model, whose ``/tool NAME {json}`` and ``/think TEXT`` lines make deterministic tool calls and
reasoning. A tool loop needs an upstream that answers a tool call first and text after it:
``script_turns`` gives the fake one ``Behavior`` per request.

The Node clients (``tests/e2e/clients/package.json``, versions pinned by its lock file) are installed
once per machine into ``$TOLLWAY_CLIENTS_CACHE`` (default ``<tmp>/tollway-e2e-clients``), keyed by the
lock file; their tests skip when ``node``/``npm`` are missing or the install fails. Codex runs with
a ``CODEX_HOME`` and ``HOME`` of the test's own, with analytics, plugins, apps and web search off, so
that nothing but the gateway on 127.0.0.1 is contacted. The Agents SDK tests skip when ``agents``
(the ``openai-agents`` package, in the test extras) is not importable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import GatewayProcess, fake_config
from tests.fakes.openai_server import UPSTREAM_SECRET, Behavior, FakeOpenAI

CLIENTS = Path(__file__).parent / "clients"
CACHE = Path(os.environ.get("TOLLWAY_CLIENTS_CACHE") or Path(tempfile.gettempdir()) / "tollway-e2e-clients")
NPM_TIMEOUT = 300

# the gateway's models -> the fake's upstream model names (unique to this module: scripts don't collide)
MODELS = {
    "codex-chat": "clients-codex",  # translated: the fake's chat completions
    "agents-chat": "clients-agents",
    "agents-pass": "clients-agents-pass",  # pass-through: the fake's Responses API
}


# --- the gateway and the fake -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = fake_config(fake.base_url, UPSTREAM_SECRET)
    config["providers"].append({"name": "fake-responses", "kind": "openai_compatible", "base_url": fake.base_url,
                                "options": {"responses_path": "/responses"},
                                "credentials": [{"id": "fake-r1", "api_key": UPSTREAM_SECRET}]})
    for model, upstream in MODELS.items():
        provider = "fake-responses" if model.endswith("-pass") else "fake"
        config["models"].append({"id": model, "provider": provider, "upstream_id": upstream})
    config["aliases"]["gpt-5.5"] = "codex-chat"  # a name Codex knows: it then declares its newer tool kinds
    gateway = GatewayProcess(tmp_path_factory.mktemp("gw-clients"), config=config,
                             env={"TOLLWAY_LOG_FLUSH_INTERVAL": "0.1"}).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayProcess) -> str:
    return gw.create_key("clients")


def script_turns(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI, model: str,
                 *turns: Behavior | Callable[[dict[str, Any]], Behavior]) -> None:
    """Answer the n-th request for upstream ``model`` (from now on) with ``turns[n]`` (the last one
    once they run out). A callable turn gets the request body (to answer with the tools it declares)."""
    original = fake._behavior
    start = len(fake.seen(model))

    def behavior(request: Any, name: str) -> Behavior:
        if name != model:
            return original(request, name)
        seen = fake.seen(model)  # this request is already recorded
        turn = turns[min(len(seen) - start, len(turns)) - 1]
        return turn(seen[-1].body) if callable(turn) else turn

    monkeypatch.setattr(fake, "_behavior", behavior)


def chat_requests(fake: FakeOpenAI, model: str) -> list[dict[str, Any]]:
    return [s.body for s in fake.seen(model, "/v1/chat/completions")]


# --- Node clients ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """``node_modules`` of ``tests/e2e/clients`` installed (once per lock file) into the cache dir."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Codex CLI and Vercel AI SDK tests (not on PATH)")
    lock = (CLIENTS / "package-lock.json").read_bytes()
    home = CACHE / hashlib.sha256((CLIENTS / "package.json").read_bytes() + lock).hexdigest()[:16]
    if (home / ".installed").exists():
        return home
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="install-", dir=CACHE))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(CLIENTS / name, staging / name)
        try:
            proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=staging,
                                  capture_output=True, text=True, timeout=NPM_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm ci of tests/e2e/clients took over {NPM_TIMEOUT} s (is the npm registry reachable?)")
        if proc.returncode != 0:
            pytest.skip(f"npm ci of tests/e2e/clients failed ({proc.returncode}): {proc.stderr[-800:]}")
        (staging / ".installed").touch()
        try:
            staging.rename(home)
        except OSError:  # another run installed it meanwhile
            if not (home / ".installed").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


# --- Codex CLI ---------------------------------------------------------------------------------


@dataclass
class CodexRun:
    returncode: int
    events: list[dict[str, Any]]  # --json: one event per stdout line
    stderr: str
    last_message: str  # -o: the agent's final message
    workdir: Path

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [e["item"] for e in self.events if e.get("type") == "item.completed" and e["item"]["type"] == kind]

    def describe(self) -> str:
        return f"codex exited {self.returncode}\nevents: {self.events}\nstderr: {self.stderr[-2000:]}"


def codex_config(base_url: str, model: str, *, multi_agent: bool = False, drop_header: bool = False) -> str:
    """A ``CODEX_HOME/config.toml``: the gateway as a custom provider on the Responses wire. Web search
    is a built-in tool (OpenAI runs it) that a translated upstream cannot: it is off, unless
    ``drop_header`` (Codex's default, web search on, with the gateway told to drop what the upstream
    cannot run); analytics, plugins and apps would reach chatgpt.com and github.com; no retries, so
    that a failure is seen at once. Sub-agents (on by default) are off unless ``multi_agent``."""
    agents = "" if multi_agent else "\n[agents]\nenabled = false\n"
    search = "" if drop_header else 'web_search = "disabled"'
    headers = 'http_headers = { "x-tollway-drop-params" = "true" }' if drop_header else ""
    return f"""\
model = "{model}"
model_provider = "tollway"
{search}
check_for_update_on_startup = false

[analytics]
enabled = false

{agents}
[features]
plugins = false
remote_plugin = false
apps = false

[model_providers.tollway]
name = "tollway"
base_url = "{base_url}"
env_key = "TOLLWAY_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
{headers}
"""


def run_codex(node_clients: Path, tmp_path: Path, gw: GatewayProcess, key: str, prompt: str, *, model: str,
              multi_agent: bool = False, drop_header: bool = False) -> CodexRun:
    home, codex_home, work = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(gw.url + "/v1", model, multi_agent=multi_agent,
                                                         drop_header=drop_header))
    last = tmp_path / "last-message.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_", "TOLLWAY_"))}
    env.update({"HOME": str(home), "CODEX_HOME": str(codex_home), "TOLLWAY_KEY": key, "NO_COLOR": "1"})
    proc = subprocess.run(
        [str(node_clients / "node_modules" / ".bin" / "codex"), "exec", "--skip-git-repo-check", "--ephemeral",
         "--json", "--dangerously-bypass-approvals-and-sandbox", "-C", str(work), "-o", str(last), prompt],
        cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return CodexRun(proc.returncode, events, proc.stderr, last.read_text() if last.exists() else "", work)


def shell_call(body: dict[str, Any], script: str) -> tuple[str, str]:
    """A call of the shell tool that Codex declared in ``body`` (a chat request), running ``script``."""
    tools = {t["function"]["name"]: t["function"] for t in body.get("tools") or []}
    if "exec_command" in tools:  # unified exec: {"cmd": "..."}
        return "exec_command", json.dumps({"cmd": script})
    if "shell" in tools:  # the older shell tool: {"command": ["bash", "-lc", "..."]}
        return "shell", json.dumps({"command": ["bash", "-lc", script]})
    raise AssertionError(f"Codex declared no shell tool; its tools: {sorted(tools)}")


def test_codex_runs_a_shell_command_through_the_gateway(node_clients: Path, gw: GatewayProcess, key: str,
                                                        fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    upstream = MODELS["codex-chat"]
    script_turns(
        monkeypatch, fake, upstream,
        lambda body: Behavior(text="", reasoning="I will write the file with a shell command.",
                              tool_calls=[shell_call(body, "echo hi from codex > out.txt")]),
        Behavior(text="I created out.txt for you.", reasoning="The command succeeded."),
    )
    run = run_codex(node_clients, tmp_path, gw, key, "Create out.txt saying hi.", model="codex-chat")

    assert run.returncode == 0, run.describe()
    assert (run.workdir / "out.txt").read_text() == "hi from codex\n"
    [command] = run.items("command_execution")
    assert command["exit_code"] == 0 and "echo hi from codex > out.txt" in command["command"]
    assert [r["text"] for r in run.items("reasoning")] == ["I will write the file with a shell command.",
                                                           "The command succeeded."]
    assert [m["text"] for m in run.items("agent_message")] == ["I created out.txt for you."]
    assert run.last_message.strip() == "I created out.txt for you."
    assert any(e["type"] == "turn.completed" for e in run.events)

    # upstream: the first request has the prompt; the second the call and its output (translated to chat)
    first, second = chat_requests(fake, upstream)[-2:]
    assert first["stream"] is True and first["messages"][-1] == {"role": "user", "content": "Create out.txt saying hi."}
    name, arguments = shell_call(first, "echo hi from codex > out.txt")
    [call] = next(m for m in second["messages"] if m.get("tool_calls"))["tool_calls"]
    assert call["function"]["name"] == name and json.loads(call["function"]["arguments"]) == json.loads(arguments)
    output = second["messages"][-1]
    assert output["role"] == "tool" and output["tool_call_id"] == call["id"]
    assert "exited with code 0" in output["content"]


PATCH = """*** Begin Patch
*** Add File: hello.txt
+hello from apply_patch
*** End Patch"""


def test_codex_applies_a_patch_with_its_custom_tool(node_clients: Path, gw: GatewayProcess, key: str,
                                                    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """For a model it knows (gpt-5.5, an alias here) Codex declares apply_patch as a custom tool
    (free-form input held to a grammar): the upstream gets a function of one string, ``input``."""
    upstream = MODELS["codex-chat"]

    def patch_call(body: dict[str, Any]) -> Behavior:
        tools = {t["function"]["name"]: t["function"] for t in body.get("tools") or []}
        assert tools["apply_patch"]["parameters"]["properties"] == {"input": {"type": "string"}}, tools
        return Behavior(text="", tool_calls=[("apply_patch", json.dumps({"input": PATCH}))])

    script_turns(monkeypatch, fake, upstream, patch_call, Behavior(text="Added hello.txt."))
    run = run_codex(node_clients, tmp_path, gw, key, "Add hello.txt.", model="gpt-5.5")

    assert run.returncode == 0, run.describe()
    assert (run.workdir / "hello.txt").read_text() == "hello from apply_patch\n"
    [change] = run.items("file_change")
    assert change["status"] == "completed" and [c["kind"] for c in change["changes"]] == ["add"], change
    assert run.last_message.strip() == "Added hello.txt."
    second = chat_requests(fake, upstream)[-1]
    [call] = next(m for m in second["messages"] if m.get("tool_calls"))["tool_calls"]
    assert call["function"]["name"] == "apply_patch" and json.loads(call["function"]["arguments"]) == {"input": PATCH}
    assert second["messages"][-1]["role"] == "tool" and second["messages"][-1]["tool_call_id"] == call["id"]


def test_codex_with_web_search_on_and_the_drop_header(node_clients: Path, gw: GatewayProcess, key: str,
                                                      fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """Codex's default web search is an OpenAI-hosted tool: with ``x-tollway-drop-params`` (Codex's
    ``http_headers``) a translated upstream gets the request without it, and the log names it."""
    script_turns(monkeypatch, fake, MODELS["codex-chat"], Behavior(text="Searched nothing."))
    run = run_codex(node_clients, tmp_path, gw, key, "Say hello.", model="codex-chat", drop_header=True)
    assert run.returncode == 0, run.describe()
    assert run.last_message.strip() == "Searched nothing."
    body = chat_requests(fake, MODELS["codex-chat"])[-1]
    assert "web_search" not in json.dumps([t["function"]["name"] for t in body.get("tools") or ()])


def test_codex_with_its_default_multi_agent_tools(node_clients: Path, gw: GatewayProcess, key: str,
                                                  fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    script_turns(monkeypatch, fake, MODELS["codex-chat"], Behavior(text="Hello from the gateway."))
    run = run_codex(node_clients, tmp_path, gw, key, "Say hello.", model="codex-chat", multi_agent=True)
    assert run.returncode == 0, run.describe()
    assert run.last_message.strip() == "Hello from the gateway."


# --- Vercel AI SDK -----------------------------------------------------------------------------


def run_ai_sdk(node_clients: Path, gw: GatewayProcess, key: str, model: str, *scenarios: str) -> dict[str, Any]:
    script = node_clients / "ai_sdk.mjs"
    shutil.copy(CLIENTS / "ai_sdk.mjs", script)  # ES modules resolve packages from the script's folder
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    proc = subprocess.run(["node", str(script), gw.url + "/v1", key, model, *scenarios], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {r["scenario"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == set(scenarios), proc.stdout
    return results


def test_ai_sdk_generate_tools_and_stream(node_clients: Path, gw: GatewayProcess, key: str) -> None:
    r = run_ai_sdk(node_clients, gw, key, "echo", "generate", "tools", "stream", "reasoningToolsUnstored")
    assert r["generate"]["text"] == "hello from the ai sdk" and r["generate"]["finishReason"] == "stop", r
    assert r["generate"]["id"].startswith("resp_") and r["generate"]["usage"] > 0
    assert r["tools"] == {"scenario": "tools", "text": "tool result: sunny in Paris", "steps": 2, "calls": ["Paris"]}
    stream = r["stream"]
    assert stream["text"] == "tool result: sunny in Oslo" and stream["calls"] == ["Oslo"], stream
    assert stream["finishReason"] == "stop"
    assert {"tool-input-delta", "tool-call", "tool-result", "text-delta", "finish"} <= set(stream["parts"])
    unstored = r["reasoningToolsUnstored"]
    assert unstored["text"] == "tool result: sunny in Rome" and unstored["reasoning"] == "I need the weather", r


def test_ai_sdk_tool_loop_after_reasoning(node_clients: Path, gw: GatewayProcess, key: str) -> None:
    r = run_ai_sdk(node_clients, gw, key, "echo", "reasoningTools")["reasoningTools"]
    assert r.get("error") is None, r
    assert r["text"] == "tool result: sunny in Rome" and r["calls"] == ["Rome"]


# --- OpenAI Agents SDK ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def weather_agent(gw: GatewayProcess, key: str, model: str,
                        prefix: str = "/v1") -> AsyncIterator[tuple[Any, list[str], Any]]:
    """An Agent on ``model`` (``OpenAIResponsesModel``, the SDK's default, over the gateway) with a
    get_weather tool, the cities it was called with, and a run config without tracing (which would
    post to OpenAI). Skips without the ``openai-agents`` package."""
    agents = pytest.importorskip("agents", reason="openai-agents is not installed")
    from openai import AsyncOpenAI

    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    agents.set_tracing_disabled(True)
    async with AsyncOpenAI(base_url=gw.url + prefix, api_key=key, max_retries=0) as client:
        agent = agents.Agent(name="weather", instructions="Answer briefly.", tools=[get_weather],
                             model=agents.OpenAIResponsesModel(model=model, openai_client=client))
        yield agent, calls, agents.RunConfig(tracing_disabled=True)


def weather_turns() -> tuple[Behavior, Behavior]:
    """An upstream's two answers in a weather tool loop: reasoning and the call, then text."""
    return (Behavior(text="", reasoning="Weather needs the tool.", tool_calls=[("get_weather", '{"city":"Oslo"}')]),
            Behavior(text="It is sunny in Oslo."))


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1", "/v1/ai"])
async def test_agents_sdk_runs_a_function_tool(gw: GatewayProcess, key: str, prefix: str) -> None:
    async with weather_agent(gw, key, "echo", prefix) as (agent, calls, config):
        from agents import Runner

        result = await Runner.run(agent, '/tool get_weather {"city":"Paris"}', run_config=config)
    assert result.final_output == "tool result: sunny in Paris"
    assert calls == ["Paris"]
    assert [type(i).__name__ for i in result.new_items] == ["ToolCallItem", "ToolCallOutputItem",
                                                            "MessageOutputItem"]


async def test_agents_sdk_streamed_over_the_translated_fake(gw: GatewayProcess, key: str, fake: FakeOpenAI,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = MODELS["agents-chat"]
    script_turns(monkeypatch, fake, upstream, *weather_turns())
    async with weather_agent(gw, key, "agents-chat") as (agent, calls, config):
        from agents import Runner

        result = Runner.run_streamed(agent, "Weather in Oslo?", run_config=config)
        kinds = [e.data.type async for e in result.stream_events() if e.type == "raw_response_event"]
    assert result.final_output == "It is sunny in Oslo." and calls == ["Oslo"]
    assert kinds.count("response.completed") == 2 and "response.function_call_arguments.delta" in kinds
    assert "response.reasoning_summary_text.delta" in kinds and "response.output_text.delta" in kinds
    second = chat_requests(fake, upstream)[-1]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_0", "content": "sunny in Oslo"}


async def test_agents_sdk_continues_with_previous_response_id(gw: GatewayProcess, key: str) -> None:
    async with weather_agent(gw, key, "echo") as (agent, calls, config):
        from agents import Runner

        # the second request sends only the tool output and previous_response_id: the gateway adds the rest
        first = await Runner.run(agent, '/tool get_weather {"city":"Rome"}', run_config=config,
                                 auto_previous_response_id=True)
        assert first.final_output == "tool result: sunny in Rome" and calls == ["Rome"]
        again = await Runner.run(agent, "and once more", previous_response_id=first.last_response_id,
                                 run_config=config)
    assert again.final_output == "and once more"


async def test_agents_sdk_pass_through_reasoning_round_trip(gw: GatewayProcess, key: str, fake: FakeOpenAI,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = MODELS["agents-pass"]
    script_turns(monkeypatch, fake, upstream, *weather_turns())
    async with weather_agent(gw, key, "agents-pass") as (agent, calls, config):
        from agents import Runner

        result = await Runner.run(agent, "Weather in Oslo?", run_config=config)
    assert result.final_output == "It is sunny in Oslo." and calls == ["Oslo"]
    second = fake.seen(upstream, "/v1/responses")[-1].body
    assert second["store"] is False
    unreadable = [item for item in second["input"] if item.get("type") == "reasoning"
                  and not item.get("encrypted_content")]
    assert unreadable == [], "a reasoning item the upstream cannot read back (store: false, no encrypted_content)"
