"""One gateway's governance path with a million distinct end users over a simulated day.

Every end user of a team-wide template (a $5 daily budget, 60 requests a minute, 2 in
flight) makes a short session at a random moment of the day (an injected clock runs the
day in order); the gateway flushes usage every minute and lets go of end users idle for
an hour (`counters.end_user_idle`). Measured:

- admission cost (admit + settle, µs) with end-user limits off, with a user named but no
  template, and with templates on — the same request otherwise (`typical` set-up of
  bench/governance_engine.py);
- memory per active end user in the process (tracemalloc: counters, residency, memo);
- Redis bytes per end user (`INFO memory` before and after, and `MEMORY USAGE` of one
  user's counters), with Redis counters;
- the day: peak end users held in memory, rows the flush and eviction wrote to
  PostgreSQL (SQLite without one) and how fast (rows/s).

    .venv/bin/python bench/end_users.py [--users 1000000] [--sessions-per-user 2]
        [--redis/--no-redis] [--postgres/--no-postgres] [--parts cost,memory,redis,day]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests.support
from governance_engine import KEY_VALUE, typical

from tollway.governance.counters.base import CounterUnavailable
from tollway.governance.counters.end_user_residency import EndUserResidency
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.counters.redis import RedisCounterStore
from tollway.governance.durations import parse_duration
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import RequestFacts, hash_key
from tollway.governance.model import (
    BudgetPolicy,
    ConcurrencyPolicy,
    EndUserLimits,
    EndUserTemplate,
    Level,
    PolicySnapshot,
    RateLimitPolicy,
    Scope,
    TeamPolicy,
)
from tollway.store import migrate
from tollway.store.database import Database
from tollway.store.end_user_counters import load_end_user_counters
from tollway.store.usage import save_counters
from tollway.store.usage_flush import UsageFlusher

DAY_MS = 86_400_000
MINUTE_MS = 60_000
T0 = 1_790_000_000_000  # a moment in 2026: the simulated day starts here
COST_NANO = 450_000  # per request


def with_end_users(snapshot: PolicySnapshot) -> PolicySnapshot:
    """``snapshot`` with a template on its team: $5 a day, 60 requests a minute, 2 in flight."""
    team = snapshot.teams["team"]
    limits = EndUserLimits(BudgetPolicy("eu-team", 5_000_000_000, parse_duration("1d")),
                           RateLimitPolicy("eu-team", request_max_limit=60, request_duration=parse_duration("1m")),
                           ConcurrencyPolicy("eu-team", 2))
    template = EndUserTemplate(Scope(Level.TEAM, "team", "team"), limits)
    teams = {"team": TeamPolicy(team.customer_id, type(team.limits)(team.limits.scope, team.limits.budget,
                                                                      team.limits.rate_limit, team.limits.concurrency,
                                                                      template))}
    return PolicySnapshot(providers=snapshot.providers, keys_by_hash=snapshot.keys_by_hash,
                          teams=MappingProxyType(teams), version=2)


def facts(user: str | None) -> RequestFacts:
    return RequestFacts("openai", "gpt-4o-mini", hash_key(KEY_VALUE), 1_200, COST_NANO, end_user=user)


async def admission_cost(requests: int, pool: int) -> None:
    """µs per admit + settle: end users off, named without a template, and on; measured in
    alternating rounds, so that a busy machine slows all three alike."""
    print(f"admission cost, {requests:,} requests over {pool:,} distinct end users (memory counters):")
    plain, templated = typical(), with_end_users(typical())
    users = [f"user-{i}" for i in range(pool)]
    variants = {"no end user": (plain, False), "end user, no template": (plain, True),
                "end-user limits on": (templated, True)}
    enforcers = {title: Enforcer(MemoryCounterStore(), lambda: T0) for title in variants}
    samples: dict[str, list[int]] = {title: [] for title in variants}
    rounds = max(1, requests // 1_000)
    for round_ in range(rounds + 1):  # the first round warms the memos and counters
        for title, (snapshot, named) in variants.items():
            enforcer = enforcers[title]
            for i in range(1_000):
                request = facts(users[(round_ * 1_000 + i) % pool] if named else None)
                t0 = time.perf_counter_ns()
                admission = await enforcer.admit(snapshot, request)
                await enforcer.settle(admission.reservation, 1_100, COST_NANO)
                if round_:
                    samples[title].append(time.perf_counter_ns() - t0)
    for title, taken in samples.items():
        quantiles = statistics.quantiles(taken, n=100)
        print(f"  {title:24s} p50 {quantiles[49] / 1000:6.1f} µs   p99 {quantiles[98] / 1000:6.1f} µs")


async def memory_per_user(users: int) -> None:
    """Bytes this process holds per end user it has seen (counters, residency, memo)."""
    snapshot = with_end_users(typical())
    store = MemoryCounterStore()
    residency = EndUserResidency(store, _nothing_stored, _discard, evicts_cells=True)
    enforcer = Enforcer(store, lambda: T0, residency)
    await enforcer.settle((await enforcer.admit(snapshot, facts("warm"))).reservation, 1, 1)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(users):
        admission = await enforcer.admit(snapshot, facts(f"user-{i:07d}"))
        await enforcer.settle(admission.reservation, 1_100, COST_NANO)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"memory per active end user (process, {users:,} users): {(after - before) / users:,.0f} bytes "
          f"({residency.held:,} counters held)")


async def redis_per_user(users: int) -> None:
    from tests.support.redis_server import start_redis

    server = start_redis()
    store = RedisCounterStore(server.url, timeout_ms=5_000)
    try:
        snapshot = with_end_users(typical())
        enforcer = Enforcer(store, lambda: T0)
        await enforcer.settle((await enforcer.admit(snapshot, facts("warm"))).reservation, 1, 1)
        before = await _used_memory(store)
        started = time.perf_counter()
        for i in range(users):
            admission = await enforcer.admit(snapshot, facts(f"user-{i:07d}"))
            await enforcer.settle(admission.reservation, 1_100, COST_NANO)
        elapsed = time.perf_counter() - started
        after = await _used_memory(store)
        one = 0
        for name in [check.counter for check in admission.reservation.plan.checks
                     if check.scope.level is Level.END_USER]:
            one += int(await store._call("MEMORY", "USAGE", store._counters + name) or 0)
        print(f"redis per end user ({users:,} users): {(after - before) / users:,.0f} bytes (INFO memory), "
              f"{one:,} bytes (MEMORY USAGE of one user's counters); admit+settle {elapsed / users * 1e6:,.0f} µs "
              f"per request incl. round trips")
    finally:
        with contextlib.suppress(CounterUnavailable):  # a starved machine may miss the last lease call
            await store.close()
        server.stop()


async def _used_memory(store: RedisCounterStore) -> int:
    info = (await store._call("INFO", "memory")).decode()
    return int(next(line.split(":")[1] for line in info.splitlines() if line.startswith("used_memory:")))


async def day(users: int, sessions: int, database_url: str, idle: str) -> None:
    """The day in order: sessions at random moments, a flush and eviction every minute."""
    await migrate.upgrade(database_url)
    db = Database(database_url)
    store = MemoryCounterStore()
    clock = [T0]
    written = [0, 0.0]  # rows, seconds

    async def save(states):  # eviction's writes, timed
        t0 = time.perf_counter()
        await save_counters(db, states)
        written[0] += len(states)
        written[1] += time.perf_counter() - t0

    residency = EndUserResidency(store, lambda names: load_end_user_counters(db, names), save, evicts_cells=True)
    enforcer = Enforcer(store, lambda: clock[0], residency)
    flusher = UsageFlusher(db)
    snapshot = with_end_users(typical())
    rng = random.Random(7)
    events = sorted((rng.randrange(DAY_MS), user) for user in range(users) for _ in range(sessions))
    idle_ms = parse_duration(idle).fixed_ms or 3_600_000
    peak, next_flush, started = 0, T0 + MINUTE_MS, time.perf_counter()
    for offset, user in events:
        clock[0] = T0 + offset
        while clock[0] >= next_flush:
            t0 = time.perf_counter()
            written[0] += await flusher.flush(await store.export())
            written[1] += time.perf_counter() - t0
            await residency.evict_idle(next_flush, idle_ms)
            next_flush += MINUTE_MS
        for _ in range(3):  # a session: three requests
            admission = await enforcer.admit(snapshot, facts(f"user-{user:07d}"))
            await enforcer.settle(admission.reservation, 1_100, COST_NANO)
        peak = max(peak, residency.held)
    elapsed = time.perf_counter() - started
    await db.close()
    print(f"day: {users:,} end users, {len(events) * 3:,} requests in {elapsed:,.1f} s; peak {peak:,} end-user "
          f"counters held; {written[0]:,} rows written in {written[1]:,.1f} s "
          f"({written[0] / max(written[1], 1e-9):,.0f} rows/s) to {database_url.split(':')[0]}")


async def _nothing_stored(names):
    return {}


async def _discard(states):
    return None


async def main(args: argparse.Namespace) -> None:
    parts = set(args.parts.split(","))
    if "cost" in parts:
        await admission_cost(args.requests, min(args.users, 10_000))
    if "memory" in parts:
        await memory_per_user(min(args.users, 100_000))
    if "redis" in parts and args.redis:
        await redis_per_user(min(args.users, 100_000))
    if "day" not in parts:
        return
    server = None
    if args.postgres:
        from tests.support.postgres import start_postgres

        server = start_postgres()
        url = server.create_database()
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/day.db"
    try:
        await day(args.users, args.sessions_per_user, url, args.idle)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--sessions-per-user", type=int, default=1)
    parser.add_argument("--requests", type=int, default=50_000, help="for the admission cost")
    parser.add_argument("--idle", default="1h")
    parser.add_argument("--parts", default="cost,memory,redis,day", help="which measurements, comma-separated")
    parser.add_argument("--redis", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    asyncio.run(main(parser.parse_args()))
