"""Spend reports at scale: the overview's queries over N synthetic request-log rows, answered
from the hourly rollups (what the API does) and, side by side, by scanning the log (what it
did before the rollups), on SQLite and on a throw-away PostgreSQL.

    .venv/bin/python bench/reports.py --rows 1000000
    .venv/bin/python bench/reports.py --rows 10000000 --databases sqlite

Rows spread over 90 days, 2,000 keys, 50 teams, 10 customers, 3 providers, 6 models. The
rollups are built by the migration's backfill (one INSERT … SELECT), as on an upgrade.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.postgres import start_postgres  # noqa: E402 - a throw-away server, as the tests use
from tollway.api.logs import LogFilter  # noqa: E402
from tollway.api.spend import _from_log, _report  # noqa: E402
from tollway.store import migrate  # noqa: E402
from tollway.store.database import Database  # noqa: E402

NOW = datetime(2026, 12, 5, 14, 37, tzinfo=timezone.utc)
DAYS = 90


def _rows(count: int, seed: int = 1) -> Any:
    rng = random.Random(seed)
    keys = [f"vk-{i}" for i in range(2000)]
    start = NOW - timedelta(days=DAYS)
    span = DAYS * 86_400
    for i in range(count):
        key = rng.choice(keys)
        number = int(key[3:])
        allowed = rng.random() < 0.95
        yield (start + timedelta(seconds=rng.random() * span), f"r{i}", key, f"team-{number % 50}",
               f"customer-{number % 10}", rng.choice(("openai", "anthropic", "azure")), f"model-{number % 6}",
               200 if allowed else 429, "allow" if allowed else "request_limited", rng.randrange(2000),
               rng.randrange(800), 0, rng.randrange(10**6) / 10**9, rng.random() * 900, False)


_COLUMNS = ("at, request_id, virtual_key_id, team_id, customer_id, provider, model, status, decision, prompt_tokens, "
            "completion_tokens, cached_tokens, cost, latency_ms, stream")


def _fill_sqlite(path: str, rows: int) -> None:
    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(
            f"INSERT INTO request_logs ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ((r[0].replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"), *r[1:12], format(r[12], ".9f"), *r[13:])
             for r in _rows(rows)))
    connection.close()


async def _fill_postgres(url: str, rows: int) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.copy_records_to_table(
            "request_logs", columns=[c.strip() for c in _COLUMNS.split(",")],
            records=((*r[:12], round(Decimal(r[12]), 9), *r[13:]) for r in _rows(rows)))
    finally:
        await connection.close()


def _overview_queries() -> list[tuple[str, LogFilter, str | None, str | None]]:
    today = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    return [
        ("today, total", LogFilter(start=today, end=NOW), None, None),
        ("this month, by key", LogFilter(start=month, end=NOW), "key", None),
        ("this month, by team", LogFilter(start=month, end=NOW), "team", None),
        ("30 days, by day", LogFilter(start=NOW - timedelta(days=30), end=NOW), None, "day"),
        ("24 hours, by hour", LogFilter(start=NOW - timedelta(hours=24), end=NOW), None, "hour"),
        ("90 days, one key, by day", LogFilter(start=NOW - timedelta(days=90), end=NOW, virtual_key_id="vk-7"), None, "day"),
    ]


async def _time(db: Database, query: Callable[..., Any], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        async with db.session() as session:
            await session.run_sync(query)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _measure(name: str, url: str, rows: int, fill: Callable[[], Any]) -> None:
    await migrate.upgrade(url, "0001")
    started = time.perf_counter()
    await fill()
    filled = time.perf_counter() - started
    started = time.perf_counter()
    await migrate.upgrade(url)  # the rollup migration backfills from the rows
    backfill = time.perf_counter() - started
    db = Database(url)
    try:
        print(f"\n{name}: {rows:,} rows (filled in {filled:.0f} s, rollups backfilled in {backfill:.1f} s)")
        print(f"  {'query':<28} {'rollups ms':>11} {'scan ms':>9} {'ratio':>6}")
        for label, where, group_by, interval in _overview_queries():
            fast = await _time(db, lambda s, w=where, g=group_by, i=interval: _report(s, w, g, i, db.dialect))
            slow = await _time(db, lambda s, w=where, g=group_by, i=interval: _from_log(s, w, g, i, db.dialect), 1)
            print(f"  {label:<28} {fast:>11.1f} {slow:>9.0f} {slow / fast:>6.0f}")
    finally:
        await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    wanted = args.databases.split(",")
    if "sqlite" in wanted:
        path = Path(tempfile.mkdtemp(prefix="tollway-reports-")) / "tollway.db"
        url = f"sqlite:///{path}"

        async def fill_sqlite() -> None:
            await asyncio.to_thread(_fill_sqlite, str(path), args.rows)

        await _measure("SQLite", url, args.rows, fill_sqlite)
    if "postgresql" in wanted:
        server = start_postgres()
        try:
            url = server.create_database()
            await _measure("PostgreSQL", url, args.rows, lambda: _fill_postgres(url, args.rows))
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
