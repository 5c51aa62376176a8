"""`tollway spend`: spend, tokens and requests from `/api/usage/spend`, grouped by key,
team, customer, provider or model, optionally bucketed by hour or day, as a table, CSV or
JSON. Keys, teams and customers are shown with their names ("(deleted)" for one that no
longer exists; "(none)" for requests without one)."""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from typing import Any

import typer

from tollway.admin_cli import (
    CUSTOMER,
    KEY,
    TEAM,
    AdminClient,
    Kind,
    TokenOption,
    UrlOption,
    client,
    find_id,
    money,
    run,
    table,
)


class GroupBy(StrEnum):
    key = "key"
    team = "team"
    customer = "customer"
    provider = "provider"
    model = "model"
    route = "route"
    tag = "tag"
    end_user = "end-user"


class Interval(StrEnum):
    hour = "hour"
    day = "day"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


_NAMED: dict[str, Kind] = {"key": KEY, "team": TEAM, "customer": CUSTOMER}
_COUNTS = ("requests", "denied_requests", "prompt_tokens", "completion_tokens", "total_tokens")


def spend(
    by: GroupBy = typer.Option(None, "--by", help="Group by key, team, customer, provider, model, route, tag "
                                                  "(a request with two tags counts in both) or end-user."),
    start: str = typer.Option(None, "--start", help="From (ISO-8601, UTC without an offset); default 24 hours ago."),
    end: str = typer.Option(None, "--end", help="Until (ISO-8601); default now."),
    interval: Interval = typer.Option(None, "--interval", help="hour or day buckets (UTC); default one total."),
    key: str = typer.Option(None, "--key", help="Only this key (id or name)."),
    team: str = typer.Option(None, "--team", help="Only this team (id or name)."),
    customer: str = typer.Option(None, "--customer", help="Only this customer (id or name)."),
    model: str = typer.Option(None, "--model", help="Only this model: provider/model, or a model name."),
    provider: str = typer.Option(None, "--provider", help="Only this provider."),
    tag: str = typer.Option(None, "--tag", help="Only requests carrying this tag."),
    output: Format = typer.Option(Format.table, "--format", help="table, csv or json."),
    as_json: bool = typer.Option(False, "--json", help="The same as --format json."),
    url: str = UrlOption, token: str = TokenOption,
) -> None:
    """Spend (USD), requests and tokens over a time range, grouped and bucketed."""
    api = client(url, token)
    if model and "/" in model and provider is None:
        provider, model = model.split("/", 1)
    query = {"group_by": by.value.replace("-", "_") if by else None, "interval": interval.value if interval else None,
             "start": start, "end": end, "virtual_key_id": find_id(api, KEY, key), "team_id": find_id(api, TEAM, team),
             "customer_id": find_id(api, CUSTOMER, customer), "provider": provider, "model": model, "tag": tag}
    report = run(lambda: _with_names(api, api.request("GET", "/api/usage/spend", query=query)), False, str, quiet=True)
    if output is Format.json or as_json:
        typer.echo(json.dumps(report, indent=2))
    elif output is Format.csv:
        typer.echo(_csv(report), nl=False)
    else:
        typer.echo(_table(report))


def _with_names(api: AdminClient, report: dict[str, Any]) -> dict[str, Any]:
    """The report with each key / team / customer group's ``name`` added."""
    kind = _NAMED.get(report.get("group_by") or "")
    if kind is None:
        return report
    names = _names(api, kind)
    for row in report["series"]:
        group = row.get("group")
        row["name"] = "(none)" if group is None else names.get(group, "(deleted)")
    return report


def _names(api: AdminClient, kind: Kind) -> dict[str, str]:
    """Every entity's name by id, a page of 1000 at a time."""
    names: dict[str, str] = {}
    offset = 0
    while True:
        page = api.request("GET", kind.path, query={"limit": 1000, "offset": offset})
        names.update((entity["id"], entity["name"]) for entity in page[kind.plural])
        offset += len(page[kind.plural])
        if not page[kind.plural] or offset >= page["count"]:
            return names


def _columns(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(header, field) of the report's columns."""
    columns: list[tuple[str, str]] = []
    if report.get("group_by"):
        columns.append((str(report["group_by"]), "group"))
        if report["group_by"] in _NAMED:
            columns.append(("name", "name"))
    if report.get("interval"):
        columns.append((str(report["interval"]), "bucket"))
    return columns + [("spend_usd", "spend")] + [(name, name) for name in _COUNTS]


def _cell(row: dict[str, Any], field: str) -> Any:
    value = row.get(field)
    return money(value) if field == "spend" else value


def _table(report: dict[str, Any]) -> str:
    columns = [(header.upper().replace("_", " "), lambda r, f=field: _cell(r, f)) for header, field in _columns(report)]
    total = report["total"]
    footer = (f"total {report['start']} .. {report['end']}: ${money(total['spend'])}, {total['requests']} requests "
              f"({total['denied_requests']} denied), {total['total_tokens']} tokens")
    return table(report["series"], columns) + "\n" + footer


def _csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = _columns(report)
    writer.writerow([header for header, _ in columns])
    for row in report["series"]:
        writer.writerow(["" if _cell(row, field) is None else _cell(row, field) for _, field in columns])
    return buffer.getvalue()
