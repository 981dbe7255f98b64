"""Catalog resolution over env-configured providers, YAML models and aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollway.config import load_file_config
from tollway.core.catalog import Credential, ModelInfo
from tollway.core.errors import ConfigError, ModelNotFound, ProviderNotConfigured
from tollway.providers.kinds import SPECS, env_provider_configs
from tollway.routing.catalog import Catalog

OPENAI_ENV = {"OPENAI_API_KEY": "sk-test"}


def catalog(env: dict[str, str], models: tuple[ModelInfo, ...] = (), aliases: dict[str, str] | None = None,
            ) -> Catalog:
    return Catalog(SPECS, env_provider_configs(env), models=models, aliases=aliases)


# --- env_provider_configs --------------------------------------------------------------------


def test_empty_env_configures_only_echo() -> None:
    configs = env_provider_configs({})
    assert [(c.name, c.kind, c.credentials) for c in configs] == [("echo", "echo", ())]


def test_openai_key_configures_openai_with_one_env_credential_and_the_default_base_url() -> None:
    openai = {c.name: c for c in env_provider_configs(OPENAI_ENV)}["openai"]
    assert openai.kind == "openai"
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.credentials == (Credential(id="openai:env", secret="sk-test"),)


def test_openai_base_url_overrides_the_default() -> None:
    env = {**OPENAI_ENV, "OPENAI_BASE_URL": "http://127.0.0.1:9999/v1"}
    openai = {c.name: c for c in env_provider_configs(env)}["openai"]
    assert openai.base_url == "http://127.0.0.1:9999/v1"


def test_an_empty_api_key_does_not_configure_a_provider() -> None:
    assert [c.name for c in env_provider_configs({"OPENAI_API_KEY": ""})] == ["echo"]


def test_base_url_alone_does_not_configure_openai() -> None:
    assert "openai" not in {c.name for c in env_provider_configs({"OPENAI_BASE_URL": "http://x/v1"})}


def test_ollama_is_configured_by_its_base_url_without_credentials() -> None:
    configs = {c.name: c for c in env_provider_configs({"OLLAMA_BASE_URL": "http://127.0.0.1:11434"})}
    assert configs["ollama"].base_url == "http://127.0.0.1:11434"
    assert configs["ollama"].credentials == ()


# --- listing ----------------------------------------------------------------------------------


def test_with_no_env_only_echo_is_listed() -> None:
    assert [m.id for m in catalog({}).listed()] == ["echo"]


def test_openai_key_lists_the_openai_catalog_but_not_other_providers() -> None:
    ids = [m.id for m in catalog(OPENAI_ENV).listed()]
    assert {"echo", "gpt-4o-mini", "gpt-4o", "gpt-4.1", "o3", "o4-mini"} <= set(ids)
    assert not any(i.startswith("deepseek") for i in ids)
    assert ids == [m.id for m in catalog(OPENAI_ENV).listed()]  # stable order


def test_deepseek_key_lists_deepseek_models() -> None:
    ids = {m.id for m in catalog({"DEEPSEEK_API_KEY": "k"}).listed()}
    assert ids == {"echo", "deepseek-chat", "deepseek-reasoner"}


# --- resolution --------------------------------------------------------------------------------


def test_echo_resolves_without_any_env() -> None:
    route = catalog({}).resolve("echo")
    assert (route.provider, route.model.upstream_id) == ("echo", "echo")


@pytest.mark.parametrize("name", ["gpt-4o-mini", "gpt-4o", "o3"])
def test_openai_models_resolve_once_the_key_is_set(name: str) -> None:
    route = catalog(OPENAI_ENV).resolve(name)
    assert (route.provider, route.model.id, route.model.upstream_id) == ("openai", name, name)


def test_a_known_model_without_its_provider_is_not_configured() -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        catalog({}).resolve("gpt-4o")
    assert info.value.status == 503
    assert "openai" in info.value.message


@pytest.mark.parametrize("name", ["no-such-model", "nowhere/gpt-4o", "echo/anything", "openai/"])
def test_unknown_names_are_model_not_found(name: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        catalog(OPENAI_ENV).resolve(name)
    assert (info.value.status, info.value.param, info.value.code) == (404, "model", "model_not_available")


def test_provider_slash_name_reaches_any_upstream_model_of_an_open_catalog() -> None:
    route = catalog(OPENAI_ENV).resolve("openai/anything")
    assert route.provider == "openai"
    assert (route.model.id, route.model.upstream_id, route.model.provider) == ("openai/anything", "anything", "openai")


def test_provider_slash_name_keeps_further_slashes_in_the_upstream_id() -> None:
    route = catalog({"OLLAMA_BASE_URL": "http://127.0.0.1:11434"}).resolve("ollama/library/llama3.2:1b")
    assert (route.provider, route.model.upstream_id) == ("ollama", "library/llama3.2:1b")


def test_aliases_and_model_aliases_resolve_to_their_models() -> None:
    big = ModelInfo(id="big", provider="openai", upstream_id="gpt-4.1", aliases=("large", "xl"))
    cat = catalog(OPENAI_ENV, models=(big,),
                  aliases={"fast": "gpt-4o-mini", "smart": "big", "huge": "xl", "tuned": "openai/ft:abc"})
    assert cat.resolve("fast").model.id == "gpt-4o-mini"
    assert cat.resolve("smart").model == big
    assert cat.resolve("large").model == big
    assert cat.resolve("huge").model == big
    tuned = cat.resolve("tuned")
    assert (tuned.provider, tuned.model.upstream_id) == ("openai", "ft:abc")


def test_an_alias_to_an_unconfigured_model_is_not_configured() -> None:
    with pytest.raises(ProviderNotConfigured):
        catalog({}, aliases={"fast": "gpt-4o-mini"}).resolve("fast")


def test_yaml_model_overrides_a_code_model_of_the_same_id() -> None:
    pinned = ModelInfo(id="gpt-4o", provider="openai", upstream_id="gpt-4o-2024-08-06")
    cat = catalog(OPENAI_ENV, models=(pinned,))
    assert cat.resolve("gpt-4o").model.upstream_id == "gpt-4o-2024-08-06"
    assert sum(1 for m in cat.listed() if m.id == "gpt-4o") == 1


def test_an_exact_model_id_beats_another_models_alias() -> None:
    shadow = ModelInfo(id="shadow", provider="echo", upstream_id="echo", aliases=("gpt-4o-mini",))
    assert catalog(OPENAI_ENV, models=(shadow,)).resolve("gpt-4o-mini").model.provider == "openai"


def test_yaml_config_file_models_and_aliases(tmp_path: Path) -> None:
    path = tmp_path / "tollway.yaml"
    path.write_text(
        "models:\n"
        "  - id: house-model\n"
        "    provider: openai\n"
        "    upstream_id: gpt-4.1-mini\n"
        "    aliases: [house]\n"
        "  - id: local-llama\n"
        "    provider: ollama\n"
        "aliases:\n"
        "  default: house\n"
        "  cheap: gpt-4o-mini\n",
        encoding="utf-8",
    )
    fc = load_file_config(str(path), {})
    cat = catalog(OPENAI_ENV, models=fc.models, aliases=fc.aliases)
    assert cat.resolve("default").model.upstream_id == "gpt-4.1-mini"
    assert cat.resolve("house").model.id == "house-model"
    assert cat.resolve("cheap").model.id == "gpt-4o-mini"
    assert "house-model" in {m.id for m in cat.listed()}
    # a YAML model on an unconfigured provider is known but neither listed nor callable
    assert "local-llama" not in {m.id for m in cat.listed()}
    with pytest.raises(ProviderNotConfigured):
        cat.resolve("local-llama")


# --- names a provider's API owns, and claude_mapping ------------------------------------------

ANTHROPIC_ENV = {"ANTHROPIC_API_KEY": "sk-ant"}
DEEPSEEK_ENV = {"DEEPSEEK_API_KEY": "sk-ds"}


def test_an_unlisted_claude_id_goes_to_a_configured_anthropic_as_is() -> None:
    route = catalog(ANTHROPIC_ENV).resolve("claude-opus-4-1-20250805")
    assert (route.provider, route.model.upstream_id) == ("anthropic", "claude-opus-4-1-20250805")
    assert catalog(ANTHROPIC_ENV).resolve("claude-3-5-haiku-latest").model.id == "claude-haiku-4-5"  # alias first


def test_without_anthropic_an_unlisted_claude_id_is_unknown_or_mapped() -> None:
    with pytest.raises(ModelNotFound):
        catalog(DEEPSEEK_ENV).resolve("claude-opus-4-1-20250805")
    mapped = Catalog(SPECS, env_provider_configs(DEEPSEEK_ENV),
                     claude_mapping={"fast": "deepseek-chat", "slow": "deepseek-reasoner"})
    assert mapped.resolve("claude-opus-4-1-20250805").model.id == "deepseek-reasoner"
    assert mapped.resolve("claude-sonnet-4-5").model.id == "deepseek-chat"  # known, but its provider is not here
    assert mapped.resolve("claude-3-haiku-20240307").model.id == "deepseek-chat"
    with pytest.raises(ModelNotFound):
        mapped.resolve("gpt-nothing")


def test_with_both_anthropic_wins_for_claude_names() -> None:
    both = Catalog(SPECS, env_provider_configs({**ANTHROPIC_ENV, **DEEPSEEK_ENV}),
                   claude_mapping={"fast": "deepseek-chat"})
    assert both.resolve("claude-sonnet-4-5").provider == "anthropic"
    assert both.resolve("claude-sonnet-4-6").provider == "anthropic"


def test_a_claude_mapping_to_a_model_that_does_not_exist_fails_at_startup() -> None:
    with pytest.raises(ConfigError):
        Catalog(SPECS, env_provider_configs(DEEPSEEK_ENV), claude_mapping={"fast": "no-such-model"})


def test_an_alias_keeps_its_meaning_on_a_provider_named_otherwise() -> None:
    from tollway.core.catalog import ProviderConfig

    eu = ProviderConfig(name="anthropic-eu", kind="anthropic", base_url="http://127.0.0.1:1",
                        credentials=(Credential(id="k", secret="s"),))
    route = Catalog(SPECS, [eu]).resolve("claude-3-7-sonnet-latest")
    assert (route.provider, route.model.upstream_id) == ("anthropic-eu", "claude-sonnet-4-5")


# --- the model registry over the catalogs ----------------------------------------------------


def test_a_registry_row_prices_every_spelling_of_its_upstream_model() -> None:
    from tollway.core.billing import ModelRecord

    c = catalog(OPENAI_ENV)
    c.set_registry([ModelRecord(id=1, name="gpt-4o", provider="openai", upstream_id="gpt-4o", price_in=5_000_000,
                                price_out=15_000_000, rpm=7)])
    for name in ("gpt-4o", "openai/gpt-4o"):
        route = c.resolve(name)
        assert (route.model.id, route.model.upstream_id, route.model.price_in, route.model.price_out,
                route.model.rpm) == (name, "gpt-4o", 5_000_000, 15_000_000, 7)
    assert c.resolve("openai/gpt-4o-mini").model.price_in == 0  # another upstream model: not this price


def test_a_disabled_registry_row_withdraws_every_spelling() -> None:
    from tollway.core.billing import ModelRecord

    c = catalog(OPENAI_ENV)
    c.set_registry([ModelRecord(id=1, name="gpt-4o", provider="openai", upstream_id="gpt-4o", enabled=False)])
    for name in ("gpt-4o", "openai/gpt-4o"):
        with pytest.raises(ModelNotFound):
            c.resolve(name)
    assert "gpt-4o" not in {m.id for m in c.listed()}
    c.set_registry([])  # deleted: the code catalog's model is back
    assert c.resolve("gpt-4o").model.price_in == 0


def test_a_registry_row_over_a_configured_model_keeps_its_routing() -> None:
    from tollway.core.billing import ModelRecord

    big = ModelInfo(id="big", provider="openai", upstream_id="gpt-4.1", display_name="Big", aliases=("large",),
                    fallbacks=("gpt-4o",))
    c = catalog(OPENAI_ENV, models=(big,))
    c.set_registry([ModelRecord(id=1, name="big", provider="openai", price_in=2_000_000, rpm=3, aliases=("xl",))])
    model = c.resolve("large").model  # the configured alias still works, and the row's own
    assert c.resolve("xl").model == model
    assert (model.upstream_id, model.display_name, model.fallbacks, model.price_in, model.rpm) == (
        "gpt-4.1", "Big", ("gpt-4o",), 2_000_000, 3)
    c.set_registry([ModelRecord(id=1, name="big", provider="openai", upstream_id="o3", display_name="Other")])
    assert (c.resolve("big").model.upstream_id, c.resolve("big").model.display_name) == ("o3", "Other")
    c.set_registry([ModelRecord(id=1, name="big", provider="echo")])  # another provider: a model of its own
    moved = c.resolve("big").model
    assert (moved.provider, moved.upstream_id, moved.fallbacks) == ("echo", "big", ())


# --- a priced model is never served for free (issue 17.21) ------------------------------------


def test_a_priced_model_rerouted_by_claude_mapping_keeps_its_price_and_limits() -> None:
    """A registry row prices a Claude name on Anthropic, which is not configured: claude_mapping
    still routes it (that is what it is for), but the call is billed and limited as the model the
    client asked for, never at the mapped model's price (here none)."""
    from tollway.core.billing import ModelRecord

    mapped = Catalog(SPECS, env_provider_configs(DEEPSEEK_ENV),
                     claude_mapping={"fast": "deepseek-chat", "slow": "deepseek-reasoner"})
    mapped.set_registry([ModelRecord(id=1, name="claude-opus-4-6", provider="anthropic", price_in=15_000_000,
                                     price_out=75_000_000, credit_cost=1_000, rpm=5, tpm=9_000,
                                     max_output_tokens=2_000)])
    for asked in ("claude-opus-4-6", "claude-opus-4-1"):  # the row's own name, and an alias of the built-in model
        route = mapped.resolve(asked)
        assert (route.provider, route.model.upstream_id) == ("deepseek", "deepseek-reasoner")  # served there
        model = route.model
        assert model.id == "claude-opus-4-6"  # logged, limited and authorized as what was asked
        assert (model.price_in, model.price_out, model.credit_cost) == (15_000_000, 75_000_000, 1_000)
        assert (model.rpm, model.tpm, model.max_output_tokens) == (5, 9_000, 2_000)
    # an unpriced Claude name still takes the mapped model as it is (priced or not)
    assert mapped.resolve("claude-sonnet-4-5").model.id == "deepseek-chat"
    assert not mapped.resolve("claude-sonnet-4-5").model.priced


