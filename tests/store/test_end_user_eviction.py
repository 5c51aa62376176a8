"""Idle end users' counters leave memory and are kept in the database (SQLite and
PostgreSQL); a returning end user's counters are read back before their request is
decided, exactly, even when their first requests after eviction come all at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests import factories as f
from tests.support.yielding_store import YieldingStore
from tollway.governance.counters.base import CounterState, CounterUnavailable
from tollway.governance.counters.end_user_residency import EndUserResidency
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.decisions import Decision
from tollway.governance.enforcer import Enforcer
from tollway.store import migrate
from tollway.store.database import Database
from tollway.store.end_user_counters import load_end_user_counters
from tollway.store.usage import save_counters

VK = f.key_value("app")
START = f.at(2026, 5, 10, 8)
HOUR = 3_600_000
TEMPLATE = f.end_users(rate_limit=f.rate_limit(requests=5, request_window="1d", id="T"),
                       budget=f.budget(1, "1M", id="T"))


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    await migrate.upgrade(database_url)
    database = Database(database_url)
    yield database
    await database.close()


def snapshot():
    return f.snapshot(keys={VK: f.virtual_key("vk", team_id="t")}, teams=[f.team("t", end_users=TEMPLATE)])


def gateway(db: Database, store: MemoryCounterStore, clock: Clock, *, yielding: bool = False) -> Enforcer:
    residency = EndUserResidency(store, lambda names: load_end_user_counters(db, names),
                                 lambda states: save_counters(db, states), evicts_cells=True)
    return Enforcer(YieldingStore(store) if yielding else store, clock, residency)


async def spend(enforcer: Enforcer, user: str, times: int, cost_nano: int = 1_000) -> list[Decision]:
    decisions = []
    for _ in range(times):
        admission = await enforcer.admit(snapshot(), f.facts(key=VK, end_user=user, cost_nano=cost_nano))
        decisions.append(Decision.ALLOW if admission.allowed else admission.denial.decision)
        await enforcer.settle(admission.reservation, 10, cost_nano)
    return decisions


async def test_saved_states_are_read_back_and_overwritten(db: Database) -> None:
    await save_counters(db, {"rr:T:alice": CounterState(3, START), "b:T:alice": CounterState(7, START)})
    await save_counters(db, {"rr:T:alice": CounterState(4, START + 1)})
    assert await load_end_user_counters(db, ["rr:T:alice", "b:T:alice", "rr:T:nobody"]) == {
        "rr:T:alice": CounterState(4, START + 1), "b:T:alice": CounterState(7, START)}


async def test_an_idle_end_user_leaves_memory_and_comes_back_with_their_usage(db: Database) -> None:
    store, clock = MemoryCounterStore(), Clock()
    enforcer = gateway(db, store, clock)
    assert await spend(enforcer, "alice", 3) == [Decision.ALLOW] * 3
    await spend(enforcer, "bob", 1)
    clock.now += HOUR // 2
    await spend(enforcer, "bob", 1)  # bob stays active
    clock.now += HOUR // 2
    residency = enforcer.end_users
    assert await residency.evict_idle(clock.now, HOUR) == 2  # alice's request and budget counters
    assert not any(":alice" in name for name in await store.export())
    assert any(":bob" in name for name in await store.export())
    assert (await load_end_user_counters(db, ["rr:T:alice"]))["rr:T:alice"].used == 3
    # A new process (a restart) knows alice only from the database.
    fresh = gateway(db, MemoryCounterStore(), clock)
    assert await spend(fresh, "alice", 3) == [Decision.ALLOW, Decision.ALLOW, Decision.REQUEST_LIMITED]
    assert await spend(enforcer, "alice", 3) == [Decision.ALLOW, Decision.ALLOW, Decision.REQUEST_LIMITED]


async def test_the_first_burst_after_eviction_is_exact(db: Database) -> None:
    store, clock = MemoryCounterStore(), Clock()
    enforcer = gateway(db, store, clock, yielding=True)
    await spend(enforcer, "carol", 4)
    clock.now += HOUR
    assert await enforcer.end_users.evict_idle(clock.now, HOUR) == 2

    async def one() -> bool:
        return (await enforcer.admit(snapshot(), f.facts(key=VK, end_user="carol"))).allowed

    admitted = await asyncio.gather(*(one() for _ in range(30)))
    assert admitted.count(True) == 1  # 4 of 5 were used before the eviction


async def test_a_counter_holding_a_reservation_is_not_evicted(db: Database) -> None:
    store, clock = MemoryCounterStore(), Clock()
    enforcer = gateway(db, store, clock)
    admission = await enforcer.admit(snapshot(), f.facts(key=VK, end_user="dave", cost_nano=500))
    clock.now += 2 * HOUR  # a long stream
    assert await enforcer.end_users.evict_idle(clock.now, HOUR) == 0
    await enforcer.settle(admission.reservation, 10, 500)
    clock.now += 2 * HOUR
    assert await enforcer.end_users.evict_idle(clock.now, HOUR) == 2
    assert (await load_end_user_counters(db, ["b:T:dave"]))["b:T:dave"].used == 500


async def test_the_new_end_users_of_a_burst_are_read_back_in_one_database_read(db: Database) -> None:
    """A burst of first requests from many new end users costs one read, not one each;
    every one of them is still decided on their stored usage."""
    await save_counters(db, {f"rr:T:u{i}": CounterState(4, START) for i in range(0, 40, 2)})  # the even ones used 4 of 5
    reads: list[int] = []

    async def counted(names):
        reads.append(len(names))
        return await load_end_user_counters(db, names)

    store = MemoryCounterStore()
    residency = EndUserResidency(store, counted, lambda states: save_counters(db, states), evicts_cells=True)
    enforcer = Enforcer(store, Clock(), residency)
    decided = await asyncio.gather(*(spend(enforcer, f"u{i}", 2) for i in range(40)))
    assert len(reads) == 1  # 40 end users (their request and budget counters): one read
    for i, decisions in enumerate(decided):
        expected = [Decision.ALLOW, Decision.REQUEST_LIMITED] if i % 2 == 0 else [Decision.ALLOW] * 2
        assert decisions == expected, (i, decisions)


async def test_a_failed_read_back_refuses_every_request_of_the_burst_and_the_next_one_retries(db: Database) -> None:
    failures = [1]

    async def flaky(names):
        if failures:
            failures.pop()
            raise OSError("database unreachable")
        return await load_end_user_counters(db, names)

    store = MemoryCounterStore()
    enforcer = Enforcer(store, Clock(), EndUserResidency(store, flaky, lambda states: save_counters(db, states),
                                                         evicts_cells=True))
    burst = await asyncio.gather(*(spend(enforcer, f"v{i}", 1) for i in range(5)), return_exceptions=True)
    assert all(isinstance(result, CounterUnavailable) for result in burst)
    assert await spend(enforcer, "v0", 1) == [Decision.ALLOW]
