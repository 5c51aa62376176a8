"""The configuration file's shape (`tollway.yaml`), validated once at start.

The `governance` section uses the same shapes as the management API, so these models
serve both. Field names follow SPEC.md §6.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from tollway.alerts.config import AlertsConfig

# The shared parts, the limits and the provider settings have modules of their own; their
# names stay importable from here (other modules and tests import them from this one).
from tollway.config.fields import NonEmpty, PositiveInt, duration_s
from tollway.config.fields import StrictModel as _Strict
from tollway.config.fields import check_duration as _duration
from tollway.config.fields import fixed_duration as _fixed_duration
from tollway.config.fields import idle_duration as _idle_duration
from tollway.config.fields import no_blank as _no_blank
from tollway.config.fields import seconds_up_to_hour as _seconds_up_to_hour
from tollway.config.limit_rules import LimitSelectorConfig
from tollway.config.limits import (
    MAX_IN_FLIGHT,
    MAX_QUEUE_TIMEOUT_MS,
    BudgetConfig,
    ConcurrencyConfig,
    EnforcementMode,
    LimitMode,
    OnInsufficient,
    RateLimitConfig,
)
from tollway.config.limits import Governed as _Governed
from tollway.config.providers import EgressConfig, ProviderKeyConfig, ProviderSettings, ProviderType
from tollway.governance.durations import parse_duration
from tollway.governance.names import configured_model
from tollway.governance.tags import MAX_REQUEST_TAGS, BadTag, normalise_tag, normalise_tags

__all__ = ["MAX_IN_FLIGHT", "MAX_QUEUE_TIMEOUT_MS", "BudgetConfig", "ConcurrencyConfig", "EgressConfig",
           "EnforcementMode", "LimitMode", "NonEmpty", "OnInsufficient", "PositiveInt", "ProviderKeyConfig",
           "ProviderSettings", "ProviderType", "RateLimitConfig", "duration_s"]


class EndUserLimitsConfig(_Strict):
    """``end_user_limits``: the budget, rate limit and concurrency limit each end user of
    a key, team or customer gets, with counters of their own (SPEC §8 "end user")."""

    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None
    concurrency: ConcurrencyConfig | None = None

    @model_validator(mode="after")
    def _some_limit(self) -> EndUserLimitsConfig:
        if self.budget is None and self.rate_limit is None and self.concurrency is None:
            raise ValueError("end_user_limits needs a budget, a rate_limit or a concurrency limit")
        return self


EndUserSourceName = Literal["header", "body"]


class EndUserConfig(_Strict):
    """``end_user`` of a virtual key: where its requests may name their end user
    (``header``: ``x-tollway-user``; ``body``: OpenAI ``user``, Anthropic
    ``metadata.user_id``) and whether every request must name one (400 otherwise)."""

    source: Annotated[list[EndUserSourceName], Field(min_length=1)] = ["header", "body"]
    required: bool = False

    @field_validator("source")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("source names a place twice")
        return value


class _EndUserOwner(_Governed):
    end_user_limits: EndUserLimitsConfig | None = None


class CustomerConfig(_EndUserOwner):
    id: NonEmpty
    name: NonEmpty

    _blank = field_validator("id", "name")(_no_blank)


class TeamConfig(_EndUserOwner):
    id: NonEmpty
    name: NonEmpty
    customer_id: NonEmpty | None = None

    _blank = field_validator("id", "name", "customer_id")(_no_blank)


class ProviderConfigEntry(_Governed):
    """A virtual key's per-provider routing and limits."""

    provider: NonEmpty
    weight: Annotated[float, Field(gt=0, le=1_000_000)] = 1.0  # omitted means 1 (Bifrost: 0)
    allowed_models: list[NonEmpty] = []
    allowed_keys: list[NonEmpty] = []


VK_PREFIX = "tw-"
MAX_KEY_TAGS = 1000  # a key's allowed tags: a set looked up per request, never walked


def tag_name(value: str) -> str:
    """A tag as requests are matched against it (`normalise_tag`); a ValueError says why not."""
    try:
        return normalise_tag(value)
    except BadTag as exc:
        raise ValueError(str(exc)) from None


def tag_names(values: list[str], limit: int) -> list[str]:
    """Distinct normalised tags, in order; at most ``limit``."""
    try:
        return list(normalise_tags(values, limit))
    except BadTag as exc:
        raise ValueError(str(exc).replace("per request", "here")) from None


def allowed_tag_names(values: list[str]) -> list[str]:
    """A key's ``allowed_tags``, normalised."""
    return tag_names(values, MAX_KEY_TAGS)


def forced_tag_names(values: list[str]) -> list[str]:
    """A key's ``forced_tags``, normalised: no more than a request may carry."""
    return tag_names(values, MAX_REQUEST_TAGS)


