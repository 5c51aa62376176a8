"""`/api/usage/spend`: spend, tokens and requests over time from the request log,
optionally grouped by key, team, customer, provider, model, route or decision and bucketed by hour
or day (UTC). Answered from rollups (`tollway.store.spend_report`), off the event loop on
SQLite, and cached for a second per query (`tollway.api.report_cache`)."""

from __future__ import annotations

from dataclasses import astuple, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Connection

from tollway.api.context import ManagedRuntime, RuntimeDep
from tollway.api.errors import bad_request
from tollway.api.limits import iso
from tollway.api.logs import LogFilter, LogFilterDep, flush_request_log
from tollway.api.report_cache import ReportCache
from tollway.api.responses import SpendReport
from tollway.governance.model import NANO_PER_USD
from tollway.store.report_reader import run_report
from tollway.store.spend_report import SUMS, TAG, ReportQuery, spend_report
from tollway.store.usage import ms_to_datetime

router = APIRouter(prefix="/api/usage", tags=["usage"])

# The `TOTAL_DIMENSIONS` of `tollway.store.spend_rollup`, the request tag (`spend_report.TAG`) and
# the `LOG_DIMENSIONS` (a test keeps them the same).
GroupBy = Literal["key", "team", "customer", "provider", "model", "route", "decision", "tag", "end_user"]
Interval = Literal["hour", "day"]
_DEFAULT_RANGE = timedelta(days=1)


@router.get("/spend", response_model=SpendReport, summary="Spend, tokens and requests over time")
async def spend(
    request: Request, runtime: RuntimeDep, where: LogFilterDep,
    group_by: Annotated[GroupBy | None, Query(description="key, team, customer, provider, model, route, decision "
                                                          "(allow, request_limited ...), tag (a "
                                                          "request with two tags counts in both; group null: "
                                                          "untagged) or end_user.")] = None,
    interval: Annotated[Interval | None, Query(description="hour or day buckets (UTC); none: one total per group.")] = None,
    top: Annotated[int | None, Query(ge=1, le=1000, description="Only the groups that spent most, this many, biggest "
                                                             "first (with group_by, without interval); the total "
                                                             "still covers every group.")] = None,
) -> dict[str, Any]:
    """Over ``start`` .. ``end`` (default: the last 24 hours); ``series`` has one row per
    group and bucket, ``total`` sums the range. Denied requests count in
    ``denied_requests`` and cost nothing. Answers may be up to a second old."""
    if top is not None and (group_by is None or interval is not None):
        raise bad_request("top ranks groups: it needs group_by and no interval", "top")
    if where.start is not None and where.end is None and where.start >= ms_to_datetime(runtime.clock_ms()):
        raise bad_request("start must be before end (end defaults to now)", "start")
    body: bytes = await _cache(request, runtime).get(
        (astuple(where), group_by, interval, top), lambda: _answer(runtime, where, group_by, interval, top))
    return Response(body, media_type="application/json")  # as `SpendReport` describes it, without re-validation


def _cache(request: Request, runtime: ManagedRuntime) -> ReportCache:
    """The app's report cache (one per gateway process), made on first use."""
    cache: ReportCache | None = getattr(request.app.state, "report_cache", None)
    if cache is None:
        cache = request.app.state.report_cache = ReportCache(runtime.clock_ms)
    return cache


async def _answer(runtime: ManagedRuntime, where: LogFilter, group_by: str | None, interval: str | None,
                  top: int | None = None) -> bytes:
    """The report as JSON: serialised once, for every asker the cache serves it to (FastAPI's
    encoder took longer than the query for a report grouped by thousands of keys)."""
    end = where.end or ms_to_datetime(runtime.clock_ms())
    start = where.start or end - _DEFAULT_RANGE
    await flush_request_log(runtime)
    query = replace(report_query(where, start, end, group_by, interval), top=top)

    def read(connection: Connection) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        rows = spend_report(connection, query)
        if group_by != TAG and top is None:
            return rows, None
        # A request with two tags is in two groups, and the top groups are not all of them:
        # the total is a report of its own (same snapshot).
        [total] = spend_report(connection, replace(query, group_by=None, interval=None, top=None))
        return rows, total

    rows, total = await run_report(runtime.db, read)
    grouped, bucketed = group_by is not None, interval is not None
    if total is None:
        total = rows[0] if not (grouped or bucketed) else {name: sum(row[name] for row in rows) for name in SUMS}
    return orjson.dumps({"start": iso(start), "end": iso(end), "group_by": group_by, "interval": interval,
                         "series": [_view(row, grouped, bucketed) for row in rows], "total": _view(total, False, False)})


def report_query(where: LogFilter, start: datetime, end: datetime, group_by: str | None,
                 interval: str | None) -> ReportQuery:
    """The store's query for an API filter over [start, end)."""
    return ReportQuery(start, end, where.equals(), group_by, interval, where.tag)


def _view(values: dict[str, Any], grouped: bool, bucketed: bool) -> dict[str, Any]:
    prompt, completion = values["prompt_tokens"], values["completion_tokens"]
    row: dict[str, Any] = {
        "spend": values["spend_nano"] / NANO_PER_USD, "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion, "requests": values["requests"],
        "denied_requests": values["denied_requests"],
    }
    if grouped:
        row["group"] = values.get("group")
    if bucketed:
        row["bucket"] = iso(values["bucket"])
    return row
