"""Spend reports from rollups are exactly what the request log says — for any range
(partial hours at either end, ranges past the last request, across a month), every
grouping, bucketing and filter — on SQLite and PostgreSQL; the migrations backfill the
rollups from rows logged before them, to the same sums the request-log writer keeps."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, get_args

from sqlalchemy import delete, select, text

from tollway.api.spend import GroupBy
from tollway.governance.model import NANO_PER_USD
from tollway.store import migrate
from tollway.store.database import Database
from tollway.store.report_plan import plan
from tollway.store.report_reader import run_report
from tollway.store.request_log import RequestLogRecord, RequestLogWriter
from tollway.store.spend_report import LOG_DIMENSIONS, TAG, ReportQuery, source_of, spend_report
from tollway.store.spend_rollup import TOTAL_DIMENSIONS
from tollway.store.tables import RequestLog, SpendRollup, SpendRollupHour, SpendTotal

START = datetime(2026, 11, 3, 0, 0, tzinfo=timezone.utc)
DAYS = 35  # most of November (whose days a report takes as the month less the rest) and into December
LOG_FIELDS = ("virtual_key_id", "team_id", "customer_id", "provider", "model", "route", "status", "decision")


def _records(count: int, seed: int) -> list[RequestLogRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        allowed = rng.random() < 0.85
        denial = rng.choice(["request_limited", "budget_exceeded"])
        records.append(RequestLogRecord(
            at=START + timedelta(seconds=rng.randrange(DAYS * 86_400), microseconds=rng.randrange(10**6)),
            request_id=f"r{i}", status=200 if allowed else 429, decision="allow" if allowed else denial,
            virtual_key_id=rng.choice(["vk-a", "vk-b", None]), team_id=rng.choice(["t1", None]),
            customer_id=rng.choice(["c1", "c2", None]), provider=rng.choice(["openai", "anthropic"]),
            model=rng.choice(["m1", "m2"]), route=rng.choice(["chat", "audio.speech", None]),
            prompt_tokens=rng.randrange(1000) if allowed else 0,
            completion_tokens=rng.randrange(500) if allowed else 0,
            cost=Decimal(rng.randrange(10**7)) / 10**9 if allowed else Decimal(0)))
    return records


async def _logged(db: Database) -> list[Any]:
    """Every row of the request log, as stored."""
    async with db.session() as session:
        return list((await session.execute(select(RequestLog))).scalars())


def _direct(rows: list[Any], query: ReportQuery) -> list[tuple[Any, ...]]:
    """The report aggregated straight from the request log's rows."""
    sums: dict[tuple[Any, Any], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for row in rows:
        if not query.start <= row.at < query.end or any(getattr(row, name) != value
                                                        for name, value in query.equals.items()):
            continue
        group = getattr(row, TOTAL_DIMENSIONS[query.group_by]) if query.group_by else None
        bucket = None
        if query.interval == "hour":
            bucket = row.at.replace(minute=0, second=0, microsecond=0)
        elif query.interval == "day":
            bucket = row.at.replace(hour=0, minute=0, second=0, microsecond=0)
        cell = sums[(group, bucket)]
        amounts = (int(row.cost * NANO_PER_USD), row.prompt_tokens, row.completion_tokens, 1, row.decision != "allow")
        for index, amount in enumerate(amounts):
            cell[index] += amount
    if not sums and query.group_by is None and query.interval is None:
        sums[(None, None)] = [0, 0, 0, 0, 0]
    return sorted(((g, b, *cell) for (g, b), cell in sums.items()), key=lambda t: (t[0] or "", t[1] or START))


def _got(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(row.get("group"), row.get("bucket"), row["spend_nano"], row["prompt_tokens"], row["completion_tokens"],
             row["requests"], row["denied_requests"]) for row in rows]


async def _report(db: Database, query: ReportQuery) -> list[dict[str, Any]]:
    return await run_report(db, lambda connection: spend_report(connection, query))


async def _write(db: Database, records: list[RequestLogRecord]) -> None:
    writer = RequestLogWriter(db, batch_size=97)  # batches that split hours between them
    for record in records:
        writer.write(record)
    assert await writer.flush()
    await writer.close()


def _ranges(rng: random.Random, records: list[RequestLogRecord]) -> list[tuple[datetime, datetime]]:
    end_of_data = START + timedelta(days=DAYS)
    ranges = [(START, end_of_data),  # whole days only
              (START + timedelta(days=3, hours=5, minutes=7), end_of_data + timedelta(minutes=17)),  # open end
              (START - timedelta(hours=2, minutes=1), START + timedelta(minutes=10)),  # nothing before it
              (START + timedelta(days=4, minutes=10), START + timedelta(days=4, minutes=50))]  # inside one hour
    for _ in range(5):  # cut inside hours at both ends
        a, b = sorted(rng.randrange(DAYS * 86_400) for _ in range(2))
        ranges.append((START + timedelta(seconds=a, microseconds=123), START + timedelta(seconds=b)))
    moment = rng.choice(records).at  # ends exactly at a request (which is then outside)
    ranges.append((moment - timedelta(days=2, minutes=3), moment))
    ranges.append((moment, moment + timedelta(hours=30)))  # starts exactly at one (inside)
    return ranges


async def test_reports_equal_a_direct_aggregate_of_the_request_log(db) -> None:
    records = _records(1500, seed=1)
    await _write(db, records)
    rows = await _logged(db)
    rng = random.Random(2)
    ranges = _ranges(rng, records)
    for start, end in ranges:
        for group_by in (None, *TOTAL_DIMENSIONS):
            for interval in (None, "hour", "day"):
                query = ReportQuery(start, end, {}, group_by, interval)
                assert _got(await _report(db, query)) == _direct(rows, query), query
            ranked = sorted(_direct(rows, ReportQuery(start, end, {}, group_by)), key=lambda row: (-row[2], row[0] or ""))
            top = ReportQuery(start, end, {}, group_by, top=2)  # the two groups that spent most, biggest first
            assert _got(await _report(db, top)) == ranked[:2], top
    filters = [{"customer_id": "c2"}, {"virtual_key_id": "vk-a"}, {"provider": "openai", "team_id": "t1"},
               {"model": "m2"}, {"route": "chat"}, {"customer_id": "c1", "route": "audio.speech"},
               {"decision": "request_limited"}, {"decision": "allow"}, {"decision": "budget_exceeded", "model": "m1"},
               {"team_id": "t1", "status": 200}]
    for start, end in ranges[:3] + ranges[-2:]:
        for equals in filters:
            for group_by in (None, "key", "model", "route", "decision"):
                for interval in (None, "hour", "day"):
                    query = ReportQuery(start, end, equals, group_by, interval)
                    assert _got(await _report(db, query)) == _direct(rows, query), query


async def test_reports_read_rollups_not_the_log_for_whole_buckets(db) -> None:
    """With the log's rows gone, whole hours, days and months still report from the
    rollups — the totals, and the hourly and daily combinations."""
    records = _records(300, seed=3)
    await _write(db, records)
    async with db.session() as session:
        await session.execute(delete(RequestLog))
    everything = (START, START + timedelta(days=DAYS))
    [total] = await _report(db, ReportQuery(*everything))
    assert total["requests"] == len(records)
    [month] = await _report(db, ReportQuery(START.replace(day=1), START.replace(month=12, day=1)))
    assert month["requests"] == sum(r.at.month == 11 for r in records) > 0
    [key_total] = await _report(db, ReportQuery(*everything, {"virtual_key_id": "vk-b"}))
    assert key_total["requests"] == sum(r.virtual_key_id == "vk-b" for r in records)
    for decision in ("allow", "request_limited"):  # the log page's count of one decision: its totals
        [decided] = await _report(db, ReportQuery(*everything, {"decision": decision}))
        assert decided["requests"] == sum(r.decision == decision for r in records) > 0
    for interval in ("hour", "day"):  # filtered and grouped by another dimension: the combinations
        query = ReportQuery(*everything, {"team_id": "t1"}, "key", interval)
        assert source_of(query).kind == "combos"
        rows = await _report(db, query)
        assert sum(row["requests"] for row in rows) == sum(r.team_id == "t1" for r in records) > 0


async def test_an_empty_or_reversed_range_reports_zeros(db) -> None:
    """A range with nothing in it (end not after start, as a start in the future gives the
    log page count) is one row of zeros or no groups, not an error."""
    await _write(db, _records(50, seed=4))
    later = START + timedelta(days=DAYS + 400)
    for start, end in ((later, later), (later, START)):
        [total] = await _report(db, ReportQuery(start, end))
        assert (total["requests"], total["spend_nano"]) == (0, 0)
        assert await _report(db, ReportQuery(start, end, {}, "key", "hour")) == []


async def _rolled_up(database_url: str, records: list[RequestLogRecord]) -> dict[str, list[tuple[Any, ...]]]:
    """The rollup rows the writer keeps for ``records``, logged at head."""
    db = Database(database_url)
    try:
        await _write(db, records)
        return await _rollup_rows(db)
    finally:
        await db.close()


async def _backfilled(database_url: str, down_to: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rollup rows after a downgrade to ``down_to`` and an upgrade back: what the
    migrations backfill from the request log."""
    await migrate.downgrade(database_url, down_to)
    await migrate.upgrade(database_url)
    db = Database(database_url)
    try:
        return await _rollup_rows(db)
    finally:
        await db.close()


async def test_migrations_backfill_the_rollups_the_writer_keeps(database_url: str) -> None:
    """Rows logged at head, the report rollups dropped (down to 0012) and backfilled (up
    again): the same month totals and hourly combinations as the writer's, row for row."""
    await migrate.upgrade(database_url)
    written = await _rolled_up(database_url, _records(600, seed=4))
    assert written["months"] and written["hours"]
    assert await _backfilled(database_url, "0012") == written


async def test_the_decision_totals_are_backfilled_from_rows_logged_before_them(database_url: str) -> None:
    """Rows logged at head, the decision totals dropped (down to 0018) and backfilled (up
    again): the same totals as the writer's, and the counts the log page shows per decision."""
    await migrate.upgrade(database_url)
    written = await _rolled_up(database_url, _records(500, seed=7))
    assert {row[2] for row in written["totals"] if row[2] == "decision"}
    await migrate.downgrade(database_url, "0018_limit_rules")
    db = Database(database_url)
    try:
        assert not [row for row in (await _rollup_rows(db))["totals"] if row[2] == "decision"]
    finally:
        await db.close()
    assert await _backfilled(database_url, "0018_limit_rules") == written


async def test_the_first_rollups_are_backfilled_from_rows_logged_before_them(database_url: str) -> None:
    await migrate.upgrade(database_url)
    # Without routes: a downgrade below 0011 drops the column (the route totals then hold
    # every request under the route "", which 0016 backfills).
    records = [dataclasses.replace(record, route=None) for record in _records(400, seed=5)]
    written = await _rolled_up(database_url, records)
    assert await _backfilled(database_url, "0004") == written  # from before any rollup


async def _rollup_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    sums = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")
    combos = ("virtual_key_id", "team_id", "customer_id", "provider", "model")
    async with db.session() as session:
        async def rows(statement: Any) -> list[tuple[Any, ...]]:
            return sorted(tuple(row) for row in (await session.execute(statement)).all())

        return {
            "months": await rows(select(SpendTotal.bucket_start, SpendTotal.dimension, SpendTotal.value,
                                        *(getattr(SpendTotal, name) for name in sums)).where(SpendTotal.span == "month")),
            "totals": await rows(select(SpendTotal.span, SpendTotal.bucket_start, SpendTotal.dimension,
                                        SpendTotal.value, *(getattr(SpendTotal, name) for name in sums))),
            "hours": await rows(select(SpendRollupHour.hour, *(getattr(SpendRollupHour, name) for name in combos + sums))),
            "days": await rows(select(SpendRollup.day, *(getattr(SpendRollup, name) for name in combos + sums))),
        }


def test_most_of_a_month_is_read_as_the_month_less_its_other_days() -> None:
    def at(month: int, day: int, hour: int = 0) -> datetime:
        return datetime(2026, month, day, hour, tzinfo=timezone.utc)

    spans = ("hour", "day", "month")
    last_before = at(11, 5, 9).replace(minute=59)  # the start stays where it is
    pieces = plan(at(11, 5, 10), at(12, 5, 9), spans, before=last_before, after=None)
    assert [(p.source, p.start, p.end, p.sign) for p in pieces] == [  # the 14 hours from 10:00 as their day less 10
        ("month", at(11, 1), datetime(2027, 1, 1, tzinfo=timezone.utc), 1),
        ("day", at(11, 1), at(11, 5), -1), ("hour", at(11, 5), at(11, 5, 10), -1)]
    few = plan(at(11, 20), at(11, 27), spans, before=at(11, 1), after=at(11, 28))  # a week: days, not a month
    assert [(p.source, p.sign) for p in few] == [("day", 1)]
    hourly = plan(at(11, 2), at(11, 29), ("hour", "day"), before=at(11, 1), after=at(11, 30))  # no months to fold
    assert [p.source for p in hourly] == ["day"]


def test_most_of_a_day_is_read_as_the_day_less_its_other_hours() -> None:
    """A range starting at 03:10 reads that day's rollup less its first 3 hours (2 rows a
    group, not 21 hours' rows), where its buckets are days or there are none."""
    def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
        return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)

    for spans in (("hour", "day"), ("hour", "day", "month")):
        pieces = plan(at(5, 3, 10), at(8), spans, before=at(5, 3, 5), after=at(8, 0, 1))
        assert [(p.source, p.start, p.end, p.sign) for p in pieces] == [
            ("log", at(5, 3, 10), at(5, 4), 1), ("day", at(5), at(8), 1), ("hour", at(5), at(5, 4), -1)]
    late = plan(at(5, 13), at(8), ("hour", "day"), before=at(5, 12, 59), after=at(8, 0, 1))  # 11 hours: kept
    assert [(p.source, p.start, p.end, p.sign) for p in late] == [("hour", at(5, 13), at(6), 1), ("day", at(6), at(8), 1)]
    hourly = plan(at(5, 3), at(6), ("hour",), before=at(5, 2), after=at(6, 1))  # hour buckets: no days to fold
    assert [(p.source, p.sign) for p in hourly] == [("hour", 1)]


def test_the_api_groups_by_every_rollup_dimension() -> None:
    assert set(get_args(GroupBy)) == {*TOTAL_DIMENSIONS, TAG, *LOG_DIMENSIONS}


def test_every_grouping_is_kept_by_a_rollup() -> None:
    now = datetime(2026, 12, 5, 10, 30, tzinfo=timezone.utc)
    for group_by in TOTAL_DIMENSIONS:
        assert source_of(ReportQuery(now, now, {}, group_by)).kind == "totals"
        assert source_of(ReportQuery(now, now, {TOTAL_DIMENSIONS[group_by]: "x"}, group_by)).kind == "totals"
    for column in ("team_id", "customer_id", "provider", "model"):
        assert source_of(ReportQuery(now, now, {column: "x"}, "key", "hour")).kind == "combos"
    assert source_of(ReportQuery(now, now, {"status": 200})).kind == "log"  # no rollup keeps statuses
    decided = source_of(ReportQuery(now, now, {"decision": "request_limited"}))  # the log page's "denied" count
    assert (decided.kind, decided.dimension, decided.value) == ("totals", "decision", "request_limited")


async def test_a_report_reads_one_snapshot_off_the_event_loop(db) -> None:
    """SQLite: on a thread of its own, and a row committed meanwhile stays unseen until the
    report's transaction ends; PostgreSQL: in a REPEATABLE READ transaction."""
    await _write(db, _records(50, seed=6))
    loop_thread = threading.get_ident()

    def sqlite_report(connection: Any) -> tuple[int, int, bool]:
        first = connection.execute(text("SELECT count(*) FROM request_logs")).scalar_one()
        writer = sqlite3.connect(db.sqlite_path)  # another connection commits a row meanwhile
        with writer:
            writer.execute("INSERT INTO request_logs (at, request_id, status, decision, prompt_tokens, "
                           "completion_tokens, cached_tokens, cost, latency_ms, stream) "
                           "VALUES ('2026-11-26 00:00:00.000000', 'late', 200, 'allow', 0, 0, 0, 0, 0, 0)")
        writer.close()
        second = connection.execute(text("SELECT count(*) FROM request_logs")).scalar_one()
        return first, second, threading.get_ident() != loop_thread

    def postgres_report(connection: Any) -> str:
        return str(connection.execute(text("SHOW transaction_isolation")).scalar_one())

    if db.dialect == "sqlite":
        assert await run_report(db, sqlite_report) == (50, 50, True)
        assert (await run_report(db, sqlite_report))[0] == 51
    else:
        assert await run_report(db, postgres_report) == "repeatable read"
