"""The simulated day of `bench/end_users.py`: every end user's session at a random moment of
the day, run in time order on an injected clock, through the gateway's own governance parts
(enforcer, end-user residency, usage flusher, eviction) on PostgreSQL (or SQLite) with Redis
or in-process counters.

What a gateway overlaps, the harness overlaps: up to ``concurrency`` sessions are in flight at
once (the requests of many clients of several workers), so the Redis store pipelines the
acquires and settles of one event-loop turn into one script call and a returning end user's
read-back waits on the database while other sessions go on, as in the gateway. Sessions in
flight together share one moment of the simulated clock (the last of theirs; at a million
users a day that is well under a minute), and never straddle a flush. Each simulated minute
the usage is flushed the way the gateway's periodic flush does it (only the states that
changed are written) and end users idle for ``idle`` are let go.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text

from tollway.governance.counters.base import CounterState, CounterStore
from tollway.governance.counters.end_user_residency import EndUserResidency
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.durations import parse_duration
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import RequestFacts
from tollway.governance.model import PolicySnapshot
from tollway.store.database import Database
from tollway.store.end_user_counters import load_end_user_counters
from tollway.store.usage import save_counters
from tollway.store.usage_flush import UsageFlusher

DAY_MS = 86_400_000
MINUTE_MS = 60_000
T0 = 1_790_000_000_000  # a moment in 2026: the simulated day starts here
REQUESTS_PER_SESSION = 3
_USER_BITS = 24  # an event packs (offset, user) in one int: 16M users at most


@dataclass
class DayFigures:
    """What the day measured (also written as JSON by `bench/end_users.py --json`)."""

    users: int
    sessions: int
    requests: int = 0
    counters: str = "memory"
    database: str = "sqlite"
    concurrency: int = 1
    seconds: float = 0.0
    peak_end_user_counters_held: int = 0
    rows_written: int = 0
    write_seconds: float = 0.0
    flushes: int = 0
    flush_seconds: float = 0.0  # the whole periodic flush: reading the counters, comparing, writing
    slowest_flush_seconds: float = 0.0
    read_backs: int = 0  # end users whose counters were read back from the database
    end_user_rows: int = 0
    end_user_table_bytes: int = 0
    process_peak_rss_bytes: int = 0
    redis: dict[str, int] = field(default_factory=dict)
    # Redis: the gateway's flush today reads every counter in Redis (SCAN + HMGET); the day's
    # flushes read only the counters changed since the last one (`ChangedCounters`), and the
    # full read is timed once at the end of the day, over everything Redis then holds.
    flush_reads: str = "all counters"
    full_export_seconds: float = 0.0
    full_export_counters: int = 0
    load_average: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Timed:
    """A saver or loader that counts its rows and time into the figures."""

    def __init__(self, figures: DayFigures, db: Database) -> None:
        self._figures = figures
        self._db = db

    async def save(self, states: dict[str, CounterState]) -> None:
        started = time.perf_counter()
        await save_counters(self._db, states)
        self._figures.rows_written += len(states)
        self._figures.write_seconds += time.perf_counter() - started

    async def load(self, names: Any) -> dict[str, CounterState]:
        self._figures.read_backs += 1
        return await load_end_user_counters(self._db, names)


def schedule(users: int, sessions: int, seed: int = 7) -> list[int]:
    """Every session's (offset in the day, user), packed and in time order."""
    rng = random.Random(seed)
    return sorted((rng.randrange(DAY_MS) << _USER_BITS) | user for user in range(users) for _ in range(sessions))


