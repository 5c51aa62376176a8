"""The governance engine: which limits apply to a request, and what the counters say.

Pure: plain values in, plain values out; the clock is a parameter. The enforcer runs a
`Plan` against a `CounterStore` and hands the readings back to `decide`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tollway.governance import decisions
from tollway.governance.counters.base import AcquireResult, CounterOp, CounterReading, SettleOp, new_tuple
from tollway.governance.decisions import Denial
from tollway.governance.durations import Alignment, Duration, next_reset_ms, window_at
from tollway.governance.model import (
    ESTIMATE,
    ConcurrencyPolicy,
    Enforcement,
    Governed,
    Kind,
    PolicySnapshot,
    ProviderConfigPolicy,
    Scope,
    VirtualKeyPolicy,
    budget_counter,
    in_flight_counter,
    request_counter,
    token_counter,
)
from tollway.governance.names import model_key

# Values built once per request (RequestFacts, Plan, Allowed) are plain slotted dataclasses:
# a frozen one costs four times as much to construct (≈0.6 µs against 0.15 µs), and
# nothing mutates them anyway.


@dataclass(slots=True)
class RequestFacts:
    """What governance needs to know about one request before it is forwarded."""

    provider: str
    model: str
    key_hash: str | None  # `hash_key` of the virtual key presented, or None (the value itself is not needed)
    estimated_tokens: int
    estimated_cost_nano: int
    # The worst case, reserved on limits under strict enforcement; -1: the estimates above.
    worst_tokens: int = -1
    worst_cost_nano: int = -1
    # For clamping (see `governance.clamp`): the four amounts above at a given output cap,
    # and the cap the request asks for; None when its cap cannot be lowered (embeddings).
    demand: Callable[[int], tuple[int, int, int, int]] | None = None
    cap: int = 0
    tags: tuple[str, ...] = ()  # the request's own tags, normalised (`tollway.governance.tags`)
    end_user: str | None = None  # the end user the request names (`tollway.governance.end_users`)


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One limit that applies: a counter of ``kind`` that must stay within ``limit``."""

    scope: Scope
    kind: Kind
    counter: str
    limit: int
    duration: Duration  # for an in-flight check: `IN_FLIGHT_RETRY`, it has no window
    alignment: Alignment | None = None
    enforcement: Enforcement = ESTIMATE  # strict or estimate, clamp or refuse (tokens and budgets)
    queue_timeout_ms: int = 0  # an in-flight check's bounded wait for a slot (0: refuse at once)
    shadow: bool = False  # mode: shadow: counted like any other, never denies (see `would_deny`)
    # The limit the counter store enforces: the check's own, or for a shadow check one no
    # total reaches, so that its reservation always succeeds and its readings stay real.
    store_limit: int = field(init=False, repr=False, compare=False)
    # A rolling window's length, precomputed: most windows are then two subtractions.
    rolling_ms: int | None = field(init=False, repr=False, compare=False)
    # The longest a window can last, for the store's key expiry (see `CounterOp.window_ms`).
    window_ms: int = field(init=False, repr=False, compare=False)
    # Index of the kind in (requests, tokens, budget, in flight) amounts: a tuple index, where
    # a dict keyed by the enum would hash it in Python on every request.
    slot: int = field(init=False, repr=False, compare=False)
    # The constant parts of its x-ratelimit-* headers (None for a budget or an in-flight
    # limit, which have none).
    header_parts: decisions.RateLimitHeaderParts | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        in_flight = self.kind is Kind.IN_FLIGHT
        # An in-flight counter never rolls and never expires: its ops take `_NO_WINDOW`.
        object.__setattr__(self, "rolling_ms", None if in_flight or self.alignment is not None
                           else self.duration.fixed_ms)
        object.__setattr__(self, "window_ms", 0 if in_flight else _longest_window_ms(self.duration, self.alignment))
        object.__setattr__(self, "slot", _SLOTS[self.kind])
        object.__setattr__(self, "store_limit", SHADOW_STORE_LIMIT if self.shadow else self.limit)
        object.__setattr__(self, "header_parts", None if self.slot >= _BUDGET_SLOT
                           else decisions.rate_limit_header_parts(self.kind, self.limit))


