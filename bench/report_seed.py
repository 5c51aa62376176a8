"""Millions of synthetic request-log rows and their rollups, loaded in bulk: what
`bench/reports.py` measures reports against.

The rows go in as a gateway writes them (the head schema, the same column forms: naive UTC
text times and decimal-text cost on SQLite), but in bulk: SQLite through executemany in
big transactions with journalling off for the load only, PostgreSQL through asyncpg's
COPY. The indexes are dropped first and built once after. The rollups are then computed
set-based (INSERT … SELECT … GROUP BY), to the same rows the request-log writer's
`tollway.store.spend_rollup.Rollup` would have added batch by batch
(tests/store/test_report_seed.py checks that on a small set): the log is grouped once by
hour and every combination column plus the route and the decision (a staging table), and every rollup is
grouped from that or from a finer rollup — never from the log again.

Rows are in time order over ``DAYS`` days ending at ``now``: 2,000 keys in 50 teams and 10
customers, 3 providers, 6 models (a key uses one), 2 routes, 5 % denied.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from tollway.store.request_log import RequestLogRecord

DAYS = 90
KEYS = 2000
PROVIDERS = ("openai", "anthropic", "azure")
COLUMNS = ("at", "request_id", "virtual_key_id", "team_id", "customer_id", "provider", "model", "status", "decision",
           "prompt_tokens", "completion_tokens", "cached_tokens", "cost", "latency_ms", "stream", "route")
COMBO = ("virtual_key_id", "team_id", "customer_id", "provider", "model")
SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")
TOTALS = ("all", *COMBO, "route", "decision")  # the `dimension`s of spend_totals (`spend_rollup.TOTAL_DIMENSIONS`)
STAGED = (*COMBO, "route", "decision")  # what the staging table groups the log by, besides the hour
_SQLITE_BATCH = 500_000
_COPY_LINES = 50_000
ROLLUP_TABLES = ("spend_totals", "spend_rollups", "spend_rollup_hours")


def synthetic_rows(count: int, now: datetime, seed: int = 1, days: int = DAYS) -> Iterator[tuple[Any, ...]]:
    """``count`` rows evenly over the ``days`` days before ``now``, in `COLUMNS` order, in
    the forms SQLite keeps (time as naive UTC text, cost as 9-decimal text)."""
    rng = random.Random(seed)
    start = (now.astimezone(timezone.utc) - timedelta(days=days)).replace(tzinfo=None)
    step_us = days * 86_400 * 10**6 / count
    randrange, chance = rng.randrange, rng.random
    for i in range(count):
        number = randrange(KEYS)
        allowed = chance() < 0.95
        at = start + timedelta(microseconds=int(i * step_us))
        yield (at.strftime("%Y-%m-%d %H:%M:%S.%f"), f"r{i}", f"vk-{number}", f"team-{number % 50}",
               f"customer-{number % 10}", PROVIDERS[i % 3], f"model-{number % 6}",
               200 if allowed else 429, "allow" if allowed else "request_limited",
               randrange(2000) if allowed else 0, randrange(800) if allowed else 0, 0,
               f"0.{randrange(10**6):09d}" if allowed else "0.000000000", round(chance() * 900, 3), 0,
               "messages" if number % 7 == 0 else "chat")


def as_record(row: tuple[Any, ...]) -> RequestLogRecord:
    """One synthetic row as the record the gateway would have logged for it."""
    values = dict(zip(COLUMNS, row, strict=True))
    values["at"] = datetime.fromisoformat(values["at"]).replace(tzinfo=timezone.utc)
    values["cost"] = Decimal(values["cost"])
    values["stream"] = bool(values["stream"])
    return RequestLogRecord(**values)


# --- SQLite ------------------------------------------------------------------------------


def fill_sqlite(path: str, rows: Iterator[tuple[Any, ...]]) -> dict[str, float]:
    """The rows and their rollups into the (migrated, empty) database at ``path``; returns
    the seconds each phase took."""
    clock = _Phases()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1000000", "temp_store=MEMORY"):
            connection.execute(f"PRAGMA {pragma}")  # the load only: the gateway sets its own on connect
        indexes = _sqlite_indexes(connection)
        for name, _ in indexes:  # built once after the rows: far cheaper than kept up row by row
            connection.execute(f"DROP INDEX {name}")
        insert = f"INSERT INTO request_logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        while True:
            batch = [row for _, row in zip(range(_SQLITE_BATCH), rows, strict=False)]
            if not batch:
                break
            connection.execute("BEGIN")
            connection.executemany(insert, batch)
            connection.execute("COMMIT")
        clock.lap("rows_s")
        connection.execute("BEGIN")
        for statement in rollup_statements("sqlite"):
            connection.execute(statement)
        connection.execute("COMMIT")
        clock.lap("rollups_s")
        for _, sql in indexes:
            connection.execute(sql)
        connection.execute("ANALYZE")
        connection.execute("PRAGMA journal_mode=WAL")
        clock.lap("indexes_s")
    finally:
        connection.close()
    return clock.laps


def _sqlite_indexes(connection: sqlite3.Connection) -> list[tuple[str, str]]:
    """(name, CREATE INDEX) of the log's and the rollups' droppable indexes."""
    tables = ("request_logs", *ROLLUP_TABLES)
    return list(connection.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({', '.join('?' * len(tables))})", tables))


# --- PostgreSQL --------------------------------------------------------------------------


async def fill_postgres(url: str, rows: Iterator[tuple[Any, ...]]) -> dict[str, float]:
    """The rows (COPY) and their rollups into the (migrated, empty) database at ``url``;
    returns the seconds each phase took."""
    import asyncpg

    clock = _Phases()
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        indexes = [row["indexdef"] for row in await connection.fetch(
            "SELECT i.indexdef FROM pg_indexes i WHERE i.tablename = ANY($1::text[]) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)", ["request_logs", *ROLLUP_TABLES])]
        for statement in indexes:  # built once after the rows, as for SQLite
            await connection.execute("DROP INDEX " + statement.split()[2])
        await connection.copy_to_table("request_logs", source=_csv_chunks(rows), columns=list(COLUMNS), format="csv")
        clock.lap("rows_s")
        await connection.execute("SET maintenance_work_mem = '1GB'")
        await connection.execute("SET work_mem = '512MB'")
        async with connection.transaction():
            for statement in rollup_statements("postgresql"):
                await connection.execute(statement)
        clock.lap("rollups_s")
        for statement in indexes:
            await connection.execute(statement)
        await connection.execute("VACUUM ANALYZE")  # statistics and the visibility map (index-only scans)
        clock.lap("indexes_s")
    finally:
        await connection.close()
    return clock.laps


async def _csv_chunks(rows: Iterator[tuple[Any, ...]]) -> AsyncIterator[bytes]:
    lines: list[str] = []
    for row in rows:
        lines.append(",".join(map(str, (f"{row[0]}+00", *row[1:14], "true" if row[14] else "false", row[15]))))
        if len(lines) == _COPY_LINES:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()


class _Phases:
    """Seconds per phase of a load, each from the end of the one before."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 1)
        self._last = now


