"""Response shapes of the management API, for the OpenAPI document and as a check on
what the routes return. Envelopes follow Bifrost's: ``{"message", "virtual_key"}`` for
one entity, ``{"virtual_keys", "count", "limit", "offset"}`` for a page (``count`` is
the number matching, not the page's length). Money is USD; times are ISO-8601 UTC.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# Every governed entity's view says who owns it, in the same words.
MANAGED_BY = "Who manages it: `config` (the config file; read-only here except usage resets) or `api`."


class BudgetView(BaseModel):
    id: str
    max_limit: float
    reset_duration: str
    calendar_aligned: bool
    timezone: str
    week_start: int
    current_usage: float = Field(description="USD used in the current window (live).")
    reserved: float = Field(description="USD reserved by requests in flight.")
    last_reset: str | None
    reset_at: str | None
    enforcement: str | None = Field(None, description="estimate or strict; null: governance_defaults.enforcement.")
    on_insufficient: str | None = Field(None, description="refuse or clamp; null: governance_defaults.on_insufficient.")
    mode: str = Field("enforce", description="enforce, or shadow: counted but never denies (would_deny in the log).")


class RateLimitView(BaseModel):
    id: str
    token_max_limit: int | None
    token_reset_duration: str | None
    token_current_usage: int | None
    token_reserved: int | None
    token_last_reset: str | None
    token_reset_at: str | None
    request_max_limit: int | None
    request_reset_duration: str | None
    request_current_usage: int | None
    request_reserved: int | None
    request_last_reset: str | None
    request_reset_at: str | None
    enforcement: str | None = Field(None, description="Of the token side: estimate or strict; null: the default.")
    on_insufficient: str | None = Field(None, description="refuse or clamp; null: the default.")
    mode: str = Field("enforce", description="enforce, or shadow (both sides): counted but never denies.")


class ConcurrencyView(BaseModel):
    id: str
    max_in_flight: int
    queue_timeout_ms: int = Field(description="How long a request may wait for a slot (0: refused at once).")
    mode: str = Field("enforce", description="enforce, or shadow: slots counted, never waited for or refused.")
    in_flight: int = Field(description="Requests in flight now, over every gateway process (live).")


class LimitsView(BaseModel):
    """The limits an entity (or a key's provider config) holds, each with its live usage."""

    budget: BudgetView | None
    rate_limit: RateLimitView | None
    concurrency: ConcurrencyView | None = None


class GovernedView(LimitsView):
    """The governed part of every entity the management API manages: its limits, who
    manages it and when it changed, described here once.

    A view lists it before the class of its entity's own fields
    (``class TeamView(GovernedView, _TeamFields)``): pydantic orders fields from the last
    base to the first, so the entity's id and name still lead its JSON and its schema.
    """

    managed_by: str = Field(description=MANAGED_BY)
    created_at: str | None
    updated_at: str | None


class EndUserOwnerView(GovernedView):
    """A governed entity that can hand each of its end users limits of their own."""

    end_user_limits: dict[str, Any] | None = Field(default=None, description="The limits each end user gets "
                                                   "(budget, rate_limit, concurrency); null: none.")


class _ProviderConfigFields(BaseModel):
    id: str
    provider: str
    weight: float
    allowed_models: list[str]
    allowed_keys: list[str]


class ProviderConfigView(LimitsView, _ProviderConfigFields):
    pass


class _VirtualKeyFields(BaseModel):
    id: str
    name: str
    description: str
    value: str | None = Field(None, description="The key's value: in the create response only, never again.")
    value_prefix: str
    is_active: bool
    team_id: str | None
    customer_id: str | None
    allowed_models: list[str]
    provider_configs: list[ProviderConfigView]


class VirtualKeyView(EndUserOwnerView, _VirtualKeyFields):
    end_user: dict[str, Any] | None = Field(default=None, description="Where requests name their end user "
                                            "(source) and whether one is required; null: the defaults.")
    expires_at: str | None = Field(None, description="When the key stops working (null: never).")
    previous_value_expires_at: str | None = Field(
        None, description="After a rotation with a grace period: when the replaced value stops working.")
    last_used_at: str | None = Field(
        None, description="The key's latest request (written with the usage flush: up to one flush interval late).")
    allowed_tags: list[str] = Field([], description="The only request tags its requests may carry (empty: any).")
    forced_tags: list[str] = Field([], description="Tags added to every request of the key.")


class _TeamFields(BaseModel):
    id: str
    name: str
    customer_id: str | None


class TeamView(EndUserOwnerView, _TeamFields):
    pass


class _CustomerFields(BaseModel):
    id: str
    name: str


class CustomerView(EndUserOwnerView, _CustomerFields):
    pass


class _ModelConfigFields(BaseModel):
    id: str
    model_name: str
    provider: str | None = Field(description="null: the model on any provider.")


class ModelConfigView(GovernedView, _ModelConfigFields):
    pass


class ProviderKeyView(BaseModel):
    id: str
    weight: float
    models: list[str]


class _ProviderFields(BaseModel):
    name: str
    type: str
    base_url: str | None
    configured: bool = Field(description="Whether the running config file still declares it.")
    keys: list[ProviderKeyView] = Field(description="Key ids and weights; key values are never returned.")
    settings: dict[str, Any]


class ProviderView(GovernedView, _ProviderFields):
    managed_by: str = Field(description="Who manages its budget and rate limit: `config` (the file states either) "
                                        "or `api`.")


class Message(BaseModel):
    message: str


class _Page(BaseModel):
    count: int = Field(description="Rows matching the filters, over all pages.")
    limit: int
    offset: int


class VirtualKeyEnvelope(Message):
    virtual_key: VirtualKeyView


class VirtualKeyList(_Page):
    virtual_keys: list[VirtualKeyView]


class TeamEnvelope(Message):
    team: TeamView


class TeamList(_Page):
    teams: list[TeamView]


class CustomerEnvelope(Message):
    customer: CustomerView


class CustomerList(_Page):
    customers: list[CustomerView]


class _TagFields(BaseModel):
    id: str = Field(description="The tag's name: its id in paths.")
    name: str = Field(description="The tag, normalised (trimmed, lower-case).")


class TagView(GovernedView, _TagFields):
    pass


class TagEnvelope(Message):
    tag: TagView


class TagList(_Page):
    tags: list[TagView]


class ModelConfigEnvelope(Message):
    model_config_: ModelConfigView = Field(alias="model_config")


class ModelConfigList(_Page):
    model_configs: list[ModelConfigView]


class ProviderEnvelope(Message):
    provider: ProviderView


class ProviderList(BaseModel):
    providers: list[ProviderView]
    count: int


class UsageEntry(BaseModel):
    level: str = Field(description="provider, model, virtual_key, provider_config, team or customer.")
    id: str
    name: str
    virtual_key_id: str | None = Field(None, description="For a provider config: its key.")
    kind: str = Field(description="budget, tokens, requests or in_flight (a concurrency limit).")
    unit: str
    limit_id: str = Field(description="The budget's, rate limit's or concurrency limit's id.")
    limit: int | float = Field(description="USD for budgets, else tokens or requests.")
    used: int | float = Field(description="Spent in the current window (for in_flight: the requests in flight).")
    reserved: int | float = Field(description="Held by requests in flight, not yet spent (for in_flight: the requests in flight).")
    remaining: int | float
    duration: str | None = Field(description="null for in_flight, which has no window.")
    last_reset: str | None
    reset_at: str | None
    reset_in_s: float | None
    enforcement: str = Field("estimate", description="estimate or strict (requests are always exact).")
    on_insufficient: str = Field("refuse", description="Under strict: refuse or clamp.")
    mode: str = Field("enforce", description="enforce, or shadow: counted but never denies.")


class UsageList(_Page):
    at: str
    usage: list[UsageEntry]


class SpendRow(BaseModel):
    group: str | None = Field(None, description="The group's value (absent without group_by).")
    bucket: str | None = Field(None, description="The interval's start (absent without interval).")
    name: str | None = Field(None, description="The group's name (only with names=true; null: no such entity now).")
    spend: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    requests: int
    denied_requests: int


class SpendReport(BaseModel):
    start: str
    end: str
    group_by: str | None
    interval: str | None
    series: list[SpendRow]
    total: SpendRow


class LogEntry(BaseModel):
    id: int
    at: str
    request_id: str
    virtual_key_id: str | None
    team_id: str | None
    customer_id: str | None
    provider: str | None
    model: str | None
    status: int
    decision: str
    denied_level: str | None
    denied_id: str | None
    would_deny: str | None = Field(None, description="Admitted, but a shadow limit would have denied it: that decision.")
    would_deny_level: str | None = Field(None, description="The level of that shadow limit.")
    would_deny_id: str | None = Field(None, description="The id of the entity that owns it.")
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: float
    latency_ms: float
    stream: bool
    error: str | None
    route: str | None = Field(None, description="The API the request used (docs/routes.md); null on old rows.")
    tags: list[str] = Field([], description="The request's tags, with its key's forced tags.")
    end_user: str | None = Field(None, description="The end user the request named; null when it named none.")


class LogList(_Page):
    logs: list[LogEntry]
    next_before_id: int | None = Field(None, description="Pass as `before_id` for the next page; null on the last.")


class LogEntryEnvelope(BaseModel):
    log: LogEntry


class AuditView(BaseModel):
    id: int
    at: str
    actor: str
    token_id: str | None = Field(None, description="The admin token that made the change; null: the config file.")
    token_name: str | None = None
    action: str = Field(description="create, update, delete, reset or revoke.")
    entity_type: str
    entity_id: str
    before: Any
    after: Any


class AuditList(_Page):
    entries: list[AuditView]


class LimitStatusView(BaseModel):
    level: str
    id: str
    name: str
    kind: str
    unit: str
    limit: int | float = Field(description="USD for budgets, else tokens or requests.")
    used: int | float
    reserved: int | float
    remaining: int | float
    duration: str | None = Field(description="null for in_flight, which has no window.")
    reset_at: str | None
    binding: bool = Field(description="The enforced limit that denies, or else the enforced one with the smallest "
                                      "share left (a shadow limit never binds).")
    mode: str = Field("enforce", description="enforce, or shadow: counted but never denies.")
    would_deny: bool = Field(False, description="A shadow limit without room for this request.")
    requested: int | float = Field(0, description="What the request would reserve on it: its estimate, or its worst "
                                   "case where enforcement is strict (at the clamped cap, when clamped).")
    enforcement: str = Field("estimate", description="estimate or strict (requests and in-flight limits: estimate).")
    on_insufficient: str = Field("refuse", description="refuse or clamp (strict only).")


class ScopeView(BaseModel):
    level: str
    id: str
    name: str


class WouldDenyView(BaseModel):
    decision: str = Field(description="The denial it would give: budget_exceeded, token_limited, …")
    level: str | None
    id: str | None
    name: str | None
    message: str = Field(description="Starts with 'would deny in shadow: '.")


class Explanation(BaseModel):
    allowed: bool
    decision: str
    status: int = Field(description="The HTTP status the gateway would answer (200 when allowed).")
    message: str | None
    scope: ScopeView | None = Field(description="The level and entity that would deny.")
    retry_after_s: int | None
    provider: str
    model: str
    estimated_tokens: int
    estimated_cost: float
    worst_case_tokens: int = Field(description="The request's worst case: what limits in strict mode reserve.")
    worst_case_cost: float
    max_tokens: int | None = Field(description="The output cap per generation reserved for: the request's own, or the "
                                   "one strict enforcement injects (estimate.injected_max_tokens) when it sets none.")
    clamped_max_tokens: int | None = Field(None, description="Strict limits with on_insufficient: clamp would forward "
                                           "the request with its output cap lowered to this.")
    virtual_key_id: str | None
    team_id: str | None
    customer_id: str | None
    limits: list[LimitStatusView]
    would_deny: WouldDenyView | None = Field(None, description="What the first shadow limit without room would deny, "
                                                               "were it enforced (the request itself is not denied).")


class ErrorDetail(BaseModel):
    field: str | None
    message: str


class ErrorInfo(BaseModel):
    type: str
    message: str
    field: str | None
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo
