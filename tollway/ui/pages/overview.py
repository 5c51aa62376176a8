"""The overview: spend and requests today and this month, spend over time, the top
spenders, and every limit past 80 % of its cap."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.api.report_cache import ReportCache
from tollway.ui import present
from tollway.ui.charts import Bar, bar_chart
from tollway.ui.web import HOME_OF_ROLE, LIST_LIMIT, Ui

SPEND = "/api/usage/spend"
BATCH = SPEND + "/batch"
USAGE = "/api/governance/usage"
TOP = 5
_MAX_USAGE_PAGES = 20
# range name: (buckets, interval, axis label format, label every n buckets)
RANGES = {"24h": (24, "hour", "%H:00", 3), "7d": (7, "day", "%a %d", 1), "30d": (30, "day", "%m-%d", 5)}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def top(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The biggest spenders of a grouped report, with their share of the biggest one; named
    where the report named its groups (``deleted``: a group naming no entity now — its
    spend stays in the report, its page is gone)."""
    rows = sorted((row for row in report["series"] if row.get("group")), key=lambda row: -row["spend"])[:TOP]
    peak = max((row["spend"] for row in rows), default=0) or 1
    return [{"id": row["group"], "name": row.get("name") or row["group"], "deleted": "name" in row and not row["name"],
             "spend": row["spend"], "requests": row["requests"], "percent": round(100 * row["spend"] / peak, 1)}
            for row in rows]


def charts(report: dict[str, Any], starts: list[datetime], label: str, every: int) -> tuple[str, str]:
    """The spend chart and the requests chart (allowed and denied) over ``starts``."""
    rows = {present.parse_iso(row["bucket"]): row for row in report["series"]}
    spend_bars, request_bars = [], []
    for start in starts:
        row = rows.get(start) or {"spend": 0, "requests": 0, "denied_requests": 0}
        text = start.strftime(label)
        denied = row["denied_requests"]
        spend_bars.append(Bar(text, ((row["spend"], "spend"),), f"{iso(start)}: {present.money(row['spend'])}"))
        request_bars.append(Bar(text, ((row["requests"] - denied, "allowed"), (denied, "denied")),
                                f"{iso(start)}: {row['requests']} requests, {denied} denied"))
    return (bar_chart(spend_bars, present.money, every, "Spend over time"),
            bar_chart(request_bars, present.number, every, "Requests over time", least=2))


class OverviewPages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        # The page's figures for each range, computed once a second however many tabs reload
        # it (only roles that read everything see the overview: the figures are the same for all).
        self._figures = ReportCache(ui.now_ms)

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui", self.overview, methods=["GET"]), Route("/ui/", self.overview, methods=["GET"])]

    async def _usage(self) -> list[dict[str, Any]]:
        """Every limit's live usage (all pages)."""
        entries: list[dict[str, Any]] = []
        for page in range(_MAX_USAGE_PAGES):
            answer = await self.ui.api.get(USAGE, {"limit": LIST_LIMIT, "offset": page * LIST_LIMIT})
            entries += answer["usage"]
            if len(entries) >= answer["count"] or not answer["usage"]:
                break
        return entries

    async def overview(self, request: Request) -> Response:
        home = HOME_OF_ROLE.get(self.ui.role(request))
        if home is not None:  # the overview reads everything; these roles may not
            return self.ui.redirect(home)
        chosen = request.query_params.get("range", "30d")
        chosen = chosen if chosen in RANGES else "30d"
        figures = await self._figures.get(chosen, lambda: self._compute(chosen))
        return self.ui.page(request, "overview.html", title="Overview", ranges=list(RANGES), range=chosen, **figures)

    async def _compute(self, chosen: str) -> dict[str, Any]:
        """What the overview shows over the ``chosen`` range."""
        count, interval, label, every = RANGES[chosen]
        now_ms = self.ui.now_ms()
        now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month = today.replace(day=1)
        step = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
        last = now.replace(minute=0, second=0, microsecond=0) if interval == "hour" else today
        starts = [last - step * n for n in reversed(range(count))]
        month_start = iso(month)
        reports = [{"start": iso(today)}, {"start": month_start}, {"start": iso(starts[0]), "interval": interval},
                   *({"start": month_start, "group_by": group, "top": TOP + 1,  # +1: requests of no key
                      "names": group != "model"} for group in ("key", "team", "model"))]
        # One call for every figure, the top spenders' names included: one read snapshot, one
        # trip to the reports' thread, no look-up per key or team.
        answer, usage = await asyncio.gather(self.ui.api.post(BATCH, {"reports": reports}), self._usage())
        day, this_month, series, by_key, by_team, by_model = answer["reports"]
        near = [(entry, present.usage_meter(entry, now_ms)) for entry in usage]
        near = sorted((pair for pair in near if pair[1].share >= present.WARN_AT), key=lambda pair: -pair[1].share)
        spend_chart, request_chart = charts(series, starts, label, every)
        top_keys, top_teams = top(by_key), top(by_team)
        return {"today": day["total"], "month": this_month["total"], "month_name": month.strftime("%B %Y"),
                "spend_chart": spend_chart, "request_chart": request_chart, "chart_total": series["total"],
                "top_keys": top_keys, "top_teams": top_teams, "top_models": top(by_model),
                "near": near, "limits_total": len(usage)}
