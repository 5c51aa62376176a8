"""`/api/usage/spend`: spend, tokens and requests over time from the request log,
optionally grouped by key, team, customer, provider, model, route or decision and bucketed by hour
or day (UTC). Answered from rollups (`tollway.store.spend_report`), off the event loop on
SQLite, and cached for a second per query (`tollway.api.report_cache`). `POST
/api/usage/spend/batch` answers several such reports in one call and one read snapshot."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from tollway.api.context import ManagedRuntime, RuntimeDep
from tollway.api.errors import ApiError, bad_request
from tollway.api.limits import iso
from tollway.api.logs import LogFilter, LogFilterDep, flush_request_log, log_filter
from tollway.api.principal import ADMIN, VIEWER, current_principal
from tollway.api.report_cache import ReportCache
from tollway.api.responses import SpendReport
from tollway.governance.model import NANO_PER_USD
from tollway.store.group_names import NAMED, group_names
from tollway.store.report_reader import run_report
from tollway.store.spend_report import SUMS, TAG, ReportQuery, spend_report
from tollway.store.usage import ms_to_datetime

router = APIRouter(prefix="/api/usage", tags=["usage"])

# The `TOTAL_DIMENSIONS` of `tollway.store.spend_rollup`, the request tag (`spend_report.TAG`) and
# the `LOG_DIMENSIONS` (a test keeps them the same).
GroupBy = Literal["key", "team", "customer", "provider", "model", "route", "decision", "tag", "end_user"]
Interval = Literal["hour", "day"]
_DEFAULT_RANGE = timedelta(days=1)
MAX_BATCH = 20
_GROUP_BY = ("key, team, customer, provider, model, route, decision (allow, request_limited ...), tag (a request "
             "with two tags counts in both; group null: untagged) or end_user.")
_INTERVAL = "hour or day buckets (UTC); none: one total per group."
_NAMES = ("With group_by key, team or customer: each group's name (null: no such entity now, e.g. deleted); "
          "admin and viewer tokens only.")
_READ_NAMES = frozenset({ADMIN, VIEWER})
_TOP = ("Only the groups that spent most, this many, biggest first (with group_by, without interval); the total "
        "still covers every group.")


@router.get("/spend", response_model=SpendReport, summary="Spend, tokens and requests over time")
async def spend(
    request: Request, runtime: RuntimeDep, where: LogFilterDep,
    group_by: Annotated[GroupBy | None, Query(description=_GROUP_BY)] = None,
    interval: Annotated[Interval | None, Query(description=_INTERVAL)] = None,
    top: Annotated[int | None, Query(ge=1, le=1000, description=_TOP)] = None,
    names: Annotated[bool, Query(description=_NAMES)] = False,
) -> Response:
    """Over ``start`` .. ``end`` (default: the last 24 hours); ``series`` has one row per
    group and bucket, ``total`` sums the range. Denied requests count in
    ``denied_requests`` and cost nothing. Answers may be up to a second old."""
    asked = _asked(runtime, where, group_by, interval, top, names)
    body: bytes = await _cache(request, runtime).get(asked, lambda: _answers(runtime, [asked], single=True))
    return Response(body, media_type="application/json")  # as `SpendReport` describes it, without re-validation


class SpendQuery(BaseModel):
    """One report of a batch: the query parameters of `GET /api/usage/spend`, as a body."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = Field(None, description="From this time (ISO-8601; UTC when no offset).")
    end: datetime | None = Field(None, description="Before this time (default: now).")
    group_by: GroupBy | None = Field(None, description=_GROUP_BY)
    interval: Interval | None = Field(None, description=_INTERVAL)
    top: int | None = Field(None, ge=1, le=1000, description=_TOP)
    names: bool = Field(False, description=_NAMES)
    virtual_key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    provider: str | None = None
    model: str | None = None
    status: int | None = Field(None, ge=100, le=599)
    decision: str | None = None
    route: str | None = None
    tag: str | None = None
    end_user: str | None = None


class SpendBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reports: list[SpendQuery] = Field(min_length=1, max_length=MAX_BATCH,
                                      description=f"1 to {MAX_BATCH} reports, answered in this order.")


class SpendReports(BaseModel):
    reports: list[SpendReport]


@router.post("/spend/batch", response_model=SpendReports, summary="Several spend reports in one call")
async def spend_batch(request: Request, runtime: RuntimeDep, batch: SpendBatch) -> Response:
    """The reports a dashboard shows together (the UI's overview: today, this month, the
    chart, the top keys, teams and models) in one call, each as `GET /api/usage/spend`
    answers it, all read in one snapshot of the database: one round trip, one read
    transaction. A bad report is a 400 naming ``reports[i].field``; nothing is answered then.
    Managers ask `GET /api/usage/spend`, one report narrowed to their scope at a time."""
    asked = tuple(_asked_in_batch(runtime, index, query) for index, query in enumerate(batch.reports))
    body: bytes = await _cache(request, runtime).get(("batch", asked), lambda: _answers(runtime, list(asked)))
    return Response(body, media_type="application/json")  # as `SpendReports` describes it