# Above any total a counter reaches (2^62 nano-dollars is 4.6 billion USD) and exact as a
# double, which is how Redis' Lua compares it.
SHADOW_STORE_LIMIT = 2**62
_SLOTS = {Kind.REQUESTS: 0, Kind.TOKENS: 1, Kind.BUDGET: 2, Kind.IN_FLIGHT: 3}
_BUDGET_SLOT = _SLOTS[Kind.BUDGET]
# The "window" of an in-flight check, named in explanations: a slot may free any moment,
# and a denied client is told to retry in a second.
IN_FLIGHT_RETRY = Duration(decisions.CONCURRENCY_RETRY_AFTER_S, "s")
# floor_ms 0: the counter's state is always current (its usage stays 0; only its
# reservations, the requests in flight, count); reset_to_ms 0 marks it as never reset.
_NO_WINDOW = (0, 0)


class WindowMemo:
    """`window_at` for calendar-aligned windows, remembered until their period ends.

    Computing a calendar window costs microseconds (time zones, month arithmetic); the
    enforcer keeps one memo so that each period is computed once, not per request.
    """

    __slots__ = ("_periods",)

    def __init__(self) -> None:
        self._periods: dict[tuple[int, str, str, int], tuple[int, int]] = {}

    def window(self, duration: Duration, alignment: Alignment, now_ms: int) -> tuple[int, int]:
        """(floor_ms, reset_to_ms) at ``now_ms``."""
        # Keyed on plain fields: hashing the two dataclasses runs Python code, a tuple of these does not.
        key = (duration.count, duration.unit, alignment.tz, alignment.week_start)
        period = self._periods.get(key)
        if period is None or not period[0] <= now_ms < period[1]:
            start = window_at(duration, now_ms, alignment).floor_ms
            period = self._periods[key] = (start, next_reset_ms(duration, start, alignment))
        return period[0], period[0]


@dataclass(slots=True)
class Plan:
    """The checks for one request, in evaluation order, and the amount each reserves."""

    checks: tuple[LimitCheck, ...]
    amounts: tuple[int, ...]
    key: VirtualKeyPolicy | None = None
    team_id: str | None = None
    customer_id: str | None = None
    allowed_provider_keys: frozenset[str] = frozenset()  # from the key's provider config; empty = all
    tags: tuple[str, ...] = ()  # the request's tags with the key's forced tags (what the request log records)


@dataclass(slots=True)
class Allowed:
    """Every enforced limit had room; ``headers`` are the ``x-ratelimit-*`` of the tightest
    enforced sides; ``would_deny``: the denial the first shadow limit without room would
    have given, had it been enforced."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    would_deny: Denial | None = None


StaticChecks = Callable[[PolicySnapshot, VirtualKeyPolicy | None, str, str], tuple[LimitCheck, ...]]
# The static checks with an end user's in their places (`tollway.governance.end_users.EndUserMemo`).
EndUserPlanner = Callable[[tuple[LimitCheck, ...], PolicySnapshot, VirtualKeyPolicy, str], tuple[LimitCheck, ...]]


def hash_key(value: str) -> str:
    """The stored form of a virtual key value (values themselves are never kept)."""
    return hashlib.sha256(value.encode()).hexdigest()


def plan(snapshot: PolicySnapshot, facts: RequestFacts, static: StaticChecks | None = None, *,
         now_ms: int = 0, end_users: EndUserPlanner | None = None) -> Plan | Denial:
    """The limits a request must pass, or the identity denial that stops it first.

    Deliberate deviation from SPEC §3's order: the key's identity checks (required,
    exists, not expired at ``now_ms``, active, provider and model allowed) run before any
    counter check. A caller with an invalid key must learn nothing about limits, and those
    checks need no counter. Pass ``static`` to reuse memoised check tuples (see `static_checks`),
    and ``end_users`` to add the checks of the request's end user (none without it).
    """
    key = _identify(snapshot, facts, now_ms)
    if isinstance(key, Denial):
        return key
    checks = (static or static_checks)(snapshot, key, facts.provider, facts.model)
    if facts.end_user is not None and key is not None and end_users is not None:
        checks = end_users(checks, snapshot, key, facts.end_user)
    amounts = amounts_for(checks, facts)
    if key is None:
        return Plan(checks, amounts)
    team_id, customer_id = owner_ids(snapshot, key)
    config = key.provider_configs.get(facts.provider)
    allowed_keys = config.allowed_keys if config else frozenset()
    return Plan(checks, amounts, key, team_id, customer_id, allowed_keys)


def amounts_for(checks: tuple[LimitCheck, ...], facts: RequestFacts) -> tuple[int, ...]:
    """What each check reserves for the request: its estimate, or its worst case where enforcement is strict."""
    per_slot = (1, facts.estimated_tokens, facts.estimated_cost_nano, 1)
    if facts.worst_tokens < 0:
        return tuple([per_slot[check.slot] for check in checks])
    return strict_amounts(checks, per_slot, (1, facts.worst_tokens, facts.worst_cost_nano, 1))


def strict_amounts(checks: tuple[LimitCheck, ...], estimate: tuple[int, ...], worst: tuple[int, ...]) -> tuple[int, ...]:
    """Per check: the worst case where enforcement is strict, else the estimate (by slot)."""
    return tuple([(worst if check.enforcement.strict else estimate)[check.slot] for check in checks])


def owner_ids(snapshot: PolicySnapshot, key: VirtualKeyPolicy) -> tuple[str | None, str | None]:
    """The key's team and customer ids; a team's key belongs to the team's customer."""
    if key.customer_id or not key.team_id:
        return key.team_id, key.customer_id
    team = snapshot.teams.get(key.team_id)
    return key.team_id, team.customer_id if team else None


