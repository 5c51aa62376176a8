"""`tollway keys|teams|customers|usage|explain`: the management API from a terminal.

Talks to a running gateway over HTTP (`--url`, default $TOLLWAY_URL or
http://127.0.0.1:8080) with the admin token (`--token`, default $TOLLWAY_ADMIN_TOKEN).
Output is a readable table; `--json` prints the API's JSON for scripts.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import typer

DEFAULT_URL = "http://127.0.0.1:8080"


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
            raise AdminError(exc.code, _error_message(exc.read()) or exc.reason) from None
        except urllib.error.URLError as exc:
            raise AdminError(0, f"cannot reach the gateway at {self.url}: {exc.reason}") from None
        return json.loads(payload) if payload else None


def _error_message(payload: bytes) -> str:
    try:
        body = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")[:300]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


# --- shared options and output ---------------------------------------------------------

UrlOption = typer.Option(None, "--url", help="The gateway (default $TOLLWAY_URL or http://127.0.0.1:8080).")
TokenOption = typer.Option(None, "--token", help="Admin token (default $TOLLWAY_ADMIN_TOKEN).")
JsonOption = typer.Option(False, "--json", help="Print the API's JSON.")


def client(url: str | None, token: str | None) -> AdminClient:
    return AdminClient(url or os.environ.get("TOLLWAY_URL") or DEFAULT_URL, token or os.environ.get("TOLLWAY_ADMIN_TOKEN"))


def run(action: Callable[[], Any], as_json: bool, render: Callable[[Any], str]) -> None:
    """Call the API and print the result; API errors become a message and exit code 1."""
    try:
        result = action()
    except AdminError as exc:
        typer.echo(f"error{f' ({exc.status})' if exc.status else ''}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2) if as_json else render(result))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]]) -> str:
    """Rows as aligned text columns."""
    cells = [[header for header, _ in columns]] + [[_text(get(row)) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines) if rows else lines[0] + "\n(none)"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def budget_text(entity: dict[str, Any]) -> str:
    budget = entity.get("budget")
    if not budget:
        return "-"
    return f"${budget['current_usage']:.4g}/${budget['max_limit']:.4g} per {budget['reset_duration']}"


def rate_text(entity: dict[str, Any]) -> str:
    limit = entity.get("rate_limit")
    if not limit:
        return "-"
    parts = []
    if limit.get("request_max_limit"):
        parts.append(f"{limit.get('request_current_usage') or 0}/{limit['request_max_limit']} req per {limit['request_reset_duration']}")
    if limit.get("token_max_limit"):
        parts.append(f"{limit.get('token_current_usage') or 0}/{limit['token_max_limit']} tok per {limit['token_reset_duration']}")
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
