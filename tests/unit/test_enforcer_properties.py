"""Enforcer + MemoryCounterStore under random interleavings (SPEC §4, "exact enforcement").

Invariants, checked after every step on every counter:
- reserved equals the sum of what open reservations hold on it (so it is 0 once all are
  settled or released);
- a request counter's used + reserved never exceeds its limit, nor does an in-flight
  counter's reserved (the requests holding a slot) exceed its max_in_flight, and an
  in-flight counter is never charged;
- a token counter or budget exceeds its limit only by the (actual - estimate) of requests
  settled into its current window;
- a denial is never spurious, and a single request is admitted whenever all its limits
  have room.

`EndUserEnforcerMachine` runs them with end users (SPEC §8): requests name one of a few
end users, templates on a key, a team and a customer (and one override) give each their
own counters, held to the same invariants.

`ShadowEnforcerMachine` runs the same rules with some limits in shadow mode (SPEC §8):
their books balance like the others', spend may exceed them but never an enforced one,
they never deny, and an admitted request says `would_deny` exactly when one of them had
no room (naming the first such limit).

`TaggedEnforcerMachine` adds request tags (SPEC §8): tag limits shared by every key, a
key's forced tags (charged whether named or not) and allowed tags (any other is refused
with ``tag_not_allowed`` before any counter moves); the same invariants hold on every tag
counter.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests import factories as f
from tests.support.yielding_store import YieldingStore
from tollway.governance.counters.base import CounterReading
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.decisions import DECISION_FOR_KIND, Denial
from tollway.governance.end_users import plan_end_users
from tollway.governance.enforcer import Enforcer, Reservation
from tollway.governance.engine import LimitCheck, Plan, RequestFacts, acquire_ops, hash_key, plan, static_checks
from tollway.governance.limit_rules import plan_rules
from tollway.governance.model import Kind
from tollway.governance.tags import TagPlanner, key_tags, with_tag_checks

T0 = f.at(2026, 6, 30, 23, 59)
KEYS = {name: f.key_value(name) for name in ("a", "b", "c")}


def _snapshot():
    def rl(**kw):
        return f.rate_limit(**kw)

    return f.snapshot(
        providers=[f.provider("openai", rate_limit=rl(requests=6, request_window="10s", tokens=300, token_window="1m"),
                              budget=f.budget("0.000004", "30s"), concurrency=f.concurrency(4))],
        model_configs=[f.model_config("gpt", "openai", rate_limit=rl(requests=5, request_window="20s")),
                       f.model_config("gpt", budget=f.budget("0.000003", "1d", calendar=True))],
        keys={
            KEYS["a"]: f.virtual_key("a", team_id="t", rate_limit=rl(requests=3, request_window="15s"),
                                     provider_configs=[f.provider_config("openai", rate_limit=rl(tokens=120, token_window="30s"),
                                                                         budget=f.budget("0.000002", "1m"))]),
            KEYS["b"]: f.virtual_key("b", team_id="t", budget=f.budget("0.000002", "45s"), concurrency=f.concurrency(1)),
            KEYS["c"]: f.virtual_key("c", customer_id="cu", rate_limit=rl(requests=2, request_window="5s", tokens=80)),
        },
        teams=[f.team("t", customer_id="cu", rate_limit=rl(requests=4, request_window="30s"),
                      budget=f.budget("0.000003", "1M", calendar=True), concurrency=f.concurrency(2))],
        customers=[f.customer("cu", rate_limit=rl(tokens=200, token_window="40s"), budget=f.budget("0.000005", "1h"))],
    )


SNAPSHOT = _snapshot()
ALL_CHECKS: tuple[LimitCheck, ...] = tuple(
    {c.counter: c for key in [None, *SNAPSHOT.keys_by_hash.values()]
     for c in static_checks(SNAPSHOT, key, "openai", "gpt")}.values()
)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def _together(*coroutines):
    """Run coroutines concurrently on the machine's own loop."""
    return await asyncio.gather(*coroutines)


# What settling charges each kind of counter, given the request's tokens and cost.
_ACTUAL = {
    Kind.REQUESTS: lambda tokens, cost: 1,
    Kind.TOKENS: lambda tokens, cost: tokens,
    Kind.BUDGET: lambda tokens, cost: cost,
    Kind.IN_FLIGHT: lambda tokens, cost: 0,
}

requests_st = st.lists(
    st.tuples(st.sampled_from([None, *KEYS]), st.integers(0, 70), st.integers(0, 1500)), min_size=1, max_size=4
)


