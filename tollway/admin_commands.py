"""The admin commands: keys, teams, customers, usage, explain, spend (see admin_cli for the
client). Keys, teams and customers are named by id or name wherever a command takes one."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

from tollway.admin_cli import (
    CUSTOMER,
    KEY,
    TAG,
    TEAM,
    JsonOption,
    Kind,
    TokenOption,
    UrlOption,
    budget_text,
    client,
    find,
    find_id,
    limits_body,
    lookup,
    message,
    money,
    rate_text,
    run,
    table,
)
from tollway.admin_end_users import app as end_users_app
from tollway.admin_limits import register as register_limits
from tollway.admin_spend import spend
from tollway.admin_tokens_cli import app as admin_tokens_app

# `explain` exits with this when the request it describes would be denied (1 is an error, 2 bad usage).
EXIT_DENIED = 3

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
    ("BUDGET", budget_text), ("RATE LIMIT", rate_text), ("EXPIRES", lambda k: k.get("expires_at") or "never"),
    ("LAST USED", lambda k: k.get("last_used_at") or "never"), _MANAGED,
]
_TEAM_COLUMNS = [("ID", lambda t: t["id"]), ("NAME", lambda t: t["name"]), ("CUSTOMER", lambda t: t.get("customer_id")),
                 ("BUDGET", budget_text), ("RATE LIMIT", rate_text), _MANAGED]
_CUSTOMER_COLUMNS = [("ID", lambda c: c["id"]), ("NAME", lambda c: c["name"]), ("BUDGET", budget_text), ("RATE LIMIT", rate_text),
                     _MANAGED]


def entity_app(kind: Kind, columns: list[tuple[str, Any]]) -> typer.Typer:
    """list / show / delete for one kind of entity; `create` is added per kind."""
    plural = kind.plural.replace("_", " ")
    app = typer.Typer(help=f"Manage {plural}.", no_args_is_help=True)

    @app.command("list")
    def list_(url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption,
              search: str = typer.Option(None, help="Filter by id or name (substring)."),
              limit: int = typer.Option(100)) -> None:
        """List them."""
        api = client(url, token)
        run(lambda: api.request("GET", kind.path, query={"search": search, "limit": limit}), as_json,
            lambda r: table(r[kind.plural], columns) + f"\n{r['count']} in all")

    @app.command("show")
    def show(ref: str = typer.Argument(..., metavar="ID_OR_NAME"), url: str = UrlOption, token: str = TokenOption,
             as_json: bool = JsonOption) -> None:
        """Show one, with its limits and their live usage."""
        api = client(url, token)
        run(lambda: {kind.single: lookup(api, kind, ref)}, as_json, lambda r: table([r[kind.single]], columns))

    @app.command("delete")
    def delete(ref: str = typer.Argument(..., metavar="ID_OR_NAME"), url: str = UrlOption, token: str = TokenOption,
               as_json: bool = JsonOption, cascade: bool = typer.Option(False, help="Also delete what belongs to it."),
               yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
        """Delete one (its budget and rate limit are retained with their usage). Those the
        config file manages are refused: remove them from the file instead."""
        api = client(url, token)
        entity = find(api, kind, ref)
        if not yes:
            typer.confirm(f"Delete {kind.noun} {entity['id']!r} ({entity.get('name')})?", abort=True)
        run(lambda: api.request("DELETE", f"{kind.path}/{_quoted(entity['id'])}",
                                query={"cascade": "true" if cascade else None}), as_json, message)

    return app


def _quoted(entity_id: str) -> str:
    return urllib.parse.quote(entity_id, safe="")



keys_app = entity_app(KEY, _KEY_COLUMNS)
teams_app = entity_app(TEAM, _TEAM_COLUMNS)
customers_app = entity_app(CUSTOMER, _CUSTOMER_COLUMNS)
_TAG_COLUMNS = [("TAG", lambda t: t["name"]), ("BUDGET", budget_text), ("RATE LIMIT", rate_text), _MANAGED]
tags_app = entity_app(TAG, _TAG_COLUMNS)


@keys_app.command("create")
def create_key(key_id: str = typer.Option(None, "--id", help="The key's id (generated when omitted)."),
               name: str = typer.Option(..., help="A name people recognise."),
               team: str = typer.Option(None, help="The team's id or name."),
               customer: str = typer.Option(None, help="The customer's id or name."),
               models: str = typer.Option(None, help="Allowed models, comma-separated."),
               allowed_tags: str = typer.Option(None, "--allowed-tags",
                                                help="The only request tags it may use, comma-separated (default: any)."),
               forced_tags: str = typer.Option(None, "--forced-tags",
                                               help="Tags added to every request it makes, comma-separated."),
               expires_at: str = typer.Option(None, "--expires-at",
                                              help="When the key stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z)."),
               budget: float = _BUDGET, budget_period: str = _BUDGET_PERIOD, requests: int = _REQUESTS,
               requests_period: str = _REQUESTS_PERIOD, tokens: int = _TOKENS, tokens_period: str = _TOKENS_PERIOD,
               url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Create a virtual key; its value is printed once."""
    api = client(url, token)
    body: dict[str, Any] = {"id": key_id, "name": name, "team_id": find_id(api, TEAM, team),
                            "customer_id": find_id(api, CUSTOMER, customer), "expires_at": expires_at,
                            **limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)}
    if models:
        body["allowed_models"] = [m.strip() for m in models.split(",") if m.strip()]
    for field, listed in (("allowed_tags", allowed_tags), ("forced_tags", forced_tags)):
        if listed:
            body[field] = [tag.strip() for tag in listed.split(",") if tag.strip()]
    run(lambda: api.request("POST", "/api/governance/virtual-keys", {k: v for k, v in body.items() if v is not None}),
        as_json, lambda r: table([r["virtual_key"]], _KEY_COLUMNS) + "\nThe key's value is shown this once: store it now.")


