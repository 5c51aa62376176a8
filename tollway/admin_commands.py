"""The admin commands: keys, teams, customers, usage, explain (see admin_cli for the client)."""

from __future__ import annotations

from typing import Any

import typer

from tollway.admin_cli import (
    JsonOption,
    TokenOption,
    UrlOption,
    budget_text,
    client,
    limits_body,
    message,
    rate_text,
    run,
    table,
)

_BUDGET = typer.Option(None, "--budget", help="Budget in USD.")
_BUDGET_PERIOD = typer.Option("1M", "--budget-period", help="Budget period, e.g. 1d, 1M.")
_REQUESTS = typer.Option(None, "--requests", help="Request limit.")
_REQUESTS_PERIOD = typer.Option("1m", "--requests-period")
_TOKENS = typer.Option(None, "--tokens", help="Token limit.")
_TOKENS_PERIOD = typer.Option("1h", "--tokens-period")

# Who manages each entity: "config" ones are changed in the config file, not here (409).
_MANAGED = ("MANAGED BY", lambda e: e.get("managed_by"))
_KEY_COLUMNS = [
    ("ID", lambda k: k["id"]), ("NAME", lambda k: k["name"]), ("KEY", lambda k: k.get("value") or f"{k['value_prefix']}…"),
    ("ACTIVE", lambda k: k["is_active"]), ("TEAM", lambda k: k.get("team_id")), ("CUSTOMER", lambda k: k.get("customer_id")),
    ("BUDGET", budget_text), ("RATE LIMIT", rate_text), _MANAGED,
]
_TEAM_COLUMNS = [("ID", lambda t: t["id"]), ("NAME", lambda t: t["name"]), ("CUSTOMER", lambda t: t.get("customer_id")),
                 ("BUDGET", budget_text), ("RATE LIMIT", rate_text), _MANAGED]
_CUSTOMER_COLUMNS = [("ID", lambda c: c["id"]), ("NAME", lambda c: c["name"]), ("BUDGET", budget_text), ("RATE LIMIT", rate_text),
                     _MANAGED]


