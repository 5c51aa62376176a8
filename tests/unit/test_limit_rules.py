"""Limit rules: selectors (every dimension, combinations, model spellings), templates
(`per`), what a request without a `per` value gets, the order in a plan, the memo."""

from __future__ import annotations

import dataclasses

import pytest

from tests import factories as f
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.decisions import Decision
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import hash_key, plan
from tollway.governance.limit_rules import (
    DENY,
    RulePlanner,
    new_rule,
    plan_rules,
    rules_binding_key,
    template_counter,
)
from tollway.governance.model import Kind, Level
from tollway.governance.names import BadModelName
from tollway.governance.tags import BadTag

NOW = f.at(2026, 5, 10, 8)
A, B, C = f.key_value("a"), f.key_value("b"), f.key_value("c")


def world(*rules, **extra):
    """Keys a and b of team t1 (customer c1), key c of team t2; the rules given."""
    keys = {A: f.virtual_key("a", team_id="t1", concurrency=f.concurrency(10)),
            B: f.virtual_key("b", team_id="t1"), C: f.virtual_key("c", team_id="t2")}
    return f.snapshot(keys=keys, teams=[f.team("t1", customer_id="c1"), f.team("t2")], customers=[f.customer("c1")],
                      rules=rules, **extra)


def one_request(rule_name: str = "r"):
    return f.rate_limit(requests=1, id=f"rl-{rule_name}")


async def outcomes(snap, *requests) -> list[Decision]:
    enforcer = Enforcer(MemoryCounterStore(), lambda: NOW)
    decisions = []
    for facts in requests:
        admission = await enforcer.admit(snap, facts)
        decisions.append(Decision.ALLOW if admission.allowed else admission.denial.decision)
    return decisions


OK, LIMITED = Decision.ALLOW, Decision.REQUEST_LIMITED


async def test_team_on_model_binds_that_team_on_that_model_only() -> None:
    snap = world(new_rule("t1-gpt4o", {"team": ["t1"], "model": ["gpt-4o"]}, rate_limit=one_request()))
    got = await outcomes(snap, f.facts(key=A, model="gpt-4o"), f.facts(key=B, model="gpt-4o"),
                         f.facts(key=A, model="gpt-4o-mini"), f.facts(key=C, model="gpt-4o"))
    assert got == [OK, LIMITED, OK, OK]  # shared by the team's keys; other models and teams pass


async def test_the_denial_names_the_rule() -> None:
    snap = world(new_rule("t1-gpt4o", {"team": ["t1"], "model": ["gpt-4o"]}, rate_limit=one_request()))
    enforcer = Enforcer(MemoryCounterStore(), lambda: NOW)
    await enforcer.admit(snap, f.facts(key=A, model="gpt-4o"))
    denial = (await enforcer.admit(snap, f.facts(key=A, model="gpt-4o"))).denial
    assert (denial.scope.level, denial.scope.id) == (Level.LIMIT, "t1-gpt4o")
    assert "Limit rule 't1-gpt4o' allows 1 requests per 1m" in denial.message


@pytest.mark.parametrize("spelling", ["GPT-4o", " gpt-4o ", "ｇｐｔ-４ｏ"], ids=["case", "spaces", "fullwidth"])
async def test_a_model_spelled_otherwise_is_still_matched(spelling: str) -> None:
    snap = world(new_rule("m", {"model": [spelling]}, rate_limit=one_request()))
    got = await outcomes(snap, f.facts(key=A, model="gpt-4o"), f.facts(key=B, model="gpt-4o"))
    assert got == [OK, LIMITED]


def test_a_selector_value_no_request_could_carry_is_refused() -> None:
    with pytest.raises(BadModelName):
        new_rule("m", {"model": ["gpt\u200b4o"]})
    with pytest.raises(BadTag):
        new_rule("t", {"tag": ["two words"]})


@pytest.mark.parametrize(("match", "expected"), [
    ({"provider": ["anthropic"]}, [OK, OK, OK, LIMITED]),
    ({"virtual_key": ["a", "c"]}, [OK, OK, LIMITED, LIMITED]),
    ({"customer": ["c1"]}, [OK, OK, LIMITED, OK]),
    ({"tag": ["support"]}, [OK, LIMITED, OK, OK]),
    ({"end_user": ["alice"]}, [OK, OK, LIMITED, OK]),
    ({"team": ["t1", "t2"], "provider": ["openai"]}, [OK, LIMITED, OK, OK]),
], ids=["provider", "keys", "customer", "tag", "end-user", "list-and-combination"])
async def test_each_dimension_selects(match, expected) -> None:
    snap = world(new_rule("r", match, rate_limit=one_request()))
    got = await outcomes(snap, f.facts(key=B, tags=("support",), end_user="alice"),
                         f.facts(key=C, tags=("support",)),
                         f.facts("anthropic", "claude", key=A, end_user="alice"),
                         f.facts("anthropic", "claude", key=C))
    assert got == expected


