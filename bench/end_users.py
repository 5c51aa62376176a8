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
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import MappingProxyType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests.support
from end_users_day import DayFigures, run_day, table_figures
from governance_engine import KEY_VALUE, TAGS, tagged, typical

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


def facts(user: str | None, tags: tuple[str, ...] = ()) -> RequestFacts:
    return RequestFacts("openai", "gpt-4o-mini", hash_key(KEY_VALUE), 1_200, COST_NANO, tags=tags, end_user=user)


async def admission_cost(requests: int, pool: int) -> None:
    """µs per admit + settle: end users off, named without a template, on, and on with limits
    on the request's two tags too; measured in alternating rounds, so that a busy machine
    slows all four alike."""
    print(f"admission cost, {requests:,} requests over {pool:,} distinct end users (memory counters):")
    plain, templated = typical(), with_end_users(typical())
    users = [f"user-{i}" for i in range(pool)]
    variants = {"no end user": (plain, False, ()), "end user, no template": (plain, True, ()),
                "end-user limits on": (templated, True, ()),
                "end-user and tag limits": (tagged(templated), True, TAGS)}
    enforcers = {title: Enforcer(MemoryCounterStore(), lambda: T0) for title in variants}
    samples: dict[str, list[int]] = {title: [] for title in variants}
    rounds = max(1, requests // 1_000)
    for round_ in range(rounds + 1):  # the first round warms the memos and counters
        for title, (snapshot, named, tags) in variants.items():
            enforcer = enforcers[title]
            for i in range(1_000):
                request = facts(users[(round_ * 1_000 + i) % pool] if named else None, tags)
                t0 = time.perf_counter_ns()
                admission = await enforcer.admit(snapshot, request)
                await enforcer.settle(admission.reservation, 1_100, COST_NANO)
                if round_:
                    samples[title].append(time.perf_counter_ns() - t0)
    for title, taken in samples.items():
        quantiles = statistics.quantiles(taken, n=100)
        print(f"  {title:26s} p50 {quantiles[49] / 1000:6.1f} µs   p99 {quantiles[98] / 1000:6.1f} µs")


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


async def day(args: argparse.Namespace, database_url: str, redis_url: str | None) -> DayFigures:
    """The simulated day (`end_users_day`), on Redis counters when ``redis_url`` is given."""
    await migrate.upgrade(database_url)
    db = Database(database_url)
    figures = DayFigures(args.users, args.sessions_per_user, counters="redis" if redis_url else "memory",
                         database=database_url.split(":")[0].split("+")[0], concurrency=args.concurrency)
    store: Any = RedisCounterStore(redis_url, timeout_ms=10_000) if redis_url else MemoryCounterStore()
    snapshot = with_end_users(typical())
    try:
        before = await _redis_memory(store) if redis_url else {}
        await run_day(figures, db, store, snapshot, facts, args.idle, COST_NANO, _hourly(args.json))
        if redis_url:
            after = await _redis_memory(store)
            figures.redis = {"used_memory_before": before["used_memory"], "used_memory_after": after["used_memory"],
                             "used_memory_peak": after["used_memory_peak"], "keys": after["keys"]}
        await table_figures(db, figures)
    finally:
        with contextlib.suppress(CounterUnavailable):
            await store.close()
        await db.close()
    figures.load_average = _load()
    print(f"day: {figures.users:,} end users, {figures.requests:,} requests in {figures.seconds:,.1f} s "
          f"({figures.seconds / figures.users * 1e3:.2f} ms a user), {figures.counters} counters, {figures.database}, "
          f"{figures.concurrency} sessions at once; peak {figures.peak_end_user_counters_held:,} end-user counters "
          f"held; {figures.rows_written:,} rows written, {figures.flushes:,} flushes in {figures.flush_seconds:,.1f} s "
          f"(slowest {figures.slowest_flush_seconds:.2f} s), evictions' writes {figures.write_seconds:,.1f} s; "
          f"{figures.read_backs:,} read-backs; end_user_counters {figures.end_user_rows:,} rows, "
          f"{figures.end_user_table_bytes:,} bytes; peak RSS {figures.process_peak_rss_bytes / 2**20:,.0f} MiB; "
          f"redis {figures.redis}; flushes read {figures.flush_reads}; the full read of "
          f"{figures.full_export_counters:,} counters {figures.full_export_seconds:.1f} s; load {figures.load_average}")
    return figures


async def _redis_memory(store: RedisCounterStore) -> dict[str, int]:
    info = (await store._call("INFO", "memory")).decode()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return {"used_memory": int(fields["used_memory"]), "used_memory_peak": int(fields["used_memory_peak"]),
            "keys": int(await store._call("DBSIZE"))}


def _load() -> str:
    """The load averages (1, 5, 15 minutes): the machine is shared, so every figure says how busy it was."""
    loadavg = Path("/proc/loadavg")
    return " ".join(loadavg.read_text().split()[:3]) if loadavg.exists() else ""


def _hourly(path: str) -> Any:
    def report(figures: DayFigures, hour: int) -> None:
        figures.load_average = _load()
        print(f"  hour {hour:2d}: {figures.requests:,} requests in {figures.seconds:,.0f} s, "
              f"{figures.rows_written:,} rows written, peak {figures.peak_end_user_counters_held:,} counters held, "
              f"flushes {figures.flush_seconds:,.0f} s; load {figures.load_average}", flush=True)
        if path:
            _write_json(path, {**figures.as_dict(), "complete": False, "hours_done": hour})

    return report


def _write_json(path: str, figures: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(figures, indent=2) + "\n")


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
    postgres = redis = None
    try:
        if args.postgres:
            from tests.support.postgres import start_postgres

            postgres = start_postgres()
            url = postgres.create_database()
        else:
            url = f"sqlite:///{tempfile.mkdtemp()}/day.db"
        if args.redis:
            from tests.support.redis_server import start_redis

            redis = start_redis()
        figures = await day(args, url, redis.url if redis is not None else None)
        if args.json:
            _write_json(args.json, {**figures.as_dict(), "complete": True, "hours_done": 24})
    finally:
        for server in (redis, postgres):
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
    parser.add_argument("--concurrency", type=int, default=64,
                        help="sessions of the day in flight at once (the clients of several gateway workers)")
    parser.add_argument("--json", default="", help="write the day's figures to this file (bench/results/...)")
    asyncio.run(main(parser.parse_args()))
