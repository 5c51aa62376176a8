"""The provider adapters, by type: the one place a provider type is looked up.

`adapter_for(settings.type)` answers everything that differs between provider types (see
`tollway.providers.adapters.base`). Adding a provider type is adding an adapter here (and
its name to the configuration's `ProviderType`; a unit test keeps the two equal).
"""

from __future__ import annotations

from types import MappingProxyType

from tollway.providers.adapters.anthropic import AnthropicAdapter
from tollway.providers.adapters.azure import AzureAdapter
from tollway.providers.adapters.base import ProviderAdapter
from tollway.providers.adapters.bedrock import BedrockAdapter
from tollway.providers.adapters.gemini import GeminiAdapter
from tollway.providers.adapters.openai import OpenAIAdapter, PresetAdapter
from tollway.providers.presets import PRESETS

ADAPTERS: MappingProxyType[str, ProviderAdapter] = MappingProxyType({
    "openai": OpenAIAdapter(),
    "azure": AzureAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "bedrock": BedrockAdapter(),
    **{name: PresetAdapter(preset) for name, preset in PRESETS.items()},
})


def adapter_for(provider_type: str) -> ProviderAdapter:
    """The adapter of a configured provider type (the schema admits only known types)."""
    adapter = ADAPTERS.get(provider_type)
    if adapter is None:
        raise ValueError(f"unknown provider type {provider_type!r}; known: {', '.join(ADAPTERS)}")
    return adapter


__all__ = ["ADAPTERS", "ProviderAdapter", "adapter_for"]
