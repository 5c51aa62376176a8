"""The audit log: who changed what and when, newest first, filtered by kind of entity,
entity, action and actor; each entry lists the fields it changed, and names an entity
deleted since as deleted rather than linking to a page that no longer exists."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.ui import lookup
from tollway.ui.client import ApiProblem
from tollway.ui.web import Ui, with_query

PAGE_SIZE = 50
FILTERS = ("entity_type", "entity_id", "action", "actor", "token_id")
ENTITY_TYPES = {"virtual_key": "virtual key", "team": "team", "customer": "customer", "model_config": "model config",
                "provider": "provider", "provider_config": "provider config", "tag": "tag", "limit_rule": "limit rule"}
ACTIONS = ("create", "update", "delete", "reset")
# The UI page level of each audited kind (provider configs are shown on their key's page).
_LEVELS = {"virtual_key": "virtual_key", "team": "team", "customer": "customer", "model_config": "model",
           "provider": "provider", "tag": "tag", "limit_rule": "limit"}
_CHECKED = {"virtual_key": lookup.KEY, "team": lookup.TEAM, "customer": lookup.CUSTOMER, "model_config": lookup.MODEL}
MAX_CHANGES = 8
_DECIMAL = re.compile(r"-?\d+\.\d+")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested entity view as dotted field paths (``budget.max_limit``)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for name, inner in value.items():
            out |= flatten(inner, f"{prefix}{name}.")
        return out
    return {prefix.rstrip("."): value} if prefix else {}


def shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(", ", ": "))[:80]
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return format(Decimal(value).normalize(), "f")  # stored amounts: "5.000000000" reads as 5
    return str(value)


def changes(entry: dict[str, Any]) -> list[str]:
    """What the entry changed, one "field: old → new" per field (at most `MAX_CHANGES`)."""
    before, after = flatten(entry.get("before") or {}), flatten(entry.get("after") or {})
    if entry["action"] == "delete":
        return []
    lines = [f"{field}: {shown(before.get(field))} → {shown(after.get(field))}"
             for field in sorted(set(before) | set(after))
             if before.get(field) != after.get(field) and not field.endswith(("created_at", "updated_at"))]
    if len(lines) > MAX_CHANGES:
        lines = [*lines[:MAX_CHANGES], f"and {len(lines) - MAX_CHANGES} more"]
    return lines


class AuditPages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[BaseRoute]:
        return [Route("/ui/audit", self.list, methods=["GET"])]

    async def _existing(self, entries: list[dict[str, Any]]) -> tuple[dict[str, dict[str, str]], set[tuple[str, str]]]:
        """Names of the entities the entries name, by UI level, and those deleted since."""
        names: dict[str, dict[str, str]] = {}
        deleted: set[tuple[str, str]] = set()
        for entity_type, kind in _CHECKED.items():
            ids = {e["entity_id"] for e in entries if e["entity_type"] == entity_type}
            level = _LEVELS[entity_type]
            for ident, name in (await lookup.names_of(self.ui.api, kind, ids, {})).items():
                if name is None:
                    deleted.add((level, ident))
                else:
                    names.setdefault(level, {})[ident] = name
        return names, deleted

    async def list(self, request: Request) -> Response:
        query = request.query_params
        filters = {name: query.get(name, "").strip() for name in FILTERS}
        offset = int(query["offset"]) if query.get("offset", "").isdigit() else 0
        problem: ApiProblem | None = None
        try:
            answer = await self.ui.api.get("/api/audit", {**filters, "limit": PAGE_SIZE, "offset": offset})
        except ApiProblem as error:
            if error.status not in (400, 422):
                raise
            problem, answer = error, {"entries": [], "count": 0}
        entries = answer["entries"]
        names, deleted = await self._existing(entries)
        rows = [(entry, _LEVELS.get(entry["entity_type"]), changes(entry)) for entry in entries]
        return self.ui.page(
            request, "audit.html", 400 if problem else 200, title="Audit log", rows=rows, count=answer["count"],
            offset=offset, page_size=PAGE_SIZE, filters=filters, entity_types=ENTITY_TYPES, actions=ACTIONS,
            names=names, deleted=deleted, problem=problem, action="filter the audit log", section="filters",
            prev_url=with_query("/ui/audit", **filters, offset=max(0, offset - PAGE_SIZE)) if offset else None,
            next_url=(with_query("/ui/audit", **filters, offset=offset + PAGE_SIZE)
                      if offset + PAGE_SIZE < answer["count"] else None))
