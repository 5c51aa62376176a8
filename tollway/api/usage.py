"""`/api/governance/usage`: where every budget, rate limit and concurrency limit stands now.

Read live from the counter store, under the windows the enforcer uses, for every limit
of the policy snapshot in force (so it shows exactly what requests are checked against).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tollway.api.context import PageDep, RuntimeDep
from tollway.api.errors import bad_request
from tollway.api.responses import UsageList
from tollway.governance.decisions import iso_utc
from tollway.governance.engine import read_ops
from tollway.governance.inventory import limit_view, snapshot_checks
from tollway.governance.limit_rules import templated_value_checks
from tollway.governance.model import Kind, Level

router = APIRouter(prefix="/api/governance", tags=["usage"])

_LEVELS = [level.value for level in Level]
_KINDS = [kind.value for kind in Kind]


@router.get("/usage", response_model=UsageList, summary="Live usage of every budget and rate limit")
async def usage(
    runtime: RuntimeDep, page: PageDep,
    level: Annotated[str | None, Query(description=f"One of {', '.join(_LEVELS)}.")] = None,
    entity_id: Annotated[str | None, Query(alias="id", description="The entity's id (a provider's name).")] = None,
    kind: Annotated[str | None, Query(description="budget, tokens, requests or in_flight.")] = None,
) -> dict[str, Any]:
    """Each limit's limit, used, reserved (requests in flight), remaining, last reset,
    next reset and seconds until it; budgets in USD. Sorted by level, then id. A templated
    limit rule's value is read as ``level=limit&id=<rule>:<value>``."""
    if level is not None and level not in _LEVELS:
        raise bad_request(f"unknown level {level!r}: use one of {', '.join(_LEVELS)}", "level")
    if kind is not None and kind not in _KINDS:
        raise bad_request(f"unknown kind {kind!r}: use one of {', '.join(_KINDS)}", "kind")
    rows = [
        (check, parent) for check, parent in snapshot_checks(runtime.snapshot)
        if (level is None or check.scope.level.value == level) and (entity_id is None or check.scope.id == entity_id)
        and (kind is None or check.kind.value == kind)
    ]
    if not rows and level == Level.LIMIT.value and entity_id:  # one value of a templated rule: "<rule>:<value>"
        rows = [(check, None) for check in templated_value_checks(runtime.snapshot, entity_id)
                if kind is None or check.kind.value == kind]
    selected = rows[page.offset:page.offset + page.limit]
    now = runtime.clock_ms()
    checks = tuple(check for check, _ in selected)
    readings = await runtime.store.read(read_ops(checks, now)) if checks else ()
    entries = [limit_view(check, parent, reading, now) for (check, parent), reading in zip(selected, readings)]
    return {"usage": entries, "count": len(rows), "limit": page.limit, "offset": page.offset, "at": iso_utc(now)}

