"""Every client dialect on every upstream, through one real gateway process.

Clients: the official ``openai`` SDK (chat completions, and the Responses API) and the
``anthropic`` SDK. Upstreams: OpenAI and DeepSeek (the
fake OpenAI server), Anthropic, Gemini and Bedrock (their own fakes, each validating what it
receives against its provider's documented wire). Every provider is configured by its
environment variables, as a user would. Each scenario is written once: a ``Client`` builds
the request in its dialect and reads the answer back into a ``Result``; an ``Upstream``
scripts its fake and reads what the fake received back into a ``Received``; the assertions
compare those two neutral views.
"""

from __future__ import annotations

import base64
import itertools
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.fakes import anthropic_server, bedrock_server, gemini_server, openai_server
from tests.fakes.anthropic_server import ANTHROPIC_SECRET, FakeAnthropic
from tests.fakes.bedrock_server import ACCESS_KEY_ID, SECRET_KEY, FakeBedrock
from tests.fakes.gemini_server import GEMINI_KEY, FakeGemini
from tests.fakes.openai_server import UPSTREAM_SECRET, FakeOpenAI

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
SIGNATURE = "EqQBCkYIARgCIkDfakeSignature0123456789abcdef=="
_ids = itertools.count()


# --- what an upstream is told to answer, and what it received -----------------------------


@dataclass
class Script:
    text: str = "The answer is four."
    reasoning: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    length: bool = False  # stopped by max tokens
    status: int = 200
    error_message: str = "upstream is overloaded"
    retry_after: str | None = None
    input_tokens: int = 40  # every input token, cached ones included
    cached_tokens: int = 0


@dataclass
class Received:
    system: str = ""
    roles: list[str] = field(default_factory=list)
    text: str = ""
    images: list[tuple[str, bytes | str]] = field(default_factory=list)  # ("inline", bytes) | ("url", url)
    documents: int = 0
    tools: list[str] = field(default_factory=list)
    choice: str | None = None  # auto | required | none | <tool name>
    results: list[tuple[str, str, bool]] = field(default_factory=list)  # (call id or function name, text, error)
    signatures: list[str] = field(default_factory=list)


def _inline_or_url(url: str) -> tuple[str, bytes | str]:
    if url.startswith("data:"):
        return ("inline", base64.b64decode(url.partition(",")[2]))
    return ("url", url)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or () if isinstance(p, dict) and p.get("type") == "text")


def from_openai(b: dict[str, Any]) -> Received:
    r = Received()
    for m in b["messages"]:
        if m["role"] in ("system", "developer"):
            r.system += _text(m["content"])
            continue
        r.roles.append(m["role"])
        if m["role"] == "tool":
            r.results.append((m["tool_call_id"], _text(m["content"]), False))
            continue
        if m["role"] == "user":
            r.text += _text(m["content"])
        for p in m["content"] if isinstance(m.get("content"), list) else ():
            if p["type"] == "image_url":
                r.images.append(_inline_or_url(p["image_url"]["url"]))
            elif p["type"] == "file":
                r.documents += 1
    r.tools = [t["function"]["name"] for t in b.get("tools") or ()]
    tc = b.get("tool_choice")
    r.choice = tc["function"]["name"] if isinstance(tc, dict) else tc
    return r


def from_responses(b: dict[str, Any]) -> Received:
    """A Responses API request (an upstream with that API got the client's request as it is)."""
    r = Received(system=b.get("instructions") or "")
    items = [{"role": "user", "content": b["input"]}] if isinstance(b["input"], str) else b["input"]
    last = None
    for item in items:
        kind = item.get("type", "message")
        if kind == "message" and item["role"] in ("system", "developer"):
            r.system += _text_parts(item["content"])
            continue
        role = {"message": item.get("role"), "function_call": "assistant", "function_call_output": "tool",
                "reasoning": "assistant"}[kind]
        if role != last or role == "tool":
            r.roles.append(role)
        last = role
        if kind == "function_call_output":
            r.results.append((item["call_id"], _text_parts(item["output"]), False))
        elif kind == "message" and role == "user":
            r.text += _text_parts(item["content"])
            for p in item["content"] if isinstance(item["content"], list) else ():
                if p["type"] == "input_image":
                    r.images.append(_inline_or_url(p["image_url"]))
                elif p["type"] == "input_file":
                    r.documents += 1
    r.tools = [t["name"] for t in b.get("tools") or ()]
    tc = b.get("tool_choice")
    r.choice = tc["name"] if isinstance(tc, dict) else tc
    return r