def static_checks(
    snapshot: PolicySnapshot, key: VirtualKeyPolicy | None, provider: str, model: str
) -> tuple[LimitCheck, ...]:
    """Every limit for (key, provider, model) in evaluation order; depends on the snapshot only.

    Order: provider rate limit then budget; the (model, provider) config, then the
    model-only config; rate limits of key, provider config, team, customer; budgets of
    provider config, key, team, customer. Both sides of a rate limit are separate checks,
    so one side's window never hides the other's. Concurrency limits come last, in the
    same order of levels: a request that another limit refuses never waits for a slot.
    """
    checks: list[LimitCheck] = []
    for governed in (
        snapshot.providers.get(provider),
        snapshot.model_configs.get((model, provider)),
        snapshot.model_configs.get((model, None)),
    ):
        if governed is not None:
            _add_rate_limit(checks, governed)
            _add_budget(checks, governed)
    key_limits, config_limits, team_limits, customer_limits = _key_owners(snapshot, key, provider)
    for governed in (key_limits, config_limits, team_limits, customer_limits):
        if governed is not None:
            _add_rate_limit(checks, governed)
    for governed in (config_limits, key_limits, team_limits, customer_limits):
        if governed is not None:
            _add_budget(checks, governed)
    _add_concurrency(checks, snapshot, provider, model, (key_limits, config_limits, team_limits, customer_limits))
    return tuple(checks)


def acquire_ops(plan: Plan, now_ms: int, memo: WindowMemo | None = None) -> list[CounterOp]:
    """The store operations that reserve the plan's amounts under the windows current at ``now_ms``."""
    ops = []
    for check, amount in zip(plan.checks, plan.amounts):
        rolling = check.rolling_ms
        if rolling is not None:  # window_at's rolling rule, inlined: the common case is hot
            ops.append(new_tuple(CounterOp, (check.counter, check.store_limit, amount, now_ms - rolling + 1, now_ms, rolling)))
        else:
            ops.append(new_tuple(CounterOp, (check.counter, check.store_limit, amount, *_calendar_window(check, now_ms, memo),
                                          check.window_ms)))
    return ops


def settle_ops(plan: Plan, now_ms: int, tokens: int, cost_nano: int, memo: WindowMemo | None = None) -> list[SettleOp]:
    """Replace the plan's reservations with actual usage: 1 request, ``tokens``, ``cost_nano``
    (and the request's in-flight slots freed)."""
    return _replace(plan, now_ms, (1, tokens, cost_nano, 0), memo)


def release_ops(plan: Plan, now_ms: int, memo: WindowMemo | None = None) -> list[SettleOp]:
    """Drop the plan's reservations and charge nothing (the upstream call failed)."""
    return _replace(plan, now_ms, (0, 0, 0, 0), memo)