async def test_per_end_user_gives_each_end_user_of_the_team_a_counter() -> None:
    snap = world(new_rule("users", {"team": ["t1"]}, per=["end_user"], rate_limit=one_request()))
    got = await outcomes(snap, f.facts(key=A, end_user="alice"), f.facts(key=B, end_user="bob"),
                         f.facts(key=B, end_user="alice"), f.facts(key=C, end_user="alice"),
                         f.facts(key=A), f.facts(key=A))
    # alice's second request is hers across keys; team t2 is not selected; no end user: not counted.
    assert got == [OK, OK, LIMITED, OK, OK, OK]


async def test_the_denial_of_a_template_names_the_rule_and_the_value() -> None:
    snap = world(new_rule("users", {"team": ["t1"]}, per=["end_user"], rate_limit=one_request()))
    enforcer = Enforcer(MemoryCounterStore(), lambda: NOW)
    await enforcer.admit(snap, f.facts(key=A, end_user="alice"))
    denial = (await enforcer.admit(snap, f.facts(key=A, end_user="alice"))).denial
    assert (denial.scope.level, denial.scope.id) == (Level.LIMIT, "users:alice")
    assert "users (end_user alice)" in denial.message


async def test_when_missing_deny_refuses_a_request_without_the_value_before_any_counter() -> None:
    store = MemoryCounterStore()
    snap = world(new_rule("users", {"team": ["t1"]}, per=["end_user"], when_missing=DENY, rate_limit=one_request()))
    admission = await Enforcer(store, lambda: NOW).admit(snap, f.facts(key=A))
    assert admission.denial.decision is Decision.LIMIT_VALUE_MISSING and admission.denial.decision.status == 400
    assert "per end_user" in admission.denial.message and admission.denial.scope.id == "users"
    assert (await Enforcer(store, lambda: NOW).admit(snap, f.facts(key=A, end_user="x"))).allowed
    assert (await Enforcer(store, lambda: NOW).admit(snap, f.facts(key=C))).allowed  # not selected: not refused


async def test_per_virtual_key_of_a_customer() -> None:
    snap = world(new_rule("each-key", {"customer": ["c1"]}, per=["virtual_key"], rate_limit=one_request()))
    assert await outcomes(snap, f.facts(key=A), f.facts(key=B), f.facts(key=A)) == [OK, OK, LIMITED]


async def test_per_tag_counts_each_selected_tag_of_the_request() -> None:
    snap = world(new_rule("tags", {"tag": ["x", "y"]}, per=["tag"], rate_limit=one_request()))
    got = await outcomes(snap, f.facts(key=A, tags=("x", "z")), f.facts(key=A, tags=("y",)),
                         f.facts(key=A, tags=("y", "x")), f.facts(key=A, tags=("z",)))
    assert got == [OK, OK, LIMITED, OK]


async def test_two_per_dimensions_count_each_combination() -> None:
    snap = world(new_rule("pair", {"team": ["t1"]}, per=["virtual_key", "model"], rate_limit=one_request()))
    got = await outcomes(snap, f.facts(key=A, model="m1"), f.facts(key=A, model="m2"), f.facts(key=B, model="m1"),
                         f.facts(key=A, model="m1"))  # the proxy keys the model (`model_key`)
    assert got == [OK, OK, OK, LIMITED]


def test_template_counters_are_bounded_and_unambiguous() -> None:
    assert template_counter("b:id", ["alice"]) == "b:id:alice"
    assert template_counter("b:id", ["a", "b"]) == "b:id:a|b"
    assert template_counter("b:id", ["a|b"]) != template_counter("b:id", ["a", "b"])
    assert template_counter("b:id", ["a|b", "c"]) != template_counter("b:id", ["a", "b|c"])
    long = template_counter("b:id", ["x" * 1000])
    assert len(long) < 60 and long.startswith("b:id:~")
    assert template_counter("b:id", ["~" + "0" * 40]) != "b:id:~" + "0" * 40  # a value cannot pose as a digest


def test_rule_checks_come_after_every_level_and_tag_and_their_slots_last() -> None:
    snap = world(new_rule("r", {"team": ["t1"]}, budget=f.budget(1), concurrency=f.concurrency(2),
                          rate_limit=f.rate_limit(requests=5)),
                 tags=[f.tag("support", rate_limit=f.rate_limit(requests=5), concurrency=f.concurrency(1))])
    facts = f.facts(key=A, tags=("support",))
    planned = plan(snap, facts, now_ms=NOW)
    planned.tags = facts.tags
    from tollway.governance.tags import TagPlanner
    planned = plan_rules(snap, facts, TagPlanner().apply(snap, facts, planned))
    assert [(c.scope.level, c.kind) for c in planned.checks] == [
        (Level.TAG, Kind.REQUESTS), (Level.LIMIT, Kind.REQUESTS), (Level.LIMIT, Kind.BUDGET),
        (Level.VIRTUAL_KEY, Kind.IN_FLIGHT), (Level.TAG, Kind.IN_FLIGHT), (Level.LIMIT, Kind.IN_FLIGHT)]
    assert len(planned.amounts) == len(planned.checks)


