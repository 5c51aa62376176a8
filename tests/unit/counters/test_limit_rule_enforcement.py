"""Limit rules are exact under concurrency on every backend, templated ones included: the
concurrent first requests of a value never seen (a new end user, a new key of a customer)
get exactly the rule's limit, through several gateways over Redis and through stores that
yield to the loop on memory (`gateways_over`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests import factories as f
from tests.unit.counters.test_end_user_first_burst import BURST, gateways_over
from tollway.governance.counters.base import CounterStore
from tollway.governance.counters.redis import RedisCounterStore
from tollway.governance.decisions import Decision
from tollway.governance.enforcer import Enforcer
from tollway.governance.limit_rules import new_rule

NOW = f.at(2026, 5, 10, 8)
KEYS = [f.key_value(f"k{index}") for index in range(4)]


def world(**rule):
    unique = uuid.uuid4().hex[:8]  # counters of their own on a shared Redis
    keys = {value: f.virtual_key(f"k{index}-{unique}", customer_id="c") for index, value in enumerate(KEYS)}
    limits = {"rate_limit": f.rate_limit(requests=rule.pop("requests"), id=f"r-{unique}")} if "requests" in rule else {
        "budget": f.budget(rule.pop("budget_usd"), "1d", id=f"b-{unique}")} if "budget_usd" in rule else {
        "concurrency": f.concurrency(rule.pop("slots"), id=f"c-{unique}")}
    return f.snapshot(keys=keys, customers=[f.customer("c")],
                      rules=[new_rule(f"rule-{unique}", {"customer": ["c"]}, **limits, **rule)])


async def burst(stores: list[CounterStore], snapshot, facts_of) -> list[Decision]:
    gateways = [Enforcer(store, lambda: NOW) for store in stores]

    async def one(index: int) -> Decision:
        admission = await gateways[index % len(gateways)].admit(snapshot, facts_of(index))
        return Decision.ALLOW if admission.allowed else admission.denial.decision

    try:
        return await asyncio.gather(*(one(index) for index in range(BURST)))
    finally:
        for store in stores[1:]:
            if isinstance(store, RedisCounterStore):
                await store.close()


async def test_a_new_end_users_first_burst_under_a_template_gets_exactly_the_limit(counter_store, request) -> None:
    snapshot, user = world(requests=7, per=["end_user"]), "new-" + uuid.uuid4().hex
    decisions = await burst(await gateways_over(counter_store, request), snapshot,
                            lambda i: f.facts(key=KEYS[i % len(KEYS)], end_user=user))
    assert decisions.count(Decision.ALLOW) == 7 and decisions.count(Decision.REQUEST_LIMITED) == BURST - 7


async def test_each_new_key_of_a_customer_spends_exactly_its_templated_budget(counter_store, request) -> None:
    # $1 a day per key, each request's estimate $0.10: exactly ten per key, every key new
    snapshot = world(budget_usd="1", per=["virtual_key"])
    decisions = await burst(await gateways_over(counter_store, request), snapshot,
                            lambda i: f.facts(key=KEYS[i % 2], cost_nano=f.nano("0.1")))
    assert decisions.count(Decision.ALLOW) == 20 and decisions.count(Decision.BUDGET_EXCEEDED) == BURST - 20


@pytest.mark.parametrize("per", [[], ["end_user"]], ids=["shared", "templated"])
async def test_a_rules_slots_are_exact_under_a_burst(counter_store, request, per) -> None:
    snapshot = world(slots=5, per=per)
    decisions = await burst(await gateways_over(counter_store, request), snapshot,
                            lambda i: f.facts(key=KEYS[i % len(KEYS)], end_user="same"))
    assert decisions.count(Decision.ALLOW) == 5 and decisions.count(Decision.CONCURRENCY_LIMITED) == BURST - 5
