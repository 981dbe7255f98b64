"""The deterministic ``echo`` test model: answers without any upstream.

It repeats the last user message word by word. Lines of that message written as commands
change what it does, so end-to-end tests get predictable tool calls and reasoning:

- ``/tool NAME {json}``: call tool NAME (one of the request's tools) with these arguments;
  several lines give parallel calls.
- ``/think TEXT``: emit TEXT as reasoning before the answer.

Usage is counted in whitespace-separated words: input = words of every message, output =
words answered plus argument chunks. ``max_tokens`` truncates (finish ``length``); ``stop``
sequences cut the answer. The stream sends every event as a list of its own, as an upstream
whose every read holds one event.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator

from tollway.core.catalog import Credential, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.chat import (
    Block,
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextBlock,
    TextDelta,
    ToolCallBlock,
    ToolCallDelta,
    ToolCallStart,
    ToolResultBlock,
    Usage,
    UsageReport,
    text_of,
)
from tollway.core.names import PROVIDER_ECHO
from tollway.providers.base import ProviderContext

SPEC = ProviderSpec(
    name=PROVIDER_ECHO,
    kind=PROVIDER_ECHO,
    features=frozenset({"chat", "stream", "tools", "reasoning", "usage"}),
    models=(
        ModelInfo(
            id="echo", provider=PROVIDER_ECHO, upstream_id="echo", display_name="Echo (test model)",
            description="Deterministic test model: streams back the last user message.",
            capabilities=("chat", "tools", "reasoning"), tags=("test",),
            meta={"test": True, "note": "deterministic test model; see README, 'The echo model'"},
        ),
    ),
)

_WORDS = re.compile(r"\S+\s*")
_ARG_CHUNK = 8


def _words(text: str) -> list[str]:
    return _WORDS.findall(text)


def _count(messages: tuple[Message, ...]) -> int:
    n = 0
    for m in messages:
        for b in m.content:
            if isinstance(b, TextBlock):
                n += len(b.text.split())
            elif isinstance(b, ToolResultBlock):
                n += sum(len(p.text.split()) for p in b.content if isinstance(p, TextBlock))
            elif isinstance(b, ToolCallBlock):
                n += 1 + len(b.arguments) // _ARG_CHUNK
    return max(n, 1)


class _Plan:
    """What echo answers to one request, computed once for both complete and stream."""

    def __init__(self, req: ChatRequest) -> None:
        last = req.messages[-1]
        tool_names = {t.name for t in req.tools}
        self.reasoning: list[str] = []
        self.calls: list[tuple[str, str]] = []
        lines: list[str] = []
        if last.role == "tool":
            parts = [p.text for b in last.content if isinstance(b, ToolResultBlock)
                     for p in b.content if isinstance(p, TextBlock)]
            lines.append("tool result: " + " ".join(parts))
        else:
            user = next((m for m in reversed(req.messages) if m.role == "user"), last)
            for line in text_of(user).splitlines() or [""]:
                head, _, rest = line.partition(" ")
                if head == "/think":
                    self.reasoning.append(rest)
                    continue
                if head == "/tool" and req.tool_choice is not None and req.tool_choice.mode == "none":
                    continue
                if head == "/tool":
                    name, _, args = rest.strip().partition(" ")
                    if name in tool_names:
                        self.calls.append((name, args.strip() or "{}"))
                        continue
                lines.append(line)
        text = "\n".join(lines)
        self.finish: FinishReason = "tool_calls" if self.calls else "stop"
        for stop in req.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        words = _words(text)
        if req.max_tokens is not None and len(words) > req.max_tokens:
            words = words[: req.max_tokens]
            self.finish = "length"
        self.words = words
        self.input_tokens = _count(req.messages)
        self.id = "chatcmpl-echo-" + secrets.token_hex(8)
        self.created = int(time.time())

    def arg_chunks(self, args: str) -> Iterator[str]:
        for i in range(0, len(args), _ARG_CHUNK):
            yield args[i : i + _ARG_CHUNK]

    def usage(self) -> Usage:
        out = len(self.words) + sum(len(list(self.arg_chunks(a))) for _, a in self.calls)
        reasoning = sum(len(r.split()) for r in self.reasoning)
        return Usage(input_tokens=self.input_tokens, output_tokens=out + reasoning, reasoning_tokens=reasoning)

    def call_id(self, i: int) -> str:
        return f"call_echo_{i}"


class EchoProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name

    def unsupported(self, req: ChatRequest, *, upstream_model: str) -> list[str]:
        return []  # echo reads every field it understands and ignores the rest by design

    async def complete(self, req: ChatRequest, *, upstream_model: str, credential: Credential) -> ChatResponse:
        plan = _Plan(req)
        blocks: list[Block] = [ReasoningBlock(text="\n".join(plan.reasoning))] if plan.reasoning else []
        text = "".join(plan.words)
        if text or not plan.calls:
            blocks.append(TextBlock(text=text))
        blocks.extend(ToolCallBlock(id=plan.call_id(i), name=n, arguments=a) for i, (n, a) in enumerate(plan.calls))
        return ChatResponse(id=plan.id, model=req.model, created=plan.created, content=tuple(blocks),
                            finish_reason=plan.finish, usage=plan.usage())

    async def stream(self, req: ChatRequest, *, upstream_model: str,
                     credential: Credential) -> AsyncIterator[list[StreamEvent]]:
        plan = _Plan(req)
        yield [StreamStart(id=plan.id, model=req.model, created=plan.created)]
        for i, r in enumerate(plan.reasoning):
            if i:
                yield [ReasoningDelta(text="\n")]
            for w in _words(r):
                yield [ReasoningDelta(text=w)]
        for w in plan.words:
            yield [TextDelta(text=w)]
        for i, (name, args) in enumerate(plan.calls):
            yield [ToolCallStart(index=i, id=plan.call_id(i), name=name)]
            for piece in plan.arg_chunks(args):
                yield [ToolCallDelta(index=i, arguments=piece)]
        yield [Finish(reason=plan.finish)]
        yield [UsageReport(usage=plan.usage())]

    async def close(self) -> None:
        return None


def build(config: ProviderConfig, ctx: ProviderContext) -> EchoProvider:
    return EchoProvider(config)
