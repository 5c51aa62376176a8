"""Keeping the request log to a configured age (``request_log_retention``).

Rows older than the retention are deleted in batches, each in a short transaction of its
own, so that a large backlog never holds the table's write lock for long: the request
log's inserts go on between batches.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, select

from tollway.governance.durations import parse_duration, window_at
from tollway.store.database import Database
from tollway.store.tables import RequestLog, RequestLogTag
from tollway.store.usage import ms_to_datetime

_TABLE = cast(Table, RequestLog.__table__)
_TAGS = cast(Table, RequestLogTag.__table__)
_BATCH = 5_000


def retention_cutoff(retention: str, now_ms: int) -> datetime:
    """The oldest moment a row may have and be kept (calendar months count as such)."""
    return ms_to_datetime(window_at(parse_duration(retention), now_ms).floor_ms)


async def prune_request_log(db: Database, before: datetime, batch: int = _BATCH) -> int:
    """Delete the request log rows written before ``before`` (and their tags); returns
    how many rows went."""
    await _prune(db, _TAGS, before, batch)
    return await _prune(db, _TABLE, before, batch)


async def _prune(db: Database, table: Table, before: datetime, batch: int) -> int:
    removed = 0
    while True:
        oldest = select(table.c.id).where(table.c.at < before).order_by(table.c.id).limit(batch)
        async with db.session() as session:
            result = await session.execute(delete(table).where(table.c.id.in_(oldest.scalar_subquery())))
        count = result.rowcount or 0
        removed += count
        if count < batch:
            return removed
