"""Every limit of a policy snapshot as a `LimitCheck`: what the usage API shows and the
alert monitor watches. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterator

from tollway.governance.engine import IN_FLIGHT_RETRY, LimitCheck
from tollway.governance.model import (
    Governed,
    Kind,
    Level,
    PolicySnapshot,
    budget_counter,
    in_flight_counter,
    request_counter,
    token_counter,
)

KIND_ORDER = tuple(kind.value for kind in Kind)


def snapshot_checks(snapshot: PolicySnapshot) -> list[tuple[LimitCheck, str | None]]:
    """Every limit of the snapshot with, for provider configs, the key they belong to;
    sorted by level, id and kind."""
    governed: list[tuple[Governed, str | None]] = [(g, None) for g in snapshot.providers.values()]
    governed += [(g, None) for g in snapshot.model_configs.values()]
    governed += [(g, None) for g in snapshot.customers.values()]
    governed += [(team.limits, None) for team in snapshot.teams.values()]
    for key in snapshot.keys_by_hash.values():
        governed.append((key.limits, None))
        governed += [(config.limits, key.id) for config in key.provider_configs.values()]
    checks = [(check, parent) for limits, parent in governed for check in limit_checks(limits)]
    order = {level: index for index, level in enumerate(Level)}
    checks.sort(key=lambda item: (order[item[0].scope.level], item[0].scope.id, KIND_ORDER.index(item[0].kind.value)))
    return checks


def limit_checks(governed: Governed) -> Iterator[LimitCheck]:
    """The checks of one entity's rate limit (requests, tokens), budget and concurrency limit."""
    scope, rate_limit, budget = governed.scope, governed.rate_limit, governed.budget
    if rate_limit is not None:
        if rate_limit.request_max_limit is not None and rate_limit.request_duration is not None:
            yield LimitCheck(scope, Kind.REQUESTS, request_counter(rate_limit.id), rate_limit.request_max_limit,
                             rate_limit.request_duration, shadow=rate_limit.shadow)
        if rate_limit.token_max_limit is not None and rate_limit.token_duration is not None:
            yield LimitCheck(scope, Kind.TOKENS, token_counter(rate_limit.id), rate_limit.token_max_limit,
                             rate_limit.token_duration, enforcement=rate_limit.enforcement, shadow=rate_limit.shadow)
    if budget is not None:
        yield LimitCheck(scope, Kind.BUDGET, budget_counter(budget.id), budget.max_limit_nano, budget.duration,
                         budget.alignment, enforcement=budget.enforcement, shadow=budget.shadow)
    concurrency = governed.concurrency
    if concurrency is not None:
        yield LimitCheck(scope, Kind.IN_FLIGHT, in_flight_counter(concurrency.id), concurrency.max_in_flight,
                         IN_FLIGHT_RETRY, queue_timeout_ms=concurrency.queue_timeout_ms, shadow=concurrency.shadow)
