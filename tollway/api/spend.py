"""`/api/usage/spend`: spend, tokens and requests over time from the request log,
optionally grouped by key, team, customer, provider or model and bucketed by hour or day
(UTC). Aggregated in the database, so it stays cheap over long ranges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import case, func, literal_column, select
from sqlalchemy.orm import Session

from tollway.api.context import RuntimeDep, read
from tollway.api.limits import iso
from tollway.api.logs import LogFilter, LogFilterDep, flush_request_log
from tollway.api.responses import SpendReport
from tollway.governance.model import NANO_PER_USD
from tollway.store.spend_rollup import ALL, DIMENSIONS, day_of, hour_of
from tollway.store.tables import RequestLog, SpendRollup, SpendTotal
from tollway.store.usage import ms_to_datetime

router = APIRouter(prefix="/api/usage", tags=["usage"])

GroupBy = Literal["key", "team", "customer", "provider", "model", "route", "end_user"]
Interval = Literal["hour", "day"]
_GROUP_COLUMNS = {"key": RequestLog.virtual_key_id, "team": RequestLog.team_id, "customer": RequestLog.customer_id,
                  "provider": RequestLog.provider, "model": RequestLog.model, "route": RequestLog.route}
# Groups no rollup keeps: read from the request log alone (its `end_user, at` index).
_LOG_ONLY_COLUMNS = {"end_user": RequestLog.end_user}
_DEFAULT_RANGE = timedelta(days=1)


@router.get("/spend", response_model=SpendReport, summary="Spend, tokens and requests over time")
async def spend(
    runtime: RuntimeDep, where: LogFilterDep,
    group_by: Annotated[GroupBy | None, Query(description="key, team, customer, provider, model, route or "
                                                          "end_user.")] = None,
    interval: Annotated[Interval | None, Query(description="hour or day buckets (UTC); none: one total per group.")] = None,
) -> dict[str, Any]:
    """Over ``start`` .. ``end`` (default: the last 24 hours); ``series`` has one row per
    group and bucket, ``total`` sums the range. Denied requests count in
    ``denied_requests`` and cost nothing."""
    end = where.end or ms_to_datetime(runtime.clock_ms())
    start = where.start or end - _DEFAULT_RANGE
    where = replace(where, start=start, end=end)
    await flush_request_log(runtime)
    dialect = runtime.db.dialect

    def query(session: Session) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        series = _report(session, where, group_by, interval, dialect)
        [total] = _report(session, where, None, None, dialect)
        return series, total

    series, total = await read(runtime, query)
    return {"start": iso(start), "end": iso(end), "group_by": group_by, "interval": interval,
            "series": series, "total": total}


def _report(session: Session, where: LogFilter, group_by: GroupBy | None, interval: Interval | None,
            dialect: str) -> list[dict[str, Any]]:
    """The report's rows, from whichever source answers each piece of the range exactly and
    cheaply: the request log for partial hours (and throughout for a status or decision
    filter, which no rollup keeps), `spend_totals` for whole hours and days of an unfiltered
    report, `spend_rollups` for whole days of a report filtered by key, team, customer,
    provider or model."""
    assert where.start is not None and where.end is not None
    filters = [name for name in DIMENSIONS if getattr(where, name) is not None]
    # The day rollups keep no route: a route filter, or a filtered report by route, reads the log.
    by_route = where.route is not None or (bool(filters) and group_by == "route")
    # No rollup keeps the end user either: a report by or of end users reads the log (its
    # `end_user, at` index keeps one end user's rows cheap).
    by_end_user = where.end_user is not None or group_by in _LOG_ONLY_COLUMNS
    # One filter, grouped by nothing else: that value's own row in `spend_totals`, hour by hour.
    single = len(filters) == 1 and (group_by is None or (group_by in _GROUP_COLUMNS
                                                          and _GROUP_COLUMNS[group_by].key == filters[0]))
    if (where.status is not None or where.decision is not None or by_route or by_end_user
            or (filters and not single and interval == "hour")):
        segments = [("log", where.start, where.end)]
    elif filters and not single:
        segments = _day_segments(where.start, where.end)
    else:
        segments = _segments(where.start, where.end, days=interval != "hour")
    merged: dict[tuple[Any, Any], dict[str, Any]] = {}
    for source, start, end in segments:
        part = replace(where, start=start, end=end)
        if source == "log":
            rows = _from_log(session, part, group_by, interval, dialect)
        elif source == "rollups":
            rows = _from_rollups(session, part, group_by, interval, dialect)
        else:
            rows = _from_totals(session, part, group_by, interval, dialect, source)
        for values in rows:
            key = (values.get("grp"), values.get("bucket"))
            row = merged.get(key)
            if row is None:
                merged[key] = dict(values)
            else:
                for name in _SUMS:
                    row[name] += values[name]
    if not merged and group_by is None and interval is None:
        merged[(None, None)] = {name: 0 for name in _SUMS}
    rows = [merged[key] for key in sorted(merged, key=_sort_key)]
    return [_row(values, group_by is not None, interval is not None) for values in rows]


def _segments(start: datetime, end: datetime, days: bool) -> list[tuple[str, datetime, datetime]]:
    """[start, end) cut into the pieces each source answers: "log" for partial hours,
    "hour" for whole hours, "day" for whole days (when the report is not hourly)."""
    first_hour, last_hour = _ceil(start, hour_of), hour_of(end)
    if first_hour >= last_hour:
        return [("log", start, end)]
    segments = [("log", start, first_hour)] if start < first_hour else []
    first_day, last_day = _ceil(first_hour, day_of), day_of(last_hour)
    if days and first_day < last_day:
        if first_hour < first_day:
            segments.append(("hour", first_hour, first_day))
        segments.append(("day", first_day, last_day))
        if last_day < last_hour:
            segments.append(("hour", last_day, last_hour))
    else:
        segments.append(("hour", first_hour, last_hour))
    if last_hour < end:
        segments.append(("log", last_hour, end))
    return segments


def _day_segments(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """[start, end) as whole days from the day rollups and the rest from the log."""
    first_day, last_day = _ceil(start, day_of), day_of(end)
    if first_day >= last_day:
        return [("log", start, end)]
    return ([("log", start, first_day)] if start < first_day else []) + [("rollups", first_day, last_day)] + (
        [("log", last_day, end)] if last_day < end else [])


_SUMS = ("spend", "prompt_tokens", "completion_tokens", "requests", "denied_requests")


def _sums(model: Any) -> list[Any]:
    return [
        func.coalesce(func.sum(model.spend_nano), 0).label("spend"),
        func.coalesce(func.sum(model.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(model.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(model.requests), 0).label("requests"),
        func.coalesce(func.sum(model.denied_requests), 0).label("denied_requests"),
    ]


def _from_log(session: Session, where: LogFilter, group_by: GroupBy | None, interval: Interval | None,
              dialect: str) -> list[dict[str, Any]]:
    keys: list[Any] = []
    if group_by is not None:
        keys.append({**_GROUP_COLUMNS, **_LOG_ONLY_COLUMNS}[group_by].label("grp"))
    if interval is not None:
        keys.append(_bucket(interval, dialect, RequestLog.at).label("bucket"))
    statement = select(
        *keys,
        func.coalesce(func.sum(RequestLog.cost), 0).label("spend"),
        func.coalesce(func.sum(RequestLog.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(RequestLog.completion_tokens), 0).label("completion_tokens"),
        func.count().label("requests"),
        func.coalesce(func.sum(case((RequestLog.decision != "allow", 1), else_=0)), 0).label("denied_requests"),
    )
    statement = where.apply(statement)
    return _rows(session, statement, keys, lambda spend: Decimal(str(spend)))


def _from_totals(session: Session, where: LogFilter, group_by: GroupBy | None, interval: Interval | None,
                 dialect: str, span: str) -> list[dict[str, Any]]:
    keys: list[Any] = []
    if group_by is not None:
        keys.append(SpendTotal.value.label("grp"))
    if interval is not None:
        keys.append(_bucket(interval, dialect, SpendTotal.bucket_start).label("bucket"))
    dimension = ALL if group_by is None else _GROUP_COLUMNS[group_by].key
    statement = select(*keys, *_sums(SpendTotal)).where(
        SpendTotal.span == span, SpendTotal.bucket_start >= where.start, SpendTotal.bucket_start < where.end)
    only = [name for name in DIMENSIONS if getattr(where, name) is not None]
    if only:  # the one filtered value (`_report` sends no more than one here)
        [dimension] = only
        statement = statement.where(SpendTotal.value == getattr(where, dimension))
    statement = statement.where(SpendTotal.dimension == dimension)
    return _rows(session, statement, keys, _nano_to_usd)


def _from_rollups(session: Session, where: LogFilter, group_by: GroupBy | None, interval: Interval | None,
                  dialect: str) -> list[dict[str, Any]]:
    keys: list[Any] = []
    if group_by is not None:
        keys.append(getattr(SpendRollup, _GROUP_COLUMNS[group_by].key).label("grp"))
    if interval is not None:
        keys.append(_bucket(interval, dialect, SpendRollup.day).label("bucket"))
    statement = select(*keys, *_sums(SpendRollup)).where(SpendRollup.day >= where.start, SpendRollup.day < where.end)
    for name in DIMENSIONS:
        value = getattr(where, name)
        if value is not None:
            statement = statement.where(getattr(SpendRollup, name) == value)
    return _rows(session, statement, keys, _nano_to_usd)


def _rows(session: Session, statement: Any, keys: list[Any], spend: Callable[[Any], Decimal]) -> list[dict[str, Any]]:
    if keys:
        statement = statement.group_by(*[literal_column(key.name) for key in keys])
    rows = [_values(row._mapping, spend(row._mapping["spend"])) for row in session.execute(statement)]
    return [row for row in rows if keys or row["requests"]]


def _nano_to_usd(nano: Any) -> Decimal:
    return Decimal(int(nano)) / NANO_PER_USD


def _values(mapping: Any, spend: Decimal) -> dict[str, Any]:
    values = {"spend": spend, "prompt_tokens": int(mapping["prompt_tokens"]),
              "completion_tokens": int(mapping["completion_tokens"]), "requests": int(mapping["requests"]),
              "denied_requests": int(mapping["denied_requests"])}
    if "grp" in mapping:
        values["grp"] = mapping["grp"] or None  # rollups keep an absent id as ""
    if "bucket" in mapping:
        bucket = mapping["bucket"]
        values["bucket"] = (datetime.fromisoformat(bucket) if isinstance(bucket, str) else bucket).replace(tzinfo=timezone.utc)
    return values


def _bucket(interval: Interval, dialect: str, column: Any) -> Any:
    """The UTC start of the row's hour or day (as text on SQLite, a timestamp on PostgreSQL)."""
    if dialect == "sqlite":  # stored as naive UTC text
        form = "%Y-%m-%d %H:00:00" if interval == "hour" else "%Y-%m-%d 00:00:00"
        return func.strftime(literal_column(f"'{form}'"), column)
    # Literals, not bind parameters: PostgreSQL must see the grouped expression as the selected one.
    return func.date_trunc(literal_column(f"'{interval}'"), func.timezone(literal_column("'UTC'"), column))


def _ceil(moment: datetime, floor_of: Callable[[datetime], datetime]) -> datetime:
    """The first hour (or day) boundary at or after ``moment``."""
    floor = floor_of(moment)
    if floor == moment:
        return floor
    return floor + (timedelta(hours=1) if floor_of is hour_of else timedelta(days=1))


def _sort_key(key: tuple[Any, Any]) -> tuple[str, datetime]:
    group, bucket = key
    return (group or "", bucket or datetime.min.replace(tzinfo=timezone.utc))


def _row(values: dict[str, Any], grouped: bool, bucketed: bool) -> dict[str, Any]:
    prompt, completion = values["prompt_tokens"], values["completion_tokens"]
    row: dict[str, Any] = {
        "spend": float(values["spend"]), "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion, "requests": values["requests"],
        "denied_requests": values["denied_requests"],
    }
    if grouped:
        row["group"] = values.get("grp")
    if bucketed:
        row["bucket"] = iso(values["bucket"])
    return row
