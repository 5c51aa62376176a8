"""The shapes of limits (budgets, rate limits, concurrency) that providers, keys, teams,
customers, tags and models carry, in the file and the management API alike."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from tollway.config.fields import PositiveInt, StrictModel, check_duration
from tollway.governance.durations import Alignment, check_alignment, parse_duration

MAX_IN_FLIGHT = 1_000_000_000  # fits the store's 32-bit column
MAX_QUEUE_TIMEOUT_MS = 600_000  # ten minutes: a wait longer than any client keeps a request open


EnforcementMode = Literal["estimate", "strict"]
OnInsufficient = Literal["refuse", "clamp"]
LimitMode = Literal["enforce", "shadow"]  # shadow: evaluated and counted, never denies (SPEC §8)


class BudgetConfig(StrictModel):
    max_limit: Annotated[Decimal, Field(gt=0, le=Decimal(10**9), allow_inf_nan=False)]
    reset_duration: str
    calendar_aligned: bool = False
    timezone: str = "UTC"
    week_start: Annotated[int, Field(ge=0, le=6)] = 0
    enforcement: EnforcementMode | None = None  # None: governance_defaults.enforcement
    on_insufficient: OnInsufficient | None = None  # None: governance_defaults.on_insufficient
    mode: LimitMode = "enforce"

    _check_duration = field_validator("reset_duration")(check_duration)

    @model_validator(mode="after")
    def _alignment_fits(self) -> BudgetConfig:
        if self.calendar_aligned:
            check_alignment(parse_duration(self.reset_duration), self.alignment)
        return self

    @property
    def alignment(self) -> Alignment | None:
        return Alignment(self.timezone, self.week_start) if self.calendar_aligned else None


class RateLimitConfig(StrictModel):
    token_max_limit: PositiveInt | None = None
    token_reset_duration: str | None = None
    request_max_limit: PositiveInt | None = None
    request_reset_duration: str | None = None
    enforcement: EnforcementMode | None = None  # of the token side (requests are exact); None: the default
    on_insufficient: OnInsufficient | None = None
    mode: LimitMode = "enforce"  # of both sides

    _check_durations = field_validator("token_reset_duration", "request_reset_duration")(check_duration)

    @model_validator(mode="after")
    def _sides_complete(self) -> RateLimitConfig:
        for side in ("token", "request"):
            limit = getattr(self, f"{side}_max_limit")
            duration = getattr(self, f"{side}_reset_duration")
            if (limit is None) != (duration is None):
                raise ValueError(f"{side}_max_limit and {side}_reset_duration go together")
        if self.token_max_limit is None and self.request_max_limit is None:
            raise ValueError("a rate limit needs token_max_limit or request_max_limit")
        return self


class ConcurrencyConfig(StrictModel):
    """At most ``max_in_flight`` requests at once (from admission until the response, or
    the stream, ends); with ``queue_timeout_ms`` > 0 a request finding no free slot waits
    up to that long for one, first come first served, before it is refused (429)."""

    max_in_flight: Annotated[int, Field(gt=0, le=MAX_IN_FLIGHT)]
    queue_timeout_ms: Annotated[int, Field(ge=0, le=MAX_QUEUE_TIMEOUT_MS)] = 0
    mode: LimitMode = "enforce"  # shadow: slots counted, never waited for or refused


class Governed(StrictModel):
    """A section that may carry limits of its own (a provider, a key, a team ...)."""

    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None
    concurrency: ConcurrencyConfig | None = None
