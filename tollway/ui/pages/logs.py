"""The request log: filters by key, team, customer (each by id or name), provider, model
(``provider/model`` too), route (the API: chat, audio.speech ...), status, decision and time; each denied request says which
level and entity refused it, the gateway's message (the limit and what was used), and
where that limit stands now. Each entry has a detail page; entities deleted since are
shown as deleted, not linked."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.governance.decisions import Decision
from tollway.route_names import ROUTE_NAMES
from tollway.ui import lookup, present
from tollway.ui.client import ApiProblem
from tollway.ui.web import LIST_LIMIT, Ui, with_query

PAGE_SIZE = 50
FILTERS = ("virtual_key_id", "team_id", "customer_id", "provider", "model", "route", "end_user", "status", "decision",
           "start", "end", "would_deny", "tag")  # would_deny "true": only requests a shadow limit would have denied (SPEC §8)
ROUTES = sorted(ROUTE_NAMES)
DECISIONS = [decision.value for decision in Decision]


def entity_names(keys: list[dict[str, Any]], teams: list[dict[str, Any]], customers: list[dict[str, Any]],
                 models: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """What to call each entity a log row can name, by level and id."""
    return {
        "virtual_key": {k["id"]: k["name"] for k in keys},
        "provider_config": {pc["id"]: f"{k['name']} → {pc['provider']}" for k in keys for pc in k["provider_configs"]},
        "team": {t["id"]: t["name"] for t in teams}, "customer": {c["id"]: c["name"] for c in customers},
        "model": {m["id"]: f"{m['provider'] or 'any provider'}/{m['model_name']}" for m in models},
    }


class LogPages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/logs", self.list, methods=["GET"]),
                Route("/ui/logs/{log_id:int}", self.entry, methods=["GET"])]

    async def _api_filters(self, filters: dict[str, str]) -> dict[str, str]:
        """The filters as the API takes them: ids for names, ``provider/model`` split."""
        api = self.ui.api
        out = dict(filters)
        for field, kind in (("virtual_key_id", lookup.KEY), ("team_id", lookup.TEAM), ("customer_id", lookup.CUSTOMER)):
            if out[field]:
                try:
                    out[field] = await lookup.resolve(api, kind, out[field], field)
                except lookup.Unknown:
                    # A deleted entity's id still names its requests.
                    if not (await api.get("/api/logs", {field: out[field], "limit": 1}))["count"]:
                        raise
        if "/" in out["model"] and not out["provider"]:
            out["provider"], out["model"] = out["model"].split("/", 1)
        return out

    async def _names(self, rows: list[dict[str, Any]], names: dict[str, dict[str, str]]) -> set[tuple[str, str]]:
        """Complete ``names`` for the keys, teams and customers the rows name; return
        those that no longer exist, as (level, id)."""
        deleted: set[tuple[str, str]] = set()
        for level, kind in lookup.BY_LEVEL.items():
            ids = {row[f"{level}_id"] for row in rows if row.get(f"{level}_id")}
            ids |= {row["denied_id"] for row in rows if row.get("denied_level") == level and row.get("denied_id")}
            ids |= {row["would_deny_id"] for row in rows
                    if row.get("would_deny_level") == level and row.get("would_deny_id")}
            for ident, name in (await lookup.names_of(self.ui.api, kind, ids, names[level])).items():
                if name is None:
                    deleted.add((level, ident))
                else:
                    names[level][ident] = name
        return deleted

    async def entry(self, request: Request) -> Response:
        """One request in full: ids, tokens, cost, latency and the denial's explanation."""
        api = self.ui.api
        row = (await api.get(f"/api/logs/{request.path_params['log_id']}"))["log"]
        names: dict[str, dict[str, str]] = {"virtual_key": {}, "team": {}, "customer": {}}
        deleted = await self._names([row], names)
        return self.ui.page(request, "log_entry.html", title=f"Request {row['request_id']}", row=row, names=names,
                            deleted=deleted, limits_now=await self._limits_now([row]))

    async def _limits_now(self, rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[present.Meter]]:
        """The live meters of every entity that denied a request on this page."""
        denied = sorted({(row["denied_level"], row["denied_id"]) for row in rows
                         if row.get("denied_level") and row.get("denied_id")})
        answers = await asyncio.gather(*(self.ui.api.get("/api/governance/usage", {"level": level, "id": ident})
                                         for level, ident in denied), return_exceptions=True)
        now_ms = self.ui.now_ms()
        out = {}
        for entity, answer in zip(denied, answers, strict=True):
            if isinstance(answer, dict):
                out[entity] = [present.usage_meter(entry, now_ms) for entry in answer["usage"]]
        return out

    async def list(self, request: Request) -> Response:
        query = request.query_params
        filters = {name: query.get(name, "").strip() for name in FILTERS}
        offset = int(query["offset"]) if query.get("offset", "").isdigit() else 0
        api = self.ui.api
        names_readable = self.ui.role(request) != "usage_reader"  # it reads the log, not the entities' names
        keys, (teams, customers), providers, models = await asyncio.gather(
            api.get("/api/governance/virtual-keys", {"limit": LIST_LIMIT}), self.ui.owners(), self.ui.providers(),
            api.get("/api/governance/model-configs", {"limit": LIST_LIMIT})) if names_readable else \
            ({"virtual_keys": []}, ([], []), [], {"model_configs": []})
        problem: ApiProblem | None = None
        try:
            answer = await api.get("/api/logs", {**await self._api_filters(filters), "limit": PAGE_SIZE,
                                                 "offset": offset})
        except ApiProblem as error:
            if error.status not in (400, 422):
                raise
            problem, answer = error, {"logs": [], "count": 0}
        rows = answer["logs"]
        names = entity_names(keys["virtual_keys"], teams, customers, models["model_configs"])
        deleted = await self._names(rows, names) if names_readable else set()
        return self.ui.page(
            request, "logs.html", 400 if problem else 200, title="Request log", rows=rows, count=answer["count"],
            offset=offset, page_size=PAGE_SIZE, filters=filters, decisions=DECISIONS, names=names, deleted=deleted,
            keys=keys["virtual_keys"], teams=teams, customers=customers, routes=ROUTES,
            providers=[p["name"] for p in providers], limits_now=await self._limits_now(rows),
            problem=problem, action="filter the log", section="filters",
            prev_url=with_query("/ui/logs", **filters, offset=max(0, offset - PAGE_SIZE)) if offset else None,
            next_url=(with_query("/ui/logs", **filters, offset=offset + PAGE_SIZE)
                      if offset + PAGE_SIZE < answer["count"] else None))
