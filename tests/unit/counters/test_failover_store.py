"""fail_open: local counting while Redis is unreachable, and reconciliation when it is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from tests.support.redis_server import RedisServer
from tests.unit.counters.ops import NOW, op, settle
from tollway.config.schema import CountersConfig
from tollway.governance.counters.base import CounterReading, CounterState, CounterUnavailable
from tollway.governance.counters.failover import FailoverCounterStore
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.counters.redis import RedisCounterStore
from tollway.server.counters_setup import build_counter_store, claim_flush
from tollway.telemetry import Metrics


@pytest.fixture
async def shared(own_redis: RedisServer) -> AsyncIterator[RedisCounterStore]:
    """Another gateway process on the same Redis, to look at what it holds."""
    store = RedisCounterStore(own_redis.url, timeout_ms=2000)
    yield store
    await store.close()


def failover(server: RedisServer, **kwargs) -> FailoverCounterStore:
    return FailoverCounterStore(RedisCounterStore(server.url, timeout_ms=100, **kwargs), retry_s=0.05)


async def until_back(store: FailoverCounterStore, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while store.degraded:
        assert time.monotonic() < deadline, "the store did not switch back to Redis"
        await asyncio.sleep(0.02)


async def test_counts_locally_during_an_outage_and_adds_it_to_redis_when_back(own_redis, shared, caplog) -> None:
    database = {"c": CounterState(0, NOW)}

    async def seed() -> dict[str, CounterState]:
        return database

    store = failover(own_redis, seed=seed)
    try:
        await store.load(database)  # as the gateway does at start
        for _ in range(3):
            await store.acquire([op("c")])
            await store.settle([settle("c", 1, 1)])
        database["c"] = CounterState(3, NOW)  # the last flush
        caplog.set_level(logging.WARNING, logger="tollway.governance.counters.failover")
        own_redis.kill()
        started = time.monotonic()
        results = [await store.acquire([op("c", 1, limit=5)]) for _ in range(4)]
        assert time.monotonic() - started < 0.5  # one failed call, then local answers
        assert [result.failed for result in results] == [-1, -1, -1, 0]  # seeded with the 2 used it last saw
        for _ in range(3):
            await store.settle([settle("c", 1, 1)])
        assert store.degraded
        own_redis.start()  # empty: the counters come back from the database, then the local usage
        await until_back(store)
        assert await shared.read([op("c")]) == (CounterReading(6, 0, NOW),)
        assert (await store.acquire([op("c")])).readings == (CounterReading(6, 1, NOW),)
    finally:
        await store.close()
    warnings = [record.getMessage() for record in caplog.records]
    assert len([line for line in warnings if "failing open" in line]) == 1
    assert len([line for line in warnings if "available again" in line]) == 1


async def test_a_reservation_made_in_redis_and_settled_during_the_outage_is_given_back(own_redis, shared) -> None:
    store = failover(own_redis)
    try:
        await store.acquire([op("c", 4)])
        own_redis.pause()  # a hang, not a crash: Redis keeps its data
        await store.settle([settle("c", 4, 3)])
        assert store.degraded
        own_redis.resume()
        await until_back(store)
        assert await shared.read([op("c")]) == (CounterReading(3, 0, NOW),)
    finally:
        own_redis.resume()
        await store.close()


async def test_a_reservation_made_locally_and_settled_after_the_switch_back_gives_nothing_back(own_redis, shared) -> None:
    store = failover(own_redis)
    try:
        await store.acquire([op("warm")])
        own_redis.pause()
        assert (await store.acquire([op("c", 4)])).failed == -1  # local
        own_redis.resume()
        await until_back(store)
        await shared.acquire([op("c", 3)])  # another process's reservation
        await store.settle([settle("c", 4, 4)])
        # The acquire that timed out ran once Redis woke up: the process syncs what it holds.
        for _ in range(100):
            if (readings := await shared.read([op("c")])) == (CounterReading(4, 3, NOW),):
                break
            await asyncio.sleep(0.02)
        assert readings == (CounterReading(4, 3, NOW),)
    finally:
        own_redis.resume()
        await store.close()


async def test_never_raises_and_never_waits_longer_than_the_timeout(own_redis) -> None:
    store = failover(own_redis)
    try:
        await store.acquire([op("c")])
        own_redis.pause()
        started = time.monotonic()
        assert (await store.acquire([op("c")])).failed == -1
        assert time.monotonic() - started < 0.4  # the 100 ms timeout, once
        started = time.monotonic()
        for _ in range(20):
            await store.acquire([op("c", 0)])
            await store.read([op("c")])
        assert time.monotonic() - started < 0.1  # local from then on
        assert await store.claim_flush(1000) is False  # nothing to flush from: Redis holds the truth
        with pytest.raises(CounterUnavailable):
            await store.export()
    finally:
        own_redis.resume()
        await store.close()


def test_the_counters_section_chooses_the_store() -> None:
    metrics = Metrics()
    assert isinstance(build_counter_store(CountersConfig()), MemoryCounterStore)
    closed = build_counter_store(CountersConfig(backend="redis", url="redis://127.0.0.1:1/0"), metrics)
    opened = build_counter_store(CountersConfig(backend="redis", url="redis://127.0.0.1:1/0", on_failure="fail_open",
                                                timeout_ms=20), metrics)
    assert isinstance(closed, RedisCounterStore)
    assert isinstance(opened, FailoverCounterStore)
    assert b"tollway_counters_local_fallback 0.0" in metrics.render()


async def test_only_a_shared_store_competes_for_the_flush(own_redis) -> None:
    assert await claim_flush(MemoryCounterStore(), 1000) is True
    first, second = RedisCounterStore(own_redis.url), RedisCounterStore(own_redis.url)
    try:
        assert [await claim_flush(first, 1000), await claim_flush(second, 1000)] == [True, False]
    finally:
        await first.close()
        await second.close()
