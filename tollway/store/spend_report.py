"""Spend reports: spend, tokens and requests over [start, end), optionally grouped by one
dimension and bucketed by UTC hour or day, answered from the rollups (`spend_rollup`).

Each report is two statements in one read snapshot: the last logged request before the
range and the first after it (two index look-ups, which let `report_plan` use whole rollup
buckets where the range's ends hold no request), then one UNION ALL over the segments of
the plan, summed in the database. The rows read grow with the groups and buckets asked
for, not with the request log: the log itself is read only for partial hours at a range's
ends (at most two hours' worth), and for filters no rollup keeps (status; a decision
with another filter — the decision is a totals dimension, not a combination one; request
tags: a report by tag reads the log joined to `request_log_tags`, its tag index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import BigInteger, Connection, Table, and_, case, exists, func, literal_column, select, union_all
from sqlalchemy import cast as sql_cast

from tollway.governance.model import NANO_PER_USD
from tollway.store.report_plan import LOG, Segment, plan
from tollway.store.spend_rollup import ALL, COMBO_DIMENSIONS, TOTAL_DIMENSIONS
from tollway.store.tables import RequestLog, RequestLogTag, SpendRollup, SpendRollupHour, SpendTotal

SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "requests", "denied_requests")
_LOG = cast(Table, RequestLog.__table__)
_TOTALS = cast(Table, SpendTotal.__table__)
_COMBOS = {"day": (cast(Table, SpendRollup.__table__), "day"), "hour": (cast(Table, SpendRollupHour.__table__), "hour")}
_TOTAL_COLUMNS = frozenset(TOTAL_DIMENSIONS.values())
_TAGS = cast(Table, RequestLogTag.__table__)
TAG = "tag"  # the group-by of request tags: no rollup keeps them
# Groups no rollup keeps, by request-log column: read from the log alone (its `end_user, at` index).
LOG_DIMENSIONS = {"end_user": "end_user"}


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """One report: ``equals`` maps request-log columns to the value they must have."""

    start: datetime
    end: datetime
    equals: dict[str, Any] = field(default_factory=dict)
    group_by: str | None = None  # a `TOTAL_DIMENSIONS` or `LOG_DIMENSIONS` name, or `TAG`
    interval: str | None = None  # "hour", "day" or None (one row per group)
    tag: str | None = None  # only requests carrying this (normalised) tag
    top: int | None = None  # only the groups that spent most, this many, biggest first (grouped, unbucketed)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a report's whole buckets come from: ``kind`` is "totals", "combos" or "log";
    for the totals, the dimension and (when filtered) its value."""

    kind: str
    spans: tuple[str, ...] = ()
    dimension: str = ALL
    value: str | None = None


def source_of(query: ReportQuery) -> Source:
    """The smallest rollup that keeps every dimension the report filters or groups by."""
    if query.group_by == TAG or query.tag is not None or query.group_by in LOG_DIMENSIONS:
        return Source(LOG)  # only the log knows a request's tags and end user
    grouped = TOTAL_DIMENSIONS[query.group_by] if query.group_by else None
    keyed = {name for name in query.equals if name in _TOTAL_COLUMNS} | ({grouped} if grouped else set())
    if set(query.equals) - _TOTAL_COLUMNS:  # status: only the log has it
        return Source(LOG)
    finest = {"hour": ("hour",), "day": ("hour", "day"), None: ("hour", "day", "month")}[query.interval]
    if len(keyed) <= 1:
        dimension = next(iter(keyed), ALL)
        return Source("totals", finest, dimension, query.equals.get(dimension))
    if keyed <= set(COMBO_DIMENSIONS):
        return Source("combos", finest[:2])
    return Source(LOG)


def spend_report(connection: Connection, query: ReportQuery) -> list[dict[str, Any]]:
    """The report's rows, sorted by group then bucket: spend (integer nano-USD), tokens,
    requests and denied requests, plus "group" and/or "bucket" when asked for. An ungrouped,
    unbucketed report is one row (zeros when nothing matched)."""
    source = source_of(query)
    if source.kind == LOG:
        pieces = [Segment(LOG, query.start, query.end)]
    else:
        before, after = _neighbours(connection, query.start, query.end)
        pieces = plan(query.start, query.end, source.spans, before, after)
    if not pieces:  # an empty range (end not after start): read as an empty piece of the log, zeros
        pieces = [Segment(LOG, query.start, query.start)]
    dialect = connection.dialect.name
    parts = [_select(piece, source, query, dialect) for piece in pieces]
    rows = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    keys = [rows.c[name] for name in ("grp", "bucket") if name in rows.c]
    statement = select(*keys, *(func.coalesce(func.sum(rows.c[name]), 0).label(name) for name in SUMS))
    if keys:
        statement = statement.group_by(*keys)
        if any(piece.sign < 0 for piece in pieces):  # a group whose days were all taken back out
            statement = statement.having(func.sum(rows.c.requests) != 0)
    if query.top is not None and query.group_by is not None and query.interval is None:
        # Ranked in the database: the overview's top five keys need not convert thousands of rows.
        statement = statement.order_by(literal_column("spend_nano").desc(), rows.c.grp).limit(query.top)
    names = [key.name for key in keys]
    rows_read = [_row(names, row) for row in connection.execute(statement).all()]
    if keys and query.top is None:  # one ungrouped, unbucketed row needs no order
        rows_read.sort(key=_order)
    return rows_read


