"""`/api/usage/spend`: spend, tokens and requests over time from the request log,
optionally grouped by key, team, customer, provider or model and bucketed by hour or day
(UTC). Aggregated in the database, so it stays cheap over long ranges."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import case, func, literal_column, select
from sqlalchemy.orm import Session

from tollway.api.context import RuntimeDep, read
from tollway.api.logs import LogFilter, LogFilterDep, flush_request_log
from tollway.api.limits import iso
from tollway.api.responses import SpendReport
from tollway.store.tables import RequestLog
from tollway.store.usage import ms_to_datetime

router = APIRouter(prefix="/api/usage", tags=["usage"])

GroupBy = Literal["key", "team", "customer", "provider", "model"]
Interval = Literal["hour", "day"]
_GROUP_COLUMNS = {"key": RequestLog.virtual_key_id, "team": RequestLog.team_id, "customer": RequestLog.customer_id,
                  "provider": RequestLog.provider, "model": RequestLog.model}
_DEFAULT_RANGE = timedelta(days=1)


@router.get("/spend", response_model=SpendReport, summary="Spend, tokens and requests over time")
async def spend(
    runtime: RuntimeDep, where: LogFilterDep,
    group_by: Annotated[GroupBy | None, Query(description="key, team, customer, provider or model.")] = None,
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
        series = _aggregate(session, where, group_by, interval, dialect)
        [total] = _aggregate(session, where, None, None, dialect)
        return series, total

    series, total = await read(runtime, query)
    return {"start": iso(start), "end": iso(end), "group_by": group_by, "interval": interval,
            "series": series, "total": total}


def _aggregate(session: Session, where: LogFilter, group_by: GroupBy | None, interval: Interval | None,
               dialect: str) -> list[dict[str, Any]]:
    keys: list[Any] = []
    if group_by is not None:
        keys.append(_GROUP_COLUMNS[group_by].label("grp"))
    if interval is not None:
        keys.append(_bucket(interval, dialect).label("bucket"))
    prompt = func.coalesce(func.sum(RequestLog.prompt_tokens), 0)
    completion = func.coalesce(func.sum(RequestLog.completion_tokens), 0)
    statement = select(
        *keys,
        func.coalesce(func.sum(RequestLog.cost), 0).label("spend"),
        prompt.label("prompt_tokens"),
        completion.label("completion_tokens"),
        func.count().label("requests"),
        func.coalesce(func.sum(case((RequestLog.decision != "allow", 1), else_=0)), 0).label("denied_requests"),
    )
    statement = where.apply(statement)
    if keys:
        grouping = [literal_column(key.name) for key in keys]
        statement = statement.group_by(*grouping).order_by(*grouping)
    return [_row(row._mapping, group_by is not None, interval is not None, dialect) for row in session.execute(statement)]


def _bucket(interval: Interval, dialect: str) -> Any:
    """The UTC start of the row's hour or day (as text on SQLite, a timestamp on PostgreSQL)."""
    if dialect == "sqlite":  # stored as naive UTC text
        form = "%Y-%m-%d %H:00:00" if interval == "hour" else "%Y-%m-%d 00:00:00"
        return func.strftime(literal_column(f"'{form}'"), RequestLog.at)
    # Literals, not bind parameters: PostgreSQL must see the grouped expression as the selected one.
    return func.date_trunc(literal_column(f"'{interval}'"), func.timezone(literal_column("'UTC'"), RequestLog.at))


def _row(values: Any, grouped: bool, bucketed: bool, dialect: str) -> dict[str, Any]:
    prompt, completion = int(values["prompt_tokens"]), int(values["completion_tokens"])
    row: dict[str, Any] = {
        "spend": float(Decimal(str(values["spend"]))), "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion, "requests": int(values["requests"]),
        "denied_requests": int(values["denied_requests"]),
    }
    if grouped:
        row["group"] = values["grp"]
    if bucketed:
        bucket = values["bucket"]
        if isinstance(bucket, str):
            bucket = datetime.fromisoformat(bucket)
        row["bucket"] = iso(bucket.replace(tzinfo=timezone.utc))
    return row
