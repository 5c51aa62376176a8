"""End-user templates and settings as stored, and as the policies the engine reads.

A template (``end_user_limits`` of a customer, team or virtual key) is kept on its owner's
row as JSON in the config shape, with an ``id`` of its own: the id names the counters of
every end user under it (`tollway.governance.end_users.end_user_counter`), so it stays
the same while the template is changed (usage carries over) and is new when a removed
template is added again. Overrides (`EndUserOverride` rows) give one end user other
parts of the template on the same counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType, SimpleNamespace
from typing import Any

from pydantic import ValidationError

from tollway.config.schema import BudgetConfig, ConcurrencyConfig, EndUserConfig, EndUserLimitsConfig, RateLimitConfig
from tollway.governance.model import (
    ANY_END_USER_SOURCE,
    EndUserLimits,
    EndUserSource,
    EndUserTemplate,
    Enforcement,
    Scope,
)
from tollway.store.tables import new_id

_PARTS = ("budget", "rate_limit", "concurrency")
NO_OVERRIDES: Mapping[str, EndUserLimits] = MappingProxyType({})


def template_value(config: EndUserLimitsConfig | None, current: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What an owner's ``end_user_limits`` column holds for ``config`` (None: no template);
    the current template's id is kept."""
    if config is None:
        return None
    ident = current.get("id") if current else None
    return {"id": ident or new_id(), **limits_value(config)}


def limits_value(config: EndUserLimitsConfig) -> dict[str, Any]:
    """``config``'s parts as JSON (money as decimal strings, exact); absent parts left out."""
    return {part: getattr(config, part).model_dump(mode="json") for part in _PARTS if getattr(config, part) is not None}


def source_value(config: EndUserConfig | None) -> dict[str, Any] | None:
    """What a key's ``end_user`` column holds (None: the defaults)."""
    return None if config is None else config.model_dump(mode="json")


def template_view(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The template as the API shows it: the config shape, without its counters' id."""
    if value is None:
        return None
    return {part: value[part] for part in _PARTS if part in value}


def source_policy(value: Mapping[str, Any] | None) -> EndUserSource:
    """A key's stored ``end_user`` settings as the engine reads them."""
    if not value:
        return ANY_END_USER_SOURCE
    source = value.get("source") or ("header", "body")
    return EndUserSource("header" in source, "body" in source, bool(value.get("required")))


def template_policy(value: Mapping[str, Any], owner: Scope, defaults: Enforcement,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None) -> EndUserTemplate:
    """The stored template of ``owner`` (with its end users' stored overrides) as a policy."""
    ident = value["id"]
    by_user = {user: limits_policy(limits, ident, defaults) for user, limits in (overrides or {}).items()}
    return EndUserTemplate(owner, limits_policy(value, ident, defaults),
                           MappingProxyType(by_user) if by_user else NO_OVERRIDES)


def limits_policy(value: Mapping[str, Any], ident: str, defaults: Enforcement) -> EndUserLimits:
    """Stored parts (template or override) as policies whose ids are ``ident`` (the
    template's: an override counts on the template's counters)."""
    # Imported here: snapshot.py imports this module to build the owners' policies.
    from tollway.store.snapshot import budget_policy, concurrency_policy, rate_limit_policy

    budget = rate_limit = concurrency = None
    if "budget" in value:
        budget = budget_policy(SimpleNamespace(id=ident, **_parsed(BudgetConfig, value["budget"])), defaults)
    if "rate_limit" in value:
        rate_limit = rate_limit_policy(SimpleNamespace(id=ident, **_parsed(RateLimitConfig, value["rate_limit"])),
                                       defaults)
    if "concurrency" in value:
        concurrency = concurrency_policy(SimpleNamespace(id=ident, **ConcurrencyConfig.model_validate(
            value["concurrency"]).model_dump()))
    return EndUserLimits(budget, rate_limit, concurrency)


def _parsed(model: type[BudgetConfig] | type[RateLimitConfig], value: Mapping[str, Any]) -> dict[str, Any]:
    """The stored part validated again (a row written by hand must not break the snapshot)."""
    try:
        return model.model_validate(value).model_dump()
    except ValidationError as exc:
        raise ValueError(f"a stored end-user limit is not valid: {exc}") from None
