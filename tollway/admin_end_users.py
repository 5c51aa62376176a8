"""`tollway end-users`: the end users requests named (ranked by spend, searched by the start
of their id), and one end user's limits under a key's, team's or customer's template, with
the override an operator gives them (`/api/governance/end-users`)."""

from __future__ import annotations

import urllib.parse
from typing import Any

import typer

from tollway.admin_cli import (
    CUSTOMER,
    KEY,
    TEAM,
    AdminClient,
    JsonOption,
    TokenOption,
    UrlOption,
    client,
    find_id,
    limits_body,
    message,
    money,
    run,
    table,
)

app = typer.Typer(help="End users: listed and ranked by spend; their limits and overrides.", no_args_is_help=True)

_PATH = "/api/governance/end-users"
_KEY = typer.Option(None, "--key", help="Of this key (id or name).")
_TEAM = typer.Option(None, "--team", help="Of this team (id or name).")
_CUSTOMER = typer.Option(None, "--customer", help="Of this customer (id or name).")
_USER = typer.Argument(..., metavar="END_USER", help="The end user's id, as requests name it.")
_COLUMNS = [("END USER", lambda u: u["end_user"]), ("SPEND USD", lambda u: money(u["spend"])),
            ("REQUESTS", lambda u: u["requests"]), ("LAST SEEN", lambda u: u["last_seen"])]
_LIMIT_COLUMNS = [("KIND", lambda lim: lim["kind"]), ("LIMIT", lambda lim: lim["limit"]),
                  ("USED", lambda lim: lim["used"]), ("RESERVED", lambda lim: lim["reserved"]),
                  ("REMAINING", lambda lim: lim["remaining"]), ("PER", lambda lim: lim["duration"]),
                  ("MODE", lambda lim: lim["mode"])]


@app.command("list")
def list_end_users(
    key: str = _KEY, team: str = _TEAM, customer: str = _CUSTOMER,
    search: str = typer.Option(None, "--search", help="Only ids starting with this."),
    sort: str = typer.Option("spend", "--sort", help="spend (default), requests, last_seen or end_user."),
    limit: int = typer.Option(100, "--limit", help="How many."),
    url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption,
) -> None:
    """End users with their spend, requests and last request, highest spend first."""
    api = client(url, token)
    query = {"virtual_key_id": find_id(api, KEY, key), "team_id": find_id(api, TEAM, team),
             "customer_id": find_id(api, CUSTOMER, customer), "search": search, "sort": sort, "limit": limit}
    run(lambda: api.request("GET", _PATH, query=query), as_json,
        lambda page: table(page["end_users"], _COLUMNS) + f"\n{page['count']} end users")


@app.command("show")
def show_end_user(end_user: str = _USER, key: str = _KEY, team: str = _TEAM, customer: str = _CUSTOMER,
                  url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """One end user's limits under the template of a key, team or customer, with live usage."""
    api = client(url, token)
    run(lambda: api.request("GET", _one(api, end_user, key, team, customer)), as_json, _shown)


@app.command("set")
def set_end_user(
    end_user: str = _USER, key: str = _KEY, team: str = _TEAM, customer: str = _CUSTOMER,
    budget: float = typer.Option(None, "--budget", help="Budget in USD."),
    budget_period: str = typer.Option("1M", "--budget-period", help="Budget period, e.g. 1d, 1M."),
    requests: int = typer.Option(None, "--requests", help="Request limit."),
    requests_period: str = typer.Option("1m", "--requests-period"),
    tokens: int = typer.Option(None, "--tokens", help="Token limit."),
    tokens_period: str = typer.Option("1h", "--tokens-period"),
    in_flight: int = typer.Option(None, "--max-in-flight", help="Requests in flight at once."),
    url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption,
) -> None:
    """Give one end user other limits than the template's (the parts not given stay the template's)."""
    body = limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)
    if in_flight is not None:
        body["concurrency"] = {"max_in_flight": in_flight}
    api = client(url, token)
    run(lambda: api.request("PUT", _one(api, end_user, key, team, customer), body), as_json, _shown)


@app.command("unset")
def unset_end_user(end_user: str = _USER, key: str = _KEY, team: str = _TEAM, customer: str = _CUSTOMER,
                   url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Remove one end user's override: the template applies to them again."""
    api = client(url, token)
    run(lambda: api.request("DELETE", _one(api, end_user, key, team, customer)), as_json, message)


def _one(api: AdminClient, end_user: str, key: str | None, team: str | None, customer: str | None) -> str:
    """The API path of ``end_user`` under the one owner given."""
    owners = [(ref, kind) for ref, kind in ((key, KEY), (team, TEAM), (customer, CUSTOMER)) if ref is not None]
    if len(owners) != 1:
        raise typer.BadParameter("give exactly one of --key, --team or --customer (whose template applies)")
    ref, kind = owners[0]
    owner_id = find_id(api, kind, ref)
    assert owner_id is not None
    return f"{kind.path}/{urllib.parse.quote(owner_id, safe='')}/end-users/{urllib.parse.quote(end_user, safe='')}"


def _shown(result: dict[str, Any]) -> str:
    override = "none" if result.get("override") is None else ", ".join(sorted(result["override"]))
    return (f"end user {result['end_user']} of {result['owner_level']} {result['owner_id']} (override: {override})\n"
            + table(result["limits"], _LIMIT_COLUMNS))
