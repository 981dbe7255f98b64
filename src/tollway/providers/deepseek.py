"""DeepSeek: OpenAI-compatible with ``reasoning_content`` on deepseek-reasoner, and FIM completions."""

from __future__ import annotations

from tollway.core.catalog import EnvRequirement, ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.names import DIALECT_COMPLETIONS, PROVIDER_DEEPSEEK
from tollway.providers.base import ProviderContext
from tollway.providers.openai_wire import OPENAI_WIRE_FEATURES, OpenAICompatProvider, Quirks

SPEC = ProviderSpec(
    name=PROVIDER_DEEPSEEK,
    kind=PROVIDER_DEEPSEEK,
    env_requirements=(
        EnvRequirement(key="DEEPSEEK_API_KEY", description="DeepSeek API key"),
        EnvRequirement(key="DEEPSEEK_BASE_URL", description="DeepSeek base URL", required=False),
    ),
    api_key_env="DEEPSEEK_API_KEY",
    base_url_env="DEEPSEEK_BASE_URL",
    default_base_url="https://api.deepseek.com/v1",
    models=(
        ModelInfo(id="deepseek-chat", provider=PROVIDER_DEEPSEEK, upstream_id="deepseek-chat",
                  display_name="DeepSeek Chat", capabilities=("chat", "tools"), tags=("deepseek",)),
        ModelInfo(id="deepseek-reasoner", provider=PROVIDER_DEEPSEEK, upstream_id="deepseek-reasoner",
                  display_name="DeepSeek Reasoner", capabilities=("chat", "tools", "reasoning"),
                  tags=("deepseek",)),
    ),
    open_catalog=True,
    model_prefixes=("deepseek-",),
    features=OPENAI_WIRE_FEATURES,
)

# legacy completions are DeepSeek's FIM (fill in the middle: ``suffix``), a beta beside ``/v1``:
# https://api.deepseek.com/beta/completions from the default base URL (and the same place on any
# base URL that moves ``/v1`` elsewhere)
QUIRKS = Quirks(renames={"max_completion_tokens": "max_tokens"}, drops=frozenset({"seed"}),
                completions_path="../beta/completions",
                wire_models={DIALECT_COMPLETIONS: ("deepseek-chat",)})  # FIM: not the reasoner


def build(config: ProviderConfig, ctx: ProviderContext) -> OpenAICompatProvider:
    return OpenAICompatProvider(config, quirks=QUIRKS, timeouts=ctx.timeouts, media=ctx.media,
                                transport=ctx.transport)