def decide(plan: Plan, result: AcquireResult, now_ms: int) -> Allowed | Denial:
    """The verdict on an acquire: the denial of the first check that did not fit, or
    the rate-limit headers of the tightest enforced request and token checks, the budget
    headers of the tightest enforced budget (what is left after this request's
    reservation), and what the first shadow check without room would have denied."""
    if result.failed >= 0:  # never a shadow check: the store holds those to no real limit
        index = result.failed
        return deny(plan.checks[index], result.readings[index], plan.amounts[index], now_ms)
    # The tightest check of each side: (remaining, check, reading), by slot (requests, tokens, budget).
    tightest: list[tuple[int, LimitCheck, CounterReading] | None] = [None, None, None]
    would: Denial | None = None
    for check, reading, amount in zip(plan.checks, result.readings, plan.amounts):
        if check.shadow:  # binds nothing, so no headers; the readings include its own reservation
            if would is None and reading.used + reading.reserved > check.limit:
                would = would_deny(check, reading, amount, now_ms)
            continue
        slot = check.slot
        if slot > _BUDGET_SLOT:  # in-flight limits have no headers
            continue
        remaining = check.limit - reading.used - reading.reserved
        best = tightest[slot]
        if best is None or remaining < best[0]:
            tightest[slot] = (remaining, check, reading)
    headers: list[tuple[bytes, bytes]] = []
    for side in tightest[:_BUDGET_SLOT]:
        if side is not None:
            remaining, check, reading = side
            assert check.header_parts is not None  # requests and tokens checks have them
            headers += decisions.rate_limit_headers(check.header_parts, remaining,
                                                    _next_reset_ms(check, reading.last_reset_ms) - now_ms)
    budget = tightest[_BUDGET_SLOT]
    if budget is not None:
        remaining, check, reading = budget
        headers += decisions.budget_headers(remaining, _next_reset_ms(check, reading.last_reset_ms))
    return Allowed(headers, would)


def would_deny(check: LimitCheck, reading: CounterReading, amount: int, now_ms: int) -> Denial:
    """The denial a shadow ``check`` would have given had it been enforced; ``reading`` is
    its counter after the request reserved ``amount`` on it."""
    return deny(check, reading._replace(reserved=reading.reserved - amount), amount, now_ms)


def deny(check: LimitCheck, reading: CounterReading, amount: int, now_ms: int) -> Denial:
    """The denial for ``check``, whose counter read ``reading``, when ``amount`` did not fit."""
    if check.kind is Kind.IN_FLIGHT:
        return decisions.concurrency_denial(check.scope, check.limit, reading.reserved, now_ms)
    reset_at = _next_reset_ms(check, reading.last_reset_ms)
    used = reading.used + reading.reserved
    return decisions.limit_denial(check.kind, check.scope, check.limit, used, amount, check.duration, reset_at, now_ms,
                                  reserved=reading.reserved, strict=check.enforcement.strict)


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """One applicable limit as it stands (for explaining, never for enforcing);
    ``would_deny``: a shadow limit that has no room for the request."""

    scope: Scope
    kind: Kind
    limit: int
    used: int
    reserved: int
    remaining: int
    duration: Duration
    reset_at_ms: int
    binding: bool = False
    enforcement: Enforcement = ESTIMATE
    requested: int = 0  # what this request would reserve on it: its estimate, or its worst case under strict
    shadow: bool = False
    would_deny: bool = False


def assess(plan: Plan, readings: tuple[CounterReading, ...], now_ms: int) -> tuple[Denial | None, tuple[LimitStatus, ...]]:
    """What a request would get now, without reserving, and where every limit stands.

    The binding limit is the enforced one that would deny; when none would, the enforced
    one with the smallest share of its limit left. Shadow limits never bind: one without
    room is marked ``would_deny`` (see `shadow_denial` for the denial it would give).
    """
    denial: Denial | None = None
    binding = -1
    statuses = []
    for index, (check, reading, amount) in enumerate(zip(plan.checks, readings, plan.amounts)):
        remaining = check.limit - reading.used - reading.reserved
        short = amount > remaining
        if denial is None and short and not check.shadow:
            denial, binding = deny(check, reading, amount, now_ms), index
        reset_at = now_ms if check.kind is Kind.IN_FLIGHT else _next_reset_ms(check, reading.last_reset_ms)
        statuses.append(LimitStatus(check.scope, check.kind, check.limit, reading.used, reading.reserved,
                                    max(0, remaining), check.duration, reset_at, False, check.enforcement, amount,
                                    shadow=check.shadow, would_deny=short and check.shadow))
    enforced = [index for index, check in enumerate(plan.checks) if not check.shadow]
    if binding < 0 and enforced:
        binding = enforced[0]
        for index in enforced:
            status, best = statuses[index], statuses[binding]
            if status.remaining * best.limit < best.remaining * status.limit:  # shares, without floats
                binding = index
    if binding >= 0:
        statuses[binding] = replace(statuses[binding], binding=True)
    return denial, tuple(statuses)


