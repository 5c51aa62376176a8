"""`/api/governance/limits`: limit rules (``governance.limits``, docs/governance.md#limit-rules).

A rule is named by its ``name``, which is also its id in paths. Its selector (``match``,
``per``, ``when_missing``) and its budget, rate limit and concurrency limit change
together in one write; the keys, teams and customers a selector names must exist (422
naming ``match.<dimension>``), and nothing is written when any field is bad. A rule the
config file declares is read-only here (409 ``managed_by_config``) but for usage resets.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import select

from tollway.api.context import RESET_USAGE, ApiWriter, PageDep, RuntimeDep, partial_update
from tollway.api.entity_routes import EntityRoutes
from tollway.api.errors import ApiError, from_validation
from tollway.api.limits import LiveUsage, iso, update_limits
from tollway.api.responses import GovernedView, Message, _Page
from tollway.api.schemas import _GovernedUpdate
from tollway.config.limit_rules import Dimension, LimitSelectorConfig, MatchConfig
from tollway.config.schema import LimitRuleConfig
from tollway.store.limit_rule_entities import check_rule_entities
from tollway.store.limit_rule_tables import LimitRuleRow

router = APIRouter(prefix="/api/governance/limits", tags=["limits"])

KIND = "limit_rule"


class _LimitRuleFields(BaseModel):
    id: str = Field(description="The rule's name: its id in paths, and in denials (level 'limit').")
    name: str
    description: str
    match: dict[str, list[str]] = Field(description="Dimension -> accepted values; every dimension named must match.")
    per: list[str] = Field(description="Dimensions it keeps counters per (a template); empty: one set of counters.")
    when_missing: str = Field(description="skip or deny a request without a 'per' dimension.")


class LimitRuleView(GovernedView, _LimitRuleFields):
    pass


class LimitRuleEnvelope(Message):
    limit_rule: LimitRuleView


class LimitRuleList(_Page):
    limit_rules: list[LimitRuleView]


class LimitRuleUpdate(_GovernedUpdate):
    """The fields to change; ``match`` and ``per`` are replaced whole."""

    description: str | None = None
    match: MatchConfig | None = None
    per: list[Dimension] | None = None
    when_missing: str | None = None

    @field_validator("description", "match", "per", "when_missing", mode="before")
    @classmethod
    def _present(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null (leave the field out to keep it)")
        return value


def rule_view(row: LimitRuleRow, live: LiveUsage) -> dict[str, Any]:
    """A rule as the API shows it, its limits with live usage (for a template: the usage
    of no particular value; see the usage API for its values)."""
    return {"id": row.id, "name": row.id, "description": row.description or "", "match": dict(row.match),
            "per": list(row.per or ()), "when_missing": row.when_missing, "budget": live.budget(row.budget),
            "rate_limit": live.rate_limit(row.rate_limit), "concurrency": live.concurrency(row.concurrency),
            "managed_by": row.managed_by, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


RULES = EntityRoutes(LimitRuleRow, KIND, param="rule", view=rule_view, envelope_model=LimitRuleEnvelope,
                     searched=(LimitRuleRow.id, LimitRuleRow.description))


@router.get("", response_model=LimitRuleList, summary="List limit rules")
async def list_limit_rules(
    runtime: RuntimeDep, page: PageDep,
    search: Annotated[str | None, Query(description="Case-insensitive part of the rule's name or description.")] = None,
) -> dict[str, Any]:
    return await RULES.page(runtime, page, select(LimitRuleRow), search)


@router.post("", status_code=201, response_model=LimitRuleEnvelope, summary="Create a limit rule")
async def create_limit_rule(body: LimitRuleConfig, runtime: RuntimeDep) -> dict[str, Any]:
    def write(writer: ApiWriter) -> LimitRuleRow:
        RULES.check_new(writer.session, body.name)
        check_rule_entities(writer.session, body)
        row, diff = RULES.insert(writer, {"id": body.name}, _selector_values(body), body)
        writer.record(row, KIND, body.name, diff)
        return row

    return await RULES.changed(runtime, "limit rule created", write)


RULES.add_get(router, "get_limit_rule")


@partial_update(router, "/{rule}", response_model=LimitRuleEnvelope, summary="Change a limit rule (partial)")
async def update_limit_rule(rule: str, body: LimitRuleUpdate, runtime: RuntimeDep,
                            reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    def write(writer: ApiWriter) -> LimitRuleRow:
        row = RULES.load_to_change(writer.session, rule)
        selector = _merged_selector(row, body)
        check_rule_entities(writer.session, selector)
        row, diff = writer.upsert(row, LimitRuleRow, {}, _selector_values(selector))
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        if row.budget is None and row.rate_limit is None and row.concurrency is None:  # rolled back: nothing written
            raise ApiError(422, "a limit rule needs a budget, a rate_limit or a concurrency limit (delete the rule "
                                "to remove them all)")
        writer.record(row, KIND, rule, diff)
        return row

    return await RULES.changed(runtime, "limit rule updated", write)


RULES.add_delete(router, "delete_limit_rule", "Deletes the rule (the usage of its limits is retained: a rule "
                 "given the same name again within the window takes it back, templated values included).")
RULES.add_resets(router)


def _selector_values(selector: LimitSelectorConfig) -> dict[str, Any]:
    return {"match": selector.match.named(), "per": list(selector.per), "when_missing": selector.when_missing,
            "description": selector.description}


def _merged_selector(row: LimitRuleRow, body: LimitRuleUpdate) -> LimitSelectorConfig:
    """The rule's selector with the update's stated fields over it, validated whole (a
    ``when_missing: deny`` must still have a ``per`` a request may lack)."""
    stated = body.model_dump(include={"description", "match", "per", "when_missing"}, exclude_unset=True)
    current = {"name": row.id, "description": row.description or "", "match": dict(row.match),
               "per": list(row.per or ()), "when_missing": row.when_missing}
    if "match" in stated:
        stated["match"] = body.match.named() if body.match is not None else None
    try:
        return LimitSelectorConfig.model_validate(current | stated)
    except ValidationError as exc:
        raise from_validation(exc) from None

