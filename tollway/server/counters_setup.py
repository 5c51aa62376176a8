"""Choosing the counter store from the ``counters`` section, and who flushes usage.

``counters: {backend: memory}`` (the default) counts in this process only;
``{backend: redis, url: …, on_failure: fail_closed | fail_open, timeout_ms: 50}``
shares exact counters between every process and machine that points at the same Redis.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from tollway.config.schema import CountersConfig
from tollway.governance.counters.base import CounterStore
from tollway.governance.counters.failover import FailoverCounterStore
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.counters.redis import RedisCounterStore, Seed
from tollway.telemetry import Metrics


@runtime_checkable
class SharedCounters(Protocol):
    """A store several gateway processes share: only one of them flushes per interval."""

    async def claim_flush(self, interval_ms: int) -> bool: ...


def build_counter_store(config: CountersConfig, metrics: Metrics | None = None, seed: Seed | None = None) -> CounterStore:
    """The configured store; ``seed`` reads the counters from the database (used when
    Redis has lost its data)."""
    if config.backend == "memory":
        return MemoryCounterStore()
    assert config.url is not None  # the schema requires it for redis
    redis = RedisCounterStore(config.url, timeout_ms=config.timeout_ms, seed=seed, lease_ms=config.lease_ms)
    if config.on_failure == "fail_closed":
        return redis
    store = FailoverCounterStore(redis)
    if metrics is not None:
        metrics.gauge("tollway_counters_local_fallback",
                      "1 while Redis is unreachable and this process counts locally (fail_open)",
                      lambda: float(store.degraded))
    return store


async def claim_flush(store: CounterStore, interval_ms: int) -> bool:
    """Whether this process writes usage to the database this interval: always with a
    store of its own, and for one process per interval with a shared one (the writes are
    absolute states read from Redis, so the lock is about load and order, not sums)."""
    if isinstance(store, SharedCounters):
        return await store.claim_flush(interval_ms)
    return True


async def counters_health(store: CounterStore, timeout_s: float = 2.0) -> str:
    """For /health: "ok" when the counters answer (the in-process store always does),
    else why not, and whether requests are being counted locally meanwhile."""
    if isinstance(store, FailoverCounterStore) and store.degraded:
        return "unavailable: counting in this process until Redis answers (fail_open)"
    if not isinstance(store, RedisCounterStore):
        return "ok"
    try:
        await asyncio.wait_for(store.ping(), timeout_s)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}: {exc}"[:200]
    return "ok"