def _text_parts(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") in ("input_text", "output_text"))


def from_anthropic(b: dict[str, Any]) -> Received:
    r = Received(system=_text(b.get("system") or ""))
    for m in b["messages"]:
        r.roles.append(m["role"])
        blocks = [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else m["content"]
        for blk in blocks:
            kind = blk["type"]
            if kind == "text" and m["role"] == "user":
                r.text += blk["text"]
            elif kind == "image":
                src = blk["source"]
                r.images.append(("inline", base64.b64decode(src["data"])) if src["type"] == "base64"
                                else ("url", src["url"]))
            elif kind == "document":
                r.documents += 1
            elif kind == "tool_result":
                r.results.append((blk["tool_use_id"], _text(blk.get("content")), bool(blk.get("is_error"))))
            elif kind == "thinking":
                r.signatures.append(blk["signature"])
    r.tools = [t["name"] for t in b.get("tools") or ()]
    tc = b.get("tool_choice")
    if tc:
        r.choice = {"auto": "auto", "any": "required", "none": "none"}.get(tc["type"], tc.get("name"))
    return r


def from_gemini(b: dict[str, Any]) -> Received:
    r = Received(system="".join(p.get("text", "") for p in (b.get("systemInstruction") or {}).get("parts", ())))
    for c in b["contents"]:
        role = "assistant" if c["role"] == "model" else "user"
        r.roles.append(role)
        for p in c["parts"]:
            if "thoughtSignature" in p:
                r.signatures.append(p["thoughtSignature"])
            if "text" in p and role == "user" and not p.get("thought"):
                r.text += p["text"]
            elif "inlineData" in p:
                data = p["inlineData"]
                if data["mimeType"].startswith("image/"):
                    r.images.append(("inline", base64.b64decode(data["data"])))
                else:
                    r.documents += 1
            elif "functionResponse" in p:
                resp = p["functionResponse"]["response"]
                r.results.append((p["functionResponse"]["name"], str(resp.get("output", resp.get("error", ""))),
                                  "error" in resp))
    r.tools = [d["name"] for t in b.get("tools") or () for d in t.get("functionDeclarations") or ()]
    fcc = (b.get("toolConfig") or {}).get("functionCallingConfig")
    if fcc:
        mode, allowed = fcc.get("mode"), fcc.get("allowedFunctionNames") or []
        r.choice = {"AUTO": "auto", "NONE": "none"}.get(mode) or (allowed[0] if len(allowed) == 1 else "required")
    return r


def from_bedrock(b: dict[str, Any]) -> Received:
    r = Received(system="".join(s.get("text", "") for s in b.get("system") or ()))
    for m in b["messages"]:
        r.roles.append(m["role"])
        for blk in m["content"]:
            if "text" in blk and m["role"] == "user":
                r.text += blk["text"]
            elif "image" in blk:
                r.images.append(("inline", base64.b64decode(blk["image"]["source"]["bytes"])))
            elif "document" in blk:
                r.documents += 1
            elif "toolResult" in blk:
                res = blk["toolResult"]
                r.results.append((res["toolUseId"], "".join(c.get("text", "") for c in res["content"]),
                                  res.get("status") == "error"))
            elif "reasoningContent" in blk:
                r.signatures.append(blk["reasoningContent"]["reasoningText"].get("signature", ""))
    tool_config = b.get("toolConfig") or {}
    r.tools = [t["toolSpec"]["name"] for t in tool_config.get("tools") or ()]
    tc = tool_config.get("toolChoice")
    if tc:
        r.choice = "auto" if "auto" in tc else "required" if "any" in tc else tc["tool"]["name"]
    return r


class Upstream:
    """One configured provider and its fake."""

    def __init__(self, kind: str, fake: Any) -> None:
        self.kind, self.fake = kind, fake

    def model(self, scenario: str) -> tuple[str, str]:
        """(the name a client sends, the upstream model the fake sees)."""
        upstream = f"pm-{scenario}-{next(_ids)}"
        return f"{self.kind}/{upstream}", upstream

    @property
    def signs(self) -> bool:
        return self.kind in ("anthropic", "gemini", "bedrock")

    def script(self, upstream: str, s: Script) -> None:
        if self.kind in ("openai", "deepseek"):
            self.fake.script(upstream, openai_server.Behavior(
                text="" if s.tool_calls else s.text, reasoning=s.reasoning,
                tool_calls=[(n, json.dumps(a)) for n, a in s.tool_calls], status=s.status,
                error_message=s.error_message, retry_after=s.retry_after, prompt_tokens=s.input_tokens,
                cached_tokens=s.cached_tokens, finish_reason="length" if s.length else None))
        elif self.kind == "anthropic":
            self.fake.script(upstream, anthropic_server.Behavior(
                text="" if s.tool_calls else s.text, thinking=s.reasoning, signature=SIGNATURE,
                tool_uses=[(n, json.dumps(a)) for n, a in s.tool_calls], status=s.status,
                error_message=s.error_message, retry_after=s.retry_after,
                input_tokens=s.input_tokens - s.cached_tokens, cache_read_input_tokens=s.cached_tokens or None,
                stop_reason="max_tokens" if s.length else None))
        elif self.kind == "gemini":
            self.fake.script(upstream, gemini_server.Behavior(
                text="" if s.tool_calls else s.text, thoughts=s.reasoning, signature=SIGNATURE if s.reasoning else None,
                function_calls=list(s.tool_calls), status=s.status, error_message=s.error_message,
                retry_after=s.retry_after, prompt_tokens=s.input_tokens, cached_tokens=s.cached_tokens,
                finish_reason="MAX_TOKENS" if s.length else "STOP"))
        else:
            error_type = {429: "ThrottlingException", 400: "ValidationException"}.get(
                s.status, "ServiceUnavailableException")
            self.fake.script(upstream, bedrock_server.Behavior(
                text="" if s.tool_calls else s.text, reasoning=s.reasoning, signature=SIGNATURE,
                tool_calls=[(n, json.dumps(a)) for n, a in s.tool_calls], status=s.status, error_type=error_type,
                error_message=s.error_message, retry_after=s.retry_after,
                input_tokens=s.input_tokens - s.cached_tokens, cache_read=s.cached_tokens, cache_write=0,
                stop_reason="max_tokens" if s.length else None))

    def received(self, upstream: str) -> Received:
        seen = self.fake.seen(upstream)
        assert seen, f"the {self.kind} upstream received no request for {upstream}"
        body = seen[-1].body
        if getattr(seen[-1], "path", "").endswith("/responses"):  # the Responses API, passed through
            return from_responses(body)
        return {"openai": from_openai, "deepseek": from_openai, "anthropic": from_anthropic,
                "gemini": from_gemini, "bedrock": from_bedrock}[self.kind](body)


# --- what a client sends, and what it got back ---------------------------------------------


@dataclass
class Result:
    text: str = ""
    reasoning: str = ""
    signature: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tool_ids: list[str] = field(default_factory=list)
    stop: str = ""  # stop | length | tool_calls
    input_tokens: int = 0  # every input token, cached ones included
    cached_tokens: int = 0
    output_tokens: int = 0
    raw: Any = None  # the client's own answer object


@dataclass
class Ask:
    """A request, in no dialect."""

    user: str = "What is two plus two?"
    system: str | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text) before the user turn
    tools: list[str] = field(default_factory=list)
    choice: str | None = None
    image: str | None = None  # a URL (data: or http)
    document: bytes | None = None
    tool_turn: tuple[list[tuple[str, str, dict[str, Any]]], list[tuple[str, str, bool]]] | None = None
    max_tokens: int = 256


def _schema() -> dict[str, Any]:
    return {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


class OpenAIClient:
    name = "openai"

    def __init__(self, gw: GatewayProcess, key: str) -> None:
        self.sdk = openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=20)

    def kwargs(self, ask: Ask) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if ask.system:
            messages.append({"role": "system", "content": ask.system})
        messages += [{"role": role, "content": text} for role, text in ask.history]
        if ask.tool_turn:
            calls, results = ask.tool_turn
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                for cid, n, a in calls]})
            messages += [{"role": "tool", "tool_call_id": cid, "content": text} for cid, text, _ in results]
        parts: list[dict[str, Any]] = [{"type": "text", "text": ask.user}]
        if ask.image:
            parts.append({"type": "image_url", "image_url": {"url": ask.image}})
        if ask.document:
            parts.append({"type": "file", "file": {"filename": "a.pdf", "file_data":
                          "data:application/pdf;base64," + base64.b64encode(ask.document).decode()}})
        messages.append({"role": "user", "content": parts if len(parts) > 1 else ask.user})
        kw: dict[str, Any] = {"messages": messages, "max_tokens": ask.max_tokens}
        if ask.tools:
            kw["tools"] = [{"type": "function", "function": {"name": n, "parameters": _schema()}} for n in ask.tools]
        if ask.choice:
            kw["tool_choice"] = (ask.choice if ask.choice in ("auto", "required", "none")
                                 else {"type": "function", "function": {"name": ask.choice}})
        return kw

    def call(self, model: str, ask: Ask, stream: bool) -> Result:
        kw = self.kwargs(ask)
        if not stream:
            resp = self.sdk.chat.completions.create(model=model, **kw)
            msg, u = resp.choices[0].message, resp.usage
            assert u is not None
            return Result(text=msg.content or "", reasoning=(msg.model_extra or {}).get("reasoning_content") or "",
                          tool_calls=[(c.function.name, json.loads(c.function.arguments))
                                      for c in msg.tool_calls or ()],  # type: ignore[union-attr]
                          tool_ids=[c.id for c in msg.tool_calls or ()], stop=resp.choices[0].finish_reason,
                          input_tokens=u.prompt_tokens, output_tokens=u.completion_tokens,
                          cached_tokens=(u.prompt_tokens_details.cached_tokens or 0) if u.prompt_tokens_details
                          else 0, raw=resp)
        r = Result()
        args: dict[int, list[str]] = {}
        names: dict[int, str] = {}
        for ch in self.sdk.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True},
                                                   **kw):
            if ch.usage:
                r.input_tokens, r.output_tokens = ch.usage.prompt_tokens, ch.usage.completion_tokens
                d = ch.usage.prompt_tokens_details
                r.cached_tokens = (d.cached_tokens or 0) if d else 0
            if not ch.choices:
                continue
            delta = ch.choices[0].delta
            r.text += delta.content or ""
            r.reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for tc in delta.tool_calls or ():
                if tc.id:
                    names[tc.index] = tc.function.name if tc.function and tc.function.name else ""
                    r.tool_ids.append(tc.id)
                args.setdefault(tc.index, []).append((tc.function.arguments or "") if tc.function else "")
            if ch.choices[0].finish_reason:
                r.stop = ch.choices[0].finish_reason
        r.tool_calls = [(names[i], json.loads("".join(args[i]))) for i in sorted(args)]
        return r


