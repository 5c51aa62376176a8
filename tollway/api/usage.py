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
from tollway.governance.durations import next_reset_ms
from tollway.governance.engine import LimitCheck, Plan, acquire_ops
from tollway.governance.inventory import snapshot_checks
from tollway.governance.model import ENFORCE, NANO_PER_USD, SHADOW, Kind, Level

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
    next reset and seconds until it; budgets in USD. Sorted by level, then id."""
    if level is not None and level not in _LEVELS:
        raise bad_request(f"unknown level {level!r}: use one of {', '.join(_LEVELS)}", "level")
    if kind is not None and kind not in _KINDS:
        raise bad_request(f"unknown kind {kind!r}: use one of {', '.join(_KINDS)}", "kind")
    rows = [
        (check, parent) for check, parent in snapshot_checks(runtime.snapshot)
        if (level is None or check.scope.level.value == level) and (entity_id is None or check.scope.id == entity_id)
        and (kind is None or check.kind.value == kind)
    ]
    selected = rows[page.offset:page.offset + page.limit]
    now = runtime.clock_ms()
    checks = tuple(check for check, _ in selected)
    ops = acquire_ops(Plan(checks, (0,) * len(checks)), now)
    readings = await runtime.store.read(ops) if ops else ()
    entries = []
    for (check, parent), reading in zip(selected, readings):
        if check.kind is Kind.IN_FLIGHT:
            entries.append(_in_flight_entry(check, parent, reading.reserved))
            continue
        money = check.kind is Kind.BUDGET
        scale: float = NANO_PER_USD if money else 1  # counts stay integers
        reset_at = next_reset_ms(check.duration, reading.last_reset_ms, check.alignment)
        entries.append({
            "level": check.scope.level.value, "id": check.scope.id, "name": check.scope.name,
            "virtual_key_id": parent, "kind": check.kind.value,
            "unit": "usd" if money else check.kind.value, "limit_id": check.counter.partition(":")[2],
            "limit": _amount(check.limit, scale), "used": _amount(reading.used, scale),
            "reserved": _amount(reading.reserved, scale),
            "remaining": _amount(max(0, check.limit - reading.used - reading.reserved), scale),
            "duration": str(check.duration), "last_reset": iso_utc(reading.last_reset_ms),
            "reset_at": iso_utc(reset_at), "reset_in_s": max(0, reset_at - now) / 1000,
            "enforcement": "strict" if check.enforcement.strict else "estimate",
            "on_insufficient": "clamp" if check.enforcement.clamp else "refuse",
            "mode": SHADOW if check.shadow else ENFORCE,
        })
    return {"usage": entries, "count": len(rows), "limit": page.limit, "offset": page.offset, "at": iso_utc(now)}


def _in_flight_entry(check: LimitCheck, parent: str | None, in_flight: int) -> dict[str, Any]:
    """A concurrency limit: the requests in flight are its reservations; it has no window."""
    return {
        "level": check.scope.level.value, "id": check.scope.id, "name": check.scope.name,
        "virtual_key_id": parent, "kind": check.kind.value, "unit": "requests",
        "limit_id": check.counter.partition(":")[2], "limit": check.limit, "used": 0, "reserved": in_flight,
        "remaining": max(0, check.limit - in_flight), "duration": None, "last_reset": None, "reset_at": None,
        "reset_in_s": None, "mode": SHADOW if check.shadow else ENFORCE,
    }


def _amount(value: int, scale: float) -> int | float:
    return value if scale == 1 else value / scale
