"""Request bodies of the management API.

Create bodies are the config file's own shapes (`tollway.config.schema`), so a block
copied from `tollway.yaml` can be POSTed as it is; ids may be omitted and are then
generated. Update bodies are partial: a field left out is kept, a nullable field set to
``null`` is cleared (``budget: null`` removes the budget; its usage is retained for one added
back), and a nested ``budget``, ``rate_limit`` or ``concurrency`` object changes only the
fields it states.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from tollway.config.schema import (
    MAX_IN_FLIGHT,
    MAX_QUEUE_TIMEOUT_MS,
    CustomerConfig,
    EndUserConfig,
    EndUserLimitsConfig,
    EnforcementMode,
    LimitMode,
    ModelLimitConfig,
    NonEmpty,
    OnInsufficient,
    PositiveInt,
    ProviderConfigEntry,
    TagConfig,
    TeamConfig,
    VirtualKeyConfig,
    allowed_tag_names,
    forced_tag_names,
)
from tollway.governance.durations import parse_duration
from tollway.governance.names import configured_model


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null (leave the field out to keep it)")
    return value


def _not_blank(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty or whitespace")
    return value


# -- create ----------------------------------------------------------------------------------


class VirtualKeyCreate(VirtualKeyConfig):
    """A new virtual key. ``value`` is generated (``tw-`` + 43 random characters) when
    omitted, and returned once by the create call only; ``id`` is generated when omitted."""

    id: NonEmpty | None = None  # type: ignore[assignment]


class KeyRotation(_Body):
    """``POST /virtual-keys/{id}/rotate``: how long the value being replaced keeps working."""

    grace_period: str | None = Field(
        default=None, description="How long the replaced value keeps working: '30s', '15m', '1h', '1d', '1w' "
                                  "(at most 30 days). Omitted, null or '0s': it stops at once.")

    @field_validator("grace_period")
    @classmethod
    def _grace_shape(cls, value: str | None) -> str | None:
        grace_period_ms(value)  # raises ValueError with the accepted forms
        return value


MAX_GRACE_MS = 30 * 24 * 3_600_000


def grace_period_ms(text: str | None) -> int:
    """A rotation's grace period in ms: 0 for none; fixed units only (a month has no one length)."""
    if text is None or text.strip() in ("0", "0s", "0m", "0h", "0d", "0w"):
        return 0
    duration = parse_duration(text.strip())
    if duration.fixed_ms is None:
        raise ValueError(f"grace_period {text!r}: use s, m, h, d or w (a calendar month or year has no fixed length)")
    if duration.fixed_ms > MAX_GRACE_MS:
        raise ValueError(f"grace_period {text!r} is longer than the longest allowed, 30d")
    return duration.fixed_ms


class TeamCreate(TeamConfig):
    id: NonEmpty | None = None  # type: ignore[assignment]


class CustomerCreate(CustomerConfig):
    id: NonEmpty | None = None  # type: ignore[assignment]


ModelConfigCreate = ModelLimitConfig
TagCreate = TagConfig


# -- update ----------------------------------------------------------------------------------


class BudgetUpdate(_Body):
    """The fields to change; a budget created by an update needs max_limit and reset_duration."""

    max_limit: Annotated[Decimal, Field(gt=0, le=Decimal(10**9), allow_inf_nan=False)] | None = None
    reset_duration: str | None = None
    calendar_aligned: bool | None = None
    timezone: str | None = None
    week_start: Annotated[int, Field(ge=0, le=6)] | None = None
    enforcement: EnforcementMode | None = None  # null: the global default (as on a rate limit)
    on_insufficient: OnInsufficient | None = None
    mode: LimitMode | None = None  # enforce or shadow

    _present = field_validator("max_limit", "reset_duration", "calendar_aligned", "timezone", "week_start",
                               mode="before")(_not_null)


class RateLimitUpdate(_Body):
    """The fields to change; set a side's limit and duration to null to remove that side."""

    token_max_limit: PositiveInt | None = None
    token_reset_duration: str | None = None
    request_max_limit: PositiveInt | None = None
    request_reset_duration: str | None = None
    enforcement: EnforcementMode | None = None  # null: the global default
    on_insufficient: OnInsufficient | None = None
    mode: LimitMode | None = None  # enforce or shadow, for both sides

    _mode_present = field_validator("mode", mode="before")(_not_null)


class ConcurrencyUpdate(_Body):
    """The fields to change; a concurrency limit created by an update needs max_in_flight."""

    max_in_flight: Annotated[int, Field(gt=0, le=MAX_IN_FLIGHT)] | None = None
    queue_timeout_ms: Annotated[int, Field(ge=0, le=MAX_QUEUE_TIMEOUT_MS)] | None = None
    mode: LimitMode | None = None  # enforce or shadow

    _present = field_validator("*", mode="before")(_not_null)


