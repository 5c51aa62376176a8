"""Build the provider clients named in the configuration."""

from __future__ import annotations

import time
from collections.abc import Callable

from tollway.config import Settings, provider_key_ids
from tollway.providers.client import ProviderClient, ProviderKey


def provider_keys(settings: Settings, name: str) -> list[ProviderKey]:
    ids = provider_key_ids(settings, name)
    return [
        ProviderKey(id=key_id, value=key.value, weight=key.weight, models=frozenset(key.models))
        for key_id, key in zip(ids, settings.providers[name].keys, strict=True)
    ]


def build_providers(settings: Settings, clock: Callable[[], float] = time.monotonic) -> dict[str, ProviderClient]:
    """One client (with its own connection pools) per provider; call inside the loop.
    ``clock`` (seconds) times the providers' access tokens (Vertex AI)."""
    return {
        name: ProviderClient(name, provider, provider_keys(settings, name), egress=settings.egress, clock=clock)
        for name, provider in settings.providers.items()
    }
