"""The thinking budget a Claude model gets, on Anthropic or on Bedrock, and what it costs.

A caller's ``max_tokens`` (OpenAI's sense: reasoning included) caps the budget; a budget under
Anthropic's 1,024 minimum means no thinking. So does a tool loop whose last assistant turn has
tool calls but no signed thinking block (an OpenAI client carries no signatures), which
Anthropic refuses while thinking is on. With thinking on, Anthropic refuses a temperature other
than 1, ``top_k``, ``top_p`` under 0.95 and a forced tool choice: those are dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from tollway.core.chat import ChatRequest, ReasoningBlock, ToolCallBlock

# max_tokens is required by Anthropic's API; a caller from another dialect may not send it
DEFAULT_MAX_TOKENS = 4096
# reasoning_effort (OpenAI) -> a thinking budget
EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
MIN_BUDGET = 1024

# the request fields Anthropic refuses while thinking is on, each with the test it fails
_REFUSED_WITH_THINKING: tuple[tuple[str, Callable[[ChatRequest], bool]], ...] = (
    ("temperature", lambda r: r.temperature is not None and r.temperature != 1),
    ("top_k", lambda r: r.top_k is not None),
    ("top_p", lambda r: r.top_p is not None and r.top_p < 0.95),
    ("tool_choice", lambda r: r.tool_choice is not None and r.tool_choice.mode == "required"),
)


def thinking_plan(req: ChatRequest) -> tuple[int | None, list[str]]:
    """The thinking budget (None: no thinking) and the request fields it makes Anthropic drop:
    with no thinking, the field that asked for it, if any; with thinking, those it refuses."""
    budget, source = _requested_budget(req)
    if budget is None:
        return None, [source] if source else []
    if req.max_tokens is not None:
        budget = min(budget, req.max_tokens - 1)
    if budget < MIN_BUDGET or _unsigned_tool_turn(req):
        return None, [source]
    return budget, [name for name, refused in _REFUSED_WITH_THINKING if refused(req)]


def _requested_budget(req: ChatRequest) -> tuple[int | None, str]:
    """The budget the caller asks for and the field that asks ("" if none does, or asks for
    none): ``reasoning_budget``, else ``reasoning_effort`` (a budget for an effort Anthropic
    has none for is None, with the field named)."""
    if req.reasoning_budget is not None:
        return req.reasoning_budget, "reasoning_budget"
    if req.reasoning_effort is None or req.reasoning_effort == "none":
        return None, ""
    return EFFORT_BUDGET.get(req.reasoning_effort), "reasoning_effort"


def _unsigned_tool_turn(req: ChatRequest) -> bool:
    """Whether the last assistant turn calls tools without a signed (or redacted) thinking block."""
    last = next((m for m in reversed(req.messages) if m.role == "assistant"), None)
    if last is None or not any(isinstance(b, ToolCallBlock) for b in last.content):
        return False
    return not any(isinstance(b, ReasoningBlock) and (b.signature or b.redacted_data) for b in last.content)
