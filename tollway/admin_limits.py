"""`tollway limits`: limit rules (``governance.limits``, `/api/governance/limits`) from the
command line: list, show, create, delete, and a template's top values."""

from __future__ import annotations

import urllib.parse
from typing import Any

import typer

from tollway.admin_cli import (
    JsonOption,
    Kind,
    TokenOption,
    UrlOption,
    budget_text,
    client,
    limits_body,
    rate_text,
    run,
    table,
)

LIMIT_RULE = Kind("limit rule", "/api/governance/limits", "limit_rule", "limit_rules")
_DIMENSIONS = ("provider", "model", "virtual_key", "team", "customer", "tag", "end_user")


def _match_text(rule: dict[str, Any]) -> str:
    return " ".join(f"{dimension}={','.join(values)}" for dimension, values in rule["match"].items())


COLUMNS = [("RULE", lambda r: r["name"]), ("MATCH", _match_text), ("PER", lambda r: ",".join(r["per"]) or None),
           ("BUDGET", budget_text), ("RATE LIMIT", rate_text),
           ("IN FLIGHT", lambda r: r["concurrency"]["max_in_flight"] if r.get("concurrency") else None),
           ("MANAGED BY", lambda r: r.get("managed_by"))]


def parse_match(items: list[str]) -> dict[str, list[str]]:
    """``dimension=value[,value…]`` items as a selector (repeating a dimension adds values);
    `typer.BadParameter` naming the bad item."""
    match: dict[str, list[str]] = {}
    for item in items:
        dimension, equals, values = item.partition("=")
        dimension = dimension.strip().replace("-", "_")
        if not equals or dimension not in _DIMENSIONS or not values.strip():
            raise typer.BadParameter(f"{item!r}: use DIMENSION=VALUE[,VALUE…] with a dimension of "
                                     f"{', '.join(_DIMENSIONS)}", param_hint="--match")
        match.setdefault(dimension, []).extend(value.strip() for value in values.split(",") if value.strip())
    return match


def register(entity_app: Any, app: typer.Typer) -> None:
    """Add `tollway limits` (``entity_app``: admin_commands' list/show/delete builder)."""
    limits_app: typer.Typer = entity_app(LIMIT_RULE, COLUMNS)

    @limits_app.command("create")
    def create(name: str = typer.Option(..., help="The rule's name: a-z 0-9 . _ - (its id)."),
               match: list[str] = typer.Option(..., "--match", help="DIMENSION=VALUE[,VALUE…], repeatable: every "
                                               "dimension named must match (provider, model, virtual_key, team, "
                                               "customer, tag, end_user)."),
               per: list[str] = typer.Option([], "--per", help="A dimension to keep counters per (repeatable)."),
               deny_missing: bool = typer.Option(False, "--deny-missing", help="Refuse a request without a --per "
                                                 "dimension (default: the rule does not count it)."),
               budget: float = typer.Option(None, "--budget", help="Budget in USD."),
               budget_period: str = typer.Option("1M", "--budget-period"),
               requests: int = typer.Option(None, "--requests", help="Request limit."),
               requests_period: str = typer.Option("1m", "--requests-period"),
               tokens: int = typer.Option(None, "--tokens", help="Token limit."),
               tokens_period: str = typer.Option("1h", "--tokens-period"),
               in_flight: int = typer.Option(None, "--in-flight", help="At most this many requests at once."),
               url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
        """Create a limit rule: limits on the requests its --match selects, per --per value."""
        body: dict[str, Any] = {"name": name, "match": parse_match(match), "per": [p.replace("-", "_") for p in per],
                                "when_missing": "deny" if deny_missing else "skip",
                                **limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)}
        if in_flight is not None:
            body["concurrency"] = {"max_in_flight": in_flight}
        api = client(url, token)
        run(lambda: api.request("POST", LIMIT_RULE.path, body), as_json, lambda r: table([r["limit_rule"]], COLUMNS))

    @limits_app.command("values")
    def values(rule: str = typer.Argument(..., metavar="RULE"), limit: int = typer.Option(10),
               url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
        """A template's top values by usage, with each value's live limits."""
        api = client(url, token)
        path = f"{LIMIT_RULE.path}/{urllib.parse.quote(rule, safe='')}/values"
        run(lambda: api.request("GET", path, query={"limit": limit}), as_json, _values_text)

    app.add_typer(limits_app, name="limits")


def _values_text(result: dict[str, Any]) -> str:
    rows = [{"value": value["value"], "kind": usage["kind"], "used": usage["used"], "limit": usage["limit"]}
            for value in result["values"] for usage in value["usage"] or [{"kind": None, "used": None, "limit": None}]]
    columns = [("VALUE", lambda r: r["value"]), ("KIND", lambda r: r["kind"]), ("USED", lambda r: r["used"]),
               ("LIMIT", lambda r: r["limit"])]
    return table(rows, columns)
