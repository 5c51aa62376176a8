"""The provider and model names of the configuration file: the label values metrics
may use from the start (`tollway.telemetry.LabelSets`)."""

from __future__ import annotations

from collections.abc import Iterator

from tollway.config import Settings
from tollway.telemetry import LabelSets


def configured_models(settings: Settings) -> Iterator[str]:
    """Every model name the configuration mentions, bare or ``"provider/model"``."""
    yield from settings.pricing
    for alias, target in settings.model_aliases.items():
        yield from (alias, target)
    for name, targets in settings.fallbacks.items():
        yield name
        yield from targets
    for provider in settings.providers.values():
        yield from provider.deployments
        for key in provider.keys:
            yield from key.models
    governance = settings.governance
    for vk in governance.virtual_keys:
        yield from vk.allowed_models
        for route in vk.provider_configs:
            yield from (f"{route.provider}/{model}" for model in route.allowed_models)
    for limit in governance.model_configs:
        yield f"{limit.provider}/{limit.model_name}" if limit.provider else limit.model_name


def label_sets(settings: Settings) -> LabelSets:
    return LabelSets(settings.providers, configured_models(settings))
