"""The `counter_store` fixture: every backend the contract suite runs against.

Add a backend by adding its name to ``BACKENDS`` and a branch to ``_open``; the suite in
``test_counter_store_contract.py`` speaks only the `CounterStore` protocol.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.redis_server import RedisServer, require_redis
from tollway.governance.counters.base import CounterStore
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.counters.redis import RedisCounterStore

BACKENDS = ["memory", "redis"]


async def _open(backend: str, request: pytest.FixtureRequest) -> CounterStore:
    if backend == "memory":
        return MemoryCounterStore()
    if backend == "redis":  # a generous timeout: a busy test machine must not fail the contract
        return RedisCounterStore(request.getfixturevalue("redis_server").url, timeout_ms=2000)
    raise ValueError(f"unknown counter backend {backend!r}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (started only when a test needs it)."""
    server = require_redis()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
async def counter_store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    store = await _open(request.param, request)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def counter_name() -> CounterNames:
    """Counter names unique to the test, so a shared backend (Redis) needs no flushing."""
    return CounterNames(uuid.uuid4().hex[:12])


class CounterNames:
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def __call__(self, name: str = "c") -> str:
        return f"test:{self._prefix}:{name}"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, to kill, pause or restart."""
    server = require_redis()
    yield server
    server.stop()