class TagConfig(_Governed):
    """A request tag's limits (SPEC §8 ``governance.tags``): shared by every request that
    carries the tag, whichever key sends it. ``name`` is matched as requests' tags are:
    trimmed and lower-cased, letters, digits and . _ : / - only."""

    name: NonEmpty

    _name = field_validator("name")(tag_name)


class VirtualKeyConfig(_EndUserOwner):
    id: NonEmpty
    name: NonEmpty
    value: str | None = None
    end_user: EndUserConfig | None = None  # None: header or body, not required
    description: str = ""
    is_active: bool = True
    team_id: NonEmpty | None = None
    customer_id: NonEmpty | None = None
    allowed_models: list[NonEmpty] = []
    provider_configs: list[ProviderConfigEntry] = []
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (RFC 3339 with a time zone, e.g. "
                                  "2027-01-31T00:00:00Z): requests with it get 401 virtual_key_expired. "
                                  "Omitted: never.")
    allowed_tags: list[str] = Field(
        default=[], description="The only request tags its requests may carry (x-tollway-tags, metadata.tags); "
                                "another gets 403 tag_not_allowed. Empty: any tag.")
    forced_tags: list[str] = Field(
        default=[], description="Tags added to every request of the key, whether the request names them or not "
                                "(they count toward those tags' limits and reports).")

    _blank = field_validator("id", "name", "team_id", "customer_id")(_no_blank)
    _allowed = field_validator("allowed_tags")(allowed_tag_names)
    _forced = field_validator("forced_tags")(forced_tag_names)

    @field_validator("value")
    @classmethod
    def _value_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(VK_PREFIX) or len(value) < len(VK_PREFIX) + 16:
            raise ValueError(f"a virtual key value must start with '{VK_PREFIX}' and have at least 16 characters after it")
        if any(c.isspace() for c in value) or len(value) > 256:
            raise ValueError("a virtual key value must have no spaces and at most 256 characters")
        return value

    @model_validator(mode="after")
    def _one_owner(self) -> VirtualKeyConfig:
        if self.team_id and self.customer_id:
            raise ValueError("a virtual key belongs to a team or to a customer, not both")
        providers = [pc.provider for pc in self.provider_configs]
        if len(set(providers)) != len(providers):
            raise ValueError("provider_configs names a provider twice")
        return self


class ModelLimitConfig(_Governed):
    """Limits for one model on one provider, or on any provider when provider is null."""

    model_name: NonEmpty
    provider: NonEmpty | None = None

    _blank = field_validator("model_name", "provider")(_no_blank)
    # Trimmed and NFKC-normalised as requests are; names are then compared without regard
    # to case, so two configs whose names differ only so are one model (refused).
    _canonical = field_validator("model_name")(configured_model)


class LimitRuleConfig(LimitSelectorConfig, _Governed):
    """A limit rule (``governance.limits``): a budget, rate limit and concurrency limit on
    the requests ``match`` selects, per value of ``per`` when given
    (`tollway.config.limit_rules`, `tollway.governance.limit_rules`)."""

    @model_validator(mode="after")
    def _some_limit(self) -> LimitRuleConfig:
        if self.budget is None and self.rate_limit is None and self.concurrency is None:
            raise ValueError("a limit rule needs a budget, a rate_limit or a concurrency limit")
        return self


class GovernanceConfig(_Strict):
    customers: list[CustomerConfig] = []
    teams: list[TeamConfig] = []
    virtual_keys: list[VirtualKeyConfig] = []
    model_configs: list[ModelLimitConfig] = []
    tags: list[TagConfig] = []
    limits: list[LimitRuleConfig] = Field(
        default=[], description="Limit rules: limits on the requests a selector matches (provider, model, virtual "
                                "key, team, customer, tag, end user, or combinations), optionally per value of a "
                                "dimension (docs/governance.md#limit-rules).")

    @model_validator(mode="after")
    def _distinct_rules(self) -> GovernanceConfig:
        names = [rule.name for rule in self.limits]
        if len(set(names)) != len(names):
            raise ValueError("governance.limits names a rule twice")
        return self

    @model_validator(mode="after")
    def _distinct_tags(self) -> GovernanceConfig:
        names = [tag.name for tag in self.tags]
        if len(set(names)) != len(names):
            raise ValueError("governance.tags names a tag twice (names are compared trimmed and lower-cased)")
        return self


_Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class PriceConfig(_Strict):
    """USD per million tokens; the media routes' own units beside them (docs/media.md)."""

    input: _Price | None = None
    output: _Price | None = None
    cached_input: _Price | None = None
    cache_write: _Price | None = None
    # Images: one price for every image, or by "SIZE/QUALITY", "SIZE", "QUALITY" and "default".
    per_image: _Price | dict[NonEmpty, _Price] | None = None
    per_audio_second: _Price | None = None  # transcriptions and translations
    per_million_characters: _Price | None = None  # speech, from the input text
    audio_input: _Price | None = None  # USD per million audio input tokens (default: `input`)
    # Batches (docs/batches.md): the share of the price a batch request is charged (0.5: half
    # price); default: the catalog's batch price where it has one, else the full price.
    batch_ratio: Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _some_unit(self) -> PriceConfig:
        media = (self.per_image, self.per_audio_second, self.per_million_characters)
        if (self.input is None) != (self.output is None):
            raise ValueError("a token price needs both input and output (USD per million tokens)")
        if self.input is None and all(unit is None for unit in media):
            raise ValueError("a price needs input and output (USD per million tokens) or a media unit: "
                             "per_image, per_audio_second or per_million_characters")
        return self


class CountersConfig(_Strict):
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None
    on_failure: Literal["fail_closed", "fail_open"] = "fail_closed"
    timeout_ms: Annotated[int, Field(gt=0, le=60_000)] = 50
    # How long a gateway process that stops renewing its lease (killed, cut off) keeps
    # what it reserved in Redis: reservations and in-flight slots come back after it.
    lease_ms: Annotated[int, Field(ge=1_000, le=3_600_000)] = 30_000
    # How long an end user's counters stay in this process after their last request: then
    # they are written to the database and read back when the end user returns (SPEC §8).
    end_user_idle: str = Field(default="1h", description="How long an end user's counters stay in memory after "
                               "their last request (then kept in the database until they return); 1m to 30d.")

    _idle_fixed = field_validator("end_user_idle")(lambda value: _idle_duration(value))

    @model_validator(mode="after")
    def _redis_needs_url(self) -> CountersConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("the redis backend needs url (e.g. redis://127.0.0.1:6379/0)")
        return self


class EstimateConfig(_Strict):
    """How a request's tokens are estimated for its reservation before the call."""

    default_completion_tokens: Annotated[int, Field(ge=0, le=10**7)] = 256
    bytes_per_prompt_token: Annotated[int, Field(ge=1, le=64)] = 4
    # Under strict enforcement, the output cap sent with a request that sets none (and
    # reserved for it): without a cap no worst case exists.
    injected_max_tokens: Annotated[int, Field(ge=1, le=10**7)] = 4096


class MediaConfig(_Strict):
    """The media routes (images, audio, moderations): upload size and the audio worst case (docs/media.md)."""

    # Multipart uploads (transcriptions, translations, image edits) are streamed through and
    # may be larger than `max_body_bytes` (OpenAI takes audio files up to 25 MB).
    max_upload_bytes: Annotated[int, Field(gt=0, le=1 << 32)] = 25 * 1024 * 1024
    # An upload's audio is reserved for at most bytes / audio_min_bytes_per_second seconds
    # (750: 6 kbit/s, the leanest speech codec setting in use) and never more than this.
    max_audio_seconds: Annotated[int, Field(gt=0, le=10**7)] | None = None
    audio_min_bytes_per_second: Annotated[int, Field(ge=1, le=10**7)] = 750
    # The estimate (limits in estimate mode): bytes / this (16,000: 128 kbit/s, a typical MP3).
    audio_bytes_per_second: Annotated[int, Field(ge=1, le=10**7)] = 16_000


class BatchesConfig(_Strict):
    """Batches (`/v1/files`, `/v1/batches`, `/v1/messages/batches`; docs/batches.md)."""

    # An input file is read line by line and spooled (memory, then a temporary file); OpenAI
    # takes batch files up to 200 MB.
    max_file_bytes: Annotated[int, Field(gt=0, le=1 << 34)] = 200 * 1024 * 1024
    # The follow-up asks the provider about a batch first after `poll_interval`, then twice as
    # long each time, up to `max_poll_interval` (a batch may run for 24 hours).
    poll_interval: str = "30s"
    max_poll_interval: str = "10m"
    # A node following a batch up holds it this long; one that dies leaves it to another after.
    lease: str = "5m"

    _check_durations = field_validator("poll_interval", "max_poll_interval", "lease")(_seconds_up_to_hour)


class GovernanceDefaults(_Strict):
    """What a budget or rate limit that does not say gets (SPEC §8)."""

    enforcement: EnforcementMode = "estimate"
    on_insufficient: OnInsufficient = "refuse"