def _neighbours(connection: Connection, start: datetime, end: datetime) -> tuple[datetime | None, datetime | None]:
    """The last request logged before ``start`` and the first at or after ``end``."""
    before = select(func.max(_LOG.c.at)).where(_LOG.c.at < start).scalar_subquery()
    after = select(func.min(_LOG.c.at)).where(_LOG.c.at >= end).scalar_subquery()
    found = connection.execute(select(before.label("before"), after.label("after"))).one()
    return _aware(found.before), _aware(found.after)


def _aware(moment: Any) -> datetime | None:
    if moment is None:
        return None
    if isinstance(moment, str):  # SQLite's text, when the scalar subquery lost the column's type
        moment = datetime.fromisoformat(moment)
    found: datetime = moment
    return found.replace(tzinfo=timezone.utc) if found.tzinfo is None else found


def _select(piece: Segment, source: Source, query: ReportQuery, dialect: str) -> Any:
    """The rows one segment contributes, as (grp, bucket, sums...) before summing."""
    if piece.source == LOG:
        table, time = _LOG, _LOG.c.at
        sums = [sql_cast(func.round(_LOG.c.cost * literal_column(str(NANO_PER_USD))), BigInteger).label("spend_nano"),
                _LOG.c.prompt_tokens, _LOG.c.completion_tokens, literal_column("1").label("requests"),
                case((_LOG.c.decision != "allow", 1), else_=0).label("denied_requests")]
        conditions = [_LOG.c[name] == value for name, value in query.equals.items()]
        if query.tag is not None:
            conditions.append(exists().where(_TAGS.c.tag == query.tag, _same_request()))
        if query.group_by == TAG:  # a row per (request, tag); an untagged request in the group null
            table = _LOG.outerjoin(_TAGS, _same_request())
    elif source.kind == "totals":
        table, time = _TOTALS, _TOTALS.c.bucket_start
        sums = [(-_TOTALS.c[name] if piece.sign < 0 else _TOTALS.c[name]).label(name) for name in SUMS]
        conditions = [_TOTALS.c.span == piece.source, _TOTALS.c.dimension == source.dimension]
        if source.value is not None:
            conditions.append(_TOTALS.c.value == source.value)
    else:
        table, column = _COMBOS[piece.source]
        time = table.c[column]
        sums = [(-table.c[name] if piece.sign < 0 else table.c[name]).label(name) for name in SUMS]
        conditions = [table.c[name] == value for name, value in query.equals.items()]
    columns: list[Any] = []
    if query.group_by == TAG:
        columns.append(func.coalesce(_TAGS.c.tag, "").label("grp"))
    elif query.group_by is not None:
        name = TOTAL_DIMENSIONS.get(query.group_by) or LOG_DIMENSIONS[query.group_by]
        grp = table.c.value if table is _TOTALS else table.c[name]
        columns.append((func.coalesce(grp, "") if table is _LOG else grp).label("grp"))
    if query.interval is not None:
        columns.append(bucket(query.interval, dialect, time).label("bucket"))
    return select(*columns, *sums).select_from(table).where(time >= piece.start, time < piece.end, *conditions)


def _same_request() -> Any:
    """A `request_log_tags` row of the request-log row it tags."""
    return and_(_TAGS.c.at == _LOG.c.at, _TAGS.c.request_id == _LOG.c.request_id)


def bucket(interval: str, dialect: str, column: Any) -> Any:
    """The UTC start of the row's hour or day (as text on SQLite, a timestamp on PostgreSQL)."""
    if dialect == "sqlite":  # stored as naive UTC text
        form = "%Y-%m-%d %H:00:00" if interval == "hour" else "%Y-%m-%d 00:00:00"
        return func.strftime(literal_column(f"'{form}'"), column)
    # Literals, not bind parameters: PostgreSQL must see the grouped expression as the selected one.
    return func.date_trunc(literal_column(f"'{interval}'"), func.timezone(literal_column("'UTC'"), column))


def _row(keys: list[str], row: Any) -> dict[str, Any]:
    """One result row (``keys`` then `SUMS`, by position: cheaper than by name per row)."""
    values: dict[str, Any] = dict(zip(SUMS, map(int, row[len(keys):]), strict=True))
    for name, value in zip(keys, row, strict=False):
        if name == "grp":
            values["group"] = value or None  # rollups keep an absent id as ""
        else:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else value
            values["bucket"] = moment.replace(tzinfo=timezone.utc)
    return values


_NO_BUCKET = datetime.min.replace(tzinfo=timezone.utc)


def _order(row: dict[str, Any]) -> tuple[str, datetime]:
    return (row.get("group") or "", row.get("bucket") or _NO_BUCKET)
