"""Concurrency limits through the engine and the enforcer, on every counter backend.

In-flight slots are held from admission until settle or release, denied with
``concurrency_limited`` (429, ``Retry-After: 1``), and, with ``queue_timeout_ms``, waited
for in arrival order. Waiting uses the loop's real clock, with short timeouts.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from tests import factories as f
from tollway.denials import error_body
from tollway.governance import enforcer as enforcer_module
from tollway.governance import slot_queue
from tollway.governance.counters.base import CounterOp, CounterStore
from tollway.governance.counters.redis import RedisCounterStore
from tollway.governance.decisions import Decision, denial_headers
from tollway.governance.enforcer import Admission, Enforcer
from tollway.governance.engine import static_checks
from tollway.governance.model import Kind, Level, in_flight_counter

NOW = f.at(2026, 5, 10, 8)
VK = f.key_value("svc")


def clock() -> int:
    return NOW


def world(max_in_flight: int = 2, queue_timeout_ms: int = 0, *, budget_usd: str = "100", provider_slots: int = 50,
          unique: str | None = None):
    """A key with ``max_in_flight`` slots under a provider with ``provider_slots``; ids are
    new each time unless ``unique`` is given, so that tests sharing one Redis never share a
    counter."""
    unique = unique or uuid.uuid4().hex[:8]
    slots = f.concurrency(max_in_flight, queue_timeout_ms, id=f"key-slots-{unique}")
    vk = f.virtual_key("vk", name="svc", team_id="t", concurrency=slots)
    return f.snapshot(
        keys={VK: vk},
        providers=[f.provider("openai", concurrency=f.concurrency(provider_slots, id=f"provider-slots-{unique}"))],
        teams=[f.team("t", budget=f.budget(budget_usd, "1d", id=f"b-{unique}"))],
    )


async def in_flight(store: CounterStore, snap, level: str = "key") -> int:
    """Requests in flight on the key's (or, with ``level="provider"``, the provider's) limit."""
    governed = snap.providers["openai"] if level == "provider" else next(iter(snap.keys_by_hash.values())).limits
    (reading,) = await store.read([CounterOp(in_flight_counter(governed.concurrency.id), 0, 0, 0, 0)])
    return reading.reserved


def test_without_concurrency_limits_the_plan_has_no_in_flight_check() -> None:
    snap = f.snapshot(providers=[f.provider("openai", rate_limit=f.rate_limit(requests=5))])
    assert [c.kind for c in static_checks(snap, None, "openai", "gpt-4o-mini")] == [Kind.REQUESTS]


def test_in_flight_checks_come_after_every_other_limit_in_level_order() -> None:
    snap = world()
    key = next(iter(snap.keys_by_hash.values()))
    checks = static_checks(snap, key, "openai", "gpt-4o-mini")
    assert [(c.kind, c.scope.level) for c in checks] == [
        (Kind.BUDGET, Level.TEAM), (Kind.IN_FLIGHT, Level.PROVIDER), (Kind.IN_FLIGHT, Level.VIRTUAL_KEY)]


async def test_a_request_over_max_in_flight_is_refused_with_429_naming_the_scope(counter_store) -> None:
    enforcer, snap = Enforcer(counter_store, clock), world()
    held = [await enforcer.admit(snap, f.facts(key=VK)) for _ in range(2)]
    assert all(a.allowed for a in held)
    refused = await enforcer.admit(snap, f.facts(key=VK))
    denial = refused.denial
    assert denial is not None and denial.decision is Decision.CONCURRENCY_LIMITED and denial.decision.status == 429
    assert refused.queue is None  # no queue_timeout_ms: refused at once
    assert denial_headers(denial) == [(b"retry-after", b"1")]
    error = orjson.loads(error_body(denial))["error"]
    assert error["code"] == "concurrency_limited"
    assert error["scope"] == {"level": "virtual_key", "id": "vk", "name": "svc"}
    assert (error["limit"], error["used"]) == (2, 2)
    assert "allows 2 requests in flight" in error["message"]
    assert await in_flight(counter_store, snap) == 2 and await in_flight(counter_store, snap, "provider") == 2


async def test_settle_and_release_give_the_slot_back_exactly_once(counter_store) -> None:
    enforcer, snap = Enforcer(counter_store, clock), world()
    first, second = [await enforcer.admit(snap, f.facts(key=VK)) for _ in range(2)]
    await enforcer.settle(first.reservation, 10, 100)
    await enforcer.settle(first.reservation, 10, 100)
    await enforcer.release(first.reservation)
    assert await in_flight(counter_store, snap) == 1
    await enforcer.release(second.reservation)
    await enforcer.release(second.reservation)
    assert await in_flight(counter_store, snap) == 0 and await in_flight(counter_store, snap, "provider") == 0


async def test_a_request_refused_by_a_budget_takes_no_slot(counter_store) -> None:
    enforcer, snap = Enforcer(counter_store, clock), world(budget_usd="0.000001")
    refused = await enforcer.admit(snap, f.facts(key=VK, cost_nano=f.nano("1")))
    assert refused.denial is not None and refused.denial.decision is Decision.BUDGET_EXCEEDED
    assert await in_flight(counter_store, snap) == 0 and await in_flight(counter_store, snap, "provider") == 0


async def _admitted_in_order(enforcer: Enforcer, snap, names: list[str], order: list[str]) -> list[asyncio.Task]:
    """Start one waiting request per name, each queued before the next starts."""

    async def request(name: str) -> Admission:
        admission = await enforcer.admit(snap, f.facts(key=VK))
        if admission.queue is not None:
            admission = await enforcer.wait_for_slot(lambda: snap, f.facts(key=VK), admission)
        if admission.allowed:
            order.append(name)
        return admission

    tasks = []
    for name in names:
        queued = enforcer.requests_waiting + 1
        tasks.append(asyncio.ensure_future(request(name)))
        async with asyncio.timeout(5):
            while enforcer.requests_waiting < queued:  # a store round trip, then it joins the queue
                await asyncio.sleep(0.001)
    return tasks


async def test_waiters_get_free_slots_first_come_first_served(counter_store) -> None:
    enforcer = Enforcer(counter_store, clock)
    snap = world(1, queue_timeout_ms=10_000)
    holder = await enforcer.admit(snap, f.facts(key=VK))
    order: list[str] = []
    tasks = await _admitted_in_order(enforcer, snap, ["w1", "w2", "w3", "w4"], order)
    assert order == [] and enforcer.requests_waiting == 4
    current = holder
    for expected in range(1, 5):
        await enforcer.release(current.reservation)
        current = await tasks[expected - 1]
        assert current.allowed and order == [f"w{i}" for i in range(1, expected + 1)]
        assert await in_flight(counter_store, snap) == 1
    await enforcer.release(current.reservation)
    assert enforcer.requests_waiting == 0 and await in_flight(counter_store, snap) == 0


async def test_a_newcomer_queues_behind_waiters_even_when_a_slot_just_freed(counter_store) -> None:
    enforcer = Enforcer(counter_store, clock)
    snap = world(1, queue_timeout_ms=10_000)
    holder = await enforcer.admit(snap, f.facts(key=VK))
    order: list[str] = []
    (waiter,) = await _admitted_in_order(enforcer, snap, ["waiter"], order)
    await enforcer.release(holder.reservation)  # the slot is free, the waiter not yet run
    newcomer = await enforcer.admit(snap, f.facts(key=VK))
    assert not newcomer.allowed and newcomer.queue is not None
    admitted = await waiter
    assert admitted.allowed and order == ["waiter"]
    await enforcer.release(admitted.reservation)


async def test_a_waiter_is_refused_when_no_slot_frees_within_its_queue_timeout(counter_store) -> None:
    enforcer = Enforcer(counter_store, clock)
    snap = world(1, queue_timeout_ms=80)
    await enforcer.admit(snap, f.facts(key=VK))
    started = asyncio.get_running_loop().time()
    first = await enforcer.admit(snap, f.facts(key=VK))
    final = await enforcer.wait_for_slot(lambda: snap, f.facts(key=VK), first)
    waited = asyncio.get_running_loop().time() - started
    assert final.denial is not None and final.denial.decision is Decision.CONCURRENCY_LIMITED
    assert final.queue is None and final.reservation is None
    assert 0.07 <= waited < 2
    assert "waited" in final.denial.message
    assert enforcer.requests_waiting == 0 and await in_flight(counter_store, snap) == 1


async def test_a_waiter_that_is_cancelled_leaves_the_queue_and_holds_nothing(counter_store) -> None:
    enforcer = Enforcer(counter_store, clock)
    snap = world(1, queue_timeout_ms=10_000)
    holder = await enforcer.admit(snap, f.facts(key=VK))
    order: list[str] = []
    gone, kept = await _admitted_in_order(enforcer, snap, ["gone", "kept"], order)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert enforcer.requests_waiting == 1
    await enforcer.release(holder.reservation)
    admitted = await kept
    assert admitted.allowed and order == ["kept"]
    await enforcer.release(admitted.reservation)
    assert enforcer.requests_waiting == 0 and await in_flight(counter_store, snap) == 0


async def test_a_waiter_on_another_node_gets_a_slot_freed_there_by_polling(redis_server) -> None:
    """Two enforcers on two Redis stores, as two gateway nodes: no wake-up crosses nodes."""
    node_a = RedisCounterStore(redis_server.url, timeout_ms=2000)
    node_b = RedisCounterStore(redis_server.url, timeout_ms=2000)
    try:
        snap = world(1, queue_timeout_ms=5_000)
        a, b = Enforcer(node_a, clock), Enforcer(node_b, clock)
        holder = await a.admit(snap, f.facts(key=VK))
        assert holder.allowed
        queued = await b.admit(snap, f.facts(key=VK))
        waiting = asyncio.ensure_future(b.wait_for_slot(lambda: snap, f.facts(key=VK), queued))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await a.release(holder.reservation)
        admitted = await asyncio.wait_for(waiting, 2)
        assert admitted.allowed
        await b.release(admitted.reservation)
        assert await in_flight(node_a, snap) == 0
    finally:
        await node_a.close()
        await node_b.close()


async def test_a_slot_freed_in_this_process_wakes_the_first_waiter_without_polling(counter_store, monkeypatch) -> None:
    monkeypatch.setattr(slot_queue, "FIRST_POLL_S", 60.0)  # polling alone would take a minute
    monkeypatch.setattr(enforcer_module, "MAX_POLL_S", 60.0)
    enforcer = Enforcer(counter_store, clock)
    snap = world(1, queue_timeout_ms=120_000)
    holder = await enforcer.admit(snap, f.facts(key=VK))
    order: list[str] = []
    (waiter,) = await _admitted_in_order(enforcer, snap, ["waiter"], order)
    await enforcer.settle(holder.reservation, 5, 50)
    admitted = await asyncio.wait_for(waiter, 5)
    assert admitted.allowed and order == ["waiter"]
    await enforcer.release(admitted.reservation)


async def test_a_limit_raised_while_requests_wait_lets_them_through(counter_store) -> None:
    enforcer = Enforcer(counter_store, clock)
    policy = [world(1, queue_timeout_ms=10_000, unique=uuid.uuid4().hex[:8])]
    holder = await enforcer.admit(policy[0], f.facts(key=VK))
    queued = await enforcer.admit(policy[0], f.facts(key=VK))
    waiting = asyncio.ensure_future(enforcer.wait_for_slot(lambda: policy[0], f.facts(key=VK), queued))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    slots = next(iter(policy[0].keys_by_hash.values())).limits.concurrency
    policy[0] = world(2, queue_timeout_ms=10_000, unique=slots.id.removeprefix("key-slots-"))  # the same limit, raised
    admitted = await asyncio.wait_for(waiting, 3)
    assert admitted.allowed and await in_flight(counter_store, policy[0]) == 2
    await enforcer.release(admitted.reservation)
    await enforcer.release(holder.reservation)