async def run_day(figures: DayFigures, db: Database, store: CounterStore, snapshot: PolicySnapshot,
                  facts: Callable[[str], RequestFacts], idle: str, cost_nano: int,
                  hourly: Callable[[DayFigures, int], None] | None = None) -> None:
    """The day on ``store`` (the figures are filled in as it goes; ``hourly`` sees them at
    the end of each simulated hour, so that a run stopped early still tells how far it got)."""
    clock = [T0]
    timed = _Timed(figures, db)
    in_process = isinstance(store, MemoryCounterStore)
    if not in_process:
        store = ChangedCounters(store)
        figures.flush_reads = "changed counters"
    residency = EndUserResidency(store, timed.load, timed.save, evicts_cells=in_process)
    enforcer = Enforcer(store, lambda: clock[0], residency)
    flusher = UsageFlusher(db)
    idle_ms = parse_duration(idle).fixed_ms or 3_600_000
    events = schedule(figures.users, figures.sessions)
    mask = (1 << _USER_BITS) - 1

    async def session(user: int) -> None:
        request = facts(f"user-{user:07d}")
        for _ in range(REQUESTS_PER_SESSION):
            admission = await enforcer.admit(snapshot, request)
            await enforcer.settle(admission.reservation, 1_100, cost_nano)

    async def flush(at_ms: int) -> None:
        flush_started = time.perf_counter()
        written = await flusher.flush(await store.export())
        figures.rows_written += written
        await residency.evict_idle(at_ms, idle_ms)
        taken = time.perf_counter() - flush_started
        figures.flushes += 1
        figures.flush_seconds += taken
        figures.slowest_flush_seconds = max(figures.slowest_flush_seconds, taken)
        if hourly is not None and figures.flushes % 60 == 0:
            figures.seconds = time.perf_counter() - started
            figures.requests = at * REQUESTS_PER_SESSION
            hourly(figures, figures.flushes // 60)

    next_flush, at, started = T0 + MINUTE_MS, 0, time.perf_counter()
    while at < len(events):
        while T0 + (events[at] >> _USER_BITS) >= next_flush:
            clock[0] = next_flush
            await flush(next_flush)
            next_flush += MINUTE_MS
        end = at
        while end < len(events) and end - at < figures.concurrency and T0 + (events[end] >> _USER_BITS) < next_flush:
            end += 1
        clock[0] = T0 + (events[end - 1] >> _USER_BITS)
        await _together([session(event & mask) for event in events[at:end]])
        figures.peak_end_user_counters_held = max(figures.peak_end_user_counters_held, residency.held)
        at = end
    await flush(clock[0])
    figures.seconds = time.perf_counter() - started
    if isinstance(store, ChangedCounters):  # what the gateway's flush reads today, once, at the end of the day
        export_started = time.perf_counter()
        figures.full_export_counters = len(await store.store.export())
        figures.full_export_seconds = time.perf_counter() - export_started
    figures.requests = len(events) * REQUESTS_PER_SESSION
    figures.process_peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ChangedCounters:
    """A Redis counter store whose `export` reads only the counters acquired, settled or
    loaded since the last export (HMGETs pipelined, as the store's own export does them),
    instead of SCANning every counter Redis holds: an incremental flush. Everything else
    goes to the store itself."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._changed: set[str] = set()

    async def acquire(self, ops: Any) -> Any:
        self._changed.update(op.counter for op in ops)
        return await self.store.acquire(ops)

    async def settle(self, ops: Any) -> None:
        self._changed.update(op.counter for op in ops)
        await self.store.settle(ops)

    async def load(self, states: Any) -> None:
        self._changed.update(states)
        await self.store.load(states)

    async def export(self) -> dict[str, CounterState]:
        names, self._changed = sorted(self._changed), set()
        states: dict[str, CounterState] = {}
        prefix = self.store._counters
        for start in range(0, len(names), 500):
            batch = names[start:start + 500]
            replies = await asyncio.gather(*(self.store._call("HMGET", prefix + name, "used", "last_reset")
                                             for name in batch))
            for name, (used, last_reset) in zip(batch, replies):
                if used is not None and last_reset is not None:
                    states[name] = CounterState(int(used), int(last_reset))
        return states

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def _together(sessions: list[Awaitable[None]]) -> None:
    if len(sessions) == 1:
        await sessions[0]
    else:
        await asyncio.gather(*sessions)


async def table_figures(db: Database, figures: DayFigures) -> None:
    """Rows and bytes of the end users' counters table at the end of the day."""
    async with db.session() as session:
        figures.end_user_rows = int((await session.execute(text("SELECT count(*) FROM end_user_counters"))).scalar_one())
        if figures.database == "postgresql":
            size = await session.execute(text("SELECT pg_total_relation_size('end_user_counters')"))
            figures.end_user_table_bytes = int(size.scalar_one())
