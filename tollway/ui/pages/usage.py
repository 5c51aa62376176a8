"""Spend, tokens and requests over a chosen range, stacked by key, team, customer,
provider, model, route (the API: chat, audio.speech ...) or request tag (a request with
two tags counts in both; "none": untagged) — the five largest spenders of the range, the
rest as "other" — with a table of every group; optionally narrowed to one key, team,
customer (by id or name), tag, provider or ``provider/model``. Drawn by `tollway.ui.charts`, like the overview."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.api.principal import ADMIN, MANAGER, VIEWER
from tollway.ui import lookup, present
from tollway.ui.charts import Bar, bar_chart
from tollway.ui.client import ApiProblem
from tollway.ui.pages.overview import BATCH, RANGES, SPEND, iso
from tollway.ui.web import Ui

GROUPS = {"key": "key", "team": "team", "customer": "customer", "provider": "provider", "model": "model",
          "route": "route", "tag": "tag"}
_NAMED = {"key": ("virtual_key", lookup.KEY), "team": ("team", lookup.TEAM), "customer": ("customer", lookup.CUSTOMER)}
FILTERS = ("virtual_key_id", "team_id", "customer_id", "model", "tag")
_FILTER_OF = {"key": "virtual_key_id", "team": "team_id", "customer": "customer_id", "provider": "provider",
              "model": "model", "tag": "tag"}  # the spend API's filter for one group of each grouping
STACKED = 5  # groups drawn in their own colour; the rest are "other"
TABLE_ROWS = 100  # the table's largest groups: thousands of keys in one table help nobody and cost seconds
OTHER = "other"
# What each chart shows: (caption, the row's value, axis text, least axis top).
Metric = tuple[str, Callable[[dict[str, Any]], float], Callable[[Any], str], float]
METRICS: tuple[Metric, ...] = (("Spend (USD)", lambda row: row["spend"], present.money, 0.0),
           ("Tokens", lambda row: row["total_tokens"], present.number, 2.0),
           ("Requests", lambda row: row["requests"], present.number, 2.0))


MAX_DAYS = 92  # the longest custom range: one bar a day stays readable


def custom_range(start_text: str, end_text: str, now: datetime) -> tuple[list[datetime], datetime, str, str, int]:
    """Bucket starts over [from, until) (UTC; until defaults to now): hours up to two
    days, days beyond (at most `MAX_DAYS`); a 422 naming the field when they make no sense."""
    try:
        start = datetime.fromisoformat(start_text).replace(tzinfo=timezone.utc)
        end = datetime.fromisoformat(end_text).replace(tzinfo=timezone.utc) if end_text else now
    except ValueError:
        raise ApiProblem(422, "give the range as dates and times, e.g. 2026-01-31T00:00", field="start") from None
    if start >= end:
        raise ApiProblem(422, "the range must start before it ends", field="start")
    if end - start > timedelta(days=MAX_DAYS):
        raise ApiProblem(422, f"a range of at most {MAX_DAYS} days", field="end")
    hourly = end - start <= timedelta(days=2)
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    first = start.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        first = first.replace(hour=0)
    starts = []
    while first < end:
        starts.append(first)
        first += step
    every = max(1, len(starts) // 8)
    return starts, end, "hour" if hourly else "day", "%H:00" if hourly else "%m-%d", every


def bucket_starts(chosen: str, now: datetime) -> tuple[list[datetime], str, str, int]:
    count, interval, label, every = RANGES[chosen]
    step = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
    last = now.replace(minute=0, second=0, microsecond=0)
    if interval == "day":
        last = last.replace(hour=0)
    return [last - step * n for n in reversed(range(count))], interval, label, every


def stacked_charts(series: list[dict[str, Any]], order: list[str], starts: list[datetime], label: str,
                   every: int) -> list[tuple[str, str]]:
    """One chart per metric, each bar stacked by group in ``order`` (then "other")."""
    cells: dict[tuple[str, datetime | None], dict[str, Any]] = {}
    for row in series:
        group = row.get("group") or ""
        key = (group if group in order else OTHER, present.parse_iso(row["bucket"]))
        cell = cells.setdefault(key, {"spend": 0.0, "total_tokens": 0, "requests": 0})
        for name in cell:
            cell[name] += row[name]
    out = []
    for caption, value, text, least in METRICS:
        bars = []
        for start in starts:
            parts = tuple((value(cells[(group, start)]), f"series{index}")
                          for index, group in enumerate([*order, OTHER]) if (group, start) in cells)
            total = sum(part for part, _ in parts)
            bars.append(Bar(start.strftime(label), parts, f"{iso(start)}: {text(total)}"))
        out.append((caption, bar_chart(bars, text, every, caption, least=least)))
    return out


class UsagePages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/usage", self.usage, methods=["GET"])]

    async def _where(self, filters: dict[str, str]) -> dict[str, str]:
        """The filters as the spend API takes them (ids for names, provider/model split)."""
        out = {name: value for name, value in filters.items() if value}
        for field, kind in (("virtual_key_id", lookup.KEY), ("team_id", lookup.TEAM), ("customer_id", lookup.CUSTOMER)):
            if field in out:
                out[field] = await lookup.resolve(self.ui.api, kind, out[field], field)
        if "/" in out.get("model", ""):
            out["provider"], out["model"] = out["model"].split("/", 1)
        return out

    async def usage(self, request: Request) -> Response:
        query = request.query_params
        chosen = query.get("range") if query.get("range") in RANGES else "7d"
        group_by = str(query.get("by")) if query.get("by") in GROUPS else "key"
        filters = {name: query.get(name, "").strip() for name in FILTERS}
        now = datetime.fromtimestamp(self.ui.now_ms() / 1000, timezone.utc)
        starts, interval, label, every = bucket_starts(str(chosen), now)
        span = {"start": query.get("start", "").strip(), "end": query.get("end", "").strip()}
        end: datetime | None = None
        problem: ApiProblem | None = None
        try:
            if span["start"]:
                starts, end, interval, label, every = custom_range(span["start"], span["end"], now)
            where = {**await self._where(filters), "start": iso(starts[0]), "group_by": group_by}
            if end is not None:
                where["end"] = iso(end)
            role = self.ui.role(request)
            # Roles that read the entities have the report name its groups, in its own snapshot.
            named = role in (ADMIN, VIEWER) and group_by in _NAMED
            totals = await self.ui.api.get(SPEND, {**where, "names": True} if named else where)
            groups = sorted(totals["series"], key=lambda row: (-row["spend"], -row["requests"], row.get("group") or ""))
            order = [row.get("group") or "" for row in groups[:STACKED]]
            # The charts' series and the table's names at once: both follow from the totals alone.
            series, (names, deleted) = await asyncio.gather(
                self._stacked_series(where, interval, order, len(groups), role),
                self._names(group_by, groups[:TABLE_ROWS], named))
        except ApiProblem as error:
            if error.status not in (400, 422):
                raise
            problem = error
            series = totals = {"series": [], "total": {"spend": 0, "total_tokens": 0, "requests": 0}}
            groups, order, names, deleted = [], [], {}, set()
        return self.ui.page(
            request, "usage.html", 400 if problem else 200, title="Spend and usage", ranges=list(RANGES),
            range=chosen, span=span, by=group_by, groups=GROUPS, filters=filters, problem=problem, section="filters",
            action="show the usage", charts=stacked_charts(series["series"], order, starts, label, every),
            order=order, rows=groups, total=totals["total"], names=names, deleted=deleted,
            level=_NAMED.get(str(group_by), (str(group_by), None))[0], stacked=STACKED, table_rows=TABLE_ROWS)

    async def _stacked_series(self, where: dict[str, str], interval: str, order: list[str],
                              groups: int, role: str) -> dict[str, Any]:
        """The series the stacked charts draw: every group's when few are; else the top
        groups' own series and the ungrouped total (the rest is "other"), so that a chart
        over thousands of keys does not fetch and draw a row per key and bucket."""
        if groups <= len(order) or "" in order:  # a group without an id cannot be filtered on
            return await self.ui.api.get(SPEND, {**where, "interval": interval})
        field = _FILTER_OF[where["group_by"]]
        overall = {name: value for name, value in where.items() if name != "group_by"}
        asked = [{**overall, "interval": interval}, *({**where, field: group, "interval": interval} for group in order)]
        if role == MANAGER:  # a manager's reports are narrowed one by one (the batch is not theirs)
            total, *tops = await asyncio.gather(*(self.ui.api.get(SPEND, query) for query in asked))
        else:  # one call, one read snapshot
            total, *tops = (await self.ui.api.post(BATCH, {"reports": asked}))["reports"]
        rows = [row for top in tops for row in top["series"]]
        rest: dict[str, dict[str, Any]] = {row["bucket"]: dict(row, group=None) for row in total["series"]}
        for row in rows:
            other = rest.get(row["bucket"])
            if other is not None:
                for name in ("spend", "total_tokens", "requests"):
                    other[name] = max(0, other[name] - row[name])  # spend in floats: never below zero
        return {"series": rows + [row for row in rest.values() if row["requests"] or row["spend"]]}

    async def _names(self, group_by: str, rows: list[dict[str, Any]],
                     in_rows: bool) -> tuple[dict[str, dict[str, str]], set[tuple[str, str]]]:
        """The table's names by level, and the (level, id) of groups naming no entity now:
        from the rows when the report named them (``in_rows``), else looked up."""
        named = _NAMED.get(group_by)
        if named is None:
            return {}, set()
        level, kind = named
        ids = [row["group"] for row in rows if row.get("group")]
        if in_rows:
            found = {row["group"]: row.get("name") for row in rows if row.get("group")}
        else:
            try:
                found = await lookup.names_of(self.ui.api, kind, ids, {})
            except ApiProblem as problem:
                if problem.status != 403:
                    raise
                return {}, set()  # a usage reader reads spend, not the entities: the ids stand
        names = {level: {ident: name for ident, name in found.items() if name is not None}}
        return names, {(level, ident) for ident, name in found.items() if name is None}