def entity_app(noun: str, path: str, single: str, plural: str, columns: list) -> typer.Typer:
    """list / show / delete for one kind of entity; `create` is added per kind."""
    app = typer.Typer(help=f"Manage {plural.replace('_', ' ')}.", no_args_is_help=True)

    @app.command("list")
    def list_(url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption,
              search: str = typer.Option(None, help="Filter by name."), limit: int = typer.Option(100)) -> None:
        """List them."""
        api = client(url, token)
        run(lambda: api.request("GET", path, query={"search": search, "limit": limit}), as_json,
            lambda r: table(r[plural], columns) + f"\n{r['count']} in all")

    @app.command("show")
    def show(entity_id: str, url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
        """Show one, with its limits and their live usage."""
        api = client(url, token)
        run(lambda: api.request("GET", f"{path}/{entity_id}"), as_json, lambda r: table([r[single]], columns))

    @app.command("delete")
    def delete(entity_id: str, url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption,
               cascade: bool = typer.Option(False, help="Also delete what belongs to it."),
               yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
        """Delete one (its budget and rate limit are retained with their usage). Those the
        config file manages are refused: remove them from the file instead."""
        if not yes:
            typer.confirm(f"Delete {noun} {entity_id!r}?", abort=True)
        api = client(url, token)
        run(lambda: api.request("DELETE", f"{path}/{entity_id}", query={"cascade": "true" if cascade else None}), as_json, message)

    return app


keys_app = entity_app("virtual key", "/api/governance/virtual-keys", "virtual_key", "virtual_keys", _KEY_COLUMNS)
teams_app = entity_app("team", "/api/governance/teams", "team", "teams", _TEAM_COLUMNS)
customers_app = entity_app("customer", "/api/governance/customers", "customer", "customers", _CUSTOMER_COLUMNS)


@keys_app.command("create")
def create_key(name: str = typer.Option(..., help="A name people recognise."), team: str = typer.Option(None),
               customer: str = typer.Option(None), models: str = typer.Option(None, help="Allowed models, comma-separated."),
               budget: float = _BUDGET, budget_period: str = _BUDGET_PERIOD, requests: int = _REQUESTS,
               requests_period: str = _REQUESTS_PERIOD, tokens: int = _TOKENS, tokens_period: str = _TOKENS_PERIOD,
               url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Create a virtual key; its value is printed once."""
    body: dict[str, Any] = {"name": name, "team_id": team, "customer_id": customer,
                            **limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)}
    if models:
        body["allowed_models"] = [m.strip() for m in models.split(",") if m.strip()]
    api = client(url, token)
    run(lambda: api.request("POST", "/api/governance/virtual-keys", {k: v for k, v in body.items() if v is not None}),
        as_json, lambda r: table([r["virtual_key"]], _KEY_COLUMNS) + "\nThe key's value is shown this once: store it now.")


def _set_active(key_id: str, active: bool, url: str | None, token: str | None, as_json: bool) -> None:
    api = client(url, token)
    run(lambda: api.request("PUT", f"/api/governance/virtual-keys/{key_id}", {"is_active": active}), as_json,
        lambda r: table([r["virtual_key"]], _KEY_COLUMNS))


@keys_app.command("block")
def block_key(key_id: str, url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Block a key: its next request is refused with 403 virtual_key_blocked."""
    _set_active(key_id, False, url, token, as_json)


@keys_app.command("unblock")
def unblock_key(key_id: str, url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Unblock a key."""
    _set_active(key_id, True, url, token, as_json)


@teams_app.command("create")
def create_team(team_id: str = typer.Option(None, "--id"), name: str = typer.Option(...), customer: str = typer.Option(None),
                budget: float = _BUDGET, budget_period: str = _BUDGET_PERIOD, requests: int = _REQUESTS,
                requests_period: str = _REQUESTS_PERIOD, tokens: int = _TOKENS, tokens_period: str = _TOKENS_PERIOD,
                url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Create a team."""
    body = {"id": team_id, "name": name, "customer_id": customer,
            **limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)}
    api = client(url, token)
    run(lambda: api.request("POST", "/api/governance/teams", {k: v for k, v in body.items() if v is not None}),
        as_json, lambda r: table([r["team"]], _TEAM_COLUMNS))


@customers_app.command("create")
def create_customer(customer_id: str = typer.Option(None, "--id"), name: str = typer.Option(...),
                    budget: float = _BUDGET, budget_period: str = _BUDGET_PERIOD, requests: int = _REQUESTS,
                    requests_period: str = _REQUESTS_PERIOD, tokens: int = _TOKENS, tokens_period: str = _TOKENS_PERIOD,
                    url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Create a customer."""
    body = {"id": customer_id, "name": name, **limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)}
    api = client(url, token)
    run(lambda: api.request("POST", "/api/governance/customers", {k: v for k, v in body.items() if v is not None}),
        as_json, lambda r: table([r["customer"]], _CUSTOMER_COLUMNS))


def usage(url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Live usage of every budget and rate limit, with the time to its reset."""
    api = client(url, token)
    columns = [("LEVEL", lambda u: u.get("level")), ("ENTITY", lambda u: u.get("name") or u.get("entity_id")),
               ("KIND", lambda u: u.get("kind")), ("USED", lambda u: u.get("used")), ("LIMIT", lambda u: u.get("limit")),
               ("REMAINING", lambda u: u.get("remaining")), ("RESETS", lambda u: u.get("reset_at"))]
    run(lambda: api.request("GET", "/api/governance/usage"), as_json, lambda r: table(r.get("limits", r.get("usage", [])), columns))


def explain(model: str = typer.Option(..., help="provider/model or an alias."), key: str = typer.Option(None, help="The key's value."),
            key_id: str = typer.Option(None, help="Or the key's id."), prompt_tokens: int = typer.Option(0),
            completion_tokens: int = typer.Option(None), url: str = UrlOption, token: str = TokenOption,
            as_json: bool = JsonOption) -> None:
    """Would a request be allowed now? Every limit that applies, the binding one marked."""
    body = {"model": model, "virtual_key": key, "virtual_key_id": key_id, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens}
    api = client(url, token)
    columns = [("", lambda l: "*" if l.get("binding") else ""), ("LEVEL", lambda l: l.get("level")),
               ("ENTITY", lambda l: l.get("name") or l.get("id")), ("KIND", lambda l: l.get("kind")),
               ("USED", lambda l: l.get("used")), ("RESERVED", lambda l: l.get("reserved")), ("LIMIT", lambda l: l.get("limit")),
               ("REMAINING", lambda l: l.get("remaining")), ("RESETS", lambda l: l.get("reset_at"))]
    run(lambda: api.request("POST", "/api/governance/explain", {k: v for k, v in body.items() if v is not None}), as_json,
        lambda r: f"decision: {r['decision']}\n" + table(r.get("limits", []), columns))


def register(app: typer.Typer) -> None:
    """Add the admin commands to the main CLI."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(teams_app, name="teams")
    app.add_typer(customers_app, name="customers")
    app.command("usage")(usage)
    app.command("explain")(explain)
