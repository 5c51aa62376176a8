"""`GET /api/governance/limits/{rule}/values`: a templated limit rule's top values.

A template keeps one set of counters per value (an end user, a key, …); no store lists
them cheaply, but the usage flush keeps each in the database (``end_user_counters``,
`tollway.store.end_user_counters`). The values are ranked there by the usage of the rule's
first counter (its budget's when it has one), as of the last flush, then each value's
limits are read live from the counter store, as the usage API reads every limit.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.api.context import RuntimeDep, read
from tollway.api.errors import bad_request, not_found
from tollway.api.responses import UsageEntry
from tollway.governance.decisions import iso_utc
from tollway.governance.engine import read_ops
from tollway.governance.inventory import limit_view
from tollway.governance.limit_rules import LimitRule, rule_checks, rule_value_checks
from tollway.governance.model import Kind
from tollway.store.tables import EndUserCounter

router = APIRouter(prefix="/api/governance/limits", tags=["limits"])
_DIGEST_MARK = "~"


class RuleValue(BaseModel):
    value: str = Field(description="The value (values joined by '|' for several 'per' dimensions); a long or "
                                   "unusual one as '~' and a digest, whose live usage cannot be read back.")
    stored_usage: int = Field(description="The ranking counter's usage at the last flush (nano-dollars for a budget).")
    usage: list[UsageEntry] = Field(description="Its limits, live (empty for a digest).")


class RuleValues(BaseModel):
    at: str
    rule: str
    per: list[str]
    values: list[RuleValue]


@router.get("/{rule}/values", response_model=RuleValues, summary="A templated limit rule's top values by usage")
async def top_values(rule: str, runtime: RuntimeDep,
                     limit: Annotated[int, Query(ge=1, le=100, description="How many values.")] = 10) -> dict[str, Any]:
    found: LimitRule | None = runtime.snapshot.limit_rules.get(rule)
    if found is None:
        raise not_found("limit rule", rule)
    if not found.per:
        raise bad_request(f"limit rule {rule!r} is not a template (no 'per'): its usage is in /api/governance/usage",
                          "rule")
    counted = rule_checks(found)[0]
    ranked = sorted(counted, key=lambda check: check.kind is not Kind.BUDGET)
    if not ranked:  # concurrency only: slots hold no usage to rank by
        return {"at": iso_utc(runtime.clock_ms()), "rule": rule, "per": list(found.per), "values": []}
    prefix = ranked[0].counter + ":"

    def query(session: Session) -> list[tuple[str, int]]:
        statement = (select(EndUserCounter.counter, EndUserCounter.used)
                     .where(EndUserCounter.counter.startswith(prefix, autoescape=True))
                     .order_by(EndUserCounter.used.desc(), EndUserCounter.counter).limit(limit))
        return [(name[len(prefix):], used) for name, used in session.execute(statement).tuples()]

    stored = await read(runtime, query)
    now = runtime.clock_ms()
    values = []
    for value, used in stored:
        checks = () if value.startswith(_DIGEST_MARK) else tuple(rule_value_checks(found, value))
        readings = await runtime.store.read(read_ops(checks, now)) if checks else ()
        values.append({"value": value, "stored_usage": used,
                       "usage": [limit_view(check, None, reading, now) for check, reading in zip(checks, readings)]})
    return {"at": iso_utc(now), "rule": rule, "per": list(found.per), "values": values}
