"""Builders for governance values, for any test that needs a policy.

Every builder has defaults that make a valid value, so a test names only what it is
about::

    vk = virtual_key("vk-search", team_id="search", rate_limit=rate_limit(requests=60))
    snap = snapshot(keys={"tw-search": vk}, teams=[team("search", budget=budget(100))])

Budgets take dollars (converted to nano-dollars); budget and rate-limit ids are unique
unless given. Times: `at(2026, 3, 1)` is epoch milliseconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo

from tollway.governance.durations import Alignment, parse_duration
from tollway.governance.engine import RequestFacts, hash_key
from tollway.governance.limit_rules import LimitRule
from tollway.governance.model import (
    NANO_PER_USD,
    BudgetPolicy,
    ConcurrencyPolicy,
    EndUserLimits,
    EndUserSource,
    EndUserTemplate,
    Governed,
    Level,
    PolicySnapshot,
    ProviderConfigPolicy,
    RateLimitPolicy,
    Scope,
    TeamPolicy,
    VirtualKeyPolicy,
)

_ids = itertools.count(1)


def at(year: int, month: int = 1, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0,
       ms: int = 0, tz: str = "UTC") -> int:
    """Epoch milliseconds of a wall-clock time in ``tz``."""
    moment = datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz))
    return int(moment.timestamp()) * 1000 + ms


def nano(dollars: float | int | str | Decimal) -> int:
    """Dollars as integer nano-dollars (exact for decimal strings)."""
    return int(Decimal(str(dollars)) * NANO_PER_USD)


def key_value(name: str = "default") -> str:
    """A well-formed virtual key value, derived from ``name`` so tests can rebuild it."""
    return "tw-" + name.ljust(32, "x")


def budget(max_usd: float | int | str | Decimal = 10, duration: str = "1M", *, id: str | None = None,
           calendar: bool = False, tz: str = "UTC", week_start: int = 0, shadow: bool = False) -> BudgetPolicy:
    """A budget of ``max_usd`` per ``duration``; ``calendar`` aligns it to calendar boundaries;
    ``shadow``: counted, never denying (mode: shadow)."""
    alignment = Alignment(tz, week_start) if calendar else None
    return BudgetPolicy(id or f"budget-{next(_ids)}", nano(max_usd), parse_duration(duration), alignment,
                        shadow=shadow)


def rate_limit(*, requests: int | None = None, request_window: str = "1m", tokens: int | None = None,
               token_window: str = "1h", id: str | None = None, shadow: bool = False) -> RateLimitPolicy:
    """A rate limit; a side is present only when its maximum is given."""
    return RateLimitPolicy(
        id or f"rate-limit-{next(_ids)}",
        token_max_limit=tokens,
        token_duration=parse_duration(token_window) if tokens is not None else None,
        request_max_limit=requests,
        request_duration=parse_duration(request_window) if requests is not None else None,
        shadow=shadow,
    )


def concurrency(max_in_flight: int, queue_timeout_ms: int = 0, *, id: str | None = None,
                shadow: bool = False) -> ConcurrencyPolicy:
    """At most ``max_in_flight`` requests at once, waiting up to ``queue_timeout_ms`` for a slot."""
    return ConcurrencyPolicy(id or f"concurrency-{next(_ids)}", max_in_flight, queue_timeout_ms, shadow)


Concurrency = ConcurrencyPolicy | None


def governed(level: Level, id: str, name: str | None = None, *, budget: BudgetPolicy | None = None,
             rate_limit: RateLimitPolicy | None = None, concurrency: Concurrency = None,
             end_users: EndUserLimits | None = None,
             overrides: Mapping[str, EndUserLimits] | None = None) -> Governed:
    scope = Scope(level, id, name or id)
    template = None if end_users is None else EndUserTemplate(scope, end_users, MappingProxyType(dict(overrides or {})))
    return Governed(scope, budget, rate_limit, concurrency, template)


def end_users(*, budget: BudgetPolicy | None = None, rate_limit: RateLimitPolicy | None = None,
              concurrency: Concurrency = None) -> EndUserLimits:
    """What every end user of an owner gets (pass as ``end_users=`` to a key, team or customer),
    or one end user's override (in ``overrides=``)."""
    return EndUserLimits(budget, rate_limit, concurrency)


def provider(name: str = "openai", *, budget: BudgetPolicy | None = None,
             rate_limit: RateLimitPolicy | None = None, concurrency: Concurrency = None) -> Governed:
    return governed(Level.PROVIDER, name, budget=budget, rate_limit=rate_limit, concurrency=concurrency)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """A model config: ``provider`` None means that model on any provider."""

    model: str
    provider: str | None
    limits: Governed


def model_config(model: str, provider: str | None = None, *, budget: BudgetPolicy | None = None,
                 rate_limit: RateLimitPolicy | None = None, concurrency: Concurrency = None) -> ModelConfig:
    name = f"{model} on {provider}" if provider else f"{model} (any provider)"
    scope_id = f"{provider}/{model}" if provider else model
    return ModelConfig(model, provider, governed(Level.MODEL, scope_id, name, budget=budget, rate_limit=rate_limit,
                                                 concurrency=concurrency))


