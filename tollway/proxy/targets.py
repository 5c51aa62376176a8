"""Which provider and model a request goes to: "provider/model", an alias, or a key's routes."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tollway.errors import not_found
from tollway.governance.model import VirtualKeyPolicy
from tollway.governance.names import model_key


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str


class TargetResolver:
    """Resolves model names; built once per configuration."""

    def __init__(self, providers: Sequence[str], aliases: Mapping[str, str], fallbacks: Mapping[str, Sequence[str]]) -> None:
        # Provider names, aliases and fallbacks are matched without regard to case (`model_key`).
        self._providers = frozenset(providers)
        self._provider_keys = {model_key(name): name for name in providers}
        self._aliases = {model_key(name): target for name, target in aliases.items()}
        self._alias_names = sorted(aliases)
        self._fallbacks = {model_key(name): tuple(targets) for name, targets in fallbacks.items()}

    def resolve(self, requested: str, key: VirtualKeyPolicy | None) -> list[Target]:
        """The primary target followed by the configured fallbacks (``requested`` is canonical:
        see `tollway.governance.names`)."""
        targets = [self._one(requested, key)]
        for name in self._fallbacks.get(model_key(requested), ()):
            target = self._one(name, key)
            if target not in targets:
                targets.append(target)
        return targets

    def _one(self, requested: str, key: VirtualKeyPolicy | None) -> Target:
        name = self._aliases.get(model_key(requested), requested)
        provider, _, model = name.partition("/")
        configured = self._provider_keys.get(model_key(provider)) if model else None
        if configured is not None:
            return Target(configured, model)
        routed = self._route_bare(name, key)
        if routed is not None:
            return routed
        if model:
            raise not_found(f"unknown provider {provider!r} in model {requested!r}; configured providers: {self._listing()}", "model")
        raise not_found(
            f"unknown model {requested!r}: address models as 'provider/model' (providers: {self._listing()})"
            + (f" or by an alias ({', '.join(self._alias_names)})" if self._alias_names else ""),
            "model",
        )

    def _route_bare(self, model: str, key: VirtualKeyPolicy | None) -> Target | None:
        """A model without a provider goes where the key's provider configs send it,
        or to the only provider there is."""
        if key is not None and key.provider_configs:
            routes = [
                pc for pc in key.provider_configs.values()
                if pc.provider in self._providers and (not pc.allowed_models or model_key(model) in pc.allowed_models)
            ]
            if routes:
                chosen = routes[0] if len(routes) == 1 else random.choices(routes, [pc.weight for pc in routes])[0]
                return Target(chosen.provider, model)
        if len(self._providers) == 1:
            return Target(next(iter(self._providers)), model)
        return None

    def _listing(self) -> str:
        return ", ".join(sorted(self._providers)) or "none"