# --- the rollups, set-based --------------------------------------------------------------


def _truncate(dialect: str, span: str, column: str) -> str:
    """The UTC ``span`` (hour, day, month) that ``column`` falls in, in the column's own form."""
    if dialect == "sqlite":  # naive UTC text, "%Y-%m-%d %H:%M:%S.%f"
        return {"hour": f"substr({column}, 1, 13) || ':00:00.000000'",
                "day": f"substr({column}, 1, 10) || ' 00:00:00.000000'",
                "month": f"substr({column}, 1, 7) || '-01 00:00:00.000000'"}[span]
    return f"date_trunc('{span}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def rollup_statements(dialect: str) -> list[str]:
    """The statements that fill every rollup from the request log (the rollups empty)."""
    nano = ("CAST(ROUND(cost * 1000000000) AS INTEGER)" if dialect == "sqlite"
            else "CAST(cost * 1000000000 AS BIGINT)")  # per row, as the writer adds them: sums stay exact
    # PostgreSQL: an unlogged table, not a temporary one — parallel workers can scan it, and
    # it sits in shared buffers, not in a backend's few megabytes of temp buffers.
    temporary = "CREATE TEMP TABLE seed_hours AS" if dialect == "sqlite" else "CREATE UNLOGGED TABLE seed_hours AS"
    groups = [f"COALESCE({name}, '') AS {name}" for name in STAGED]
    hour = _truncate(dialect, "hour", "at")
    sums = ", ".join(f"SUM({name})" for name in SUMS)
    statements = [
        f"{temporary} SELECT {hour} AS hour, {', '.join(groups)}, SUM({nano}) AS spend_nano, "
        f"SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
        f"SUM(cached_tokens) AS cached_tokens, COUNT(*) AS requests, "
        f"SUM(CASE WHEN decision <> 'allow' THEN 1 ELSE 0 END) AS denied_requests "
        f"FROM request_logs GROUP BY {hour}, {', '.join(f'COALESCE({name}, {chr(39) * 2})' for name in STAGED)}",
        _grouped("spend_rollup_hours", "hour", "hour", "seed_hours", COMBO),
        _grouped("spend_rollups", "day", _truncate(dialect, "day", "hour"), "spend_rollup_hours", COMBO),
    ]
    for dimension in TOTALS:
        value, by = ("''", "hour") if dimension == "all" else (dimension, f"hour, {dimension}")
        statements.append(
            f"INSERT INTO spend_totals (span, bucket_start, dimension, value, {', '.join(SUMS)}) "
            f"SELECT 'hour', hour, '{dimension}', {value}, {sums} FROM seed_hours GROUP BY {by}")
    for span, finer in (("day", "hour"), ("month", "day")):
        start = _truncate(dialect, span, "bucket_start")
        statements.append(
            f"INSERT INTO spend_totals (span, bucket_start, dimension, value, {', '.join(SUMS)}) "
            f"SELECT '{span}', {start}, dimension, value, {sums} FROM spend_totals WHERE span = '{finer}' "
            f"GROUP BY {start}, dimension, value")
    return [*statements, "DROP TABLE seed_hours"]


def _grouped(table: str, time: str, expression: str, source: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    sums = ", ".join(f"SUM({name})" for name in SUMS)
    return (f"INSERT INTO {table} ({time}, {names}, {', '.join(SUMS)}) "
            f"SELECT {expression}, {names}, {sums} FROM {source} GROUP BY {expression}, {names}")
