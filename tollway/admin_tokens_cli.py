"""`tollway admin-tokens create|list|show|revoke`: scoped management API tokens from a
terminal (an admin token is needed; see `tollway.api.admin_tokens`)."""

from __future__ import annotations

import urllib.parse
from typing import Any

import typer

from tollway.admin_cli import AdminError, JsonOption, TokenOption, UrlOption, client, message, run, table

app = typer.Typer(help="Manage scoped admin tokens (roles: admin, manager, viewer, usage_reader).",
                  no_args_is_help=True)
_ROLE = typer.Option(..., "--role", help="admin, manager, viewer or usage_reader.")
_TEAM = typer.Option(None, "--team", help="A manager's scope: this team's id.")
_CUSTOMER = typer.Option(None, "--customer", help="A manager's scope: this customer's id.")
_COLUMNS: list[tuple[str, Any]] = [
    ("ID", lambda t: t["id"]), ("NAME", lambda t: t["name"]), ("ROLE", lambda t: t["role"]),
    ("SCOPE", lambda t: f"{t['scope']['type']} {t['scope']['id']}" if t.get("scope") else None),
    ("TOKEN", lambda t: t.get("value") or f"{t['value_prefix']}…"), ("LAST USED", lambda t: t.get("last_used_at")),
    ("REVOKED", lambda t: t.get("revoked_at")),
]


def _path(token_id: str) -> str:
    return "/api/admin-tokens/" + urllib.parse.quote(token_id, safe="")


@app.command("create")
def create(name: str = typer.Option(..., "--name", help="Who or what uses it (shown in the audit log)."),
           role: str = _ROLE, team: str = _TEAM, customer: str = _CUSTOMER, url: str = UrlOption,
           token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Create a token; its value is printed once: store it now."""
    body: dict[str, Any] = {"name": name, "role": role}
    if team is not None or customer is not None:
        body["scope"] = {"team_id": team} if team is not None else {"customer_id": customer}
        if team is not None and customer is not None:
            body["scope"]["customer_id"] = customer  # the API names the conflict
    api = client(url, token)

    def render(result: dict[str, Any]) -> str:
        created = result["admin_token"]
        return f"{message(result)}\n{table([created], _COLUMNS)}\n\nvalue: {created['value']}"

    run(lambda: _flags(lambda: api.request("POST", "/api/admin-tokens", body)), as_json, render)


_FLAGS = {"scope.team_id": "--team", "scope.customer_id": "--customer", "scope": "--team/--customer",
          "role": "--role", "name": "--name"}


def _flags(call: Any) -> Any:
    """The API's field names in errors, as this command's flags."""
    try:
        return call()
    except AdminError as exc:
        details = [{**d, "field": _FLAGS.get(d.get("field") or "", d.get("field"))} for d in exc.details]
        for detail, original in zip(details, exc.details, strict=True):
            detail["message"] = str(detail.get("message", "")).removeprefix(f"{original.get('field')}: ")
        raise AdminError(exc.status, str(exc), details) from None


@app.command("list")
def list_tokens(revoked: bool = typer.Option(None, "--revoked/--live", help="Only revoked, or only live, tokens."),
                url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """List tokens (never their values)."""
    api = client(url, token)
    query = {"limit": 1000, "revoked": None if revoked is None else str(revoked).lower()}
    run(lambda: api.request("GET", "/api/admin-tokens", query=query), as_json,
        lambda result: table(result["admin_tokens"], _COLUMNS))


@app.command("show")
def show(token_id: str = typer.Argument(..., help="The token's id (at-…)."), url: str = UrlOption,
         token: str = TokenOption, as_json: bool = JsonOption) -> None:
    api = client(url, token)
    run(lambda: api.request("GET", _path(token_id)), as_json, lambda result: table([result["admin_token"]], _COLUMNS))


@app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="The token's id (at-…)."), url: str = UrlOption,
           token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Revoke a token: it answers 401 from now on."""
    api = client(url, token)
    run(lambda: api.request("DELETE", _path(token_id)), as_json, message)
