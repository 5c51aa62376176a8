"""A counter store wrapper that hands control to the event loop before each acquire and
settle, so concurrent requests in one process interleave as they would over a network
(property tests drive the enforcer through it)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tollway.governance.counters.base import (
    AcquireResult,
    CounterOp,
    CounterReading,
    CounterState,
    CounterStore,
    SettleOp,
)


class YieldingStore:
    def __init__(self, inner: CounterStore) -> None:
        self.inner = inner

    async def acquire(self, ops: Sequence[CounterOp]) -> AcquireResult:
        await asyncio.sleep(0)
        return await self.inner.acquire(ops)

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        await asyncio.sleep(0)
        await self.inner.settle(ops)

    async def read(self, ops: Sequence[CounterOp]) -> tuple[CounterReading, ...]:
        return await self.inner.read(ops)

    async def reset(self, counters: Sequence[str], now_ms: int) -> None:
        await self.inner.reset(counters, now_ms)

    async def export(self) -> dict[str, CounterState]:
        return await self.inner.export()
