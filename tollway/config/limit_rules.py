"""The configuration shape of a limit rule's selector (``governance.limits``, the
management API's ``/api/governance/limits``): ``name``, ``match``, ``per`` and
``when_missing``; `tollway.config.schema.LimitRuleConfig` adds the limits.

Values are checked as requests are matched (`tollway.governance.limit_rules.selector_value`):
a model name or tag no request could carry is refused here, never silently unmatched.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tollway.governance.limit_rules import ALWAYS_PRESENT, DIMENSIONS, selector_value

Dimension = Literal["provider", "model", "virtual_key", "team", "customer", "tag", "end_user"]
MAX_SELECTOR_VALUES = 1000  # values of one dimension: a set looked up per request, never walked
RULE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def _listed(value: object) -> object:
    """One value or a list of values: always a list."""
    return [value] if isinstance(value, str) else value


Values = Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]],
                   BeforeValidator(_listed), Field(min_length=1, max_length=MAX_SELECTOR_VALUES)]


class MatchConfig(BaseModel):
    """The dimensions a rule selects on, each with the values it accepts (one or a list);
    a request matches when every dimension named has an accepted value."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    provider: Values | None = None
    model: Values | None = None
    virtual_key: Values | None = None
    team: Values | None = None
    customer: Values | None = None
    tag: Values | None = None
    end_user: Values | None = None

    @field_validator("*")
    @classmethod
    def _requestable(cls, values: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """Each value as requests are compared (model names keyed, tags normalised), de-duplicated."""
        dimension = info.field_name or ""
        if values is None:
            return None
        if any(not value.strip() for value in values):
            raise ValueError("must not be empty or whitespace")
        if dimension == "model":  # kept as written (the snapshot keys it), but checked
            for value in values:
                selector_value("model", value)  # BadModelName is a ValueError: a 422 naming match.model
            return list(dict.fromkeys(values))
        return list(dict.fromkeys(selector_value(dimension, value) for value in values))

    @model_validator(mode="after")
    def _not_empty(self) -> MatchConfig:
        if not self.named():
            raise ValueError(f"match must name at least one of {', '.join(DIMENSIONS)} (a rule over every "
                             f"request is a provider's or model's limit)")
        return self

    def named(self) -> dict[str, list[str]]:
        """The dimensions named, with their values."""
        return {dimension: values for dimension in DIMENSIONS if (values := getattr(self, dimension)) is not None}


class LimitSelectorConfig(BaseModel):
    """A limit rule's name and selector (see the module)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(description="The rule's id: 1 to 64 of a-z 0-9 . _ - (named in denials as level 'limit').")
    description: str = ""
    match: MatchConfig
    per: Annotated[list[Dimension], BeforeValidator(_listed)] = Field(
        default=[], description="Dimensions the rule keeps counters per (a template): one set of counters for each "
                                "distinct value, e.g. per end_user: each end user of the selected requests.")
    when_missing: Literal["skip", "deny"] = Field(
        default="skip", description="A request without a 'per' dimension (no end user, key, team, customer or tag): "
                                    "skip: the rule does not count it; deny: refused with 400 limit_value_missing.")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not RULE_NAME.fullmatch(name):
            raise ValueError("must be 1 to 64 characters of a-z 0-9 . _ - starting with a letter or digit")
        return name

    @field_validator("per")
    @classmethod
    def _distinct(cls, per: list[str]) -> list[str]:
        if len(set(per)) != len(per):
            raise ValueError("per names a dimension twice")
        return per

    @field_validator("when_missing")
    @classmethod
    def _deny_needs_a_dimension_a_request_may_lack(cls, when_missing: str, info: ValidationInfo) -> str:
        if when_missing == "deny" and set(info.data.get("per") or ()) <= ALWAYS_PRESENT:
            raise ValueError("deny needs per to name a dimension a request may lack "
                             "(virtual_key, team, customer, tag or end_user)")
        return when_missing
