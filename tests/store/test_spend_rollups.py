"""Spend reports from hourly rollups are exactly what the request log says, for any range
(partial hours at either end included), grouping and bucketing, on SQLite and PostgreSQL;
the migration backfills rollups from rows logged before it."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select

from tollway.api.logs import LogFilter
from tollway.api.spend import _GROUP_COLUMNS, _report
from tollway.store import migrate
from tollway.store.request_log import RequestLogRecord, RequestLogWriter
from tollway.store.tables import RequestLog, SpendRollup

START = datetime(2026, 11, 28, 0, 0, tzinfo=timezone.utc)
GROUP_FIELDS = {"key": "virtual_key_id", "team": "team_id", "customer": "customer_id", "provider": "provider",
                "model": "model", "route": "route"}


def _records(count: int, seed: int) -> list[RequestLogRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        allowed = rng.random() < 0.85
        records.append(RequestLogRecord(
            at=START + timedelta(seconds=rng.randrange(3 * 86_400)), request_id=f"r{i}",
            status=200 if allowed else 429, decision="allow" if allowed else "request_limited",
            virtual_key_id=rng.choice(["vk-a", "vk-b", None]), team_id=rng.choice(["t1", None]),
            customer_id=rng.choice(["c1", "c2", None]), provider=rng.choice(["openai", "anthropic"]),
            model=rng.choice(["m1", "m2"]), route=rng.choice(["chat", "audio.speech", None]),
            prompt_tokens=rng.randrange(1000) if allowed else 0,
            completion_tokens=rng.randrange(500) if allowed else 0,
            cost=Decimal(rng.randrange(10**7)) / 10**9 if allowed else Decimal(0)))
    return records


def _expected(records: list[RequestLogRecord], where: LogFilter, group_by: str | None,
              interval: str | None) -> list[dict[str, Any]]:
    rows: dict[tuple[Any, Any], dict[str, Any]] = defaultdict(
        lambda: {"spend": Decimal(0), "prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "denied_requests": 0})
    for r in records:
        if not (where.start <= r.at < where.end) or any(
                getattr(where, name) is not None and getattr(r, name) != getattr(where, name)
                for name in ("virtual_key_id", "team_id", "customer_id", "provider", "model", "route")):
            continue
        group = getattr(r, GROUP_FIELDS[group_by]) if group_by else None
        bucket = None
        if interval == "hour":
            bucket = r.at.replace(minute=0, second=0, microsecond=0)
        elif interval == "day":
            bucket = r.at.replace(hour=0, minute=0, second=0, microsecond=0)
        row = rows[(group, bucket)]
        row["spend"] += r.cost
        row["prompt_tokens"] += r.prompt_tokens
        row["completion_tokens"] += r.completion_tokens
        row["requests"] += 1
        row["denied_requests"] += r.decision != "allow"
    return sorted(((g, b, float(v["spend"]), v["prompt_tokens"], v["completion_tokens"], v["requests"],
                    v["denied_requests"]) for (g, b), v in rows.items()), key=lambda t: (t[0] or "", t[1] or START))


def _got(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        bucket = datetime.fromisoformat(row["bucket"].replace("Z", "+00:00")) if "bucket" in row else None
        out.append((row.get("group"), bucket, row["spend"], row["prompt_tokens"], row["completion_tokens"],
                    row["requests"], row["denied_requests"]))
    return sorted(out, key=lambda t: (t[0] or "", t[1] or START))


async def _report_now(db, where: LogFilter, group_by: str | None, interval: str | None) -> list[dict[str, Any]]:
    async with db.session() as session:
        return await session.run_sync(lambda s: _report(s, where, group_by, interval, db.dialect))


async def _write(db, records: list[RequestLogRecord]) -> None:
    writer = RequestLogWriter(db, batch_size=97)  # batches that split hours between them
    for record in records:
        writer.write(record)
    assert await writer.flush()
    await writer.close()


async def test_reports_from_rollups_equal_the_request_log_for_any_range(db) -> None:
    records = _records(1500, seed=1)
    await _write(db, records)
    rng = random.Random(2)
    ranges = [(START, START + timedelta(days=3))]  # whole hours only
    for _ in range(6):  # ranges cut inside hours at both ends
        a, b = sorted(rng.randrange(3 * 86_400) for _ in range(2))
        ranges.append((START + timedelta(seconds=a, microseconds=123), START + timedelta(seconds=b)))
    ranges.append((START + timedelta(minutes=10), START + timedelta(minutes=50)))  # inside one hour
    for start, end in ranges:
        for group_by in (None, *GROUP_FIELDS):
            for interval in (None, "hour", "day"):
                where = LogFilter(start=start, end=end)
                got = _got(await _report_now(db, where, group_by, interval))
                expected = _expected(records, where, group_by, interval)
                if not expected and group_by is None and interval is None:
                    expected = [(None, None, 0.0, 0, 0, 0, 0)]
                assert got == expected, (start, end, group_by, interval)
    filters = [{"customer_id": "c2"}, {"virtual_key_id": "vk-a"}, {"provider": "openai", "team_id": "t1"},
               {"route": "chat"}, {"customer_id": "c1", "route": "audio.speech"}]
    for start, end in ranges[:4]:
        for fields in filters:
            for group_by in (None, "key", "model", "route"):
                for interval in (None, "hour", "day"):
                    where = LogFilter(start=start, end=end, **fields)
                    got = _got(await _report_now(db, where, group_by, interval))
                    expected = _expected(records, where, group_by, interval)
                    if not expected and group_by is None and interval is None:
                        expected = [(None, None, 0.0, 0, 0, 0, 0)]
                    assert got == expected, (start, end, fields, group_by, interval)


async def test_reports_read_rollups_not_the_log_for_whole_hours(db) -> None:
    """With the log's rows gone, whole hours still report from the rollups (and only those)."""
    records = _records(300, seed=3)
    await _write(db, records)
    async with db.session() as session:
        await session.execute(delete(RequestLog))
    where = LogFilter(start=START, end=START + timedelta(days=3))
    [total] = await _report_now(db, where, None, None)
    assert total["requests"] == len(records)
    for_key = LogFilter(start=START, end=START + timedelta(days=3), virtual_key_id="vk-b")
    [key_total] = await _report_now(db, for_key, None, None)
    assert key_total["requests"] == sum(r.virtual_key_id == "vk-b" for r in records)


