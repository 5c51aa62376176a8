"""Every limit of a policy snapshot as a `LimitCheck`: what the usage API shows, the
alert monitor watches and a key's holder reads (`key_checks`), with the one way each is
presented (`limit_view`). Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tollway.governance.counters.base import CounterReading
from tollway.governance.decisions import iso_utc
from tollway.governance.durations import next_reset_ms
from tollway.governance.engine import (
    LimitCheck,
    access_denial,
    budget_checks,
    concurrency_checks,
    owner_ids,
    rate_limit_checks,
)
from tollway.governance.limit_rules import key_rule_checks
from tollway.governance.model import (
    ENFORCE,
    NANO_PER_USD,
    SHADOW,
    Enforcement,
    Governed,
    Kind,
    Level,
    PolicySnapshot,
    VirtualKeyPolicy,
)

KIND_ORDER = tuple(kind.value for kind in Kind)
_LEVEL_ORDER = {level: index for index, level in enumerate(Level)}


def snapshot_checks(snapshot: PolicySnapshot) -> list[tuple[LimitCheck, str | None]]:
    """Every limit of the snapshot with, for provider configs, the key they belong to;
    sorted by level, id and kind."""
    governed: list[tuple[Governed, str | None]] = [(g, None) for g in snapshot.providers.values()]
    governed += [(g, None) for g in snapshot.model_configs.values()]
    governed += [(g, None) for g in snapshot.customers.values()]
    governed += [(team.limits, None) for team in snapshot.teams.values()]
    governed += [(g, None) for g in snapshot.tags.values()]
    # Limit rules: those with one set of counters (a template's values are read by value).
    governed += [(rule.limits, None) for rule in snapshot.limit_rules.values() if not rule.per]
    for key in snapshot.keys_by_hash.values():
        if key.retired_value:  # a rotated-out value: the same key, listed under its current value
            continue
        governed.append((key.limits, None))
        governed += [(config.limits, key.id) for config in key.provider_configs.values()]
    return _sorted([(check, parent) for limits, parent in governed for check in limit_checks(limits)])


def _sorted(checks: list[tuple[LimitCheck, str | None]]) -> list[tuple[LimitCheck, str | None]]:
    """By level (in `Level` order), id and kind."""
    checks.sort(key=lambda item: (_LEVEL_ORDER[item[0].scope.level], item[0].scope.id,
                                  KIND_ORDER.index(item[0].kind.value)))
    return checks


def key_checks(snapshot: PolicySnapshot, key: VirtualKeyPolicy) -> list[tuple[LimitCheck, str | None]]:
    """The limits that bind ``key``: its own and its provider configs', its team's and
    customer's, those of the providers and model configs it may use, and of its forced
    and allowed tags, and of the limit rules that select it (`key_rule_checks`); in the order
    and form of `snapshot_checks` (nothing of other keys, teams or customers)."""
    team_id, customer_id = owner_ids(snapshot, key)
    team = snapshot.teams.get(team_id) if team_id else None
    customer = snapshot.customers.get(customer_id) if customer_id else None
    governed: list[tuple[Governed, str | None]] = [
        (g, None) for name, g in snapshot.providers.items() if not key.provider_configs or name in key.provider_configs]
    governed += [(g, None) for (model, provider), g in snapshot.model_configs.items() if _may_use(key, model, provider)]
    governed += [(g, None) for g in (customer, team.limits if team else None, key.limits) if g is not None]
    governed += [(config.limits, key.id) for config in key.provider_configs.values()]
    governed += [(g, None) for g in _key_tag_limits(snapshot, key)]
    checks = [(check, parent) for limits, parent in governed for check in limit_checks(limits)]
    checks += [(check, None) for check in key_rule_checks(snapshot, key.id, team_id, customer_id)]
    return _sorted(checks)


def _key_tag_limits(snapshot: PolicySnapshot, key: VirtualKeyPolicy) -> list[Governed]:
    """The tag limits that can bind ``key``: of its forced tags and, when it has allowed
    tags, of those (a key without allowed tags may name any tag: then only its forced
    tags are sure to bind it)."""
    names = key.forced_tags + tuple(sorted(key.allowed_tags))
    return [snapshot.tags[name] for name in dict.fromkeys(names) if name in snapshot.tags]


def _may_use(key: VirtualKeyPolicy, model: str, provider: str | None) -> bool:
    """Whether ``key`` may send ``model`` to ``provider`` (None: to some provider it may use)."""
    if provider is not None:
        return access_denial(key, provider, model) is None
    if key.provider_configs:
        return any(access_denial(key, name, model) is None for name in key.provider_configs)
    # Any provider: the key's allowed models name the model bare or as "provider/model".
    return not key.allowed_models or any(
        name == model or name.endswith("/" + model) for name in key.allowed_models)


def limit_checks(governed: Governed) -> Iterator[LimitCheck]:
    """The checks of one entity's rate limit (requests, tokens), budget and concurrency
    limit, built as the engine builds them."""
    yield from rate_limit_checks(governed)
    yield from budget_checks(governed)
    yield from concurrency_checks(governed)


def in_units(kind: Kind, value: int) -> int | float:
    """A counter's amount in the limit's unit: budgets in USD (the counters hold
    nano-dollars); tokens and requests stay integers."""
    return value / NANO_PER_USD if kind is Kind.BUDGET else value


def amounts_view(kind: Kind, limit: int, used: int, reserved: int, remaining: int) -> dict[str, Any]:
    """A limit's unit and amounts as every readout shows them (a concurrency limit counts requests)."""
    unit = "usd" if kind is Kind.BUDGET else "requests" if kind is Kind.IN_FLIGHT else kind.value
    return {"unit": unit, "limit": in_units(kind, limit), "used": in_units(kind, used),
            "reserved": in_units(kind, reserved), "remaining": in_units(kind, remaining)}


def treatment_view(enforcement: Enforcement, shadow: bool) -> dict[str, Any]:
    """How a limit is enforced, as every readout shows it."""
    return {"enforcement": "strict" if enforcement.strict else "estimate",
            "on_insufficient": "clamp" if enforcement.clamp else "refuse", "mode": SHADOW if shadow else ENFORCE}


def limit_view(check: LimitCheck, parent: str | None, reading: CounterReading, now_ms: int) -> dict[str, Any]:
    """One limit as it stands (``reading``: its counter under the window current at
    ``now_ms``), JSON-ready: budgets in USD, times in RFC 3339 UTC. A concurrency limit's
    reservations are its requests in flight; it has no window."""
    base = {"level": check.scope.level.value, "id": check.scope.id, "name": check.scope.name,
            "virtual_key_id": parent, "kind": check.kind.value, "limit_id": check.counter.partition(":")[2]}
    if check.kind is Kind.IN_FLIGHT:
        return base | amounts_view(check.kind, check.limit, 0, reading.reserved, max(0, check.limit - reading.reserved)) | {
            "duration": None, "last_reset": None, "reset_at": None, "reset_in_s": None,
            "mode": SHADOW if check.shadow else ENFORCE}
    reset_at = next_reset_ms(check.duration, reading.last_reset_ms, check.alignment)
    remaining = max(0, check.limit - reading.used - reading.reserved)
    return base | amounts_view(check.kind, check.limit, reading.used, reading.reserved, remaining) | {
        "duration": str(check.duration), "last_reset": iso_utc(reading.last_reset_ms), "reset_at": iso_utc(reset_at),
        "reset_in_s": max(0, reset_at - now_ms) / 1000,
    } | treatment_view(check.enforcement, check.shadow)