def shadow_denial(plan: Plan, readings: tuple[CounterReading, ...], now_ms: int) -> Denial | None:
    """What the first shadow limit without room for the plan's amounts (``readings``
    taken without reserving) would deny, had it been enforced; None when all have room."""
    for check, reading, amount in zip(plan.checks, readings, plan.amounts):
        if check.shadow and amount > check.limit - reading.used - reading.reserved:
            return deny(check, reading, amount, now_ms)
    return None


def _identify(snapshot: PolicySnapshot, facts: RequestFacts, now_ms: int) -> VirtualKeyPolicy | Denial | None:
    """The key presented (None when none is and none is required), or why it cannot be used."""
    key = identify_key(snapshot, facts.key_hash, now_ms)
    if key is None or isinstance(key, Denial):
        return key
    return access_denial(key, facts.provider, facts.model) or key


def identify_key(snapshot: PolicySnapshot, key_hash: str | None, now_ms: int) -> VirtualKeyPolicy | Denial | None:
    """The usable key with this hash (None when none is presented and none is required),
    or the denial of a missing, unknown, expired (at ``now_ms``) or inactive key."""
    if key_hash is None:
        return decisions.key_required() if snapshot.enforce_virtual_keys else None
    key = snapshot.keys_by_hash.get(key_hash)
    if key is None:
        return decisions.key_not_found()
    if now_ms >= key.expires_at_ms:
        return decisions.key_expired(key.limits.scope, key.expires_at_ms, key.retired_value)
    if not key.is_active:
        return decisions.key_blocked(key.limits.scope)
    return key


def access_denial(key: VirtualKeyPolicy, provider: str, model: str) -> Denial | None:
    """Why ``key`` may not use ``model`` on ``provider`` (its provider configs and allowed
    models), or None when it may."""
    scope = key.limits.scope
    config: ProviderConfigPolicy | None = None
    if key.provider_configs:
        config = key.provider_configs.get(provider)
        if config is None:
            return decisions.provider_blocked(scope, provider, key.provider_configs)
    if not _model_allowed(key.allowed_models, provider, model):
        return decisions.model_blocked(scope, provider, model, key.allowed_models)
    if config is not None and not _model_allowed(config.allowed_models, provider, model):
        return decisions.model_blocked(config.limits.scope, provider, model, config.allowed_models)
    return None


def _model_allowed(allowed: frozenset[str], provider: str, model: str) -> bool:
    """``model`` and the names in ``allowed`` are `model_key`s (the snapshot keys them so)."""
    return not allowed or model in allowed or model_key(f"{provider}/{model}") in allowed


def _key_owners(snapshot: PolicySnapshot, key: VirtualKeyPolicy | None, provider: str) -> tuple[Governed | None, ...]:
    """The limits of the key, its provider config, its team and its customer (None where absent)."""
    if key is None:
        return None, None, None, None
    config = key.provider_configs.get(provider)
    team_id, customer_id = owner_ids(snapshot, key)
    team = snapshot.teams.get(team_id) if team_id else None
    customer = snapshot.customers.get(customer_id) if customer_id else None
    return key.limits, config.limits if config else None, team.limits if team else None, customer


def rate_limit_checks(governed: Governed) -> list[LimitCheck]:
    """The checks of an entity's rate limit: its request side, then its token side (each
    only where it is set). With `budget_checks` and `concurrency_checks`, the one place a
    limit becomes a counter: enforcement, explanations and every readout build them here."""
    limit = governed.rate_limit
    if limit is None:
        return []
    checks = []
    if limit.request_max_limit is not None and limit.request_duration is not None:
        checks.append(LimitCheck(governed.scope, Kind.REQUESTS, request_counter(limit.id),
                                 limit.request_max_limit, limit.request_duration, shadow=limit.shadow))
    if limit.token_max_limit is not None and limit.token_duration is not None:
        checks.append(LimitCheck(governed.scope, Kind.TOKENS, token_counter(limit.id),
                                 limit.token_max_limit, limit.token_duration, enforcement=limit.enforcement,
                                 shadow=limit.shadow))
    return checks


