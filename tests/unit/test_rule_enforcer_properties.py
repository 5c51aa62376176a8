"""The enforcer state machine (`tests.unit.test_enforcer_properties`) with limit rules:
a team × model rule, a per-end-user template over a customer, a per-tag template that
refuses requests without a tag (``when_missing: deny``), a shadow per-key template on
another model; with tags, forced and allowed tags and two models. The same invariants
hold on every rule counter (each templated value's included): books balance, no enforced
limit is exceeded beyond settled excess, denials are due, a lone request is admitted
exactly when all its limits have room."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from tests import factories as f
from tests.unit.test_enforcer_properties import KEYS, TAGGED_SNAPSHOT, TAGS, EnforcerMachine
from tollway.governance.decisions import Decision, Denial
from tollway.governance.engine import RequestFacts, hash_key, plan
from tollway.governance.limit_rules import DENY, new_rule, plan_rules
from tollway.governance.tags import TagPlanner

USERS = ("u1", "u2")
MODELS = ("gpt", "mini")


def _ruled_snapshot():
    def rl(**kw):
        return f.rate_limit(**kw)

    rules = [
        new_rule("team-gpt", {"team": ["t"], "model": ["gpt"]}, rate_limit=rl(requests=2, request_window="10s"),
                 budget=f.budget("0.000002", "30s")),
        new_rule("users", {"customer": ["cu"]}, per=["end_user"], rate_limit=rl(requests=1, request_window="5s"),
                 concurrency=f.concurrency(1)),
        new_rule("c-tags", {"virtual_key": ["c"]}, per=["tag"], when_missing=DENY,
                 budget=f.budget("0.000001", "20s")),
        new_rule("mini-keys", {"model": ["mini"]}, per=["virtual_key"],
                 rate_limit=rl(requests=1, request_window="10s", shadow=True)),
    ]
    return replace(TAGGED_SNAPSHOT, limit_rules={r.name: r for r in rules})


RULED_SNAPSHOT = _ruled_snapshot()


def _every_check():
    """Every counter any request of the machine can touch (each templated value's too)."""
    found = {}
    tag_sets = [combo for size in range(len(TAGS) + 1) for combo in itertools.combinations(TAGS, size)]
    for key, user, tags, model in itertools.product([None, *KEYS], (None, *USERS), tag_sets, MODELS):
        fact = RequestFacts("openai", model, hash_key(KEYS[key]) if key else None, 0, 0, tags=tags, end_user=user)
        planned = plan(RULED_SNAPSHOT, fact)
        if not isinstance(planned, Denial):
            planned = TagPlanner().apply(RULED_SNAPSHOT, fact, planned)
        if not isinstance(planned, Denial):
            planned = plan_rules(RULED_SNAPSHOT, fact, planned)
        if not isinstance(planned, Denial):
            found |= {check.counter: check for check in planned.checks}
    return tuple(found.values())


class RuledEnforcerMachine(EnforcerMachine):
    snapshot = RULED_SNAPSHOT
    all_checks = _every_check()

    @rule(batch=st.lists(st.tuples(st.sampled_from([None, *KEYS]), st.sampled_from(MODELS),
                                   st.sampled_from([None, *USERS]), st.lists(st.sampled_from(TAGS), max_size=2,
                                                                             unique=True),
                                   st.integers(0, 70), st.integers(0, 1500)), min_size=1, max_size=4))
    def admit_ruled(self, batch) -> None:
        self._admit([RequestFacts("openai", model, hash_key(KEYS[k]) if k else None, tokens, cost, tags=tuple(tags),
                                  end_user=user) for k, model, user, tags, tokens, cost in batch])

    def _assert_denial_is_due(self, denial: Denial, fact: RequestFacts) -> None:
        if denial.decision is Decision.LIMIT_VALUE_MISSING:  # due when key c sends a request without a tag
            key = self.snapshot.keys_by_hash[fact.key_hash]
            assert key.id == "c" and not fact.tags and denial.scope.id == "c-tags"
            return
        super()._assert_denial_is_due(denial, fact)


RuledEnforcerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_limit_rules_under_random_interleavings = RuledEnforcerMachine.TestCase
