"""`GET /v1/models`: aliases, models named in the configuration, and what each
provider lists itself (asked at most every few minutes, never on the request path of
a completion)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from tollway.config import Settings
from tollway.providers.client import ProviderClient

log = logging.getLogger(__name__)
_TTL_S = 300.0


class ModelCatalog:
    def __init__(self, settings: Settings, providers: Mapping[str, ProviderClient]) -> None:
        self._settings = settings
        self._providers = providers
        self._cached: list[dict[str, Any]] | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def models(self) -> list[dict[str, Any]]:
        async with self._lock:
            if self._cached is None or time.monotonic() - self._cached_at > _TTL_S:
                self._cached = await self._collect()
                self._cached_at = time.monotonic()
            return self._cached

    async def _collect(self) -> list[dict[str, Any]]:
        names: dict[str, str] = {}
        for alias in self._settings.model_aliases:
            names[alias] = "tollway"
        for name, provider in self._settings.providers.items():
            for model in provider.deployments:
                names[f"{name}/{model}"] = name
            for key in provider.keys:
                for model in key.models:
                    names[f"{name}/{model}"] = name
        for config in self._settings.governance.model_configs:
            if config.provider:
                names[f"{config.provider}/{config.model_name}"] = config.provider
        listed = await asyncio.gather(*(self._listed(name, p) for name, p in self._providers.items()))
        for name, models in zip(self._providers, listed, strict=True):
            for model in models:
                names.setdefault(f"{name}/{model}", name)
        return [{"id": model, "object": "model", "created": 0, "owned_by": owner} for model, owner in sorted(names.items())]

    async def _listed(self, name: str, provider: ProviderClient) -> list[str]:
        try:
            return await provider.list_models()
        except Exception as exc:
            log.info("provider %s did not list its models: %s", name, type(exc).__name__)
            return []
