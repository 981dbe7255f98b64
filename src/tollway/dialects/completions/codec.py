"""OpenAI's legacy text completions <-> the canonical model, for an upstream without that wire.

The prompt becomes one user message (read as a chat body by ``dialects.openai.codec``, so every
shared field is checked and mapped as a chat's is, and a field with no canonical slot lands in
``extras`` as a chat's does); the answer's text becomes ``choices[0].text``. What a chat cannot
express (several prompts, token arrays, ``n`` or ``best_of`` above 1, ``echo``, ``logprobs``,
``suffix``) is a 400 naming the field: an upstream that has OpenAI's completions endpoint gets
such a request as it came (``front``). Pure: no I/O, no clock, no settings.
"""

from __future__ import annotations

from typing import Any, Final

from tollway.core.chat import ChatRequest, ChatResponse, FinishReason, TextBlock
from tollway.core.errors import InvalidRequest
from tollway.dialects.openai.codec import decode_request as decode_chat_request
from tollway.dialects.openai.codec import encode_usage

DEFAULT_MAX_TOKENS: Final = 16  # what OpenAI's completions endpoint answers with when max_tokens is absent
# fields of the completions wire that a chat has not: taken out before the body is read as a chat
_COMPLETIONS_ONLY: Final = frozenset({"prompt", "suffix", "echo", "logprobs", "best_of", "n"})
_NEEDS_WIRE: Final = ("needs an upstream with OpenAI's legacy completions endpoint; this model's upstream "
                      "has chat only, and its completions are translated to chat")
# a completions field -> the values a chat can honour (anything else is refused, naming the field)
_NEUTRAL: Final[dict[str, tuple[Any, ...]]] = {
    "suffix": (None, ""), "n": (None, 1), "best_of": (None, 0, 1), "echo": (None, False), "logprobs": (None,),
}
_WHY: Final = {
    "suffix": "suffix (fill in the middle)", "n": "n above 1", "best_of": "best_of above 1", "echo": "echo",
    "logprobs": "logprobs",
}


def _tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value)


def prompt_count(prompt: Any) -> int:
    """How many prompts ``prompt`` holds: a string, an array of strings, an array of tokens, an
    array of token arrays; a 400 for anything else."""
    if isinstance(prompt, str):
        return 1
    if isinstance(prompt, list) and prompt:
        if _tokens(prompt):
            return 1
        if all(isinstance(p, str) for p in prompt) or all(_tokens(p) for p in prompt):
            return len(prompt)
    raise InvalidRequest("prompt must be a string, an array of strings, an array of tokens or an array of "
                         "token arrays", param="prompt")


def decode_request(data: Any) -> ChatRequest:
    """A completions request as a chat: its prompt as one user message, ``max_tokens`` 16 when it
    sets none (as OpenAI's endpoint does)."""
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object")
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest(f"prompt: several prompts, or a prompt as tokens, {_NEEDS_WIRE}", param="prompt")
    for field, neutral in _NEUTRAL.items():
        if data.get(field) not in neutral:  # the types were checked at decode (``wire.RequestView``)
            raise InvalidRequest(f"{_WHY[field]} {_NEEDS_WIRE}", param=field)
    chat = {k: v for k, v in data.items() if k not in _COMPLETIONS_ONLY}
    chat["messages"] = [{"role": "user", "content": prompt}]
    if chat.get("max_tokens") is None:
        chat["max_tokens"] = DEFAULT_MAX_TOKENS
    return decode_chat_request(chat)


def finish_reason(reason: FinishReason) -> str:
    """A canonical finish reason as the completions wire has it (stop, length, content_filter)."""
    return reason if reason in ("length", "content_filter") else "stop"


def encode_response(resp: ChatResponse, model: str) -> dict[str, Any]:
    """A canonical answer as a ``text_completion`` naming ``model`` (reasoning has no place in it)."""
    text = "".join(b.text for b in resp.content if isinstance(b, TextBlock))
    return {
        "id": resp.id,
        "object": "text_completion",
        "created": resp.created,
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason(resp.finish_reason)}],
        "usage": encode_usage(resp.usage),
    }
