"""Limit rules in the admin UI: their section of the limits page (`rules_with_meters`) and a
rule's page (`/ui/limits/{rule}`): its selector, its limits with live usage and, for a
template, its top values with theirs. Rules are changed in the config file, the API or
the CLI (`tollway limits`); the page reads."""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.ui import present
from tollway.ui.client import ApiProblem
from tollway.ui.web import LIST_LIMIT, Ui

API = "/api/governance/limits"
TOP_VALUES = 20


async def rules_with_meters(ui: Ui) -> list[tuple[dict[str, Any], list[present.Meter]]]:
    """Every rule with the meters of its limits (a template's: of no particular value)."""
    answer = await ui.api.get(API, {"limit": LIST_LIMIT})
    now_ms = ui.now_ms()
    return [(rule, present.meters(rule, now_ms) if not rule["per"] else []) for rule in answer["limit_rules"]]


def _value_meters(usage: list[dict[str, Any]], now_ms: int) -> list[present.Meter]:
    """A templated value's live limits (usage API rows) as meters."""
    view: dict[str, Any] = {}
    for row in usage:
        if row["kind"] == "budget":
            view["budget"] = {"current_usage": row["used"], "reserved": row["reserved"], "max_limit": row["limit"],
                              "reset_duration": row["duration"], "reset_at": row["reset_at"], "mode": row["mode"]}
        elif row["kind"] in ("requests", "tokens"):
            side = "request" if row["kind"] == "requests" else "token"
            view.setdefault("rate_limit", {"mode": row["mode"]}).update({
                f"{side}_current_usage": row["used"], f"{side}_reserved": row["reserved"],
                f"{side}_max_limit": row["limit"], f"{side}_reset_duration": row["duration"],
                f"{side}_reset_at": row["reset_at"]})
        else:
            view["concurrency"] = {"in_flight": row["reserved"], "max_in_flight": row["limit"], "mode": row["mode"]}
    return present.meters(view, now_ms)


class LimitRulePages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/limits/{rule}", self.detail, methods=["GET"])]

    async def detail(self, request: Request) -> Response:
        name = request.path_params["rule"]
        path = f"{API}/{urllib.parse.quote(name, safe='')}"
        rule = (await self.ui.api.get(path))["limit_rule"]
        values: list[dict[str, Any]] = []
        if rule["per"]:
            try:
                values = (await self.ui.api.get(path + "/values", {"limit": TOP_VALUES}))["values"]
            except ApiProblem as problem:  # the rule changed meanwhile; its page still shows
                if problem.status not in (400, 404):
                    raise
        now_ms = self.ui.now_ms()
        return self.ui.page(request, "limit_rule.html", title=f"Limit rule {name}", rule=rule,
                            meters=present.meters(rule, now_ms) if not rule["per"] else [],
                            values=[(value, _value_meters(value["usage"], now_ms)) for value in values])
