"""Ollama (and any local server at OLLAMA_BASE_URL) through its OpenAI-compatible ``/v1`` API.

Its catalog is whatever the server has pulled: call ``ollama/<model>`` (for example
``ollama/llama3.2``), or add named models in the YAML config.
"""

from __future__ import annotations

from tollway.core.catalog import EnvRequirement, ProviderConfig, ProviderSpec
from tollway.core.names import PROVIDER_OLLAMA, WIRE_EMBEDDINGS
from tollway.providers.base import ProviderContext
from tollway.providers.openai_wire import OPENAI_WIRE_FEATURES, OpenAICompatProvider, Quirks

SPEC = ProviderSpec(
    name=PROVIDER_OLLAMA,
    kind=PROVIDER_OLLAMA,
    env_requirements=(EnvRequirement(key="OLLAMA_BASE_URL", description="Ollama server, e.g. http://127.0.0.1:11434"),),
    base_url_env="OLLAMA_BASE_URL",
    open_catalog=True,
    features=OPENAI_WIRE_FEATURES,
    discover_models=True,
)

# its OpenAI-compatible API has embeddings too (/v1/embeddings)
QUIRKS = Quirks(renames={"max_completion_tokens": "max_tokens"}, media_paths={WIRE_EMBEDDINGS: "/embeddings"})


def build(config: ProviderConfig, ctx: ProviderContext) -> OpenAICompatProvider:
    base = config.base_url.rstrip("/")
    if not base.endswith("/v1"):
        config = ProviderConfig(name=config.name, kind=config.kind, base_url=base + "/v1",
                                credentials=config.credentials, options=config.options)
    return OpenAICompatProvider(config, quirks=QUIRKS, timeouts=ctx.timeouts, media=ctx.media,
                                transport=ctx.transport)