class ResponsesClient:
    """The ``openai`` SDK's Responses API (``responses.create``, ``responses.stream``)."""

    name = "responses"

    def __init__(self, gw: GatewayProcess, key: str) -> None:
        self.sdk = openai.OpenAI(api_key=key, base_url=gw.url + "/v1", max_retries=0, timeout=20)

    def kwargs(self, ask: Ask) -> dict[str, Any]:
        items: list[dict[str, Any]] = [{"role": role, "content": text} for role, text in ask.history]
        if ask.tool_turn:
            calls, results = ask.tool_turn
            items += [{"type": "function_call", "call_id": cid, "name": n, "arguments": json.dumps(a)}
                      for cid, n, a in calls]
            items += [{"type": "function_call_output", "call_id": cid, "output": text} for cid, text, _ in results]
        parts: list[dict[str, Any]] = [{"type": "input_text", "text": ask.user}]
        if ask.image:
            parts.append({"type": "input_image", "image_url": ask.image, "detail": "auto"})
        if ask.document:
            parts.append({"type": "input_file", "filename": "a.pdf", "file_data":
                          "data:application/pdf;base64," + base64.b64encode(ask.document).decode()})
        items.append({"role": "user", "content": parts if len(parts) > 1 else ask.user})
        # OpenAI takes no cap under 16
        kw: dict[str, Any] = {"input": items, "max_output_tokens": max(ask.max_tokens, 16),
                              "reasoning": {"summary": "auto"}}
        if ask.system:
            kw["instructions"] = ask.system
        if ask.tools:
            kw["tools"] = [{"type": "function", "name": n, "parameters": _schema(), "strict": False}
                           for n in ask.tools]
        if ask.choice:
            kw["tool_choice"] = (ask.choice if ask.choice in ("auto", "required", "none")
                                 else {"type": "function", "name": ask.choice})
        return kw

    def read(self, resp: Any) -> Result:
        r = Result(raw=resp)
        for item in resp.output:
            if item.type == "message":
                r.text += "".join(p.text for p in item.content if p.type == "output_text")
            elif item.type == "reasoning":
                r.reasoning += "".join(p.text for p in item.summary)
                r.signature = item.encrypted_content
            elif item.type == "function_call":
                r.tool_calls.append((item.name, json.loads(item.arguments)))
                r.tool_ids.append(item.call_id)
        r.stop = "length" if resp.status == "incomplete" else "tool_calls" if r.tool_calls else "stop"
        u = resp.usage
        r.input_tokens, r.output_tokens = u.input_tokens, u.output_tokens
        r.cached_tokens = u.input_tokens_details.cached_tokens if u.input_tokens_details else 0
        return r

    def call(self, model: str, ask: Ask, stream: bool) -> Result:
        kw = self.kwargs(ask)
        if not stream:
            return self.read(self.sdk.responses.create(model=model, **kw))
        text, final = "", None
        with self.sdk.responses.stream(model=model, **kw) as s:
            for e in s:  # the helper's final response is a completed one: read an incomplete one too
                if e.type == "response.output_text.delta":
                    text += e.delta
                elif e.type in ("response.completed", "response.incomplete"):
                    final = e.response
        assert final is not None
        result = self.read(final)
        assert text == result.text  # the deltas add up to the final answer
        return result


