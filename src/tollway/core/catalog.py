"""Models, providers and credentials as the gateway sees them (not as any vendor spells them)."""

from __future__ import annotations

from typing import Any

import msgspec


class EnvRequirement(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    description: str = ""
    required: bool = True


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A routable model name. ``id`` is what callers send; ``upstream_id`` what the provider gets."""

    id: str
    provider: str
    upstream_id: str
    display_name: str = ""
    description: str = ""
    category: str = "chat"
    capabilities: tuple[str, ...] = ("chat",)
    modalities: tuple[str, ...] = ("text", "stream", "openai")
    tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    # models to try, in order, when this one's pool is exhausted or every attempt on it failed
    fallbacks: tuple[str, ...] = ()
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    created: int = 1700000000
    # prices in micro-credits (core.money): per million input / output tokens, per request (per
    # image for an image model), and per unit of ``price_unit`` (core.media.UNITS: a character of
    # speech, a second of audio or video; "" none)
    price_in: int = 0
    price_out: int = 0
    credit_cost: int = 0
    unit_price: int = 0
    price_unit: str = ""
    # limits per key on this model (None: only the key's own)
    rpm: int | None = None
    tpm: int | None = None
    max_output_tokens: int | None = None  # what a request without max_tokens reserves

    @property
    def priced(self) -> bool:
        return bool(self.price_in or self.price_out or self.credit_cost or self.unit_price)


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """One upstream credential. ``secret`` never leaves the gateway: listings show ``id`` only."""

    id: str
    secret: str | None = None
    # a second part some providers need beside the secret (Bedrock: access_key_id, region,
    # session_token); never listed, like the secret
    extra: dict[str, str] = msgspec.field(default_factory=dict)


class ProviderConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A configured upstream: which adapter (``kind``), where, and with which credentials."""

    name: str
    kind: str
    base_url: str = ""
    credentials: tuple[Credential, ...] = ()
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class ProviderSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A code-registered provider: the env it needs and the models it serves once configured."""

    name: str
    kind: str
    env_requirements: tuple[EnvRequirement, ...] = ()
    api_key_env: str | None = None
    base_url_env: str | None = None
    default_base_url: str = ""
    models: tuple[ModelInfo, ...] = ()
    # a caller may send "<name>/<any upstream model id>" to reach any model of this provider
    open_catalog: bool = False
    # what the adapter supports, as data: the conformance suite runs exactly these scenarios
    # against it (chat, stream, tools, reasoning, usage, errors, images)
    features: frozenset[str] = frozenset()
    # ask the server which models it has (GET /models) and list them as "<name>/<id>"
    discover_models: bool = False
    # model names this provider's API owns ("claude-" for Anthropic): an unlisted name with one
    # of these prefixes goes to the configured provider as its upstream id (dated ids, new models)
    model_prefixes: tuple[str, ...] = ()

    def configured(self, env: dict[str, str]) -> bool:
        return all(env.get(r.key) for r in self.env_requirements if r.required)
