"""Which names are routable, to which provider, and whether they are callable now.

Built once from the code-registered specs, the live provider configs (env + YAML) and the
YAML's models and aliases; resolution is a dict lookup. Names resolve in this order:
exact model id, alias (YAML ``aliases`` and model ``aliases``), a name whose prefix a configured
provider's API owns (``claude-opus-4-1-20250805`` -> anthropic), seed 002's ``claude_mapping``
for other Claude names, then ``<provider>/<upstream id>`` for providers with an open catalog (for
example ``ollama/llama3.2`` or ``openai/gpt-5``).

A priced model is never served for free: when a name resolves to a known model whose provider is
not configured and another route serves it (a provider owning its prefix, ``claude_mapping``), the
route keeps the asked model's identity, prices and limits and only borrows the serving model's
provider, upstream id and fallbacks. The operator who priced that name priced what the client
asked for; the mapping only chooses who answers.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from tollway.core.billing import ModelRecord
from tollway.core.catalog import ModelInfo, ProviderConfig, ProviderSpec
from tollway.core.errors import ConfigError, ModelNotFound, ProviderNotConfigured


class Route(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelInfo
    provider: str  # the configured provider's name


class Catalog:
    def __init__(self, specs: Iterable[ProviderSpec], providers: Iterable[ProviderConfig],
                 models: Iterable[ModelInfo] = (), aliases: dict[str, str] | None = None,
                 claude_mapping: dict[str, str] | None = None) -> None:
        self.specs = {s.name: s for s in specs}
        self.providers = {p.name: p for p in providers}
        self._open = {name for name, p in self.providers.items()
                      if (spec := self._spec_for(p)) is not None and spec.open_catalog}
        for m in models:
            if m.provider not in self.providers and m.provider not in self.specs:
                raise ConfigError(f"model {m.id!r}: provider {m.provider!r} is neither configured nor known")
        self._file_models = tuple(models)
        self._aliases = dict(aliases or {})
        self.disabled: frozenset[str] = frozenset()
        self._index(())
        # (prefix, configured provider) for names a provider's API owns; the provider named
        # like its kind comes first
        self._prefixes = sorted(
            ((prefix, name) for name, p in self.providers.items()
             if (spec := self._spec_for(p)) is not None for prefix in spec.model_prefixes),
            key=lambda pn: (self.providers[pn[1]].kind != pn[1], pn[1]))
        self.claude_mapping = dict(claude_mapping or {})
        for family, target in self.claude_mapping.items():
            prefix, sep, _ = target.partition("/")
            if target not in self._names and not (sep and (prefix in self.providers or prefix in self.specs)):
                raise ConfigError(f"claude_mapping {family!r}: {target!r} is not a model")
        self._discovered: dict[str, ModelInfo] = {}

    def _index(self, registry: Iterable[ModelRecord]) -> None:
        """Every known model (code catalogs, then YAML, then the registry: each wins on a clash),
        callable or not, and every name that resolves to one."""
        known: dict[str, ModelInfo] = {}
        for spec in self.specs.values():
            for m in spec.models:
                known[m.id] = m
        for m in self._file_models:
            known[m.id] = m
        disabled = set()
        registry = tuple(registry)
        for r in registry:
            if r.enabled:
                known[r.name] = r.info(known.get(r.name))
            else:
                known.pop(r.name, None)
                disabled.add(r.name)
        names: dict[str, str] = {}
        for m in known.values():
            names[m.id] = m.id
            for a in m.aliases:
                names.setdefault(a, m.id)
        for alias, target in self._aliases.items():
            prefix, sep, _ = target.partition("/")
            if target not in names and not (sep and (prefix in self.providers or prefix in self.specs)):
                if target in disabled:
                    continue  # an alias of a disabled model resolves to nothing
                raise ConfigError(f"alias {alias!r}: {target!r} is not a model")
            names[alias] = names.get(target, target)
        self.known = known
        self._names = names
        self.disabled = frozenset(disabled)
        # the model behind a (provider, upstream id): a name made up on the fly for it (a dated id,
        # "<provider>/<id>", a discovered model) takes its prices and limits, and its disabled state
        self._by_upstream = {(m.provider, m.upstream_id): m for m in known.values()}
        self._disabled_upstream = frozenset((r.provider, r.upstream_id or r.name) for r in registry if not r.enabled)

    def set_registry(self, registry: Iterable[ModelRecord]) -> None:
        """The models admins added or changed (``/admin/model/*``) over the code and YAML ones: an
        enabled row defines or overrides its name; a disabled one withdraws it."""
        self._index(registry)

    def _spec_for(self, p: ProviderConfig) -> ProviderSpec | None:
        return next((s for s in self.specs.values() if s.kind == p.kind), None)

    def open_providers(self) -> list[str]:
        """Configured providers callable as ``<name>/<any upstream id>``."""
        return sorted(self._open)

    def discovering(self) -> list[str]:
        """Configured providers whose servers are asked for their models."""
        return [name for name, p in self.providers.items()
                if (spec := self._spec_for(p)) is not None and spec.discover_models]

    def set_discovered(self, provider: str, upstream_ids: list[str]) -> None:
        """Replace what ``provider``'s server said it has (listed as ``<provider>/<id>``)."""
        table = {k: m for k, m in self._discovered.items() if m.provider != provider}
        for uid in upstream_ids:
            mid = f"{provider}/{uid}"
            if mid not in self.known:
                table[mid] = ModelInfo(id=mid, provider=provider, upstream_id=uid, display_name=uid,
                                       tags=(provider, "discovered"))
        self._discovered = table

    def discovered_for(self, providers: set[str]) -> dict[str, ModelInfo]:
        """What servers said they have, for the providers still configured."""
        return {k: m for k, m in self._discovered.items() if m.provider in providers}

    def set_discovered_all(self, models: dict[str, ModelInfo]) -> None:
        self._discovered = dict(models)

    def callable(self, model: ModelInfo) -> bool:
        return model.provider in self.providers

    def _claude_family(self, name: str) -> str | None:
        """Seed 002's claude_mapping: an unconfigured Claude name -> the fast or slow model."""
        if not self.claude_mapping or not name.lower().startswith("claude"):
            return None
        slow = any(word in name.lower() for word in ("opus", "reasoner", "slow"))
        return self.claude_mapping.get("slow" if slow else "fast") or next(iter(self.claude_mapping.values()))

    def resolve(self, name: str) -> Route:
        if name in self.disabled:
            raise ModelNotFound(f"The model '{name}' is disabled.")
        target = self._names.get(name)
        asked = self.known.get(target) if target is not None else None
        route = self._route(name, target)
        if asked is not None and asked.priced and not self.callable(asked):
            return Route(model=_priced_as(route.model, asked), provider=route.provider)  # rerouted: billed as asked
        return route

    def _route(self, name: str, target: str | None) -> Route:
        if target is None or not self._reachable(target):
            # a name the API of a configured provider owns (a dated Claude id, a new GPT) goes there
            owner = next((p for prefix, p in self._prefixes if name.startswith(prefix)), None)
            if owner is not None:
                known = self.known.get(target) if target is not None else None
                upstream = known.upstream_id if known is not None else name  # an alias keeps its meaning
                return self._made_up(name, owner, upstream)
            # an unknown Claude name, or a known one whose provider is not configured: the mapping decides
            if (mapped := self._claude_family(name)) is not None:
                target = self._names.get(mapped, mapped)
        if target is not None:
            model = self.known.get(target)
            if model is not None:
                if not self.callable(model):
                    raise ProviderNotConfigured(
                        f"Model '{name}' needs provider '{model.provider}', which is not configured "
                        f"(`tollway models --all` shows what it needs).")
                return Route(model=model, provider=model.provider)
            name = target
        prefix, sep, rest = name.partition("/")
        if sep and rest and prefix in self._open:
            return self._made_up(name, prefix, rest)
        if sep and rest and prefix in self.specs and prefix not in self.providers:
            raise ProviderNotConfigured(f"Model '{name}' needs provider '{prefix}', which is not configured.")
        raise ModelNotFound(f"The model '{name}' does not exist or is not available.")

    def _made_up(self, name: str, provider: str, upstream: str) -> Route:
        """A route for a name no catalog lists, to ``upstream`` on ``provider``: priced, limited and
        disabled like the listed model with the same upstream id, if there is one (so another
        spelling of a priced model is never free, nor a disabled one reachable)."""
        if (provider, upstream) in self._disabled_upstream:
            raise ModelNotFound(f"The model '{name}' is disabled.")
        known = self._by_upstream.get((provider, upstream))
        if known is not None:
            model = msgspec.structs.replace(known, id=name, aliases=(), fallbacks=known.fallbacks)
        else:
            # what it serves is unknown here (its upstream knows): no category, no capabilities
            model = ModelInfo(id=name, provider=provider, upstream_id=upstream, display_name=upstream, category="",
                              capabilities=())
        return Route(model=model, provider=provider)

    def _reachable(self, target: str) -> bool:
        model = self.known.get(target)
        return model is None or self.callable(model)

    def listed(self) -> list[ModelInfo]:
        """Models a caller may use now, in a stable order."""
        return [m for m in self.known.values() if self.callable(m)] + list(self._discovered.values())

    def find(self, name: str) -> ModelInfo | None:
        """The model ``name`` stands for, if a caller may use it now and this catalog knows it: a
        listed model, or a name that resolves to one (an alias, a Claude name through the mapping,
        another spelling of a known upstream id). A name that only an open catalog or a provider's
        prefix would route (the upstream may or may not have it) is not known: None."""
        discovered = self._discovered.get(name)
        if discovered is not None:
            return discovered
        try:
            route = self.resolve(name)
        except (ModelNotFound, ProviderNotConfigured):
            return None
        model = route.model
        if model.id in self.known or (route.provider, model.upstream_id) in self._by_upstream:
            return model
        return None


def _priced_as(served: ModelInfo, asked: ModelInfo) -> ModelInfo:
    """``served``'s route under ``asked``'s name, prices and limits (its output bound, if it sets one)."""
    return msgspec.structs.replace(
        served, id=asked.id, display_name=asked.display_name, price_in=asked.price_in, price_out=asked.price_out,
        credit_cost=asked.credit_cost, unit_price=asked.unit_price, price_unit=asked.price_unit, rpm=asked.rpm,
        tpm=asked.tpm,
        max_output_tokens=asked.max_output_tokens or served.max_output_tokens, aliases=(),
        meta={**served.meta, **asked.meta, "served_by": served.id})