def test_without_rules_the_plan_is_untouched() -> None:
    snap = world()
    facts = f.facts(key=A)
    planned = plan(snap, facts, now_ms=NOW)
    checks, amounts = planned.checks, planned.amounts
    assert RulePlanner().apply(snap, facts, planned) is planned
    assert planned.checks is checks and planned.amounts is amounts


def planned_rule_checks(planner: RulePlanner, snapshot, facts) -> list:
    planned = planner.apply(snapshot, facts, plan(snapshot, facts, now_ms=NOW))
    return [c for c in planned.checks if c.scope.level is Level.LIMIT]


def changed(snapshot, *, keys=None, teams=None):
    """``snapshot`` at the next version with some keys (by value) or teams replaced, the
    rest (the rules' map included) the very same objects, as an applied change leaves it."""
    keys_by_hash = dict(snapshot.keys_by_hash) | {hash_key(value): key for value, key in (keys or {}).items()}
    new_teams = dict(snapshot.teams) | {team.limits.scope.id: team for team in teams or ()}
    return dataclasses.replace(snapshot, keys_by_hash=keys_by_hash, teams=new_teams, version=snapshot.version + 1)


def test_the_rules_of_a_key_model_and_tags_are_matched_once_while_the_rules_stay() -> None:
    snap = world(new_rule("r", {"team": ["t1"]}, budget=f.budget(1)))
    planner = RulePlanner()
    first = planned_rule_checks(planner, snap, f.facts(key=A))
    assert planned_rule_checks(planner, snap, f.facts(key=A))[0] is first[0]
    other_rules = world(new_rule("r", {"team": ["t1"]}, budget=f.budget(1)))
    assert planned_rule_checks(planner, other_rules, f.facts(key=A))[0] is not first[0]


def test_a_plan_survives_a_change_to_other_keys_and_teams() -> None:
    snap = world(new_rule("r", {"team": ["t1"]}, budget=f.budget(1)))
    planner = RulePlanner()
    first = planned_rule_checks(planner, snap, f.facts(key=A))
    later = changed(snap, keys={C: f.virtual_key("c", team_id="t2", active=False)}, teams=[f.team("t2", name="new")])
    assert planned_rule_checks(planner, later, f.facts(key=A))[0] is first[0]


def test_a_key_moved_to_another_team_is_planned_under_its_new_team() -> None:
    snap = world(new_rule("r", {"team": ["t1"]}, budget=f.budget(1)))
    planner = RulePlanner()
    assert planned_rule_checks(planner, snap, f.facts(key=A))
    moved = changed(snap, keys={A: f.virtual_key("a", team_id="t2")})
    assert planned_rule_checks(planner, moved, f.facts(key=A)) == []
    back = changed(moved, keys={A: f.virtual_key("a", team_id="t1")})
    assert [c.scope.id for c in planned_rule_checks(planner, back, f.facts(key=A))] == ["r"]


def test_a_team_moved_to_another_customer_takes_its_keys_with_it() -> None:
    snap = world(new_rule("r", {"customer": ["c1"]}, budget=f.budget(1)))
    planner = RulePlanner()
    assert planned_rule_checks(planner, snap, f.facts(key=C)) == []
    assert planned_rule_checks(planner, snap, f.facts(key=A))
    moved = changed(snap, teams=[f.team("t2", customer_id="c1"), f.team("t1")])
    assert [c.scope.id for c in planned_rule_checks(planner, moved, f.facts(key=C))] == ["r"]
    assert planned_rule_checks(planner, moved, f.facts(key=A)) == []


def test_a_changed_rule_replans_every_key() -> None:
    snap = world(new_rule("r", {"team": ["t1"]}, budget=f.budget(1)))
    planner = RulePlanner()
    assert planned_rule_checks(planner, snap, f.facts(key=A))
    rule = new_rule("r", {"team": ["t2"]}, budget=f.budget(1))
    retargeted = dataclasses.replace(changed(snap), limit_rules={"r": rule})
    assert planned_rule_checks(planner, retargeted, f.facts(key=A)) == []
    assert [c.scope.id for c in planned_rule_checks(planner, retargeted, f.facts(key=C))] == ["r"]


async def test_shadow_rule_counts_and_never_denies() -> None:
    snap = world(new_rule("s", {"team": ["t1"]}, per=["end_user"],
                          rate_limit=f.rate_limit(requests=1, id="rs", shadow=True)))
    enforcer = Enforcer(MemoryCounterStore(), lambda: NOW)
    await enforcer.admit(snap, f.facts(key=A, end_user="u"))
    second = await enforcer.admit(snap, f.facts(key=A, end_user="u"))
    assert second.allowed and second.would_deny is not None and second.would_deny.scope.id == "s:u"


def test_rules_binding_a_key_follow_its_owners() -> None:
    snap = world(new_rule("team1", {"team": ["t1"]}), new_rule("model", {"model": ["gpt-4o"]}),
                 new_rule("key-c", {"virtual_key": ["c"]}), new_rule("cust", {"customer": ["c1"], "tag": ["x"]}))
    assert [r.name for r in rules_binding_key(snap, "a", "t1", "c1")] == ["cust", "model", "team1"]
    assert [r.name for r in rules_binding_key(snap, "c", "t2", None)] == ["key-c", "model"]