class AnthropicClient:
    name = "anthropic"
    STOP = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls", "stop_sequence": "stop"}

    def __init__(self, gw: GatewayProcess, key: str) -> None:
        self.sdk = anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0, timeout=20)

    def kwargs(self, ask: Ask) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": role, "content": text} for role, text in ask.history]
        content: list[dict[str, Any]] = []
        if ask.tool_turn:
            calls, results = ask.tool_turn
            messages.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": cid, "name": n, "input": a} for cid, n, a in calls]})
            content += [{"type": "tool_result", "tool_use_id": cid, "content": text, "is_error": err}
                        for cid, text, err in results]
        content.append({"type": "text", "text": ask.user})
        if ask.image:
            if ask.image.startswith("data:"):
                head, _, data = ask.image.partition(",")
                source = {"type": "base64", "media_type": head[5:].split(";")[0], "data": data}
            else:
                source = {"type": "url", "url": ask.image}
            content.append({"type": "image", "source": source})
        if ask.document:
            content.append({"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                           "data": base64.b64encode(ask.document).decode()}})
        messages.append({"role": "user", "content": content})
        kw: dict[str, Any] = {"messages": messages, "max_tokens": ask.max_tokens}
        if ask.system:
            kw["system"] = ask.system
        if ask.tools:
            kw["tools"] = [{"name": n, "description": f"tool {n}", "input_schema": _schema()} for n in ask.tools]
        if ask.choice:
            kw["tool_choice"] = ({"type": {"auto": "auto", "required": "any", "none": "none"}[ask.choice]}
                                 if ask.choice in ("auto", "required", "none") else
                                 {"type": "tool", "name": ask.choice})
        return kw

    def read(self, msg: Any) -> Result:
        r = Result(stop=self.STOP.get(msg.stop_reason, msg.stop_reason), raw=msg)
        for b in msg.content:
            if b.type == "text":
                r.text += b.text
            elif b.type == "thinking":
                r.reasoning += b.thinking
                r.signature = b.signature
            elif b.type == "tool_use":
                r.tool_calls.append((b.name, b.input))
                r.tool_ids.append(b.id)
        u = msg.usage
        r.cached_tokens = u.cache_read_input_tokens or 0
        r.input_tokens = u.input_tokens + r.cached_tokens + (u.cache_creation_input_tokens or 0)
        r.output_tokens = u.output_tokens
        return r

    def call(self, model: str, ask: Ask, stream: bool) -> Result:
        kw = self.kwargs(ask)
        if not stream:
            return self.read(self.sdk.messages.create(model=model, **kw))
        with self.sdk.messages.stream(model=model, **kw) as s:
            return self.read(s.get_final_message())


# --- fixtures --------------------------------------------------------------------------------

KINDS = ("openai", "deepseek", "anthropic", "gemini", "bedrock")
CLIENTS = ("openai", "responses", "anthropic")
PAIRS = [(c, k) for c in CLIENTS for k in KINDS]
PAIR_IDS = [f"{c}-client-on-{k}" for c, k in PAIRS]


@pytest.fixture(scope="module")
def pm_gateway(fake: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini, fake_bedrock: FakeBedrock,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("pairing"), env={
        "OPENAI_API_KEY": UPSTREAM_SECRET, "OPENAI_BASE_URL": fake.base_url,
        "DEEPSEEK_API_KEY": UPSTREAM_SECRET, "DEEPSEEK_BASE_URL": fake.base_url,
        "ANTHROPIC_API_KEY": ANTHROPIC_SECRET, "ANTHROPIC_BASE_URL": fake_anthropic.base_url,
        "GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": fake_gemini.base_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
        "BEDROCK_BASE_URL": fake_bedrock.base_url,
        "TOLLWAY_MEDIA_ALLOW_PRIVATE": "1", "TOLLWAY_FIRST_BYTE_TIMEOUT": "10", "TOLLWAY_LOG_FLUSH_INTERVAL": "0.1",
    }).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def pm_key(pm_gateway: GatewayProcess) -> str:
    return pm_gateway.create_key("pairing")


@pytest.fixture
def fakes(fake: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini,
          fake_bedrock: FakeBedrock) -> dict[str, Any]:
    return {"openai": fake, "deepseek": fake, "anthropic": fake_anthropic, "gemini": fake_gemini,
            "bedrock": fake_bedrock}


Client = OpenAIClient | ResponsesClient | AnthropicClient


def setup(client: str, kind: str, gw: GatewayProcess, key: str, fakes: dict[str, Any]) -> tuple[Client, Upstream]:
    c = {"openai": OpenAIClient, "responses": ResponsesClient, "anthropic": AnthropicClient}[client](gw, key)
    return c, Upstream(kind, fakes[kind])


def run(client: Client, up: Upstream, scenario: str, script: Script, ask: Ask,
        stream: bool) -> tuple[Result, Received]:
    model, upstream = up.model(scenario)
    up.script(upstream, script)
    return client.call(model, ask, stream), up.received(upstream)


# --- the scenarios ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_text_and_system(client: str, kind: str, stream: bool, pm_gateway: GatewayProcess, pm_key: str,
                         fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    result, got = run(c, up, "text", Script(text="The answer is four."), Ask(system="Be brief."), stream)
    assert result.text == "The answer is four." and result.stop == "stop"
    assert got.system == "Be brief." and got.text == "What is two plus two?"


@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_multi_turn_keeps_roles_in_order(client: str, kind: str, pm_gateway: GatewayProcess, pm_key: str,
                                         fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    ask = Ask(history=[("user", "Hi."), ("assistant", "Hello!")], user="Count with me.")
    _, got = run(c, up, "turns", Script(text="Two."), ask, False)
    assert got.roles == ["user", "assistant", "user"] and got.text == "Hi.Count with me."


CHOICES = ["auto", "required", "none", "lookup"]


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_tool_definitions_and_choice_reach_the_upstream(client: str, kind: str, choice: str,
                                                       pm_gateway: GatewayProcess, pm_key: str,
                                                       fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    _, got = run(c, up, "choice", Script(text="ok"), Ask(tools=["lookup", "other"], choice=choice), False)
    if kind == "bedrock" and choice == "none":  # Converse has no "none": the tools are left out
        assert got.tools == [] and got.choice is None
        return
    assert got.tools == ["lookup", "other"] and got.choice == choice


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_parallel_tool_calls_come_back_with_their_arguments(client: str, kind: str, stream: bool,
                                                           pm_gateway: GatewayProcess, pm_key: str,
                                                           fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    script = Script(tool_calls=[("lookup", {"q": "a"}), ("lookup", {"q": "b, \"quoted\""})])
    result, _ = run(c, up, "calls", script, Ask(tools=["lookup"]), stream)
    assert result.tool_calls == [("lookup", {"q": "a"}), ("lookup", {"q": "b, \"quoted\""})]
    assert result.stop == "tool_calls"
    assert len(set(result.tool_ids)) == 2 and all(result.tool_ids)


@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_tool_results_reach_the_upstream(client: str, kind: str, pm_gateway: GatewayProcess, pm_key: str,
                                         fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    error = client == "anthropic"  # only Anthropic's wire can say a result is an error
    turn = ([("toolu_1", "lookup", {"q": "a"}), ("toolu_2", "lookup", {"q": "b"})],
            [("toolu_1", "sunny", False), ("toolu_2", "no data", error)])
    ask = Ask(tools=["lookup"], history=[("user", "Weather in a and b?")], tool_turn=turn, user="Summarise.")
    result, got = run(c, up, "results", Script(text="Sunny in a."), ask, False)
    assert result.text == "Sunny in a."
    ident = "lookup" if kind == "gemini" else None  # Gemini answers a function by name, not by call id
    assert got.results == [(ident or "toolu_1", "sunny", False), (ident or "toolu_2", "no data",
                                                                   error and kind not in ("openai", "deepseek"))]


@pytest.mark.parametrize("how", ["data", "http"])
@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_images(client: str, kind: str, how: str, pm_gateway: GatewayProcess, pm_key: str,
                fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    name = f"img-{next(_ids)}.png"
    url = ("data:image/png;base64," + base64.b64encode(PNG).decode() if how == "data"
           else fakes["gemini"].serve(name, "image/png", PNG))
    result, got = run(c, up, "image", Script(text="A tiny image."), Ask(user="What is this?", image=url), False)
    assert result.text == "A tiny image."
    if how == "data" or kind in ("gemini", "bedrock"):  # these take bytes only: the gateway fetched the URL
        assert got.images == [("inline", PNG)]
    else:
        assert got.images == [("url", url)]


@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_documents(client: str, kind: str, pm_gateway: GatewayProcess, pm_key: str, fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    result, got = run(c, up, "doc", Script(text="A PDF."), Ask(user="Read it.", document=PDF), False)
    assert result.text == "A PDF." and got.documents == 1


@pytest.mark.parametrize("kind", KINDS)
def test_document_urls_from_a_claude_client(kind: str, pm_gateway: GatewayProcess, pm_key: str,
                                            fakes: dict[str, Any]) -> None:
    """A document by URL: Anthropic takes the URL; the others need bytes, which the gateway fetches."""
    up = Upstream(kind, fakes[kind])
    url = fakes["gemini"].serve(f"doc-{next(_ids)}.pdf", "application/pdf", PDF)
    model, upstream = up.model("docurl")
    up.script(upstream, Script(text="Read."))
    msg = AnthropicClient(pm_gateway, pm_key).sdk.messages.create(model=model, max_tokens=64, messages=[
        {"role": "user", "content": [{"type": "text", "text": "Summarise."},
                                     {"type": "document", "source": {"type": "url", "url": url}}]}])
    assert msg.content[0].text == "Read."  # type: ignore[union-attr]
    assert up.received(upstream).documents == 1
    body = json.dumps(up.fake.seen(upstream)[-1].body)
    assert (url in body) == (kind == "anthropic")  # inlined as bytes everywhere else


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_reasoning(client: str, kind: str, stream: bool, pm_gateway: GatewayProcess, pm_key: str,
                   fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    result, _ = run(c, up, "think", Script(text="Yes.", reasoning="Check the sum first."), Ask(), stream)
    assert result.text == "Yes." and result.reasoning == "Check the sum first."
    if client == "anthropic":  # a thinking block carries the upstream's signature, "" where it gives none
        assert result.signature == (SIGNATURE if up.signs else "")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_length_stop_and_usage(client: str, kind: str, stream: bool, pm_gateway: GatewayProcess, pm_key: str,
                               fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    result, _ = run(c, up, "usage", Script(text="Cut short", length=True, input_tokens=50, cached_tokens=20),
                    Ask(max_tokens=2), stream)
    assert result.stop == "length"
    assert (result.input_tokens, result.cached_tokens) == (50, 20) and result.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("client", "kind"), PAIRS, ids=PAIR_IDS)
def test_upstream_errors_in_the_callers_dialect(client: str, kind: str, stream: bool, pm_gateway: GatewayProcess,
                                                pm_key: str, fakes: dict[str, Any]) -> None:
    c, up = setup(client, kind, pm_gateway, pm_key, fakes)
    model, upstream = up.model("limit")
    up.script(upstream, Script(status=429, error_message="slow down please", retry_after="7"))
    sdk_error = anthropic.RateLimitError if client == "anthropic" else openai.RateLimitError
    with pytest.raises(sdk_error) as exc:
        c.call(model, Ask(), stream)
    assert exc.value.status_code == 429 and "slow down please" in str(exc.value)
    assert exc.value.response.headers.get("retry-after") == "7"
    model, upstream = up.model("down")
    up.script(upstream, Script(status=503, error_message="down for maintenance"))
    with pytest.raises(anthropic.APIStatusError if client == "anthropic" else openai.APIStatusError) as down:
        c.call(model, Ask(), stream)
    assert down.value.status_code == 502 and "down for maintenance" in str(down.value)
    body = down.value.body
    if client == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "api_error"  # type: ignore[index]
    else:
        assert body["type"] == "api_error"  # type: ignore[index]


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_stream_helper_gives_the_non_stream_message(kind: str, pm_gateway: GatewayProcess, pm_key: str,
                                                              fakes: dict[str, Any]) -> None:
    c = AnthropicClient(pm_gateway, pm_key)
    up = Upstream(kind, fakes[kind])
    script = Script(text="", reasoning="Think it over.", tool_calls=[("lookup", {"q": "x"}), ("lookup", {"q": "y"})],
                    input_tokens=30, cached_tokens=10)
    a, _ = run(c, up, "same-a", script, Ask(tools=["lookup"]), False)
    b, _ = run(c, up, "same-b", script, Ask(tools=["lookup"]), True)

    def shape(r: Result) -> list[tuple[Any, ...]]:
        return [(blk.type, getattr(blk, "text", None), getattr(blk, "thinking", None), getattr(blk, "signature", None),
                 getattr(blk, "name", None), getattr(blk, "input", None)) for blk in r.raw.content]

    assert shape(a) == shape(b)
    assert [(n, i) for n, i in a.tool_calls] == [("lookup", {"q": "x"}), ("lookup", {"q": "y"})]
    assert a.reasoning == "Think it over." and a.stop == "tool_calls"
    assert (a.input_tokens, a.cached_tokens, a.output_tokens) == (b.input_tokens, b.cached_tokens, b.output_tokens)
    assert (a.input_tokens, a.cached_tokens) == (30, 10)
    assert (a.raw.stop_reason, a.raw.stop_sequence, a.raw.role, a.raw.type) == (
        b.raw.stop_reason, b.raw.stop_sequence, b.raw.role, b.raw.type)
    assert a.raw.usage.input_tokens == b.raw.usage.input_tokens
    assert a.raw.usage.cache_read_input_tokens == b.raw.usage.cache_read_input_tokens


@pytest.mark.parametrize("kind", ["anthropic", "gemini", "bedrock"])
def test_thinking_signatures_go_back_to_the_upstream_unchanged(kind: str, pm_gateway: GatewayProcess, pm_key: str,
                                                              fakes: dict[str, Any]) -> None:
    """A Claude client sends the assistant turn back as it got it: the signature reaches the upstream."""
    c = AnthropicClient(pm_gateway, pm_key)
    up = Upstream(kind, fakes[kind])
    model, upstream = up.model("sig")
    up.script(upstream, Script(reasoning="Need the tool.", tool_calls=[("lookup", {"q": "z"})]))
    first = c.sdk.messages.create(model=model, max_tokens=256, tools=[
        {"name": "lookup", "input_schema": _schema()}], messages=[{"role": "user", "content": "go"}])
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    tool_use = first.content[1]
    c.sdk.messages.create(model=model, max_tokens=256, tools=[{"name": "lookup", "input_schema": _schema()}],
                          messages=[{"role": "user", "content": "go"},
                                    {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id,
                                                                  "content": "found"}]}])
    assert SIGNATURE in up.received(upstream).signatures


def test_dropped_parameters_are_named_in_the_request_log(pm_gateway: GatewayProcess, pm_key: str,
                                                         fakes: dict[str, Any]) -> None:
    c = OpenAIClient(pm_gateway, pm_key)
    up = Upstream("anthropic", fakes["anthropic"])
    model, upstream = up.model("drop")
    up.script(upstream, Script(text="fine"))
    resp = c.sdk.chat.completions.with_raw_response.create(model=model, seed=7, messages=[
        {"role": "user", "content": "hi"}], response_format={"type": "json_object"})
    request_id = resp.headers["x-request-id"]
    assert "seed" not in fakes["anthropic"].seen(upstream)[-1].body
    import time
    deadline = time.time() + 5
    row = None
    while time.time() < deadline and row is None:
        con = sqlite3.connect(pm_gateway.db_path)
        row = con.execute("SELECT dropped_params, provider FROM request_logs WHERE id = ?", (request_id,)).fetchone()
        con.close()
        time.sleep(0.05)
    assert row == ("response_format,seed", "anthropic")