def provider_config(provider: str, *, weight: float = 1.0, allowed_models: Iterable[str] = (),
                    allowed_keys: Iterable[str] = (), budget: BudgetPolicy | None = None,
                    rate_limit: RateLimitPolicy | None = None, concurrency: Concurrency = None) -> ProviderConfigPolicy:
    """A key's per-provider config; `virtual_key` names its scope after the key."""
    limits = governed(Level.PROVIDER_CONFIG, provider, budget=budget, rate_limit=rate_limit, concurrency=concurrency)
    return ProviderConfigPolicy(provider, weight, frozenset(allowed_models), frozenset(allowed_keys), limits)


def virtual_key(id: str = "vk", *, name: str | None = None, active: bool = True, team_id: str | None = None,
                customer_id: str | None = None, allowed_models: Iterable[str] = (),
                provider_configs: Iterable[ProviderConfigPolicy] = (), budget: BudgetPolicy | None = None,
                rate_limit: RateLimitPolicy | None = None, concurrency: Concurrency = None,
                allowed_tags: Iterable[str] = (), forced_tags: Iterable[str] = (),
                end_users: EndUserLimits | None = None, overrides: Mapping[str, EndUserLimits] | None = None,
                end_user: EndUserSource = EndUserSource()) -> VirtualKeyPolicy:
    name = name or id
    configs = {
        pc.provider: replace(pc, limits=replace(pc.limits, scope=Scope(
            Level.PROVIDER_CONFIG, f"{id}/{pc.provider}", f"{name} on {pc.provider}")))
        for pc in provider_configs
    }
    return VirtualKeyPolicy(
        id, name, active, team_id, customer_id, frozenset(allowed_models), MappingProxyType(configs),
        governed(Level.VIRTUAL_KEY, id, name, budget=budget, rate_limit=rate_limit, concurrency=concurrency,
                 end_users=end_users, overrides=overrides),
        allowed_tags=frozenset(allowed_tags), forced_tags=tuple(forced_tags), end_user=end_user,
    )


def team(id: str = "team", *, name: str | None = None, customer_id: str | None = None,
         budget: BudgetPolicy | None = None, rate_limit: RateLimitPolicy | None = None,
         concurrency: Concurrency = None, end_users: EndUserLimits | None = None,
         overrides: Mapping[str, EndUserLimits] | None = None) -> TeamPolicy:
    return TeamPolicy(customer_id, governed(Level.TEAM, id, name, budget=budget, rate_limit=rate_limit,
                                            concurrency=concurrency, end_users=end_users, overrides=overrides))


def customer(id: str = "customer", *, name: str | None = None, budget: BudgetPolicy | None = None,
             rate_limit: RateLimitPolicy | None = None, concurrency: Concurrency = None,
             end_users: EndUserLimits | None = None, overrides: Mapping[str, EndUserLimits] | None = None) -> Governed:
    return governed(Level.CUSTOMER, id, name, budget=budget, rate_limit=rate_limit, concurrency=concurrency,
                    end_users=end_users, overrides=overrides)


def tag(name: str, *, budget: BudgetPolicy | None = None, rate_limit: RateLimitPolicy | None = None,
        concurrency: Concurrency = None) -> Governed:
    """A request tag's limits (``name`` as normalised)."""
    return governed(Level.TAG, name, budget=budget, rate_limit=rate_limit, concurrency=concurrency)


def snapshot(*, providers: Iterable[Governed] = (), model_configs: Iterable[ModelConfig] = (),
             keys: Mapping[str, VirtualKeyPolicy] | None = None, teams: Iterable[TeamPolicy] = (),
             customers: Iterable[Governed] = (), tags: Iterable[Governed] = (), enforce_virtual_keys: bool = False,
             version: int = 1, rules: Iterable[LimitRule] = ()) -> PolicySnapshot:
    """A snapshot; ``keys`` maps each raw key value to its policy (stored by hash)."""
    return PolicySnapshot(
        providers=MappingProxyType({p.scope.id: p for p in providers}),
        model_configs=MappingProxyType({(m.model, m.provider): m.limits for m in model_configs}),
        keys_by_hash=MappingProxyType({hash_key(value): vk for value, vk in (keys or {}).items()}),
        teams=MappingProxyType({t.limits.scope.id: t for t in teams}),
        customers=MappingProxyType({c.scope.id: c for c in customers}),
        tags=MappingProxyType({t.scope.id: t for t in tags}),
        limit_rules=MappingProxyType({rule.name: rule for rule in rules}),
        enforce_virtual_keys=enforce_virtual_keys,
        version=version,
    )


def facts(provider: str = "openai", model: str = "gpt-4o-mini", key: str | None = None, *,
          tokens: int = 100, cost_nano: int = 1_000, tags: tuple[str, ...] = (),
          end_user: str | None = None) -> RequestFacts:
    """A request's facts; ``key`` is the raw virtual key value presented; ``tags`` normalised;
    ``end_user``: the one it names."""
    return RequestFacts(provider, model, hash_key(key) if key is not None else None, tokens, cost_nano, tags=tags,
                        end_user=end_user)
