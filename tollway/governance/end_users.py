"""End users: the limits each end user of a key, team or customer gets from its template.

An application behind one virtual key serves many people of its own; the request names
one of them (OpenAI ``user``, Anthropic ``metadata.user_id`` or ``x-tollway-user``) and
the ``end_user_limits`` of the key, its team and its customer give that person a budget,
rate limit and concurrency limit of their own: the same policies for every end user, each
with counters of its own, named after the template's policy and the end user
(`end_user_counter`). An operator's override gives one end user other limits on the same
counters (their usage carries over).

Order: an end user is the narrowest level, so their rate limits come before the key's,
their budgets before the provider config's, and their concurrency limits after every
other (SPEC §3's order otherwise unchanged). Pure: no I/O; `EndUserMemo` only remembers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tollway.governance.engine import IN_FLIGHT_RETRY, LimitCheck
from tollway.governance.memo_scope import KeyMemoScope
from tollway.governance.model import (
    EndUserLimits,
    EndUserTemplate,
    Kind,
    Level,
    PolicySnapshot,
    Scope,
    VirtualKeyPolicy,
    budget_counter,
    in_flight_counter,
    request_counter,
    token_counter,
)

# The longest end user id a request may name (a 400 beyond, `tollway.proxy.end_user`).
MAX_END_USER_LENGTH = 256
# Ids up to this long name their counters as they are; longer ones (and those that could be
# taken for a digest) by a digest, so that a counter's name stays bounded.
_PLAIN_ID_LENGTH = 64
_DIGEST_MARK = "~"
# Distinct (key, end user) pairs whose checks are remembered; end users are chosen by
# clients, so the memo must be bounded.
MEMO_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class EndUserChecks:
    """One end user's checks of one request, by where each goes in the plan."""

    rate_limits: tuple[LimitCheck, ...]
    budgets: tuple[LimitCheck, ...]
    concurrency: tuple[LimitCheck, ...]


NO_CHECKS = EndUserChecks((), (), ())


def end_user_counter(counter: str, end_user: str) -> str:
    """The counter of ``end_user`` under a template policy's ``counter``: the id itself when
    short, else a digest of it (bounded names in memory, in Redis and in the database)."""
    if len(end_user) > _PLAIN_ID_LENGTH or end_user.startswith(_DIGEST_MARK) or ":" in end_user:
        end_user = _DIGEST_MARK + hashlib.sha256(end_user.encode()).hexdigest()[:40]
    return counter + ":" + end_user


def templates_of(snapshot: PolicySnapshot, key: VirtualKeyPolicy) -> tuple[EndUserTemplate, ...]:
    """The end-user templates that apply to ``key``'s requests: its own, its team's, its
    customer's (a team's key belongs to the team's customer), narrowest first."""
    found = []
    if key.limits.end_user_limits is not None:
        found.append(key.limits.end_user_limits)
    customer_id = key.customer_id
    if key.team_id:
        team = snapshot.teams.get(key.team_id)
        if team is not None:
            if team.limits.end_user_limits is not None:
                found.append(team.limits.end_user_limits)
            customer_id = customer_id or team.customer_id
    if customer_id:
        customer = snapshot.customers.get(customer_id)
        if customer is not None and customer.end_user_limits is not None:
            found.append(customer.end_user_limits)
    return tuple(found)