def test_a_priced_model_taken_by_a_provider_owning_its_prefix_keeps_its_price() -> None:
    from tollway.core.billing import ModelRecord
    from tollway.core.catalog import ProviderConfig

    eu = ProviderConfig(name="anthropic-eu", kind="anthropic", base_url="http://127.0.0.1:1",
                        credentials=(Credential(id="k", secret="s"),))
    c = Catalog(SPECS, [eu])
    c.set_registry([ModelRecord(id=1, name="claude-sonnet-4-5", provider="anthropic", credit_cost=2_000)])
    route = c.resolve("claude-sonnet-4-5")
    assert (route.provider, route.model.upstream_id) == ("anthropic-eu", "claude-sonnet-4-5")
    assert route.model.credit_cost == 2_000


def test_a_priced_model_reachable_as_configured_is_left_as_it_is() -> None:
    from tollway.core.billing import ModelRecord

    mapped = Catalog(SPECS, env_provider_configs({**DEEPSEEK_ENV, **ANTHROPIC_ENV}),
                     claude_mapping={"fast": "deepseek-chat"})
    mapped.set_registry([ModelRecord(id=1, name="deepseek-chat", provider="deepseek", credit_cost=7)])
    assert mapped.resolve("deepseek-chat").model == mapped.known["deepseek-chat"]
    assert mapped.resolve("claude-3-haiku-20240307").model.provider == "anthropic"  # Anthropic wins, unchanged
