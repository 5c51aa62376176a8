"""``on_failure: fail_open``: count in Redis while it answers, locally while it does not.

When a call to the shared store fails, this wrapper logs the outage once, switches to a
local `MemoryCounterStore` (seeded with the last usage it saw in Redis, so a limit does
not restart from zero) and probes Redis in the background every ``retry_s``. While the
outage lasts, each gateway process enforces its limits on its own: N processes may
admit up to N times what remains of a limit. When Redis answers again, the usage that
was counted locally is added to it (one settle) and the wrapper switches back.

Reservations cross the switch in both directions. A request admitted by Redis and
settled during the outage gives its reservation back to Redis at reconciliation; one
admitted locally and settled after the switch gives back nothing to Redis, which never
saw it. Which is which is known per counter and amount, not per request, which is
exact once the requests in flight at the switch have finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tollway.governance.counters.base import (
    AcquireResult,
    CounterOp,
    CounterReading,
    CounterState,
    CounterUnavailable,
    SettleOp,
)
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.counters.redis import RedisCounterStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Unsynced:
    """Usage counted locally on one counter, to be added to Redis when it is back."""

    give_back: int  # reservations Redis holds for requests that were settled locally
    actual: int  # usage counted locally in the counter's current window
    floor_ms: int  # the latest window it was counted in
    reset_to_ms: int
    window_ms: int
    local_reset_ms: int  # the local counter's window start, to notice a roll

    def op(self, counter: str) -> SettleOp:
        return SettleOp(counter, self.give_back, self.actual, self.floor_ms, self.reset_to_ms, self.window_ms)


class FailoverCounterStore:
    """`CounterStore` over a `RedisCounterStore` that never raises `CounterUnavailable`
    from acquire, settle or read (``reset``, ``forget`` and ``export`` still do: they
    change or report shared state, which a local copy cannot stand in for)."""

    def __init__(self, primary: RedisCounterStore, *, retry_s: float = 1.0) -> None:
        self._primary = primary
        self._retry_s = retry_s
        self._local = MemoryCounterStore()
        self._down_since: float | None = None
        self._seen: dict[str, CounterState] = {}  # last usage read from Redis, to seed local counters
        self._unsynced: dict[str, _Unsynced] = {}
        self._local_counters: set[str] = set()  # counters the local store reserved on
        self._local_held: dict[str, int] = {}  # local reservations still in flight after the switch back
        self._probe: asyncio.Task[None] | None = None
        self.outages = 0

    @property
    def degraded(self) -> bool:
        """True while counting locally (exported as a gauge)."""
        return self._down_since is not None

    async def acquire(self, ops: Sequence[CounterOp]) -> AcquireResult:
        if self._down_since is None:
            try:
                result = await self._primary.acquire(ops)
            except CounterUnavailable as exc:
                await self._fall_back(exc)
            else:
                seen = self._seen
                for op, reading in zip(ops, result.readings):
                    seen[op.counter] = CounterState(reading.used, reading.last_reset_ms)
                return result
        self._local_counters.update(op.counter for op in ops)
        return await self._local.acquire(ops)

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        if self._local_held:
            ops = self._without_local_reservations(ops)
        if self._down_since is None:
            try:
                await self._primary.settle(ops)
                return
            except CounterUnavailable as exc:
                await self._fall_back(exc)
        await self._settle_locally(ops)

    async def read(self, ops: Sequence[CounterOp]) -> tuple[CounterReading, ...]:
        if self._down_since is None:
            try:
                return await self._primary.read(ops)
            except CounterUnavailable as exc:
                await self._fall_back(exc)
        return await self._local.read(ops)

    async def reset(self, counters: Sequence[str], now_ms: int) -> None:
        await self._primary.reset(counters, now_ms)
        await self._local.reset(counters, now_ms)

    async def export(self) -> dict[str, CounterState]:
        return await self._primary.export()

    async def export_touched(self) -> tuple[dict[str, CounterState], frozenset[str]]:
        """What Redis says changed since the last flush (the usage flush runs only while
        Redis answers: `claim_flush`)."""
        return await self._primary.export_touched()

    async def load(self, states: Mapping[str, CounterState]) -> None:
        await self._primary.load(states)  # keeps them for later when Redis is down
        for name, state in states.items():  # what local counters start from in an outage
            self._seen.setdefault(name, state)
        if self._down_since is not None:
            await self._local.load(states)

    async def forget(self, counters: Sequence[str]) -> None:
        await self._local.forget(counters)
        for name in counters:
            self._seen.pop(name, None)
            self._unsynced.pop(name, None)
        await self._primary.forget(counters)

    async def claim_flush(self, interval_ms: int) -> bool:
        return self._down_since is None and await self._primary.claim_flush(interval_ms)

    async def close(self) -> None:
        if self._probe is not None:
            while not self._probe.done():
                self._probe.cancel()
                await asyncio.wait([self._probe], timeout=0.1)
        await self._primary.close()

    async def _fall_back(self, exc: CounterUnavailable) -> None:
        """Switch to local counting (once per outage) and start probing Redis."""
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        self.outages += 1
        # No await before this point: concurrent failures see the switch already made.
        await self._local.load(self._seen)
        log.warning("counter store unavailable (%s): failing open to this process's local counters "
                    "until it is back", exc)
        self._probe = asyncio.create_task(self._probe_until_back(), name="counters-failover-probe")

    async def _settle_locally(self, ops: Sequence[SettleOp]) -> None:
        """Settle on the local counters and remember what Redis must be told."""
        readings = await self._local.read([CounterOp(op.counter, 0, 0, op.floor_ms, op.reset_to_ms) for op in ops])
        for op, reading in zip(ops, readings):
            local_part = min(op.reserved, reading.reserved)
            pending = self._unsynced.get(op.counter)
            if pending is None:
                pending = self._unsynced[op.counter] = _Unsynced(0, 0, 0, 0, 0, reading.last_reset_ms)
            elif pending.local_reset_ms != reading.last_reset_ms:  # the window rolled: earlier usage has lapsed
                pending.actual, pending.local_reset_ms = 0, reading.last_reset_ms
            pending.give_back += op.reserved - local_part
            pending.actual += op.actual
            pending.floor_ms, pending.reset_to_ms, pending.window_ms = op.floor_ms, op.reset_to_ms, op.window_ms
        await self._local.settle(ops)

    def _without_local_reservations(self, ops: Sequence[SettleOp]) -> list[SettleOp]:
        """After the switch back: the parts of reservations that were made locally,
        which Redis never saw, are dropped from what is given back to it."""
        held = self._local_held
        out = []
        for op in ops:
            local = min(op.reserved, held.get(op.counter, 0))
            if local:
                held[op.counter] -= local
                if held[op.counter] == 0:
                    del held[op.counter]
                op = op._replace(reserved=op.reserved - local)
            out.append(op)
        return out

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(self._retry_s)
            try:
                await self._primary.ping()
                reconciled, lasted_s = await self._reconcile()
            except CounterUnavailable:
                continue
            log.warning("counter store available again after %.1f s; usage of %d counters counted locally "
                        "was added to it", lasted_s, reconciled)
            return

    async def _reconcile(self) -> tuple[int, float]:
        """Add the local usage to Redis, then count there again; returns how many
        counters were reconciled and how long the outage lasted.

        Requests keep settling locally while the reconciling call is in flight: their
        usage is reconciled by the next round, until a round leaves nothing behind.
        """
        total = 0
        while self._unsynced:
            pending, self._unsynced = self._unsynced, {}
            try:
                await self._primary.settle([entry.op(counter) for counter, entry in pending.items()])
            except CounterUnavailable:
                self._merge_back(pending)
                raise
            total += len(pending)
        # Nothing suspends from here on (the memory store never does): nothing may be
        # counted locally between the last round and the switch.
        assert self._down_since is not None
        lasted_s = time.monotonic() - self._down_since
        counters = sorted(self._local_counters)
        readings = await self._local.read([CounterOp(name, 0, 0, 0, 0) for name in counters])
        self._local_held = {name: reading.reserved for name, reading in zip(counters, readings) if reading.reserved}
        self._local, self._local_counters = MemoryCounterStore(), set()
        self._down_since = None
        return total, lasted_s

    def _merge_back(self, pending: dict[str, _Unsynced]) -> None:
        """A reconciling settle failed: keep its usage, with what was counted meanwhile."""
        for counter, entry in pending.items():
            later = self._unsynced.get(counter)
            if later is None:
                self._unsynced[counter] = entry
                continue
            later.give_back += entry.give_back
            if later.local_reset_ms == entry.local_reset_ms:
                later.actual += entry.actual
