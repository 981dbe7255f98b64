"""What the gateway itself emits conforms to the OpenAI spec: completions and chunks it encodes
(the echo model's canonical path), model listings and error bodies."""

from __future__ import annotations

import json

import httpx

from tests.e2e.harness import GatewayProcess
from tests.fakes.spec import errors

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]


def _post(gw: GatewayProcess, key: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body,
                      timeout=10)


def test_encoded_completion_conforms(gateway: GatewayProcess, user_key: str) -> None:
    for content in ("plain answer", '/tool f {"a": 1}\n/tool f {"b": 2}'):
        r = _post(gateway, user_key, {"model": "echo", "tools": TOOLS, "messages": [{"role": "user",
                                                                                     "content": content}]})
        assert r.status_code == 200
        body = r.json()
        assert errors("CreateChatCompletionResponse", body) == []
    assert [c["function"]["arguments"] for c in body["choices"][0]["message"]["tool_calls"]] == ['{"a": 1}',
                                                                                                  '{"b": 2}']


def test_encoded_chunks_conform(gateway: GatewayProcess, user_key: str) -> None:
    r = _post(gateway, user_key, {"model": "echo", "stream": True, "tools": TOOLS,
                                  "stream_options": {"include_usage": True},
                                  "messages": [{"role": "user", "content": 'words here\n/tool f {"x": "yz"}'}]})
    frames = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    for chunk in chunks:
        assert errors("CreateChatCompletionStreamResponse", chunk) == []
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    first_call = next(c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    call = first_call["choices"][0]["delta"]["tool_calls"][0]
    assert call["id"] and call["type"] == "function" and call["function"]["name"] == "f"  # sequence rule
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_models_and_errors_conform(gateway: GatewayProcess, user_key: str) -> None:
    models = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {user_key}"}).json()
    assert errors("ListModelsResponse", models) == []
    for body, key in (({"model": "echo", "messages": []}, user_key), ({"model": "x", "messages": [{}]}, "bad"),
                      ({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, user_key)):
        r = _post(gateway, key, body)
        assert r.status_code >= 400
        assert errors("ErrorResponse", r.json()) == []