def _set_active(ref: str, active: bool, url: str | None, token: str | None, as_json: bool) -> None:
    api = client(url, token)
    key_id = find(api, KEY, ref)["id"]
    run(lambda: api.request("PUT", f"{KEY.path}/{_quoted(key_id)}", {"is_active": active}), as_json,
        lambda r: table([r["virtual_key"]], _KEY_COLUMNS))


_KEY_REF = typer.Argument(..., metavar="ID_OR_NAME")


@keys_app.command("block")
def block_key(key_id: str = _KEY_REF, url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Block a key: its next request is refused with 403 virtual_key_blocked."""
    _set_active(key_id, False, url, token, as_json)


@keys_app.command("unblock")
def unblock_key(key_id: str = _KEY_REF, url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Unblock a key."""
    _set_active(key_id, True, url, token, as_json)


@keys_app.command("rotate")
def rotate_key(ref: str = _KEY_REF,
               grace: str = typer.Option(None, "--grace", help="How long the old value keeps working: 15m, 1h, 1d … "
                                                               "(at most 30d). Omitted: it stops at once."),
               yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
               url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Give a key a new value (printed once). The old value works for the grace period,
    then gets 401; rotating again during a grace period ends the oldest value at once."""
    api = client(url, token)
    key = find(api, KEY, ref)
    if not yes:
        until = f"for {grace}" if grace else "no longer"
        typer.confirm(f"Rotate virtual key {key['id']!r} ({key.get('name')})? Its current value will work {until}.",
                      abort=True)
    run(lambda: api.request("POST", f"{KEY.path}/{_quoted(key['id'])}/rotate", {"grace_period": grace}), as_json,
        lambda r: f"{r['message']}\nnew value: {r['virtual_key']['value']}")


@keys_app.command("expire")
def expire_key(ref: str = _KEY_REF,
               at: str = typer.Option(None, "--at", help="When the key stops working (RFC 3339); 'now' for at once."),
               never: bool = typer.Option(False, "--never", help="Remove the expiry: the key works until blocked."),
               url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Set or clear when a key stops working (401 virtual_key_expired after it)."""
    if (at is None) == (not never):
        raise typer.BadParameter("give --at TIME (or --at now) or --never")
    expires_at = None if never else datetime.now(timezone.utc).isoformat() if at == "now" else at
    api = client(url, token)
    key_id = find(api, KEY, ref)["id"]
    run(lambda: api.request("PUT", f"{KEY.path}/{_quoted(key_id)}", {"expires_at": expires_at}), as_json,
        lambda r: table([r["virtual_key"]], _KEY_COLUMNS))


@teams_app.command("create")
def create_team(team_id: str = typer.Option(None, "--id", help="The team's id (generated when omitted)."),
                name: str = typer.Option(...), customer: str = typer.Option(None, help="The customer's id or name."),
                budget: float = _BUDGET, budget_period: str = _BUDGET_PERIOD, requests: int = _REQUESTS,
                requests_period: str = _REQUESTS_PERIOD, tokens: int = _TOKENS, tokens_period: str = _TOKENS_PERIOD,
                url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Create a team."""
    api = client(url, token)
    body = {"id": team_id, "name": name, "customer_id": find_id(api, CUSTOMER, customer),
            **limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)}
    run(lambda: api.request("POST", "/api/governance/teams", {k: v for k, v in body.items() if v is not None}),
        as_json, lambda r: table([r["team"]], _TEAM_COLUMNS))


@customers_app.command("create")
def create_customer(customer_id: str = typer.Option(None, "--id", help="The customer's id (generated when omitted)."),
                    name: str = typer.Option(...),
                    budget: float = _BUDGET, budget_period: str = _BUDGET_PERIOD, requests: int = _REQUESTS,
                    requests_period: str = _REQUESTS_PERIOD, tokens: int = _TOKENS, tokens_period: str = _TOKENS_PERIOD,
                    url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Create a customer."""
    limits = limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)
    body = {"id": customer_id, "name": name, **limits}
    api = client(url, token)
    run(lambda: api.request("POST", "/api/governance/customers", {k: v for k, v in body.items() if v is not None}),
        as_json, lambda r: table([r["customer"]], _CUSTOMER_COLUMNS))


@tags_app.command("create")
def create_tag(name: str = typer.Option(..., help="The tag (trimmed and lower-cased as requests' tags are)."),
               budget: float = _BUDGET, budget_period: str = _BUDGET_PERIOD, requests: int = _REQUESTS,
               requests_period: str = _REQUESTS_PERIOD, tokens: int = _TOKENS, tokens_period: str = _TOKENS_PERIOD,
               url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Give a request tag limits, shared by every request that carries it."""
    body = {"name": name, **limits_body(budget, budget_period, requests, requests_period, tokens, tokens_period)}
    api = client(url, token)
    run(lambda: api.request("POST", TAG.path, {k: v for k, v in body.items() if v is not None}),
        as_json, lambda r: table([r["tag"]], _TAG_COLUMNS))


def usage(url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Live usage of every budget and rate limit, with the time to its reset."""
    api = client(url, token)
    columns = [("LEVEL", lambda u: u.get("level")), ("ENTITY", lambda u: u.get("name") or u.get("entity_id")),
               ("KIND", lambda u: u.get("kind")), ("USED", lambda u: u.get("used")), ("LIMIT", lambda u: u.get("limit")),
               ("REMAINING", lambda u: u.get("remaining")), ("RESETS", lambda u: u.get("reset_at"))]
    run(lambda: api.request("GET", "/api/governance/usage"), as_json,
        lambda r: table(r.get("limits", r.get("usage", [])), columns))


def explain(model: str = typer.Option(None, help="provider/model or an alias (or the body's model)."),
            key: str = typer.Option(None, help="The key's value."),
            key_id: str = typer.Option(None, help="Or the key's id or name."), prompt_tokens: int = typer.Option(None),
            completion_tokens: int = typer.Option(None),
            body_file: Path = typer.Option(None, "--body", help="A JSON file holding the request body a client would "
                                           "send: priced exactly as the gateway prices it."),
            api_name: str = typer.Option("chat", "--api", help="The body's endpoint: chat, completions, embeddings, "
                                         "messages or responses."),
            url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Would a request be allowed now? Every limit that applies, the binding one marked, with
    what the request would reserve on it (its worst case on strict limits).
    Exits 3 when the request would be denied."""
    api = client(url, token)
    body = {"model": model, "virtual_key": key, "virtual_key_id": find_id(api, KEY, key_id),
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    if body_file is not None:
        body.update(api=api_name, body=_json_file(body_file))
    columns = [("", lambda limit: "*" if limit.get("binding") else ""),
               ("ENTITY", lambda limit: limit.get("name") or limit.get("id"))]
    columns[1:1] = [("LEVEL", _field("level"))]
    columns += [(name.upper(), _field(name)) for name in ("kind", "used", "reserved", "limit", "remaining")]
    columns += [("REQUEST", _field("requested")), ("MODE", _mode), ("RESETS", _field("reset_at"))]
    result = run(lambda: api.request("POST", "/api/governance/explain", {k: v for k, v in body.items() if v is not None}),
                 as_json, lambda r: _explained(r) + table(r.get("limits", []), columns))
    if not result.get("allowed", result.get("decision") == "allow"):
        raise typer.Exit(EXIT_DENIED)


def _field(name: str) -> Any:
    return lambda row: row.get(name)


def _mode(limit: dict[str, Any]) -> str:
    """A limit's enforcement, with its on_insufficient where it acts (strict)."""
    if limit.get("enforcement") != "strict":
        return limit.get("enforcement") or ""
    return f"strict/{limit.get('on_insufficient')}"


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read a JSON body from {path}: {exc}", param_hint="--body") from None


def _explained(result: dict[str, Any]) -> str:
    lines = [f"decision: {result['decision']}"]
    if result.get("message"):
        lines.append(f"why: {result['message']}")
    if result.get("estimated_cost") is not None:
        lines.append(f"estimate: {result.get('estimated_tokens')} tokens, ${money(result['estimated_cost'])}")
    if result.get("worst_case_cost") is not None:
        cap = f" (max_tokens {result['max_tokens']})" if result.get("max_tokens") is not None else ""
        lines.append(f"worst case: {result.get('worst_case_tokens')} tokens, ${money(result['worst_case_cost'])}{cap}")
    if result.get("clamped_max_tokens") is not None:
        lines.append(f"clamped: forwarded with max_tokens {result['clamped_max_tokens']} (what fits the strict limits)")
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    """Add the admin commands to the main CLI."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(teams_app, name="teams")
    app.add_typer(customers_app, name="customers")
    app.add_typer(tags_app, name="tags")
    register_limits(entity_app, app)
    app.command("usage")(usage)
    app.command("explain")(explain)
    app.command("spend")(spend)
    app.add_typer(admin_tokens_app, name="admin-tokens")
    app.add_typer(end_users_app, name="end-users")