class EnforcerMachine(RuleBasedStateMachine):
    snapshot = SNAPSHOT
    all_checks = ALL_CHECKS
    end_users = None  # how `plan` adds end users' checks (the enforcer's own memo does the same)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock(T0)
        self.store = MemoryCounterStore()
        self.enforcer = Enforcer(YieldingStore(self.store), self.clock)
        self.open: list[Reservation] = []
        # Excess (actual - estimate) settled into each (counter, window start).
        self.allowance: dict[tuple[str, int], int] = defaultdict(int)

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def readings(self, checks: Sequence[LimitCheck]) -> tuple[CounterReading, ...]:
        ops = acquire_ops(Plan(tuple(checks), (0,) * len(checks)), self.clock.now)
        return self.run(self.store.read(ops))

    @rule(batch=requests_st)
    def admit(self, batch: list[tuple[str | None, int, int]]) -> None:
        self._admit([RequestFacts("openai", "gpt", hash_key(KEYS[k]) if k else None, tokens, cost)
                     for k, tokens, cost in batch])

    def _admit(self, facts: list[RequestFacts]) -> None:
        predicted = self._predict(facts[0]) if len(facts) == 1 else None
        admissions = self.run(_together(*(self.enforcer.admit(self.snapshot, fact) for fact in facts)))
        for fact, admission in zip(facts, admissions):
            if admission.allowed:
                self.open.append(admission.reservation)
            else:
                self._assert_denial_is_due(admission.denial, fact)
                assert admission.denial.scope is None or not self._is_shadow(admission.denial)
        if predicted is not None:
            allowed, would = predicted
            assert admissions[0].allowed is allowed
            if allowed:
                got = admissions[0].would_deny
                assert ((got.decision, got.scope) if got else None) == would

    @precondition(lambda self: self.open)
    @rule(data=st.data(), tokens=st.integers(0, 120), cost=st.integers(0, 2500), twice=st.booleans())
    def settle(self, data: st.DataObject, tokens: int, cost: int, twice: bool) -> None:
        reservation = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
        calls = [self.enforcer.settle(reservation, tokens, cost)]
        if twice:
            calls.append(self.enforcer.settle(reservation, tokens, cost))
        self.run(_together(*calls))
        checks = reservation.plan.checks
        for check, amount, reading in zip(checks, reservation.plan.amounts, self.readings(checks)):
            actual = _ACTUAL[check.kind](tokens, cost)
            self.allowance[(check.counter, reading.last_reset_ms)] += max(0, actual - amount)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        reservation = self.open.pop(data.draw(st.integers(0, len(self.open) - 1)))
        self.run(_together(self.enforcer.release(reservation), self.enforcer.release(reservation)))

    @rule(ms=st.one_of(st.integers(1, 2_000), st.integers(2_000, 90_000)))
    def advance_clock(self, ms: int) -> None:
        self.clock.now += ms

    @rule(checks=st.lists(st.sampled_from(ALL_CHECKS), min_size=1, max_size=3, unique=True))
    def operator_reset(self, checks: list[LimitCheck]) -> None:
        self.run(self.store.reset([c.counter for c in checks], self.clock.now))

    @invariant()
    def books_balance(self) -> None:
        held: dict[str, int] = defaultdict(int)
        for reservation in self.open:
            for check, amount in zip(reservation.plan.checks, reservation.plan.amounts):
                held[check.counter] += amount
        assert self.enforcer.reservations_in_flight == len(self.open)
        for check, reading in zip(self.all_checks, self.readings(self.all_checks)):
            assert reading.reserved == held[check.counter], check.counter
            exact = check.kind in (Kind.REQUESTS, Kind.IN_FLIGHT)
            slack = 0 if exact else self.allowance[(check.counter, reading.last_reset_ms)]
            if check.kind is Kind.IN_FLIGHT:
                assert reading.used == 0, check.counter
            if not check.shadow:  # spend may exceed a shadow limit, never an enforced one
                assert reading.used + reading.reserved <= check.limit + slack, check.counter

    def teardown(self) -> None:
        try:
            for reservation in self.open:
                self.run(self.enforcer.release(reservation))
            self.open.clear()
            assert self.enforcer.reservations_in_flight == 0
            assert all(reading.reserved == 0 for reading in self.readings(self.all_checks))
        finally:
            self.loop.close()

    def _predict(self, fact: RequestFacts) -> tuple[bool, tuple | None] | None:
        """Whether a lone request is admitted (every enforced limit has room) and, if so,
        the (decision, scope) of the first shadow limit without room (None: all have)."""
        planned = plan(self.snapshot, fact, end_users=self.end_users)
        if not isinstance(planned, Denial):
            planned = TagPlanner().apply(self.snapshot, fact, planned)
        if not isinstance(planned, Denial):
            planned = plan_rules(self.snapshot, fact, planned)
        if isinstance(planned, Denial):
            return None
        readings = self.readings(planned.checks)
        short = [c for c, r, amount in zip(planned.checks, readings, planned.amounts)
                 if r.used + r.reserved + amount > c.limit]
        would = next(((DECISION_FOR_KIND[c.kind], c.scope) for c in short if c.shadow), None)
        return not any(not c.shadow for c in short), would

    def _is_shadow(self, denial: Denial) -> bool:
        """Whether every limit of the denial's scope and kind is a shadow one."""
        kind = next((k for k, d in DECISION_FOR_KIND.items() if d is denial.decision), None)
        if kind is None:  # not a limit's denial (tag_not_allowed): no limit involved
            return False
        matching = [c for c in self.all_checks if c.scope == denial.scope and c.kind is kind]
        return bool(matching) and all(c.shadow for c in matching)

    def _assert_denial_is_due(self, denial: Denial, fact: RequestFacts) -> None:
        if denial.decision.value == "tag_not_allowed":  # due when the key really does not allow a tag named
            key = self.snapshot.keys_by_hash[fact.key_hash]
            assert isinstance(key_tags(key, fact.tags), Denial)
            return
        amount = {"request_limited": 1, "token_limited": fact.estimated_tokens,
                  "budget_exceeded": fact.estimated_cost_nano, "concurrency_limited": 1}[denial.decision.value]
        assert denial.used + amount > denial.limit
        assert denial.reset_at_ms > self.clock.now


EnforcerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_enforcer_under_random_interleavings = EnforcerMachine.TestCase


USERS = ("u1", "u2", "vip")


def _end_user_snapshot():
    """`_snapshot`'s shape with end-user templates on key a, team t and customer cu."""
    def rl(**kw):
        return f.rate_limit(**kw)

    return f.snapshot(
        providers=[f.provider("openai", rate_limit=rl(requests=8, request_window="10s"))],
        keys={
            KEYS["a"]: f.virtual_key("a", team_id="t", rate_limit=rl(requests=5, request_window="15s"),
                                     end_users=f.end_users(rate_limit=rl(requests=2, request_window="10s", id="eu-a"),
                                                           budget=f.budget("0.000002", "1m", id="eu-a")),
                                     overrides={"vip": f.end_users(rate_limit=rl(requests=4, request_window="10s",
                                                                                 id="eu-a"))}),
            KEYS["b"]: f.virtual_key("b", team_id="t", budget=f.budget("0.000003", "45s")),
            KEYS["c"]: f.virtual_key("c", customer_id="cu", rate_limit=rl(requests=3, request_window="5s", tokens=80)),
        },
        teams=[f.team("t", customer_id="cu", budget=f.budget("0.000004", "1M", calendar=True),
                      end_users=f.end_users(concurrency=f.concurrency(1, id="eu-t"),
                                            rate_limit=rl(tokens=90, token_window="30s", id="eu-t")))],
        customers=[f.customer("cu", end_users=f.end_users(budget=f.budget("0.000003", "1h", id="eu-cu")))],
    )


END_USER_SNAPSHOT = _end_user_snapshot()


class EndUserEnforcerMachine(EnforcerMachine):
    snapshot = END_USER_SNAPSHOT
    end_users = staticmethod(plan_end_users)
    all_checks = tuple(
        {c.counter: c for key in [None, *END_USER_SNAPSHOT.keys_by_hash.values()] for user in (None, *USERS)
         for c in (plan_end_users(static_checks(END_USER_SNAPSHOT, key, "openai", "gpt"), END_USER_SNAPSHOT, key, user)
                   if key is not None and user is not None else static_checks(END_USER_SNAPSHOT, key, "openai", "gpt"))
         }.values()
    )

    @rule(batch=st.lists(st.tuples(st.sampled_from([None, *KEYS]), st.sampled_from([None, *USERS]),
                                   st.integers(0, 70), st.integers(0, 1500)), min_size=1, max_size=4))
    def admit(self, batch: list[tuple[str | None, str | None, int, int]]) -> None:  # type: ignore[override]
        self._admit([RequestFacts("openai", "gpt", hash_key(KEYS[k]) if k else None, tokens, cost, end_user=user)
                     for k, user, tokens, cost in batch])


EndUserEnforcerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_enforcer_with_end_users_under_random_interleavings = EndUserEnforcerMachine.TestCase


def _shadow_snapshot():
    """`_snapshot`'s shape with a shadow limit at most levels, beside enforced ones."""
    def rl(**kw):
        return f.rate_limit(**kw)

    return f.snapshot(
        providers=[f.provider("openai", rate_limit=rl(requests=6, request_window="10s", tokens=300, token_window="1m"),
                              budget=f.budget("0.000004", "30s", shadow=True), concurrency=f.concurrency(4))],
        model_configs=[f.model_config("gpt", "openai", rate_limit=rl(requests=2, request_window="20s", shadow=True)),
                       f.model_config("gpt", budget=f.budget("0.000003", "1d", calendar=True))],
        keys={
            KEYS["a"]: f.virtual_key("a", team_id="t", rate_limit=rl(requests=3, request_window="15s"),
                                     provider_configs=[f.provider_config(
                                         "openai", rate_limit=rl(tokens=120, token_window="30s", shadow=True),
                                         budget=f.budget("0.000002", "1m"))]),
            KEYS["b"]: f.virtual_key("b", team_id="t", budget=f.budget("0.000002", "45s"),
                                     concurrency=f.concurrency(1, 500, shadow=True)),
            KEYS["c"]: f.virtual_key("c", customer_id="cu", rate_limit=rl(requests=2, request_window="5s", tokens=80)),
        },
        teams=[f.team("t", customer_id="cu", rate_limit=rl(requests=4, request_window="30s", shadow=True),
                      budget=f.budget("0.000003", "1M", calendar=True), concurrency=f.concurrency(2))],
        customers=[f.customer("cu", rate_limit=rl(tokens=200, token_window="40s"),
                              budget=f.budget("0.000005", "1h", shadow=True))],
    )


SHADOW_SNAPSHOT = _shadow_snapshot()


class ShadowEnforcerMachine(EnforcerMachine):
    snapshot = SHADOW_SNAPSHOT
    all_checks = tuple(
        {c.counter: c for key in [None, *SHADOW_SNAPSHOT.keys_by_hash.values()]
         for c in static_checks(SHADOW_SNAPSHOT, key, "openai", "gpt")}.values()
    )


ShadowEnforcerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_shadow_limits_under_random_interleavings = ShadowEnforcerMachine.TestCase


TAGS = ("support", "finance", "cc")


def _tagged_snapshot():
    """`_snapshot` with tag limits: "support" (requests, budget), "finance" (tokens, a slot),
    "cc" (budget); key "b" forces "cc", key "c" may name "support" only."""
    def rl(**kw):
        return f.rate_limit(**kw)

    base = _snapshot()
    keys = {
        value: replace(key, forced_tags=("cc",)) if key.id == "b" else
        replace(key, allowed_tags=frozenset({"support"})) if key.id == "c" else key
        for value, key in base.keys_by_hash.items()
    }
    tags = {"support": f.tag("support", rate_limit=rl(requests=3, request_window="10s"),
                             budget=f.budget("0.000003", "30s")),
            "finance": f.tag("finance", rate_limit=rl(tokens=150, token_window="20s"), concurrency=f.concurrency(2)),
            "cc": f.tag("cc", budget=f.budget("0.000002", "1M", calendar=True))}
    return replace(base, keys_by_hash=keys, tags=tags)


TAGGED_SNAPSHOT = _tagged_snapshot()

tagged_requests_st = st.lists(
    st.tuples(st.sampled_from([None, *KEYS]), st.integers(0, 70), st.integers(0, 1500),
              st.lists(st.sampled_from(TAGS), max_size=3, unique=True)), min_size=1, max_size=4
)


class TaggedEnforcerMachine(EnforcerMachine):
    snapshot = TAGGED_SNAPSHOT
    all_checks = tuple(
        {c.counter: c for key in [None, *TAGGED_SNAPSHOT.keys_by_hash.values()]
         for c in with_tag_checks(TAGGED_SNAPSHOT, static_checks(TAGGED_SNAPSHOT, key, "openai", "gpt"), TAGS)}.values()
    )

    @rule(batch=tagged_requests_st)
    def admit_tagged(self, batch: list[tuple[str | None, int, int, list[str]]]) -> None:
        self._admit([RequestFacts("openai", "gpt", hash_key(KEYS[k]) if k else None, tokens, cost, tags=tuple(tags))
                     for k, tokens, cost, tags in batch])


TaggedEnforcerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_tag_limits_under_random_interleavings = TaggedEnforcerMachine.TestCase