class _GovernedUpdate(_Body):
    budget: BudgetUpdate | None = None
    rate_limit: RateLimitUpdate | None = None
    concurrency: ConcurrencyUpdate | None = None


class _EndUserOwnerUpdate(_GovernedUpdate):
    end_user_limits: EndUserLimitsConfig | None = Field(
        default=None, description="The whole new template of every end user's limits; null removes it.")


class VirtualKeyUpdate(_EndUserOwnerUpdate):
    name: NonEmpty | None = None
    end_user: EndUserConfig | None = Field(
        default=None, description="Where requests name their end user and whether one is required; null: the "
                                  "defaults (header or body, not required).")
    description: str | None = None
    is_active: bool | None = None
    team_id: NonEmpty | None = None
    customer_id: NonEmpty | None = None
    allowed_models: list[NonEmpty] | None = None
    provider_configs: list[ProviderConfigEntry] | None = Field(
        default=None, description="The complete new list (matched by provider: configs that stay keep their usage).")
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (RFC 3339 with a time zone); null: never. "
                                  "A time already past expires the key at once.")
    allowed_tags: list[str] | None = Field(
        default=None, description="The complete new list of tags its requests may carry; []: any tag.")
    forced_tags: list[str] | None = Field(
        default=None, description="The complete new list of tags added to every request of the key; []: none.")

    _present = field_validator("name", "description", "is_active", "allowed_models", "provider_configs",
                               "allowed_tags", "forced_tags", mode="before")(_not_null)
    _allowed = field_validator("allowed_tags")(lambda tags: tags if tags is None else allowed_tag_names(tags))
    _forced = field_validator("forced_tags")(lambda tags: tags if tags is None else forced_tag_names(tags))
    _blank = field_validator("name", "team_id", "customer_id")(_not_blank)

    @field_validator("provider_configs")
    @classmethod
    def _one_per_provider(cls, configs: list[ProviderConfigEntry] | None) -> list[ProviderConfigEntry] | None:
        providers = [pc.provider for pc in configs or ()]
        if len(set(providers)) != len(providers):
            raise ValueError("names a provider twice")
        return configs


class TeamUpdate(_EndUserOwnerUpdate):
    name: NonEmpty | None = None
    customer_id: NonEmpty | None = None

    _present = field_validator("name", mode="before")(_not_null)
    _blank = field_validator("name", "customer_id")(_not_blank)


class CustomerUpdate(_EndUserOwnerUpdate):
    name: NonEmpty | None = None

    _present = field_validator("name", mode="before")(_not_null)
    _blank = field_validator("name")(_not_blank)


class ModelConfigUpdate(_GovernedUpdate):
    model_name: NonEmpty | None = None
    provider: NonEmpty | None = Field(default=None, description="null: the model on any provider.")

    _present = field_validator("model_name", mode="before")(_not_null)
    _blank = field_validator("model_name", "provider")(_not_blank)
    _canonical = field_validator("model_name")(lambda name: name if name is None else configured_model(name))


class TagUpdate(_GovernedUpdate):
    """A tag's limits (its name is its id and does not change)."""


class ProviderUpdate(_GovernedUpdate):
    """A provider's own limits (its other settings come from the config file)."""


# -- explain ---------------------------------------------------------------------------------


class ExplainRequest(_Body):
    """A request to explain: the key (by value or id), the model and token counts."""

    virtual_key: str | None = Field(default=None, description="The key's value (tw-…); or give virtual_key_id.")
    virtual_key_id: NonEmpty | None = None
    model: NonEmpty | None = Field(default=None, description="'provider/model', an alias, or a bare model name with "
                                   "provider. Required unless a body gives it.")
    provider: NonEmpty | None = None
    prompt_tokens: Annotated[int, Field(ge=0, le=10**9)] = 0
    end_user: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="The end user the request would name (their end-user limits are explained too).")
    completion_tokens: Annotated[int, Field(ge=0, le=10**9)] | None = Field(
        default=None, description="Defaults to the gateway's completion estimate (estimate.default_completion_tokens); "
        "for strict limits, the request's max_tokens (without it, estimate.injected_max_tokens).")
    tags: list[str] = Field(default=[], description="The request's tags (as x-tollway-tags would carry them).")

    _tags = field_validator("tags")(lambda tags: forced_tag_names(tags))


ExplainApi = Literal["chat", "completions", "embeddings", "messages", "responses"]


class ExplainBodyRequest(ExplainRequest):
    """POST form: a request can also be given as the body a client would send, and is then
    priced exactly as the proxy prices it (translation, generations, the honoured cap, the
    prompt's estimate and worst case); token counts are then not given."""

    api: ExplainApi = Field(default="chat", description="The endpoint the body is for: chat (/v1/chat/completions), "
                            "completions, embeddings, messages (/v1/messages), responses.")
    body: dict[str, Any] | None = Field(default=None, description="The request body as a client would send it.")
