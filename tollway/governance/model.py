"""The governance policy as plain, immutable values: what the engine decides over.

A `PolicySnapshot` is built from the config store and swapped atomically when
configuration changes; the hot path only reads it. Money is integer nano-dollars
(1 USD = 1_000_000_000) so both counter backends add it exactly.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tollway.governance.durations import Alignment, Duration

NANO_PER_USD = 1_000_000_000
# The expiry of a key that never expires: later than any clock, so that the hot path's
# expiry check is one integer comparison.
NEVER_MS = 1 << 62


class Level(str, enum.Enum):
    """Where in the hierarchy a limit lives (named in denials)."""

    PROVIDER = "provider"
    MODEL = "model"
    VIRTUAL_KEY = "virtual_key"
    PROVIDER_CONFIG = "provider_config"
    TEAM = "team"
    CUSTOMER = "customer"
    TAG = "tag"  # a request tag's own limits, shared by every key (`governance.tags`)
    END_USER = "end_user"  # one end user of a key, team or customer (their `end_user_limits`)
    LIMIT = "limit"  # a limit rule (`governance.limits`): the requests its selector matches


class Kind(str, enum.Enum):
    """What a counter counts."""

    REQUESTS = "requests"
    TOKENS = "tokens"
    BUDGET = "budget"  # nano-dollars
    IN_FLIGHT = "in_flight"  # requests admitted and not yet finished (held, never charged)


@dataclass(frozen=True, slots=True)
class Scope:
    """The entity a limit belongs to."""

    level: Level
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Enforcement:
    """How a budget or token limit holds (SPEC §8), resolved against the global default.

    ``strict``: a request reserves its worst case, so the limit is never exceeded;
    otherwise its estimate (``enforcement: estimate``). ``clamp``: under strict, a request
    whose worst case does not fit has its output cap lowered to what fits instead of
    being refused (``on_insufficient: clamp``).
    """

    strict: bool = False
    clamp: bool = False


ESTIMATE = Enforcement()

# SPEC §8 `mode`: an enforced limit denies; a shadow limit is evaluated and counted like
# any other but never denies, clamps or queues (the request log records `would_deny`).
ENFORCE = "enforce"
SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    id: str
    max_limit_nano: int
    duration: Duration
    alignment: Alignment | None = None
    enforcement: Enforcement = ESTIMATE
    shadow: bool = False  # mode: shadow (see ENFORCE, SHADOW)


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """Token and request sides are independent; either may be absent (None)."""

    id: str
    token_max_limit: int | None = None
    token_duration: Duration | None = None
    request_max_limit: int | None = None
    request_duration: Duration | None = None
    enforcement: Enforcement = ESTIMATE  # the token side's; requests are exact
    shadow: bool = False  # mode: shadow, for both sides


@dataclass(frozen=True, slots=True)
class ConcurrencyPolicy:
    """At most ``max_in_flight`` requests at once; with ``queue_timeout_ms`` > 0 a request
    that finds no free slot waits up to that long for one before it is refused."""

    id: str
    max_in_flight: int
    queue_timeout_ms: int = 0
    shadow: bool = False  # mode: shadow: slots are counted, never waited for


@dataclass(frozen=True, slots=True)
class EndUserLimits:
    """The limits every end user of one owner gets (or, as an override, one end user
    gets): each end user has counters of their own (`tollway.governance.end_users`)."""

    budget: BudgetPolicy | None = None
    rate_limit: RateLimitPolicy | None = None
    concurrency: ConcurrencyPolicy | None = None


@dataclass(frozen=True, slots=True)
class EndUserTemplate:
    """``end_user_limits`` of a key, team or customer (``owner``): ``limits`` for every end
    user, ``overrides`` for the end users an operator gave other limits (by end user id).
    The policies' ids name the template's counters, so an override shares the counters
    of the template it overrides (its usage carries over)."""

    owner: Scope
    limits: EndUserLimits
    overrides: Mapping[str, EndUserLimits] = field(default_factory=lambda: _frozen())


@dataclass(frozen=True, slots=True)
class EndUserSource:
    """Where a key's requests name their end user (SPEC §8 ``end_user``): the
    ``x-tollway-user`` header, the body (OpenAI ``user``, Anthropic ``metadata.user_id``),
    and whether a request must name one."""

    header: bool = True
    body: bool = True
    required: bool = False


ANY_END_USER_SOURCE = EndUserSource()


@dataclass(frozen=True, slots=True)
class Governed:
    """An entity's scope with its own (1:1) budget, rate limit and concurrency limit, and
    (keys, teams and customers) the template of its end users' limits."""

    scope: Scope
    budget: BudgetPolicy | None = None
    rate_limit: RateLimitPolicy | None = None
    concurrency: ConcurrencyPolicy | None = None
    end_user_limits: EndUserTemplate | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfigPolicy:
    """Routing and per-provider governance inside one virtual key."""

    provider: str
    weight: float
    allowed_models: frozenset[str]  # empty = all models of the provider
    allowed_keys: frozenset[str]  # provider key ids; empty = all
    limits: Governed


@dataclass(frozen=True, slots=True)
class VirtualKeyPolicy:
    id: str
    name: str
    is_active: bool
    team_id: str | None
    customer_id: str | None
    allowed_models: frozenset[str]  # "model" or "provider/model"; empty = all
    provider_configs: Mapping[str, ProviderConfigPolicy]  # by provider name; empty = all providers
    limits: Governed
    # Epoch ms from which this value no longer authenticates (`NEVER_MS`: never): the key's
    # ``expires_at``, or for a value replaced by a rotation the end of its grace period.
    expires_at_ms: int = NEVER_MS
    # The entry of a value replaced by a rotation (kept under its old hash for the grace
    # period); the current value's entry names that hash in ``previous_hash``.
    retired_value: bool = False
    previous_hash: str | None = None
    # Request tags (`tollway.governance.tags`): the only ones a request may name (empty: any),
    # and those every request of the key carries whether it names them or not.
    allowed_tags: frozenset[str] = frozenset()
    forced_tags: tuple[str, ...] = ()
    end_user: EndUserSource = ANY_END_USER_SOURCE  # where its requests name their end user


@dataclass(frozen=True, slots=True)
class TeamPolicy:
    customer_id: str | None
    limits: Governed


def _frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """Everything governance needs to decide, as of one configuration version."""

    providers: Mapping[str, Governed] = field(default_factory=_frozen)
    model_configs: Mapping[tuple[str, str | None], Governed] = field(default_factory=_frozen)
    keys_by_hash: Mapping[str, VirtualKeyPolicy] = field(default_factory=_frozen)
    teams: Mapping[str, TeamPolicy] = field(default_factory=_frozen)
    customers: Mapping[str, Governed] = field(default_factory=_frozen)
    tags: Mapping[str, Governed] = field(default_factory=_frozen)  # by tag name: the tags that have limits
    # Limit rules by name (`tollway.governance.limit_rules.LimitRule`; Any: the model must
    # not import the module that builds on it).
    limit_rules: Mapping[str, Any] = field(default_factory=_frozen)
    enforce_virtual_keys: bool = False
    version: int = 0


def budget_counter(budget_id: str) -> str:
    return "b:" + budget_id


def token_counter(rate_limit_id: str) -> str:
    return "rt:" + rate_limit_id


def request_counter(rate_limit_id: str) -> str:
    return "rr:" + rate_limit_id


def in_flight_counter(concurrency_id: str) -> str:
    """A concurrency limit's counter: its reservations are the requests in flight; it
    has no window and is never charged."""
    return "cf:" + concurrency_id
