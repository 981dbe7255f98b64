"""The deterministic echo model: answers, commands, limits, and stream/complete agreement."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tollway.core.catalog import Credential, ProviderConfig
from tollway.core.chat import (
    ChatRequest,
    ChatResponse,
    Finish,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextBlock,
    TextDelta,
    Tool,
    ToolCallBlock,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResultBlock,
    UsageReport,
)
from tollway.providers.echo import EchoProvider

CRED = Credential(id="echo:none")
TOOLS = (Tool(name="get_weather"), Tool(name="get_time"))


def user(text: str) -> Message:
    return Message(role="user", content=(TextBlock(text=text),))


def request(text: str, **kw: Any) -> ChatRequest:
    return ChatRequest(model="echo", messages=(user(text),), **kw)


@pytest.fixture
def echo() -> EchoProvider:
    return EchoProvider(ProviderConfig(name="echo", kind="echo"))


async def complete(echo: EchoProvider, req: ChatRequest) -> ChatResponse:
    return await echo.complete(req, upstream_model="echo", credential=CRED)


async def stream(echo: EchoProvider, req: ChatRequest) -> list[StreamEvent]:
    """The streamed events in order; echo sends each event as a list of its own."""
    batches = [b async for b in echo.stream(req, upstream_model="echo", credential=CRED)]
    assert all(len(b) == 1 for b in batches)
    return [e for b in batches for e in b]


def text(resp: ChatResponse) -> str:
    return "".join(b.text for b in resp.content if isinstance(b, TextBlock))


def calls(resp: ChatResponse) -> list[ToolCallBlock]:
    return [b for b in resp.content if isinstance(b, ToolCallBlock)]


def assemble(events: list[StreamEvent]) -> dict[str, Any]:
    out: dict[str, Any] = {"text": "", "reasoning": "", "calls": {}, "finish": [], "usage": []}
    for e in events:
        if isinstance(e, TextDelta):
            out["text"] += e.text
        elif isinstance(e, ReasoningDelta):
            out["reasoning"] += e.text
        elif isinstance(e, ToolCallStart):
            out["calls"][e.index] = [e.id, e.name, ""]
        elif isinstance(e, ToolCallDelta):
            out["calls"][e.index][2] += e.arguments
        elif isinstance(e, Finish):
            out["finish"].append(e.reason)
        elif isinstance(e, UsageReport):
            out["usage"].append(e.usage)
    return out


def assemble_response(resp: ChatResponse) -> dict[str, Any]:
    return {
        "text": text(resp),
        "reasoning": "".join(b.text for b in resp.content if isinstance(b, ReasoningBlock)),
        "calls": {i: [c.id, c.name, c.arguments] for i, c in enumerate(calls(resp))},
        "finish": [resp.finish_reason],
        "usage": [resp.usage],
    }


WEATHER = '/tool get_weather {"city": "Paris", "unit": "c"}'
TIME = '/tool get_time {"tz": "Europe/Paris"}'


async def test_echoes_the_last_user_message(echo: EchoProvider) -> None:
    req = ChatRequest(model="echo", messages=(
        Message(role="system", content=(TextBlock(text="be nice"),)), user("first question"),
        Message(role="assistant", content=(TextBlock(text="first answer"),)), user("hello there, world")))
    resp = await complete(echo, req)
    assert resp.content == (TextBlock(text="hello there, world"),)
    assert (resp.finish_reason, resp.model) == ("stop", "echo")
    assert resp.id.startswith("chatcmpl-echo-")


async def test_after_a_tool_result_it_reports_the_result(echo: EchoProvider) -> None:
    result = Message(role="tool", content=(ToolResultBlock(tool_call_id="c", content=(TextBlock(text="18C"),)),))
    resp = await complete(echo, ChatRequest(model="echo", messages=(user("weather?"), result)))
    assert text(resp) == "tool result: 18C"


async def test_one_tool_line_calls_that_tool(echo: EchoProvider) -> None:
    resp = await complete(echo, request(WEATHER, tools=TOOLS))
    assert resp.content == (ToolCallBlock(id="call_echo_0", name="get_weather",
                                          arguments='{"city": "Paris", "unit": "c"}'),)
    assert resp.finish_reason == "tool_calls"


async def test_several_tool_lines_are_parallel_calls_with_indexes(echo: EchoProvider) -> None:
    req = request(f"{WEATHER}\n{TIME}", tools=TOOLS)
    resp = await complete(echo, req)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in calls(resp)] == [
        ("call_echo_0", "get_weather", {"city": "Paris", "unit": "c"}),
        ("call_echo_1", "get_time", {"tz": "Europe/Paris"}),
    ]
    starts = [e for e in await stream(echo, req) if isinstance(e, ToolCallStart)]
    assert starts == [ToolCallStart(index=0, id="call_echo_0", name="get_weather"),
                      ToolCallStart(index=1, id="call_echo_1", name="get_time")]


async def test_tool_lines_for_tools_not_in_the_request_are_plain_text(echo: EchoProvider) -> None:
    resp = await complete(echo, request(f"{WEATHER}\n/tool launch_rocket {{}}", tools=(Tool(name="get_weather"),)))
    assert [c.name for c in calls(resp)] == ["get_weather"]
    assert text(resp) == "/tool launch_rocket {}"
    no_tools = await complete(echo, request(WEATHER))
    assert calls(no_tools) == [] and no_tools.finish_reason == "stop"
    assert text(no_tools) == WEATHER


async def test_a_tool_line_without_arguments_calls_with_an_empty_object(echo: EchoProvider) -> None:
    resp = await complete(echo, request("/tool get_time", tools=TOOLS))
    assert calls(resp)[0].arguments == "{}"


async def test_tool_choice_none_suppresses_calls(echo: EchoProvider) -> None:
    resp = await complete(echo, request(f"{WEATHER}\nok", tools=TOOLS, tool_choice=ToolChoice(mode="none")))
    assert calls(resp) == []
    assert resp.finish_reason == "stop"
    assert text(resp) == "ok"


async def test_think_gives_reasoning_before_the_answer(echo: EchoProvider) -> None:
    resp = await complete(echo, request("/think pondering this deeply\nthe answer"))
    assert resp.content == (ReasoningBlock(text="pondering this deeply"), TextBlock(text="the answer"))
    assert resp.usage.reasoning_tokens == 3
    events = await stream(echo, request("/think pondering this deeply\nthe answer"))
    kinds = [type(e).__name__ for e in events if isinstance(e, ReasoningDelta | TextDelta)]
    assert kinds == ["ReasoningDelta"] * 3 + ["TextDelta"] * 2


async def test_max_tokens_truncates_with_finish_length(echo: EchoProvider) -> None:
    resp = await complete(echo, request("one two three four five", max_tokens=2))
    assert text(resp).split() == ["one", "two"]
    assert resp.finish_reason == "length"
    assert resp.usage.output_tokens == 2
    exact = await complete(echo, request("one two", max_tokens=2))
    assert (text(exact), exact.finish_reason) == ("one two", "stop")


async def test_stop_sequences_cut_the_answer(echo: EchoProvider) -> None:
    resp = await complete(echo, request("alpha beta STOP gamma END delta", stop=("END", "STOP")))
    assert text(resp).strip() == "alpha beta"
    assert resp.finish_reason == "stop"
    assert text(await complete(echo, request("no stop here", stop=("XYZ",)))) == "no stop here"


CASES = {
    "plain": request("the quick brown fox\njumps over"),
    "tools": request(f"checking\n{WEATHER}\n{TIME}", tools=TOOLS),
    "think": request("/think step by step\nanswer is 4"),
    "max_tokens": request("a b c d e f", max_tokens=3),
    "stop": request("keep this STOP not this", stop=("STOP",)),
}


@pytest.mark.parametrize("req", CASES.values(), ids=CASES.keys())
async def test_stream_assembles_to_the_same_answer_and_usage_as_complete(echo: EchoProvider,
                                                                         req: ChatRequest) -> None:
    events = await stream(echo, req)
    assert isinstance(events[0], StreamStart) and events[0].model == "echo"
    assert [type(e) for e in events[-2:]] == [Finish, UsageReport]
    assert assemble(events) == assemble_response(await complete(echo, req))


async def test_usage_counts_words_in_and_words_plus_argument_chunks_out(echo: EchoProvider) -> None:
    req = request(f"checking\n{WEATHER}", tools=TOOLS)  # 7 input words; the arguments are 30 chars = 4 chunks of 8
    usage = (await complete(echo, req)).usage
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (7, 1 + 4, 0)
    deltas = [e for e in await stream(echo, req) if isinstance(e, ToolCallDelta)]
    assert len(deltas) == 4 and all(len(d.arguments) <= 8 for d in deltas)


async def test_several_think_lines_stream_the_same_reasoning_as_complete(echo: EchoProvider) -> None:
    req = request("/think first idea\n/think second idea\nanswer")
    streamed = assemble(await stream(echo, req))["reasoning"]
    assert streamed == assemble_response(await complete(echo, req))["reasoning"]
