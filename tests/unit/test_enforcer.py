"""The enforcer: reservations, idempotent settle/release, explain, the per-snapshot memo."""

from __future__ import annotations

import asyncio

from tests import factories as f
from tollway.api.explain import explanation_view
from tollway.governance.counters.base import CounterOp, CounterReading
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.decisions import Decision
from tollway.governance.enforcer import Enforcer
from tollway.governance.model import Kind, Level, budget_counter, request_counter, token_counter

NOW = f.at(2026, 5, 10, 8)
VK = f.key_value("svc")


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def world(requests: int = 10, tokens: int = 1000, budget_usd: str = "1.00"):
    rl = f.rate_limit(requests=requests, tokens=tokens, id="rl")
    vk = f.virtual_key("vk", name="svc", team_id="t", rate_limit=rl,
                       provider_configs=[f.provider_config("openai", allowed_keys=["k1"])])
    snap = f.snapshot(keys={VK: vk}, teams=[f.team("t", customer_id="c", budget=f.budget(budget_usd, "1d", id="b"))],
                      customers=[f.customer("c")])
    return snap


async def counters(store: MemoryCounterStore, now: int = NOW) -> dict[str, CounterReading]:
    names = [request_counter("rl"), token_counter("rl"), budget_counter("b")]
    readings = await store.read([CounterOp(n, 0, 0, now - 3_600_000 + 1, now) for n in names])
    return dict(zip(["requests", "tokens", "budget"], readings))


async def test_admission_reserves_and_reports_who_asked() -> None:
    store = MemoryCounterStore()
    enforcer = Enforcer(store, Clock())
    admission = await enforcer.admit(world(), f.facts(key=VK, tokens=120, cost_nano=500))
    assert admission.allowed and admission.denial is None
    assert (admission.key_id, admission.team_id, admission.customer_id) == ("vk", "t", "c")
    assert admission.allowed_provider_keys == frozenset({"k1"})
    assert dict(admission.headers)[b"x-ratelimit-remaining-requests"] == b"9"
    state = await counters(store)
    assert (state["requests"].reserved, state["tokens"].reserved, state["budget"].reserved) == (1, 120, 500)
    assert enforcer.reservations_in_flight == 1


async def test_settle_charges_actual_usage_once() -> None:
    store = MemoryCounterStore()
    enforcer = Enforcer(store, Clock())
    admission = await enforcer.admit(world(), f.facts(key=VK, tokens=120, cost_nano=500))
    await asyncio.gather(enforcer.settle(admission.reservation, 80, 300), enforcer.settle(admission.reservation, 80, 300))
    await enforcer.settle(admission.reservation, 80, 300)
    await enforcer.release(admission.reservation)
    state = await counters(store)
    assert [(r.used, r.reserved) for r in state.values()] == [(1, 0), (80, 0), (300, 0)]
    assert enforcer.reservations_in_flight == 0


async def test_release_charges_nothing_and_only_once() -> None:
    store = MemoryCounterStore()
    enforcer = Enforcer(store, Clock())
    other = await enforcer.admit(world(), f.facts(key=VK, tokens=50, cost_nano=50))
    admission = await enforcer.admit(world(), f.facts(key=VK, tokens=120, cost_nano=500))
    await enforcer.release(admission.reservation)
    await enforcer.release(admission.reservation)
    await enforcer.settle(admission.reservation, 1, 1)
    state = await counters(store)
    assert [(r.used, r.reserved) for r in state.values()] == [(0, 1), (0, 50), (0, 50)]
    assert enforcer.reservations_in_flight == 1
    await enforcer.release(other.reservation)
    await enforcer.release(None)
    assert enforcer.reservations_in_flight == 0


async def test_identity_denials_still_name_the_key_for_the_request_log() -> None:
    snap = f.snapshot(keys={VK: f.virtual_key("vk", team_id="t", active=False)}, teams=[f.team("t", customer_id="c")])
    admission = await Enforcer(MemoryCounterStore(), Clock()).admit(snap, f.facts(key=VK))
    assert admission.denial.decision is Decision.VIRTUAL_KEY_BLOCKED
    assert (admission.key_id, admission.team_id, admission.customer_id) == ("vk", "t", "c")
    assert admission.reservation is None and admission.headers == []


async def test_a_request_with_no_applicable_limit_is_admitted_without_counters() -> None:
    enforcer = Enforcer(MemoryCounterStore(), Clock())
    admission = await enforcer.admit(f.snapshot(), f.facts())
    assert admission.allowed and admission.headers == []
    await enforcer.settle(admission.reservation, 10, 10)
    assert enforcer.reservations_in_flight == 0


async def test_a_new_snapshot_takes_effect_even_with_the_same_version() -> None:
    enforcer = Enforcer(MemoryCounterStore(), Clock())
    loose = f.snapshot(providers=[f.provider(rate_limit=f.rate_limit(requests=5, id="p"))], version=3)
    tight = f.snapshot(providers=[f.provider(rate_limit=f.rate_limit(requests=1, id="p"))], version=3)
    assert (await enforcer.admit(loose, f.facts())).allowed
    assert (await enforcer.admit(tight, f.facts())).denial.decision is Decision.REQUEST_LIMITED
    assert (await enforcer.admit(loose, f.facts())).allowed


async def test_explain_lists_every_limit_and_reserves_nothing() -> None:
    store = MemoryCounterStore()
    clock = Clock()
    enforcer = Enforcer(store, clock)
    snap = world(requests=10, tokens=1000, budget_usd="1.00")
    spent = await enforcer.admit(snap, f.facts(key=VK, tokens=100, cost_nano=f.nano("0.10")))
    await enforcer.settle(spent.reservation, 900, f.nano("0.20"))
    before = await counters(store)
    explanation = await enforcer.explain(snap, f.facts(key=VK, tokens=50, cost_nano=f.nano("0.01")))
    assert await counters(store) == before and enforcer.reservations_in_flight == 0
    assert explanation.decision is Decision.ALLOW and explanation.denial is None
    by_kind = {status.kind: status for status in explanation.limits}
    assert (by_kind[Kind.TOKENS].used, by_kind[Kind.TOKENS].remaining) == (900, 100)
    assert [s.binding for s in explanation.limits] == [s.kind is Kind.TOKENS for s in explanation.limits]
    assert by_kind[Kind.BUDGET].scope.level is Level.TEAM
    body = explanation_view(explanation)
    budget = next(limit for limit in body["limits"] if limit["kind"] == "budget")
    assert (budget["unit"], budget["limit"], budget["used"], budget["reset_at"]) == ("usd", 1.0, 0.2, "2026-05-11T08:00:00Z")
    assert (body["decision"], body["virtual_key_id"], body["team_id"]) == ("allow", "vk", "t")


async def test_explain_gives_the_decision_the_request_would_get() -> None:
    enforcer = Enforcer(MemoryCounterStore(), Clock())
    snap = world(tokens=100)
    spent = await enforcer.admit(snap, f.facts(key=VK, tokens=10))
    await enforcer.settle(spent.reservation, 95, 0)
    explanation = await enforcer.explain(snap, f.facts(key=VK, tokens=10))
    assert explanation.decision is Decision.TOKEN_LIMITED
    assert [s.kind for s in explanation.limits if s.binding] == [Kind.TOKENS]
    blocked = await enforcer.explain(snap, f.facts(key=f.key_value("unknown")))
    assert (blocked.decision, blocked.limits) == (Decision.VIRTUAL_KEY_NOT_FOUND, ())
