"""OpenAI-compatible presets by name: base URL, price-catalog id and keys filled in."""

from __future__ import annotations

import typing
from decimal import Decimal

import pytest

from tollway.config import ConfigError, settings_from_dict
from tollway.config.schema import ProviderType
from tollway.pricing import PriceCatalog
from tollway.providers.adapters import ADAPTERS
from tollway.providers.client import ProviderClient
from tollway.providers.presets import PRESETS
from tollway.providers.registry import provider_keys


def _provider(settings, name: str = "p") -> ProviderClient:
    return ProviderClient(name, settings.providers[name], provider_keys(settings, name), egress=settings.egress)


def test_every_preset_is_a_provider_type_and_every_type_is_known() -> None:
    assert set(typing.get_args(ProviderType)) == {"openai", "azure", "anthropic", "gemini", "bedrock", *PRESETS} == set(ADAPTERS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_needs_only_a_key(name: str) -> None:
    settings = settings_from_dict({"providers": {"p": {"type": name, "keys": [{"value": "k"}]}}}, environ={})
    assert _provider(settings).base_url == PRESETS[name].base_url.rstrip("/")


def test_base_url_still_wins_over_the_preset() -> None:
    settings = settings_from_dict({"providers": {"p": {"type": "groq", "base_url": "http://127.0.0.1:9/v1",
                                                       "keys": [{"value": "k"}]}}}, environ={})
    assert _provider(settings).base_url == "http://127.0.0.1:9/v1"


def test_local_servers_need_no_key_and_hosted_ones_do() -> None:
    local = settings_from_dict({"providers": {"p": {"type": "ollama"}}}, environ={})
    assert [k.value for k in local.providers["p"].keys] == ["unused"]
    with pytest.raises(ConfigError) as error:
        settings_from_dict({"providers": {"p": {"type": "groq"}}}, environ={})
    assert "providers.p" in str(error.value) and "needs at least one key" in str(error.value)


@pytest.mark.parametrize(("preset", "model"), [("groq", "llama-3.1-8b-instant"), ("xai", "grok-3"),
                                               ("mistral", "mistral-large-latest"), ("deepseek", "deepseek-chat")])
def test_preset_models_are_priced_from_the_catalog_under_the_presets_id(preset: str, model: str) -> None:
    price = PriceCatalog().price_for(preset, "my-provider", model)
    assert price is not None and price.input > Decimal(0) and price.output > Decimal(0)
