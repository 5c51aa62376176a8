"""The request log writer: batches, a bounded buffer, and surviving database failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, func, select

from tollway.store.database import Database
from tollway.store.request_log import RequestLogRecord, RequestLogWriter
from tollway.store.request_log_retention import prune_request_log, retention_cutoff
from tollway.store.tables import RequestLog, RequestLogTag

AT = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)


def record(n: int, **fields: object) -> RequestLogRecord:
    values: dict[str, object] = {"at": AT, "request_id": f"req-{n}", "status": 200, "decision": "allow"}
    values.update(fields)
    return RequestLogRecord(**values)  # type: ignore[arg-type]


async def _request_ids(db: Database) -> list[str]:
    async with db.session() as session:
        return list(await session.scalars(select(RequestLog.request_id).order_by(RequestLog.id)))


async def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll until the background task got there (it runs on its own schedule)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_records_are_written_in_batches_with_every_field(db: Database) -> None:
    writer = RequestLogWriter(db, batch_size=3, interval_s=0.02)
    await writer.start()
    full = record(0, virtual_key_id="vk", team_id="t", customer_id="c", provider="openai", model="gpt-4o-mini",
                  status=429, decision="request_limited", denied_level="team", denied_id="t", prompt_tokens=10,
                  completion_tokens=5, cached_tokens=2, cost=Decimal("0.000012345"), latency_ms=12.5, stream=True,
                  error="limited")
    writer.write(full)
    for n in range(1, 7):
        writer.write(record(n))

    await _eventually(lambda: writer.pending == 0)
    await writer.close()

    assert await _request_ids(db) == [f"req-{n}" for n in range(7)]
    async with db.session() as session:
        row = (await session.scalars(select(RequestLog).where(RequestLog.request_id == "req-0"))).one()
    assert {name: getattr(row, name) for name in RequestLogRecord.__dataclass_fields__} == {
        name: getattr(full, name) for name in RequestLogRecord.__dataclass_fields__}
    assert writer.dropped == 0


async def test_a_full_buffer_drops_the_oldest_and_counts_them(db: Database) -> None:
    writer = RequestLogWriter(db, max_buffer=3)
    for n in range(5):
        writer.write(record(n))

    assert (writer.pending, writer.dropped) == (3, 2)
    assert await writer.flush()
    assert await _request_ids(db) == ["req-2", "req-3", "req-4"]


async def test_writes_wait_for_a_failing_database_and_go_through_afterwards(db: Database) -> None:
    writer = RequestLogWriter(db, batch_size=2, interval_s=0.02)
    await writer.start()
    table = cast(Table, RequestLog.__table__)
    async with db.engine.begin() as connection:
        await connection.run_sync(table.drop)  # every insert now fails

    for n in range(5):
        writer.write(record(n))
    assert not await writer.flush()
    assert (writer.pending, writer.dropped) == (5, 0)

    async with db.engine.begin() as connection:
        await connection.run_sync(table.create)
    await _eventually(lambda: writer.pending == 0)
    await writer.close()

    assert await _request_ids(db) == [f"req-{n}" for n in range(5)]
    assert writer.dropped == 0


async def test_a_record_that_cannot_be_stored_does_not_block_the_others(db: Database) -> None:
    writer = RequestLogWriter(db, batch_size=10)
    writer.write(record(0))
    writer.write(record(1, request_id=None))  # NOT NULL
    writer.write(record(2))

    assert await writer.flush()

    assert await _request_ids(db) == ["req-0", "req-2"]
    assert (writer.pending, writer.dropped) == (0, 1)


async def test_close_writes_what_is_left(db: Database) -> None:
    writer = RequestLogWriter(db, batch_size=100, interval_s=60)
    await writer.start()
    for n in range(3):
        writer.write(record(n))

    await writer.close()

    assert await _request_ids(db) == ["req-0", "req-1", "req-2"]
    writer.write(record(9))  # after close: counted, not kept
    assert (writer.pending, writer.dropped) == (0, 1)
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(RequestLog)) == 3


async def test_rows_older_than_the_cutoff_are_pruned_in_batches_and_the_rest_kept(db: Database) -> None:
    writer = RequestLogWriter(db, batch_size=100, interval_s=60)
    await writer.start()
    cutoff = AT + timedelta(days=30)
    for n in range(7):  # before the cutoff, the last one by a millisecond
        writer.write(record(n, at=cutoff - timedelta(days=7 - n) if n < 6 else cutoff - timedelta(milliseconds=1)))
    for n in range(7, 10):  # at the cutoff and after: kept
        writer.write(record(n, at=cutoff + timedelta(hours=n - 7)))
    await writer.close()

    assert await prune_request_log(db, cutoff, batch=3) == 7  # three batches: 3, 3, 1
    assert await _request_ids(db) == ["req-7", "req-8", "req-9"]
    assert await prune_request_log(db, cutoff, batch=3) == 0


def test_the_retention_cutoff_counts_days_and_calendar_months() -> None:
    def cutoff(retention: str, now: datetime) -> datetime:
        return retention_cutoff(retention, int(now.timestamp() * 1000))

    mid_march = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc)
    assert cutoff("90d", mid_march) == mid_march - timedelta(days=90) + timedelta(milliseconds=1)
    assert cutoff("1M", mid_march) == datetime(2026, 2, 15, 12, 0, 0, 1000, tzinfo=timezone.utc)
    # A row is kept while it is less than a calendar month old: on March 31, one written on
    # February 28 is (a month later was March 28); one written on March 1 is not yet.
    assert cutoff("1M", datetime(2026, 3, 31, 12, 0, tzinfo=timezone.utc)) == datetime(2026, 3, 1, tzinfo=timezone.utc)


async def _tag_rows(db: Database) -> list[tuple[str, str, datetime]]:
    async with db.session() as session:
        rows = await session.execute(select(RequestLogTag.request_id, RequestLogTag.tag, RequestLogTag.at)
                                     .order_by(RequestLogTag.request_id, RequestLogTag.tag))
        return [tuple(row) for row in rows]


async def test_each_tag_of_a_record_gets_a_row_and_untagged_records_none(db: Database) -> None:
    writer = RequestLogWriter(db, batch_size=100, interval_s=60)
    await writer.start()
    writer.write(record(0, tags="support,search"))
    writer.write(record(1))
    writer.write(record(2, tags="support", at=AT + timedelta(days=40)))
    await writer.close()

    assert await _tag_rows(db) == [("req-0", "search", AT), ("req-0", "support", AT),
                                   ("req-2", "support", AT + timedelta(days=40))]
    async with db.session() as session:
        tags = dict((await session.execute(select(RequestLog.request_id, RequestLog.tags))).all())
    assert tags == {"req-0": "support,search", "req-1": None, "req-2": "support"}
    assert await prune_request_log(db, AT + timedelta(days=30)) == 2  # rows of the log; their tags go with them
    assert await _tag_rows(db) == [("req-2", "support", AT + timedelta(days=40))]