def end_user_checks(templates: tuple[EndUserTemplate, ...], end_user: str) -> EndUserChecks:
    """``end_user``'s checks under ``templates`` (their override where they have one)."""
    scope = Scope(Level.END_USER, end_user, end_user)
    rates: list[LimitCheck] = []
    budgets: list[LimitCheck] = []
    slots: list[LimitCheck] = []
    for template in templates:
        limits = _limits_for(template, end_user)
        rate = limits.rate_limit
        if rate is not None:
            if rate.request_max_limit is not None and rate.request_duration is not None:
                rates.append(LimitCheck(scope, Kind.REQUESTS, end_user_counter(request_counter(rate.id), end_user),
                                        rate.request_max_limit, rate.request_duration, shadow=rate.shadow))
            if rate.token_max_limit is not None and rate.token_duration is not None:
                rates.append(LimitCheck(scope, Kind.TOKENS, end_user_counter(token_counter(rate.id), end_user),
                                        rate.token_max_limit, rate.token_duration, enforcement=rate.enforcement,
                                        shadow=rate.shadow))
        budget = limits.budget
        if budget is not None:
            budgets.append(LimitCheck(scope, Kind.BUDGET, end_user_counter(budget_counter(budget.id), end_user),
                                      budget.max_limit_nano, budget.duration, budget.alignment, budget.enforcement,
                                      shadow=budget.shadow))
        concurrency = limits.concurrency
        if concurrency is not None:
            slots.append(LimitCheck(scope, Kind.IN_FLIGHT, end_user_counter(in_flight_counter(concurrency.id), end_user),
                                    concurrency.max_in_flight, IN_FLIGHT_RETRY,
                                    queue_timeout_ms=0 if concurrency.shadow else concurrency.queue_timeout_ms,
                                    shadow=concurrency.shadow))
    if not (rates or budgets or slots):
        return NO_CHECKS
    return EndUserChecks(tuple(rates), tuple(budgets), tuple(slots))


def _limits_for(template: EndUserTemplate, end_user: str) -> EndUserLimits:
    """The template's limits, with the parts of ``end_user``'s override in their place."""
    override = template.overrides.get(end_user) if template.overrides else None
    if override is None:
        return template.limits
    base = template.limits
    return EndUserLimits(override.budget or base.budget, override.rate_limit or base.rate_limit,
                         override.concurrency or base.concurrency)


def merged(static: tuple[LimitCheck, ...], extra: EndUserChecks) -> tuple[LimitCheck, ...]:
    """``static`` (rate limits, then budgets, then concurrency limits: `static_checks`'
    order) with the end user's checks in their places (see the module's docstring)."""
    if extra is NO_CHECKS:
        return static
    first_budget = first_slot = len(static)
    for index, check in enumerate(static):
        if check.kind is Kind.BUDGET and first_budget == len(static):
            first_budget = index
        elif check.kind is Kind.IN_FLIGHT:
            first_slot = index
            first_budget = min(first_budget, index)
            break
    return (extra.rate_limits + static[:first_budget] + extra.budgets + static[first_budget:first_slot]
            + static[first_slot:] + extra.concurrency)


class EndUserMemo:
    """`end_user_checks` remembered per (key, end user) for one snapshot, so that a returning
    end user's request builds no check; bounded (oldest forgotten first)."""

    __slots__ = ("_entries", "_scope", "_size")

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._size = size
        self._scope = KeyMemoScope()  # kept across changes to other keys only
        # (key id, end user) -> (the key's policy they were built for, the checks)
        self._entries: dict[tuple[str, str], tuple[VirtualKeyPolicy, EndUserChecks]] = {}

    def __call__(self, static: tuple[LimitCheck, ...], snapshot: PolicySnapshot, key: VirtualKeyPolicy,
                 end_user: str) -> tuple[LimitCheck, ...]:
        """``static`` with ``end_user``'s checks under ``key`` (see `merged`)."""
        if not self._scope.carries_over(snapshot):  # limits changed: what was remembered may be stale
            self._entries = {}
        memo_key = (key.id, end_user)
        entry = self._entries.get(memo_key)
        if entry is not None and entry[0] is key:
            return merged(static, entry[1])
        templates = templates_of(snapshot, key)
        if not templates:
            if entry is not None:
                del self._entries[memo_key]
            return static  # nothing to remember: three lookups are cheaper than the memo
        if entry is None and len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        checks = end_user_checks(templates, end_user)
        self._entries[memo_key] = (key, checks)
        return merged(static, checks)


def plan_end_users(static: tuple[LimitCheck, ...], snapshot: PolicySnapshot, key: VirtualKeyPolicy,
                   end_user: str) -> tuple[LimitCheck, ...]:
    """`EndUserMemo` without the memo (explanations, tests)."""
    templates = templates_of(snapshot, key)
    return merged(static, end_user_checks(templates, end_user)) if templates else static