def budget_checks(governed: Governed) -> list[LimitCheck]:
    """The check of an entity's budget (none when it has none)."""
    budget = governed.budget
    if budget is None:
        return []
    return [LimitCheck(governed.scope, Kind.BUDGET, budget_counter(budget.id), budget.max_limit_nano,
                       budget.duration, budget.alignment, budget.enforcement, shadow=budget.shadow)]


def concurrency_checks(governed: Governed) -> list[LimitCheck]:
    """The in-flight check of an entity's concurrency limit (none when it has none)."""
    limit: ConcurrencyPolicy | None = governed.concurrency
    if limit is None:
        return []
    # A shadow slot is counted but never waited for: no queue timeout.
    return [LimitCheck(governed.scope, Kind.IN_FLIGHT, in_flight_counter(limit.id), limit.max_in_flight,
                       IN_FLIGHT_RETRY, queue_timeout_ms=0 if limit.shadow else limit.queue_timeout_ms,
                       shadow=limit.shadow)]


def read_ops(checks: tuple[LimitCheck, ...], now_ms: int) -> list[CounterOp]:
    """Operations that read ``checks``' counters under the windows current at ``now_ms``
    (reserving nothing): what every readout of live usage reads."""
    return acquire_ops(Plan(checks, (0,) * len(checks)), now_ms)


def _add_rate_limit(checks: list[LimitCheck], governed: Governed) -> None:
    if governed.rate_limit is not None:
        checks += rate_limit_checks(governed)


def _add_budget(checks: list[LimitCheck], governed: Governed) -> None:
    if governed.budget is not None:
        checks += budget_checks(governed)


def _add_concurrency(checks: list[LimitCheck], snapshot: PolicySnapshot, provider: str, model: str,
                     owners: tuple[Governed | None, ...]) -> None:
    """The in-flight checks of every level that has a concurrency limit (none: no work)."""
    for governed in (snapshot.providers.get(provider), snapshot.model_configs.get((model, provider)),
                     snapshot.model_configs.get((model, None)), *owners):
        if governed is not None and governed.concurrency is not None:
            checks += concurrency_checks(governed)


def _replace(plan: Plan, now_ms: int, actual: tuple[int, int, int, int], memo: WindowMemo | None) -> list[SettleOp]:
    """Settle ops charging ``actual`` (requests, tokens, budget, in flight) in place of the reserved amounts."""
    ops = []
    for check, amount in zip(plan.checks, plan.amounts):
        rolling = check.rolling_ms
        if rolling is not None:
            ops.append(new_tuple(SettleOp, (check.counter, amount, actual[check.slot], now_ms - rolling + 1, now_ms, rolling)))
        else:
            ops.append(new_tuple(SettleOp, (check.counter, amount, actual[check.slot],
                                         *_calendar_window(check, now_ms, memo), check.window_ms)))
    return ops


def _next_reset_ms(check: LimitCheck, last_reset_ms: int) -> int:
    """`next_reset_ms` of the check's window; a rolling window of fixed length is one addition."""
    rolling = check.rolling_ms
    if rolling is not None:
        return last_reset_ms + rolling
    return next_reset_ms(check.duration, last_reset_ms, check.alignment)


_HOUR_MS = 3_600_000
_MONTH_MS = 31 * 24 * _HOUR_MS  # the longest calendar month


def _longest_window_ms(duration: Duration, alignment: Alignment | None) -> int:
    """An upper bound of the window's length: months count 31 days, and an aligned day
    or week may gain an hour at a daylight-saving change."""
    fixed = duration.fixed_ms
    if fixed is None:
        return duration.count * (12 if duration.unit == "Y" else 1) * _MONTH_MS + _HOUR_MS
    return fixed + (_HOUR_MS if alignment is not None else 0)


def _calendar_window(check: LimitCheck, now_ms: int, memo: WindowMemo | None) -> tuple[int, int]:
    """(floor_ms, reset_to_ms) of an aligned window or a rolling month or year (or of
    no window at all: an in-flight check)."""
    if check.kind is Kind.IN_FLIGHT:
        return _NO_WINDOW
    if memo is not None and check.alignment is not None:
        return memo.window(check.duration, check.alignment, now_ms)
    window = window_at(check.duration, now_ms, check.alignment)
    return window.floor_ms, window.reset_to_ms
