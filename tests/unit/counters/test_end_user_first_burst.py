"""A new end user's first burst is held to their template's limits exactly, on every backend.

Peer gateways admitted the concurrent first requests of an unseen end user past the
default budget (their counters were created after the check). Here N concurrent first
requests of one new end user race for a request limit and a dollar budget: exactly the
limit is admitted. On Redis the requests come through several stores (several gateway
processes, each with its own connection), on memory through stores that yield to the
loop before each acquire.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests import factories as f
from tests.support.yielding_store import YieldingStore
from tollway.governance.counters.base import CounterStore
from tollway.governance.counters.redis import RedisCounterStore
from tollway.governance.decisions import Decision
from tollway.governance.enforcer import Enforcer

NOW = f.at(2026, 5, 10, 8)
VK = f.key_value("app")
BURST = 40
GATEWAYS = 4


def world(*, requests: int | None = None, budget_usd: str | None = None):
    unique = uuid.uuid4().hex[:8]  # counters of their own on a shared Redis
    template = f.end_users(
        rate_limit=f.rate_limit(requests=requests, id=f"eu-rl-{unique}") if requests else None,
        budget=f.budget(budget_usd, "1d", id=f"eu-b-{unique}") if budget_usd else None)
    vk = f.virtual_key("vk", name="app", team_id="t")
    return f.snapshot(keys={VK: vk}, teams=[f.team("t", end_users=template)])


async def gateways_over(counter_store: CounterStore, request: pytest.FixtureRequest) -> list[CounterStore]:
    """The stores of several gateways over the backend under test."""
    if isinstance(counter_store, RedisCounterStore):
        url = request.getfixturevalue("redis_server").url
        return [counter_store] + [RedisCounterStore(url, timeout_ms=2000) for _ in range(GATEWAYS - 1)]
    return [YieldingStore(counter_store) for _ in range(GATEWAYS)]  # one process: one memory


async def burst(gateways: list[Enforcer], snapshot, user: str, cost_nano: int) -> list[Decision]:
    async def one(index: int) -> Decision:
        admission = await gateways[index % len(gateways)].admit(snapshot, f.facts(key=VK, end_user=user,
                                                                                  cost_nano=cost_nano))
        return Decision.ALLOW if admission.allowed else admission.denial.decision
    return await asyncio.gather(*(one(i) for i in range(BURST)))


async def burst_through(counter_store: CounterStore, request: pytest.FixtureRequest, snapshot, cost_nano: int,
                        user: str) -> list[Decision]:
    stores = await gateways_over(counter_store, request)
    try:
        return await burst([Enforcer(store, lambda: NOW) for store in stores], snapshot, user, cost_nano)
    finally:
        for store in stores[1:]:
            if isinstance(store, RedisCounterStore):
                await store.close()


async def test_a_new_end_users_first_burst_gets_exactly_their_request_limit(counter_store, request) -> None:
    decisions = await burst_through(counter_store, request, world(requests=7), 1_000, "new-" + uuid.uuid4().hex)
    assert decisions.count(Decision.ALLOW) == 7
    assert decisions.count(Decision.REQUEST_LIMITED) == BURST - 7


async def test_a_new_end_users_first_burst_spends_exactly_their_budget(counter_store, request) -> None:
    # $1 a day, each request's estimate $0.10: exactly ten fit
    decisions = await burst_through(counter_store, request, world(budget_usd="1"), f.nano("0.1"),
                                    "new-" + uuid.uuid4().hex)
    assert decisions.count(Decision.ALLOW) == 10
    assert decisions.count(Decision.BUDGET_EXCEEDED) == BURST - 10
