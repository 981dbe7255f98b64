"""The code-registered providers: their specs (catalogs, env requirements) and builders."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from tollway.core.catalog import Credential, ProviderConfig, ProviderSpec
from tollway.core.errors import InvalidRequest
from tollway.providers import anthropic, bedrock, deepseek, echo, gemini, ollama, openai, openai_compatible
from tollway.providers.base import ChatProvider, ProviderContext

_MODULES: dict[str, ModuleType] = {
    m.SPEC.kind: m for m in (echo, openai, anthropic, gemini, bedrock, deepseek, ollama, openai_compatible)}
SPECS: tuple[ProviderSpec, ...] = tuple(m.SPEC for m in _MODULES.values())
KINDS: frozenset[str] = frozenset(_MODULES)


def build_provider(config: ProviderConfig, ctx: ProviderContext) -> ChatProvider:
    module = _MODULES.get(config.kind)
    if module is None:
        raise InvalidRequest(f"unknown provider kind {config.kind!r}; known: {sorted(KINDS)}")
    return module.build(config, ctx)  # type: ignore[no-any-return]


def env_provider_configs(env: Mapping[str, str]) -> list[ProviderConfig]:
    """Providers made callable by environment variables (the City seed's env_requirements)."""
    out = []
    for spec in SPECS:
        if spec.kind == "openai_compatible":
            continue
        if not spec.configured(dict(env)):
            continue
        base_url = (env.get(spec.base_url_env) if spec.base_url_env else None) or spec.default_base_url
        module = _MODULES[spec.kind]
        # a provider whose credential has more than one part (Bedrock) builds its own from env
        env_credentials = getattr(module, "env_credentials", None)
        env_options = getattr(module, "env_options", None)
        creds: tuple[Credential, ...] = ()
        if env_credentials is not None:
            creds = env_credentials(env)
        elif spec.api_key_env:
            creds = (Credential(id=f"{spec.name}:env", secret=env[spec.api_key_env]),)
        options = env_options(env) if env_options is not None else {}
        out.append(ProviderConfig(name=spec.name, kind=spec.kind, base_url=base_url, credentials=creds,
                                  options=options))
    return out
