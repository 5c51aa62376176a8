"""How many request-log rows match a filter, without counting them one by one.

The rollups count every request they were written with: between the first and the last
logged request (rows pruned by the log's retention are before the first), a filter that
a rollup keeps is answered by a spend report's request total — from a handful of rollup
rows, however long the log (the decision too: a totals dimension). Other filters (status,
or a decision with another filter) count the log's rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select

from tollway.store.spend_report import ReportQuery, spend_report
from tollway.store.tables import RequestLog

_LOG = cast(Table, RequestLog.__table__)
_AFTER = timedelta(microseconds=1)


def logged_count(connection: Connection, equals: dict[str, Any], start: datetime | None, end: datetime | None,
                 tag: str | None = None) -> int:
    """Rows with these column values (and ``tag``, when given) logged in [start, end) (either end open)."""
    # Two subqueries: SQLite reads min() or max() alone from the index, both together by a scan.
    first, last = connection.execute(select(select(func.min(_LOG.c.at)).scalar_subquery(),
                                            select(func.max(_LOG.c.at)).scalar_subquery())).one()
    if first is None:
        return 0
    start = first if start is None else max(start, first)
    end = last + _AFTER if end is None else end
    if start >= end:
        return 0
    [total] = spend_report(connection, ReportQuery(start, end, equals, tag=tag))
    return int(total["requests"])
