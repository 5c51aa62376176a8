"""Limit rules (``governance.limits``): a budget, rate limit or concurrency limit on the
requests a selector matches, optionally one counter per value of a dimension.

A rule's ``match`` names dimensions of a request (provider, model, virtual key, team,
customer, tag, end user), each with the values it accepts; a request matches when every
named dimension has an accepted value (a tag matches when any of the request's tags is
accepted). Values are compared in the form the engine compares requests in: model names
as `tollway.governance.names.model_key` keys them (a client cannot escape a rule by
spelling a model differently), tags normalised (`tollway.governance.tags`), the rest as
they are (ids).

``per`` makes a rule a template: one set of counters per distinct value (or, with several
dimensions, per combination) of the request's ``per`` dimensions, named after the rule's
policies and the value (`template_counter`, the scheme end users' counters use, so that
the usage flush keeps them and eviction loads them back). A request that lacks a ``per``
dimension (no end user, no key, no tag) is not counted by the rule, or is refused (400
``limit_value_missing``) when the rule says ``when_missing: deny``.

Order in a plan: rule rate limits and budgets after every other level's (tags' included),
rule concurrency limits after every other concurrency limit; among rules, those that need
nothing of the request beyond its key, provider, model and tags first, then the rest,
each by name.

Matching is cheap: `RuleIndex` files each rule under its most selective dimension; the
rules of one (key, team, customer, provider, model, tags) are found once while the rules
stay as they are (`RulePlanner`'s bounded memo), and only rules that depend on the end user or are templated are looked at
per request. With no rules configured a plan is untouched. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tollway.governance.decisions import Denial, limit_value_missing
from tollway.governance.engine import (
    LimitCheck,
    Plan,
    RequestFacts,
    amounts_for,
    budget_checks,
    concurrency_checks,
    rate_limit_checks,
)
from tollway.governance.model import (
    BudgetPolicy,
    ConcurrencyPolicy,
    Governed,
    Kind,
    Level,
    PolicySnapshot,
    RateLimitPolicy,
    Scope,
)
from tollway.governance.names import canonical_model, model_key

PROVIDER, MODEL, VIRTUAL_KEY, TEAM, CUSTOMER, TAG, END_USER = (
    "provider", "model", "virtual_key", "team", "customer", "tag", "end_user")
DIMENSIONS = (PROVIDER, MODEL, VIRTUAL_KEY, TEAM, CUSTOMER, TAG, END_USER)
# Dimensions every request has; a rule counted per another is told what a request
# without it gets (`when_missing`).
ALWAYS_PRESENT = frozenset({PROVIDER, MODEL})
SKIP, DENY = "skip", "deny"
# Most selective first: the dimension a rule is filed under in the index. The end user is
# last and looked up per request (it is not part of the memo's key).
_SELECTIVITY = (VIRTUAL_KEY, TEAM, CUSTOMER, TAG, MODEL, PROVIDER, END_USER)
_MEMO_SIZE = 65_536  # (key, provider, model, tags) combinations and templated values remembered
_PLAIN_VALUE_LENGTH = 64
_DIGEST_MARK = "~"
_JOIN = "|"


@dataclass(frozen=True, slots=True)
class LimitRule:
    """One rule: ``match`` (dimension -> accepted values, normalised), ``per`` (the
    dimensions it keeps counters per, empty: one set of counters), its ``limits`` (scope
    level `Level.LIMIT`, id the rule's name) and what a request without a ``per``
    dimension gets (`SKIP`: not counted, `DENY`: refused)."""

    name: str
    match: Mapping[str, frozenset[str]]
    limits: Governed
    per: tuple[str, ...] = ()
    when_missing: str = SKIP
    # Whether the rule can be decided from (key, provider, model, tags) alone.
    fixed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", not self.per and END_USER not in self.match)


def selector_value(dimension: str, value: str) -> str:
    """``value`` of ``dimension`` in the form requests are compared in (ValueError, with
    `BadModelName` or `BadTag`, when no request could carry it)."""
    if dimension == MODEL:
        return model_key(canonical_model(value))
    if dimension == TAG:
        from tollway.governance.tags import normalise_tag  # tags builds on the inventory, which builds on this

        return normalise_tag(value)
    return value


def new_rule(name: str, match: Mapping[str, Sequence[str]], *, budget: BudgetPolicy | None = None,
             rate_limit: RateLimitPolicy | None = None, concurrency: ConcurrencyPolicy | None = None,
             per: Sequence[str] = (), when_missing: str = SKIP) -> LimitRule:
    """A rule with its selector's values normalised (`selector_value`)."""
    selector = {dimension: frozenset(selector_value(dimension, value) for value in values)
                for dimension, values in match.items()}
    limits = Governed(Scope(Level.LIMIT, name, name), budget, rate_limit, concurrency)
    return LimitRule(name, selector, limits, tuple(per), when_missing)


@dataclass(frozen=True, slots=True)
class RequestValues:
    """The values of a request's dimensions (None or empty where it has none)."""

    provider: str
    model: str
    virtual_key: str | None
    team: str | None
    customer: str | None
    tags: tuple[str, ...]
    end_user: str | None

    def of(self, dimension: str) -> tuple[str, ...]:
        """The request's values of ``dimension`` (a tuple: a request has several tags)."""
        if dimension == TAG:
            return self.tags
        value = getattr(self, dimension)
        return () if value is None else (value,)


def request_values(facts: RequestFacts, planned: Plan) -> RequestValues:
    """The dimensions of a planned request (its tags with the key's forced tags)."""
    key = planned.key
    return RequestValues(facts.provider, facts.model, key.id if key is not None else None, planned.team_id,
                         planned.customer_id, planned.tags, facts.end_user)


def matches(rule: LimitRule, values: RequestValues, *, end_user: bool = True) -> bool:
    """Whether every dimension the rule names has an accepted value (without ``end_user``:
    every dimension but the end user's)."""
    for dimension, accepted in rule.match.items():
        if dimension == END_USER and not end_user:
            continue
        if accepted.isdisjoint(values.of(dimension)):
            return False
    return True


def per_values(rule: LimitRule, values: RequestValues) -> list[tuple[str, ...]]:
    """The value combinations the request counts on under a templated rule: one per
    combination of its ``per`` dimensions (a tag dimension: the request's tags the rule
    accepts); empty when the request lacks one."""
    choices = []
    for dimension in rule.per:
        found = values.of(dimension)
        accepted = rule.match.get(dimension)
        if accepted is not None and len(found) > 1:
            found = tuple(value for value in found if value in accepted)
        if not found:
            return []
        choices.append(found)
    return list(itertools.product(*choices))


def template_counter(counter: str, values: Sequence[str]) -> str:
    """The counter of one combination of ``values`` under a templated rule's ``counter``:
    the value itself when short and plain, else a digest (bounded, unambiguous names);
    two separators, so that the usage flush and eviction treat it as end users' counters."""
    text = _JOIN.join(values)
    plain = (len(text) <= _PLAIN_VALUE_LENGTH and not text.startswith(_DIGEST_MARK) and ":" not in text
             and sum(value.count(_JOIN) for value in values) == 0)
    if not plain:
        text = _DIGEST_MARK + hashlib.sha256("\x00".join(values).encode()).hexdigest()[:40]
    return counter + ":" + text


def is_templated(counter: str) -> bool:
    """Whether ``counter`` is a templated rule's (a value after the policy's id)."""
    return counter.count(":") >= 2


def rule_checks(rule: LimitRule, values: tuple[str, ...] = ()) -> tuple[tuple[LimitCheck, ...], tuple[LimitCheck, ...]]:
    """The rule's (rate limit and budget checks, concurrency checks); for a templated rule
    those of the combination ``values``, on counters of their own."""
    checks = [*rate_limit_checks(rule.limits), *budget_checks(rule.limits), *concurrency_checks(rule.limits)]
    if values:
        label = ", ".join(f"{dimension} {value}" for dimension, value in zip(rule.per, values))
        scope = Scope(Level.LIMIT, rule.name + ":" + _JOIN.join(values), f"{rule.name} ({label})")
        checks = [dataclasses.replace(check, scope=scope, counter=template_counter(check.counter, values))
                  for check in checks]
    counted = tuple(check for check in checks if check.kind is not Kind.IN_FLIGHT)
    return counted, tuple(check for check in checks if check.kind is Kind.IN_FLIGHT)


class RuleIndex:
    """The rules of one snapshot filed under their most selective dimension's values."""

    __slots__ = ("by_dimension", "by_end_user")

    def __init__(self, rules: Mapping[str, LimitRule]) -> None:
        self.by_dimension: dict[str, dict[str, list[LimitRule]]] = {}
        self.by_end_user: dict[str, list[LimitRule]] = {}  # rules that select by end user alone
        for name in sorted(rules):
            rule = rules[name]
            dimension = next(d for d in _SELECTIVITY if d in rule.match)
            filed = self.by_end_user if dimension == END_USER else self.by_dimension.setdefault(dimension, {})
            for value in rule.match[dimension]:
                filed.setdefault(value, []).append(rule)

    def candidates(self, values: RequestValues) -> list[LimitRule]:
        """Rules that may match ``values`` apart from the end user, by name, each once."""
        found: dict[str, LimitRule] = {}
        for dimension, filed in self.by_dimension.items():
            for value in values.of(dimension):
                for rule in filed.get(value, ()):
                    found[rule.name] = rule
        return [found[name] for name in sorted(found)]


@dataclass(frozen=True, slots=True)
class _Matched:
    """The rules matching one (key, provider, model, tags), apart from the end user."""

    counted: tuple[LimitCheck, ...]  # of the fixed rules
    in_flight: tuple[LimitCheck, ...]
    dynamic: tuple[LimitRule, ...]  # templated, or selecting by end user: decided per request


_NOTHING = _Matched((), (), ())


_MatchedKey = tuple[str | None, str | None, str | None, str, str, tuple[str, ...]]


class RulePlanner:
    """Adds the checks of the limit rules a request matches to its plan (see the module).

    Its memos outlive snapshots: what they hold is a function of the rules and of the
    memo's key alone, and the key names every value matching reads but the end user
    (key, team, customer, provider, model, tags). So a change to a key, a team or a
    customer can make no entry wrong — a key moved to another team, or a team to
    another customer, presents other values and is planned again under them — and only
    a change to the rules (another ``limit_rules`` map: applied changes keep the map
    while no rule changed) clears them. Under a control plane changing 100 keys a
    second, clearing on every snapshot threw every plan away ten times a second."""

    __slots__ = ("_index", "_matched", "_rules", "_templated")

    def __init__(self) -> None:
        self._rules: Mapping[str, LimitRule] | None = None  # the rules the index and memos were built from
        self._index = RuleIndex({})
        self._matched: dict[_MatchedKey, _Matched] = {}
        self._templated: dict[tuple[str, tuple[str, ...]], tuple[tuple[LimitCheck, ...], tuple[LimitCheck, ...]]] = {}

    def apply(self, snapshot: PolicySnapshot, facts: RequestFacts, planned: Plan) -> Plan | Denial:
        """``planned`` with the checks of the rules it matches, or the denial of a rule
        that refuses requests without its ``per`` value."""
        rules = snapshot.limit_rules
        if not rules:
            return planned
        if rules is not self._rules:  # rules changed: compile them once, forget what the old ones planned
            self._rules, self._index = rules, RuleIndex(rules)
            self._matched, self._templated = {}, {}
        values = request_values(facts, planned)
        matched = self._matched_rules(values)
        dynamic: Sequence[LimitRule] = matched.dynamic
        if values.end_user is not None and self._index.by_end_user:
            extra = [rule for rule in self._index.by_end_user.get(values.end_user, ()) if matches(rule, values)]
            dynamic = [*dynamic, *extra] if extra else dynamic
        counted, in_flight = matched.counted, matched.in_flight
        for rule in dynamic:
            added = self._dynamic_checks(rule, values)
            if isinstance(added, Denial):
                return added
            counted, in_flight = counted + added[0], in_flight + added[1]
        if counted or in_flight:
            base = planned.checks
            split = next((index for index, check in enumerate(base) if check.kind is Kind.IN_FLIGHT), len(base))
            planned.checks = (*base[:split], *counted, *base[split:], *in_flight)
            planned.amounts = amounts_for(planned.checks, facts)
        return planned

    def _matched_rules(self, values: RequestValues) -> _Matched:
        memo_key = (values.virtual_key, values.team, values.customer, values.provider, values.model, values.tags)
        matched = self._matched.get(memo_key)
        if matched is None:
            if len(self._matched) >= _MEMO_SIZE:
                del self._matched[next(iter(self._matched))]
            matched = self._matched[memo_key] = _match(self._index, values)
        return matched

    def _dynamic_checks(self, rule: LimitRule, values: RequestValues
                        ) -> tuple[tuple[LimitCheck, ...], tuple[LimitCheck, ...]] | Denial:
        if END_USER in rule.match and values.end_user not in rule.match[END_USER]:
            return (), ()
        if not rule.per:
            return rule_checks(rule)
        combinations = per_values(rule, values)
        if not combinations:
            missing = next(d for d in rule.per if not values.of(d)) if rule.when_missing == DENY else None
            if missing is not None:
                return limit_value_missing(rule.limits.scope, missing)
            return (), ()
        counted: tuple[LimitCheck, ...] = ()
        in_flight: tuple[LimitCheck, ...] = ()
        for combination in combinations:
            memo_key = (rule.name, combination)
            checks = self._templated.get(memo_key)
            if checks is None:
                if len(self._templated) >= _MEMO_SIZE:
                    del self._templated[next(iter(self._templated))]
                checks = self._templated[memo_key] = rule_checks(rule, combination)
            counted, in_flight = counted + checks[0], in_flight + checks[1]
        return counted, in_flight


def _match(index: RuleIndex, values: RequestValues) -> _Matched:
    """The rules of ``index`` that ``values`` match apart from the end user: the checks of
    the fixed ones, and the others to decide per request."""
    counted: list[LimitCheck] = []
    in_flight: list[LimitCheck] = []
    dynamic: list[LimitRule] = []
    for rule in index.candidates(values):
        if not matches(rule, values, end_user=False):
            continue
        if rule.fixed:
            checks = rule_checks(rule)
            counted += checks[0]
            in_flight += checks[1]
        else:
            dynamic.append(rule)
    if not (counted or in_flight or dynamic):
        return _NOTHING
    return _Matched(tuple(counted), tuple(in_flight), tuple(dynamic))


def plan_rules(snapshot: PolicySnapshot, facts: RequestFacts, planned: Plan) -> Plan | Denial:
    """`RulePlanner` without its memo (explanations, tests)."""
    return RulePlanner().apply(snapshot, facts, planned)


def rules_binding_key(snapshot: PolicySnapshot, key_id: str, team_id: str | None,
                      customer_id: str | None) -> list[LimitRule]:
    """The rules that can bind a key's requests: those whose key, team and customer
    selectors (where they have them) accept the key, its team and its customer; by name."""
    owners = {VIRTUAL_KEY: key_id, TEAM: team_id, CUSTOMER: customer_id}
    found = []
    for name in sorted(snapshot.limit_rules):
        rule: LimitRule = snapshot.limit_rules[name]
        if all(owners[d] in rule.match[d] for d in owners if d in rule.match):
            found.append(rule)
    return found


def key_rule_checks(snapshot: PolicySnapshot, key_id: str, team_id: str | None,
                    customer_id: str | None) -> list[LimitCheck]:
    """The checks of the rules that can bind a key (`rules_binding_key`) whose counters the
    key alone determines: untemplated rules, and those templated per virtual key, team or
    customer (the key's own value); not those per end user, tag, provider or model."""
    owners = {VIRTUAL_KEY: key_id, TEAM: team_id, CUSTOMER: customer_id}
    checks: list[LimitCheck] = []
    for rule in rules_binding_key(snapshot, key_id, team_id, customer_id):
        values = tuple(owners.get(dimension) for dimension in rule.per)
        if all(value is not None for value in values):
            counted, in_flight = rule_checks(rule, values)  # type: ignore[arg-type]  # None ruled out just above
            checks += [*counted, *in_flight]
    return checks


def rule_value_checks(rule: LimitRule, value_id: str) -> list[LimitCheck]:
    """The checks of one value of a templated rule, named as its scope id names it
    (``<value>`` or ``<value>|<value>`` for several ``per`` dimensions); [] when the text
    names no value of the rule."""
    values = tuple(value_id.split(_JOIN)) if len(rule.per) > 1 else (value_id,)
    if len(values) != len(rule.per) or not all(values):
        return []
    counted, in_flight = rule_checks(rule, values)
    return [*counted, *in_flight]


def templated_value_checks(snapshot: PolicySnapshot, scope_id: str) -> list[LimitCheck]:
    """The checks of ``<rule>:<value>`` (a templated rule's scope id, as denials name it);
    [] when no templated rule has that name."""
    name, _, value_id = scope_id.partition(":")
    rule: LimitRule | None = snapshot.limit_rules.get(name)
    if rule is None or not rule.per or not value_id:
        return []
    return rule_value_checks(rule, value_id)
