"""End users in the engine: templates of a key, team and customer, counter ids, overrides,
the order of checks and the memo (`tollway.governance.end_users`)."""

from __future__ import annotations

from tests import factories as f
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.decisions import Decision
from tollway.governance.end_users import EndUserMemo, end_user_counter, plan_end_users
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import Plan, plan, static_checks
from tollway.governance.model import Kind, Level

VK = f.key_value("app")
NOW = f.at(2026, 5, 10, 8)


def world(**key_end_users):
    """A key of team t of customer c; each may have an end-user template."""
    vk = f.virtual_key("vk", name="app", team_id="t", rate_limit=f.rate_limit(requests=1000, id="key-rl"),
                       provider_configs=[f.provider_config("openai", budget=f.budget(50, id="pc-b"))],
                       concurrency=f.concurrency(100, id="key-cf"), **key_end_users)
    return vk


def snap(vk=None, team_users=None, customer_users=None, overrides=None):
    return f.snapshot(keys={VK: vk or world()},
                      teams=[f.team("t", customer_id="c", budget=f.budget(100, id="team-b"), end_users=team_users)],
                      customers=[f.customer("c", end_users=customer_users, overrides=overrides)])


def planned(snapshot, user: str | None = "alice") -> Plan:
    result = plan(snapshot, f.facts(key=VK, end_user=user), now_ms=NOW, end_users=plan_end_users)
    assert isinstance(result, Plan)
    return result


def end_user_counters(result: Plan) -> list[tuple[Kind, str]]:
    return [(c.kind, c.counter) for c in result.checks if c.scope.level is Level.END_USER]


def test_each_template_of_key_team_and_customer_gives_the_end_user_counters_of_their_own() -> None:
    vk = world(end_users=f.end_users(rate_limit=f.rate_limit(requests=5, tokens=100, id="T1")))
    s = snap(vk, team_users=f.end_users(budget=f.budget(2, "1d", id="T2")),
             customer_users=f.end_users(concurrency=f.concurrency(1, id="T3")))
    assert end_user_counters(planned(s, "alice")) == [
        (Kind.REQUESTS, "rr:T1:alice"), (Kind.TOKENS, "rt:T1:alice"), (Kind.BUDGET, "b:T2:alice"),
        (Kind.IN_FLIGHT, "cf:T3:alice")]
    assert end_user_counters(planned(s, "bob")) == [
        (Kind.REQUESTS, "rr:T1:bob"), (Kind.TOKENS, "rt:T1:bob"), (Kind.BUDGET, "b:T2:bob"), (Kind.IN_FLIGHT, "cf:T3:bob")]


def test_end_user_checks_sit_with_the_other_limits_of_their_kind_narrowest_first() -> None:
    vk = world(end_users=f.end_users(rate_limit=f.rate_limit(requests=5, id="T"), budget=f.budget(1, id="T"),
                                     concurrency=f.concurrency(1, id="T")))
    checks = planned(snap(vk)).checks
    order = [(c.scope.level, c.kind) for c in checks]
    assert order == [
        (Level.END_USER, Kind.REQUESTS), (Level.VIRTUAL_KEY, Kind.REQUESTS),
        (Level.END_USER, Kind.BUDGET), (Level.PROVIDER_CONFIG, Kind.BUDGET), (Level.TEAM, Kind.BUDGET),
        (Level.VIRTUAL_KEY, Kind.IN_FLIGHT), (Level.END_USER, Kind.IN_FLIGHT)]
    # Without the end user the plan is exactly the static one.
    static = static_checks(snap(vk), vk, "openai", "gpt-4o-mini")
    assert planned(snap(vk), None).checks == static


def test_a_request_naming_no_end_user_or_a_key_without_templates_plans_as_before() -> None:
    s = snap()
    static = static_checks(s, world(), "openai", "gpt-4o-mini")
    assert planned(s, "alice").checks == static
    memo = EndUserMemo()
    assert memo(static, s, world(), "alice") is static  # nothing built, nothing remembered


def test_long_and_ambiguous_end_user_ids_name_bounded_counters() -> None:
    long_id = "u" * 256
    assert end_user_counter("b:T", "alice") == "b:T:alice"
    hashed = end_user_counter("b:T", long_id)
    assert hashed.startswith("b:T:~") and len(hashed) < 64
    assert end_user_counter("b:T", "u" * 255 + "v") != hashed
    # An id that looks like a digest, or holds the separator, is hashed too: no two ids share a counter.
    assert end_user_counter("b:T", hashed[4:]) != hashed
    assert end_user_counter("b:T", "a:b") != end_user_counter("b:T:a", "b")


def test_an_override_replaces_the_parts_it_names_on_the_same_counters() -> None:
    template = f.end_users(budget=f.budget(1, id="T"), rate_limit=f.rate_limit(requests=5, id="T"))
    s = snap(customer_users=template, overrides={"vip": f.end_users(budget=f.budget(50, id="T"))})
    vip = {c.kind: c for c in planned(s, "vip").checks if c.scope.level is Level.END_USER}
    other = {c.kind: c for c in planned(s, "alice").checks if c.scope.level is Level.END_USER}
    assert vip[Kind.BUDGET].limit == f.nano(50) and other[Kind.BUDGET].limit == f.nano(1)
    assert vip[Kind.BUDGET].counter == "b:T:vip"
    assert vip[Kind.REQUESTS].limit == other[Kind.REQUESTS].limit == 5  # not overridden: the template's


def test_the_memo_builds_a_returning_end_users_checks_once_and_stays_bounded() -> None:
    vk = world(end_users=f.end_users(rate_limit=f.rate_limit(requests=5, id="T")))
    s = snap(vk)
    static = static_checks(s, vk, "openai", "gpt-4o-mini")
    memo = EndUserMemo(size=3)
    first = memo(static, s, vk, "alice")
    again = memo(static, s, vk, "alice")
    assert [id(c) for c in first] == [id(c) for c in again]  # the same LimitCheck objects
    for user in ("b", "c", "d", "e"):
        memo(static, s, vk, user)
    assert len(memo._entries) == 3
    raised = world(end_users=f.end_users(rate_limit=f.rate_limit(requests=9, id="T")))
    # A new snapshot (a changed limit) forgets what was remembered.
    assert [c.limit for c in memo(static, snap(raised), raised, "alice") if c.scope.level is Level.END_USER] == [9]


async def test_an_end_users_budget_denies_them_and_no_one_else() -> None:
    vk = world(end_users=f.end_users(rate_limit=f.rate_limit(requests=2, id="T")))
    s = snap(vk)
    enforcer = Enforcer(MemoryCounterStore(), lambda: NOW)
    for _ in range(2):
        admission = await enforcer.admit(s, f.facts(key=VK, end_user="alice"))
        assert admission.allowed
        await enforcer.settle(admission.reservation, 10, 10)
    denied = await enforcer.admit(s, f.facts(key=VK, end_user="alice"))
    assert denied.denial is not None and denied.denial.decision is Decision.REQUEST_LIMITED
    assert (denied.denial.scope.level, denied.denial.scope.id) == (Level.END_USER, "alice")
    assert "End user 'alice' allows 2 requests per 1m" in denied.denial.message
    assert (await enforcer.admit(s, f.facts(key=VK, end_user="bob"))).allowed
    # Explain sees the same limit.
    explained = await enforcer.explain(s, f.facts(key=VK, end_user="alice"))
    assert explained.decision is Decision.REQUEST_LIMITED