class ServerConfig(_Strict):
    """How the HTTP server protects itself from clients that misbehave (per worker process)."""

    # Connections held open at once; the server lowers it to fit the file-descriptor limit
    # (half of RLIMIT_NOFILE less 64: each client connection may need an upstream one). At the
    # cap, idle connections are closed oldest first; with none idle, new ones get 503.
    max_connections: Annotated[int, Field(ge=16, le=1_000_000)] = 10_000
    max_request_head_bytes: Annotated[int, Field(ge=4096, le=16 * 1024 * 1024)] = 64 * 1024  # 431 above
    header_read_timeout: str = "10s"  # from connecting (or a request's first byte) to its last header
    keep_alive_timeout: str = "5s"  # idle between two requests on one connection
    body_read_timeout: str = "30s"  # a request body that stops arriving this long: 408, closed
    raise_fd_limit: bool = True  # raise the soft RLIMIT_NOFILE to the hard limit at start

    _check_durations = field_validator("header_read_timeout", "keep_alive_timeout",
                                       "body_read_timeout")(_seconds_up_to_hour)


class LoginThrottleConfig(_Strict):
    """Failed admin UI logins, per client address: a few are free, then each further one
    doubles the wait before the next try (429 with Retry-After)."""

    free_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    base_delay: str = "1s"
    max_delay: str = "15m"
    forget_after: str = "1h"  # an address quiet this long starts over
    max_addresses: Annotated[int, Field(ge=100, le=1_000_000)] = 10_000  # least recently seen go first
    # every address together (guessing from many addresses): free failures per forget_after
    global_free_failures: Annotated[int, Field(ge=1, le=1_000_000)] = 100

    _check_durations = field_validator("base_delay", "max_delay", "forget_after")(_fixed_duration)


class VirtualKeyCacheConfig(_Strict):
    """Virtual keys at scale: with up to ``load_all_up_to`` keys stored, every key is loaded
    at start; with more, keys are loaded when first presented and kept in a bounded cache
    (a million keys take longer to read than a node may take to start)."""

    load_all_up_to: Annotated[int, Field(ge=0, le=100_000_000)] = 200_000
    max_keys: Annotated[int, Field(ge=100, le=100_000_000)] = 200_000  # held when loaded on demand
    miss_ttl: str = "60s"  # how long a hash found nowhere is answered 401 without asking the database
    # distinct keys waiting to be looked up (in batches, one query at a time); beyond: 503
    max_pending_lookups: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000

    _check_durations = field_validator("miss_ttl")(_seconds_up_to_hour)


class Settings(_Strict):
    database_url: str = "sqlite:///tollway.db"
    admin_token: str | None = Field(default=None, repr=False, min_length=16)
    management_api: bool = True
    enforce_virtual_keys: bool = False
    counters: CountersConfig = CountersConfig()
    flush_interval: str = "10s"
    shutdown_grace_period: str = "30s"  # on SIGTERM: how long requests in flight (streams too) may finish
    max_body_bytes: Annotated[int, Field(gt=0, le=1 << 30)] = 4 * 1024 * 1024
    media: MediaConfig = MediaConfig()
    batches: BatchesConfig = BatchesConfig()
    providers: dict[NonEmpty, ProviderSettings] = {}
    model_aliases: dict[NonEmpty, NonEmpty] = {}
    fallbacks: dict[NonEmpty, list[NonEmpty]] = {}  # "provider/model" or alias -> tried in order
    pricing: dict[NonEmpty, PriceConfig] = {}
    default_price: PriceConfig | None = None
    estimate: EstimateConfig = EstimateConfig()
    governance_defaults: GovernanceDefaults = GovernanceDefaults()
    require_price: bool = False  # true: a model with no known price is refused (400 model_unpriced), not served free
    governance: GovernanceConfig = GovernanceConfig()
    request_log: bool = True
    request_log_retention: str | None = None  # e.g. "90d": older rows are deleted every hour; None keeps all
    # 401s without a valid virtual key: this many a minute get their own row, the rest of the
    # minute one summary row with their count (null: a row each); all are counted in /metrics
    request_log_unauthenticated_per_minute: Annotated[int, Field(ge=0, le=1_000_000)] | None = 10
    server: ServerConfig = ServerConfig()
    login_throttle: LoginThrottleConfig = LoginThrottleConfig()
    virtual_key_cache: VirtualKeyCacheConfig = VirtualKeyCacheConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    cors_origins: list[str] = []  # browser origins allowed to call the management API; empty: CORS off
    egress: EgressConfig = EgressConfig()
    alerts: AlertsConfig = AlertsConfig()

    _check_durations = field_validator("flush_interval", "shutdown_grace_period")(_duration)

    @field_validator("request_log_retention")
    @classmethod
    def _retention(cls, value: str | None) -> str | None:
        """At least a day, so that "30m" (minutes) is not taken for 30 months by mistake."""
        if value is not None:
            fixed = parse_duration(value).fixed_ms
            if fixed is not None and fixed < 86_400_000:
                raise ValueError(f"must be at least 1d (got {value!r}: under a day; months are written 'M', e.g. '3M')")
        return value
