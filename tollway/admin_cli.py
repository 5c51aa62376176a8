"""`tollway keys|teams|customers|usage|explain|spend`: the management API from a terminal.

Talks to a running gateway over HTTP (`--url`, default $TOLLWAY_URL or
http://127.0.0.1:8080) with the admin token (`--token`, default $TOLLWAY_ADMIN_TOKEN).
Output is a readable table; `--json` prints the API's JSON for scripts. Keys, teams and
customers are named by id or by name; money is printed as plain decimal USD; errors name
the CLI's own flags. Exit codes: 0 done, 1 refused or failed, 2 bad usage, 3 `explain`
found the request would be denied.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

import typer

DEFAULT_URL = "http://127.0.0.1:8080"


class AdminError(Exception):
    """A refusal by the API (``status``; 0 when the gateway could not be reached), or by
    the CLI itself; ``details`` are the API's per-field problems."""

    def __init__(self, status: int, message: str, details: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.details = list(details)


@dataclass(frozen=True)
class AdminClient:
    """A tiny synchronous client of the management API."""

    url: str
    token: str | None

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        target = self.url.rstrip("/") + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(target, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            message, details = _error_message(exc.read())
            raise AdminError(exc.code, message or exc.reason, details) from None
        except urllib.error.URLError as exc:
            raise AdminError(0, f"cannot reach the gateway at {self.url}: {exc.reason}") from None
        return json.loads(payload) if payload else None


def _error_message(payload: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The API error's message and its per-field details (``{"field", "message"}``)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")[:300], []
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        details = error.get("details") or ([{"field": error["field"], "message": error.get("message", "")}]
                                           if error.get("field") else [])
        return str(error.get("message") or error.get("detail") or error), [d for d in details if isinstance(d, dict)]
    return str(error), []


# The API's body fields and query parameters, as the CLI's flags that set them.
FLAGS = {
    "budget.max_limit": "--budget", "budget.reset_duration": "--budget-period", "budget": "--budget",
    "rate_limit.request_max_limit": "--requests", "rate_limit.request_reset_duration": "--requests-period",
    "rate_limit.token_max_limit": "--tokens", "rate_limit.token_reset_duration": "--tokens-period",
    "rate_limit": "--requests/--tokens", "team_id": "--team", "customer_id": "--customer", "allowed_models": "--models",
    "name": "--name", "id": "--id", "model": "--model", "provider": "--provider", "virtual_key": "--key",
    "virtual_key_id": "--key-id", "prompt_tokens": "--prompt-tokens", "completion_tokens": "--completion-tokens",
    "start": "--start", "end": "--end", "group_by": "--by", "interval": "--interval", "search": "--search",
    "limit": "--limit", "allowed_tags": "--allowed-tags", "forced_tags": "--forced-tags", "tag": "--tag",
}


def flag_for(field: str) -> str:
    """The flag that sets an API field (``allowed_models.0`` → ``--models``); the field when none does."""
    parts = field.split(".")
    for cut in range(len(parts), 0, -1):
        flag = FLAGS.get(".".join(parts[:cut]))
        if flag:
            return flag
    return field


def error_text(exc: AdminError) -> str:
    """The error as the CLI's user sees it: the problem per flag, not per JSON field."""
    if exc.details:
        problems = [f"{flag_for(d['field'])}: {_strip_field(d.get('message', ''), d['field'])}" if d.get("field")
                    else str(d.get("message", "")) for d in exc.details]
        text = "; ".join(problems)
    else:
        text = str(exc)
    return f"error{f' ({exc.status})' if exc.status else ''}: {text}"


def _strip_field(message: str, field: str) -> str:
    return message.removeprefix(f"{field}: ")


# --- shared options and output ---------------------------------------------------------

UrlOption = typer.Option(None, "--url", help="The gateway (default $TOLLWAY_URL or http://127.0.0.1:8080).")
TokenOption = typer.Option(None, "--token", help="Admin token (default $TOLLWAY_ADMIN_TOKEN).")
JsonOption = typer.Option(False, "--json", help="Print the API's JSON.")


def client(url: str | None, token: str | None) -> AdminClient:
    return AdminClient(url or os.environ.get("TOLLWAY_URL") or DEFAULT_URL, token or os.environ.get("TOLLWAY_ADMIN_TOKEN"))


def run(action: Callable[[], Any], as_json: bool, render: Callable[[Any], str], quiet: bool = False) -> Any:
    """Call the API and print the result (not when ``quiet``); API errors become a message
    and exit code 1."""
    try:
        result = action()
    except AdminError as exc:
        typer.echo(error_text(exc), err=True)
        raise typer.Exit(1) from None
    if not quiet:
        typer.echo(json.dumps(result, indent=2) if as_json else render(result))
    return result


@dataclass(frozen=True)
class Kind:
    """One kind of entity the CLI names by id or name."""

    noun: str
    path: str
    single: str
    plural: str
    name_filter: str = "search"  # the list's query parameter that finds a name (keys: the indexed prefix)


def lookup(api: AdminClient, kind: Kind, ref: str) -> dict[str, Any]:
    """The entity whose id is ``ref`` or, failing that, the one whose name is ``ref``.
    No match is a 404; several entities of that name is an error listing their ids."""
    try:
        entity: dict[str, Any] = api.request("GET", f"{kind.path}/{urllib.parse.quote(ref, safe='')}")[kind.single]
        return entity
    except AdminError as exc:
        if exc.status != 404:
            raise
    found = api.request("GET", kind.path, query={kind.name_filter: ref, "limit": 1000})[kind.plural]
    named = [entity for entity in found if entity.get("name") == ref]
    if not named:
        raise AdminError(404, f"no {kind.noun} has the id or name {ref!r}")
    if len(named) > 1:
        ids = ", ".join(sorted(entity["id"] for entity in named))
        raise AdminError(0, f"{len(named)} {kind.plural.replace('_', ' ')} are named {ref!r} ({ids}): give the id")
    only: dict[str, Any] = named[0]
    return only


def find(api: AdminClient, kind: Kind, ref: str) -> dict[str, Any]:
    """``lookup``, with a refusal printed as an error (exit 1)."""
    entity: dict[str, Any] = run(lambda: lookup(api, kind, ref), False, str, quiet=True)
    return entity


def find_id(api: AdminClient, kind: Kind, ref: str | None) -> str | None:
    """``find``'s id, or None for no ``ref``."""
    return None if ref is None else str(find(api, kind, ref)["id"])


KEY = Kind("virtual key", "/api/governance/virtual-keys", "virtual_key", "virtual_keys", "name_prefix")
TEAM = Kind("team", "/api/governance/teams", "team", "teams")
CUSTOMER = Kind("customer", "/api/governance/customers", "customer", "customers")
TAG = Kind("tag", "/api/governance/tags", "tag", "tags")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]]) -> str:
    """Rows as aligned text columns."""
    cells = [[header for header, _ in columns]] + [[_text(get(row)) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells]
    return "\n".join(lines) if rows else lines[0] + "\n(none)"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return decimal_text(value)
    return str(value)


def decimal_text(value: float | int | str | Decimal, places: int = 9) -> str:
    """A number as plain decimal text: no exponent, no float noise (rounded to ``places``,
    nano-USD for money), no trailing zeros."""
    with localcontext() as context:
        context.prec = 60  # room for any float's digits: quantize must not overflow
        number = Decimal(str(value)).quantize(Decimal(1).scaleb(-places))
        text = format(number.normalize(), "f")
    return "0" if text in ("-0", "") else text


def money(value: float | int | str | Decimal | None) -> str:
    """USD as plain decimal text with at least cents: 5 → 5.00, 1e-07 → 0.0000001."""
    if value is None:
        return "-"
    text = decimal_text(value)
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def budget_text(entity: dict[str, Any]) -> str:
    budget = entity.get("budget")
    if not budget:
        return "-"
    return f"${money(budget['current_usage'])}/${money(budget['max_limit'])} per {budget['reset_duration']}"


def rate_text(entity: dict[str, Any]) -> str:
    limit = entity.get("rate_limit")
    if not limit:
        return "-"
    parts = []
    if limit.get("request_max_limit"):
        used = limit.get("request_current_usage") or 0
        parts.append(f"{used}/{limit['request_max_limit']} req per {limit['request_reset_duration']}")
    if limit.get("token_max_limit"):
        used = limit.get("token_current_usage") or 0
        parts.append(f"{used}/{limit['token_max_limit']} tok per {limit['token_reset_duration']}")
    return ", ".join(parts)


def limits_body(budget: float | None, budget_period: str, requests: int | None, requests_period: str,
                tokens: int | None, tokens_period: str) -> dict[str, Any]:
    """The nested budget / rate_limit of a create body, from command-line options."""
    body: dict[str, Any] = {}
    if budget is not None:
        body["budget"] = {"max_limit": budget, "reset_duration": budget_period}
    rate: dict[str, Any] = {}
    if requests is not None:
        rate.update(request_max_limit=requests, request_reset_duration=requests_period)
    if tokens is not None:
        rate.update(token_max_limit=tokens, token_reset_duration=tokens_period)
    if rate:
        body["rate_limit"] = rate
    return body


def message(result: Any) -> str:
    return str(result.get("message", "done")) if isinstance(result, dict) else "done"
