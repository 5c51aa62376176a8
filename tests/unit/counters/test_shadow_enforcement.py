"""Shadow limits (SPEC §8 ``mode: shadow``) through the engine and the enforcer, on every
counter backend: counted like any other limit, never denying, clamping or queueing; an
admitted request they would have denied carries `would_deny` naming the limit.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from tests import factories as f
from tests.unit.test_strict_enforcement import RATES
from tollway.api.explain import explanation_view
from tollway.governance.counters.base import CounterOp, CounterStore
from tollway.governance.decisions import Decision
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import RequestFacts, hash_key
from tollway.governance.model import Enforcement, Level, budget_counter, in_flight_counter, request_counter
from tollway.proxy.estimate import Demand
from tollway.proxy.reservation import covered_output, strict_cap
from tollway.proxy.worst_case import WorstCase

NOW = f.at(2026, 7, 1, 12)
VK = f.key_value("shadowed")


def clock() -> int:
    return NOW


def _unique() -> str:
    return uuid.uuid4().hex[:8]  # tests sharing one Redis never share a counter


def _facts(tokens: int = 10, cost_nano: int = 1_000) -> RequestFacts:
    return RequestFacts("openai", "gpt", hash_key(VK), tokens, cost_nano)


async def _reading(store: CounterStore, counter: str):
    (reading,) = await store.read([CounterOp(counter, 0, 0, 0, NOW)])
    return reading


async def test_a_shadow_budget_never_denies_counts_every_request_and_names_itself(counter_store: CounterStore) -> None:
    unique = _unique()
    budget = f.budget("0.000002", "1d", id=f"team-budget-{unique}", shadow=True)  # 2,000 nano-dollars
    snapshot = f.snapshot(keys={VK: f.virtual_key("vk", team_id="t")}, teams=[f.team("t", name="Search", budget=budget)])
    enforcer = Enforcer(counter_store, clock)
    admissions = [await enforcer.admit(snapshot, _facts(cost_nano=800)) for _ in range(5)]
    assert all(admission.allowed for admission in admissions)
    assert [admission.would_deny is not None for admission in admissions] == [False, False, True, True, True]
    would = admissions[2].would_deny
    assert would.decision is Decision.BUDGET_EXCEEDED and would.scope == f.team("t", name="Search").limits.scope
    assert would.limit == 2_000 and would.used == 1_600 and would.requested == 800
    for admission in admissions:
        await enforcer.settle(admission.reservation, 10, 900)
    reading = await _reading(counter_store, budget_counter(budget.id))
    assert (reading.used, reading.reserved) == (4_500, 0)  # beyond the limit: a shadow limit's readings are real


async def test_an_enforced_denial_leaves_no_shadow_reservation_behind(counter_store: CounterStore) -> None:
    unique = _unique()
    shadow_requests = f.rate_limit(requests=1, request_window="1m", id=f"shadow-rl-{unique}", shadow=True)
    shadow_slots = f.concurrency(1, id=f"shadow-slots-{unique}", shadow=True)
    enforced = f.budget("0.000001", "1d", id=f"enforced-{unique}")  # 1,000 nano-dollars
    snapshot = f.snapshot(keys={VK: f.virtual_key("vk", rate_limit=shadow_requests, concurrency=shadow_slots,
                                                  budget=enforced)})
    enforcer = Enforcer(counter_store, clock)
    denied = await enforcer.admit(snapshot, _facts(cost_nano=5_000))
    assert denied.denial is not None and denied.denial.decision is Decision.BUDGET_EXCEEDED
    assert denied.would_deny is None and enforcer.reservations_in_flight == 0
    for counter in (request_counter(shadow_requests.id), in_flight_counter(shadow_slots.id), budget_counter(enforced.id)):
        reading = await _reading(counter_store, counter)
        assert (reading.used, reading.reserved) == (0, 0), counter


async def test_an_enforced_limit_still_binds_beside_a_shadow_one(counter_store: CounterStore) -> None:
    unique = _unique()
    enforced = f.rate_limit(requests=2, request_window="1m", id=f"key-rl-{unique}")
    shadow = f.rate_limit(requests=1, request_window="1m", id=f"team-rl-{unique}", shadow=True)
    snapshot = f.snapshot(keys={VK: f.virtual_key("vk", team_id="t", rate_limit=enforced)},
                          teams=[f.team("t", rate_limit=shadow)])
    enforcer = Enforcer(counter_store, clock)
    first, second, third = [await enforcer.admit(snapshot, _facts()) for _ in range(3)]
    assert first.allowed and first.would_deny is None
    assert second.allowed and second.would_deny.scope.level is Level.TEAM
    assert third.denial is not None and third.denial.decision is Decision.REQUEST_LIMITED
    assert third.denial.scope.level is Level.VIRTUAL_KEY
    # Only the enforced limit's sides make the x-ratelimit-* headers: a shadow limit binds nothing.
    assert dict(second.headers)[b"x-ratelimit-limit-requests"] == b"2"


async def test_a_shadow_concurrency_limit_counts_slots_but_never_queues(counter_store: CounterStore) -> None:
    slots = f.concurrency(1, queue_timeout_ms=60_000, id=f"slots-{_unique()}", shadow=True)
    snapshot = f.snapshot(keys={VK: f.virtual_key("vk", concurrency=slots)})
    enforcer = Enforcer(counter_store, clock)
    admissions = [await enforcer.admit(snapshot, _facts()) for _ in range(3)]
    assert all(a.allowed and a.queue is None for a in admissions)  # a queue timeout of a minute is never waited
    assert [a.would_deny.decision if a.would_deny else None for a in admissions] == [
        None, Decision.CONCURRENCY_LIMITED, Decision.CONCURRENCY_LIMITED]
    assert (await _reading(counter_store, in_flight_counter(slots.id))).reserved == 3
    for admission in admissions:
        await enforcer.release(admission.reservation)
    assert (await _reading(counter_store, in_flight_counter(slots.id))).reserved == 0


async def test_switching_shadow_to_enforce_binds_at_once_on_the_usage_counted_in_shadow(
        counter_store: CounterStore) -> None:
    shadow = f.rate_limit(requests=2, request_window="1m", id=f"rl-{_unique()}", shadow=True)
    snapshot = f.snapshot(keys={VK: f.virtual_key("vk", rate_limit=shadow)})
    enforcer = Enforcer(counter_store, clock)
    for _ in range(3):
        admission = await enforcer.admit(snapshot, _facts())
        await enforcer.settle(admission.reservation, 10, 1_000)
    enforced = f.snapshot(keys={VK: f.virtual_key("vk", rate_limit=replace(shadow, shadow=False))})
    denied = await enforcer.admit(enforced, _facts())
    assert denied.denial is not None and denied.denial.decision is Decision.REQUEST_LIMITED
    assert denied.denial.used == 3


def _strict_facts(prompt: int, cap: int, *, stated: bool = True) -> RequestFacts:
    """``stated`` False: the client set no cap, and strict enforcement would send ``cap``."""
    demand = Demand(WorstCase(prompt, 1, cap if stated else None, "max_tokens" if stated else None), prompt // 4,
                    16, RATES, cap)
    return RequestFacts("openai", "gpt", hash_key(VK), *demand(demand.cap), demand=demand, cap=demand.cap)


async def test_a_strict_clamping_shadow_limit_reserves_the_worst_case_but_never_clamps_or_caps(
        counter_store: CounterStore) -> None:
    strict = Enforcement(strict=True, clamp=True)
    tokens = replace(f.rate_limit(tokens=100, token_window="1h", id=f"tokens-{_unique()}", shadow=True),
                     enforcement=strict)
    snapshot = f.snapshot(keys={VK: f.virtual_key("vk", rate_limit=tokens)})
    enforcer = Enforcer(counter_store, clock)
    facts = _strict_facts(40, 500)
    admission = await enforcer.admit(snapshot, facts)
    assert admission.allowed and admission.clamped_cap is None  # enforced, it would have clamped to 60
    assert admission.reservation.plan.amounts == (540,)  # the worst case, as strict reserves
    assert admission.would_deny.decision is Decision.TOKEN_LIMITED
    # The call is sent as the client asked: no cap written, no stream meter against this limit.
    assert covered_output(admission.reservation.plan, facts.demand, admission.readings) is None
    uncapped = _strict_facts(10, 500, stated=False)
    admission = await enforcer.admit(snapshot, uncapped)
    assert admission.allowed and strict_cap(admission, uncapped.demand) is None
    enforced = f.snapshot(keys={VK: f.virtual_key("vk", rate_limit=replace(tokens, shadow=False, token_max_limit=10**6))})
    assert strict_cap(await enforcer.admit(enforced, uncapped), uncapped.demand) == 500  # what shadow leaves out


async def test_explain_says_would_deny_in_shadow_and_never_binds_a_shadow_limit(counter_store: CounterStore) -> None:
    unique = _unique()
    shadow = f.budget("0.000001", "1d", id=f"shadow-{unique}", shadow=True)
    enforced = f.rate_limit(requests=100, request_window="1m", id=f"enforced-{unique}")
    snapshot = f.snapshot(keys={VK: f.virtual_key("vk", budget=shadow, rate_limit=enforced)})
    explanation = explanation_view(await Enforcer(counter_store, clock).explain(snapshot, _facts(cost_nano=5_000)))
    assert explanation["decision"] == "allow"
    assert explanation["message"].startswith("would deny in shadow: ")
    assert explanation["would_deny"] == {"decision": "budget_exceeded", "level": "virtual_key", "id": "vk",
                                         "name": "vk", "message": explanation["message"]}
    by_kind = {limit["kind"]: limit for limit in explanation["limits"]}
    assert by_kind["budget"]["mode"] == "shadow" and by_kind["budget"]["would_deny"] is True
    assert by_kind["budget"]["binding"] is False
    assert by_kind["requests"]["mode"] == "enforce" and by_kind["requests"]["binding"] is True


async def test_clamping_for_an_enforced_limit_ignores_a_tighter_shadow_one(counter_store: CounterStore) -> None:
    strict = Enforcement(strict=True, clamp=True)
    unique = _unique()
    enforced = replace(f.rate_limit(tokens=200, token_window="1h", id=f"key-{unique}"), enforcement=strict)
    shadow = replace(f.rate_limit(tokens=100, token_window="1h", id=f"team-{unique}", shadow=True), enforcement=strict)
    snapshot = f.snapshot(keys={VK: f.virtual_key("vk", team_id="t", rate_limit=enforced)},
                          teams=[f.team("t", rate_limit=shadow)])
    admission = await Enforcer(counter_store, clock).admit(snapshot, _strict_facts(40, 500))
    assert admission.allowed and admission.clamped_cap == 160  # what the enforced limit leaves; not 60
    assert admission.would_deny.scope.level is Level.TEAM