async def test_the_migration_backfills_rollups_from_rows_logged_before_it(database_url: str) -> None:
    from tollway.store.database import Database

    await migrate.upgrade(database_url)
    db = Database(database_url)
    records = _records(400, seed=4)
    await _write(db, records)
    async with db.session() as session:
        await session.execute(delete(SpendRollup))
    await db.close()
    await migrate.downgrade(database_url, "0001")
    await migrate.upgrade(database_url)
    db = Database(database_url)
    try:
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(SpendRollup)) > 0
        where = LogFilter(start=START, end=START + timedelta(days=3))
        for group_by in (None, "model"):
            got = _got(await _report_now(db, where, group_by, "hour"))
            assert got == _expected(records, where, group_by, "hour")
    finally:
        await db.close()


def test_group_columns_are_rollup_dimensions() -> None:
    # The route is a dimension of the totals only: filtered reports by route read the log.
    assert {column.key for column in _GROUP_COLUMNS.values()} - {"route"} <= {c.name for c in SpendRollup.__table__.columns}


def test_a_range_is_cut_into_partial_hours_whole_hours_and_whole_days() -> None:
    from tollway.api.spend import _segments

    t = datetime(2026, 12, 1, 22, 30, tzinfo=timezone.utc)
    assert _segments(t, t + timedelta(days=2, hours=3), days=True) == [
        ("log", t, t.replace(hour=23, minute=0)),
        ("hour", t.replace(hour=23, minute=0), datetime(2026, 12, 2, tzinfo=timezone.utc)),
        ("day", datetime(2026, 12, 2, tzinfo=timezone.utc), datetime(2026, 12, 4, tzinfo=timezone.utc)),
        ("hour", datetime(2026, 12, 4, tzinfo=timezone.utc), datetime(2026, 12, 4, 1, tzinfo=timezone.utc)),
        ("log", datetime(2026, 12, 4, 1, tzinfo=timezone.utc), t + timedelta(days=2, hours=3)),
    ]
    assert _segments(t, t + timedelta(days=2, hours=3), days=False)[1][0] == "hour"  # hourly reports: no days
    assert _segments(t, t + timedelta(minutes=20), days=True) == [("log", t, t + timedelta(minutes=20))]
    midnight = datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert _segments(midnight, midnight + timedelta(days=1), days=True) == [("day", midnight, midnight + timedelta(days=1))]


async def test_one_filtered_value_reports_hour_by_hour_from_the_totals_not_the_log(db) -> None:
    """A team's (or customer's, provider's, model's) hourly chart reads that value's hourly
    totals: with the log's rows gone, its whole hours still add up."""
    records = _records(400, seed=4)
    await _write(db, records)
    async with db.session() as session:
        await session.execute(delete(RequestLog))
    where = LogFilter(start=START, end=START + timedelta(days=3), customer_id="c2")
    hours = await _report_now(db, where, None, "hour")
    assert sum(row["requests"] for row in hours) == sum(r.customer_id == "c2" for r in records) > 0
    [grouped] = await _report_now(db, where, "customer", None)
    assert (grouped["group"], grouped["requests"]) == ("c2", sum(r.customer_id == "c2" for r in records))