def _asked_in_batch(runtime: ManagedRuntime, index: int, query: SpendQuery) -> Asked:
    values = query.model_dump()
    shape = {name: values.pop(name) for name in ("group_by", "interval", "top", "names")}
    try:
        return _asked(runtime, log_filter(**values), **shape)
    except ApiError as error:
        error.field = f"reports[{index}].{error.field}" if error.field else f"reports[{index}]"
        raise


# (the filter, group_by, interval, top, names): one report as asked, and its cache key (an
# open end means "until now").
Asked = tuple[LogFilter, str | None, str | None, int | None, bool]


def _asked(runtime: ManagedRuntime, where: LogFilter, group_by: str | None, interval: str | None,
           top: int | None, names: bool) -> Asked:
    """The report asked for, checked (a 400 naming the field when it makes no sense; a 403
    when ``names`` asks for what the token may not read)."""
    if top is not None and (group_by is None or interval is not None):
        raise bad_request("top ranks groups: it needs group_by and no interval", "top")
    if where.start is not None and where.end is None and where.start >= ms_to_datetime(runtime.clock_ms()):
        raise bad_request("start must be before end (end defaults to now)", "start")
    if names:
        if group_by not in NAMED:
            raise bad_request("names names the groups of group_by key, team or customer", "names")
        principal = current_principal()
        if principal is None or principal.role not in _READ_NAMES:  # the entity lists are theirs only
            raise ApiError(403, f"names: a {principal.describe() if principal else 'caller'} may not read the "
                                "names of keys, teams and customers (admin or viewer)", field="names")
    return where, group_by, interval, top, names


def _cache(request: Request, runtime: ManagedRuntime) -> ReportCache:
    """The app's report cache (one per gateway process), made on first use."""
    cache: ReportCache | None = getattr(request.app.state, "report_cache", None)
    if cache is None:
        cache = request.app.state.report_cache = ReportCache(runtime.clock_ms)
    return cache


async def _answers(runtime: ManagedRuntime, asked: list[Asked], single: bool = False) -> bytes:
    """The reports as JSON (one, or ``{"reports": [...]}``), read in one snapshot and
    serialised once for every asker the cache serves them to (FastAPI's encoder took longer
    than the query for a report grouped by thousands of keys)."""
    now = ms_to_datetime(runtime.clock_ms())
    ranges = [(where.start or (where.end or now) - _DEFAULT_RANGE, where.end or now) for where, *_ in asked]
    queries = [(replace(report_query(where, start, end, group_by, interval), top=top), names)
               for (where, group_by, interval, top, names), (start, end) in zip(asked, ranges, strict=True)]
    await flush_request_log(runtime)
    read = await run_report(runtime.db, lambda connection: [_read(connection, *query) for query in queries])
    views = [_report_view(query, *answer) for (query, _), answer in zip(queries, read, strict=True)]
    return orjson.dumps(views[0] if single else {"reports": views})


Read = tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, str] | None]


def _read(connection: Connection, query: ReportQuery, names: bool) -> Read:
    """The report's rows, its total where the rows do not sum to it, and its groups' names
    when asked for (same snapshot)."""
    rows = spend_report(connection, query)
    named = group_names(connection, str(query.group_by), (row.get("group") for row in rows)) if names else None
    if query.group_by != TAG and query.top is None:
        return rows, None, named
    # A request with two tags is in two groups, and the top groups are not all of them:
    # the total is a report of its own (same snapshot).
    [total] = spend_report(connection, replace(query, group_by=None, interval=None, top=None))
    return rows, total, named


def _report_view(query: ReportQuery, rows: list[dict[str, Any]], total: dict[str, Any] | None,
                 names: dict[str, str] | None) -> dict[str, Any]:
    grouped, bucketed = query.group_by is not None, query.interval is not None
    if total is None:
        total = rows[0] if not (grouped or bucketed) else {name: sum(row[name] for row in rows) for name in SUMS}
    series = [_view(row, grouped, bucketed) for row in rows]
    if names is not None:
        for row in series:
            row["name"] = names.get(row["group"] or "")
    return {"start": iso(query.start), "end": iso(query.end), "group_by": query.group_by, "interval": query.interval,
            "series": series, "total": _view(total, False, False)}


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
