"""The configuration file's shape (`tollway.yaml`), validated once at start.

The `governance` section uses the same shapes as the management API, so these models
serve both. Field names follow SPEC.md §6.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from tollway.alerts.config import AlertsConfig
from tollway.config.limit_rules import LimitSelectorConfig
from tollway.governance.durations import Alignment, check_alignment, parse_duration
from tollway.governance.names import configured_model
from tollway.governance.tags import MAX_REQUEST_TAGS, BadTag, normalise_tag, normalise_tags
from tollway.providers.adapters import adapter_for

NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]
PositiveInt = Annotated[int, Field(gt=0, le=10**15)]
MAX_IN_FLIGHT = 1_000_000_000  # fits the store's 32-bit column
MAX_QUEUE_TIMEOUT_MS = 600_000  # ten minutes: a wait longer than any client keeps a request open


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


def _fixed_duration(value: str) -> str:
    """A duration in seconds, minutes, hours, days or weeks (no calendar months)."""
    if parse_duration(value).fixed_ms is None:
        raise ValueError(f"must be a fixed duration such as '10s', '5m' or '1h' (got {value!r})")
    return value


def _seconds_up_to_hour(value: str) -> str:
    fixed = parse_duration(_fixed_duration(value)).fixed_ms
    if fixed is None or fixed > 3_600_000:
        raise ValueError(f"must be from 1s to 1h (got {value!r})")
    return value


def _idle_duration(value: str) -> str:
    fixed = parse_duration(_fixed_duration(value)).fixed_ms
    if fixed is None or not 60_000 <= fixed <= 30 * 86_400_000:
        raise ValueError(f"must be from 1m to 30d (got {value!r})")
    return value


def duration_s(value: str) -> float:
    """Seconds of a fixed duration (validated by the models above)."""
    fixed = parse_duration(value).fixed_ms
    assert fixed is not None
    return fixed / 1000


def _no_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be empty or whitespace")
    return value


EnforcementMode = Literal["estimate", "strict"]
OnInsufficient = Literal["refuse", "clamp"]
LimitMode = Literal["enforce", "shadow"]  # shadow: evaluated and counted, never denies (SPEC §8)


class BudgetConfig(_Strict):
    max_limit: Annotated[Decimal, Field(gt=0, le=Decimal(10**9), allow_inf_nan=False)]
    reset_duration: str
    calendar_aligned: bool = False
    timezone: str = "UTC"
    week_start: Annotated[int, Field(ge=0, le=6)] = 0
    enforcement: EnforcementMode | None = None  # None: governance_defaults.enforcement
    on_insufficient: OnInsufficient | None = None  # None: governance_defaults.on_insufficient
    mode: LimitMode = "enforce"

    _check_duration = field_validator("reset_duration")(_duration)

    @model_validator(mode="after")
    def _alignment_fits(self) -> BudgetConfig:
        if self.calendar_aligned:
            check_alignment(parse_duration(self.reset_duration), self.alignment)
        return self

    @property
    def alignment(self) -> Alignment | None:
        return Alignment(self.timezone, self.week_start) if self.calendar_aligned else None


class RateLimitConfig(_Strict):
    token_max_limit: PositiveInt | None = None
    token_reset_duration: str | None = None
    request_max_limit: PositiveInt | None = None
    request_reset_duration: str | None = None
    enforcement: EnforcementMode | None = None  # of the token side (requests are exact); None: the default
    on_insufficient: OnInsufficient | None = None
    mode: LimitMode = "enforce"  # of both sides

    _check_durations = field_validator("token_reset_duration", "request_reset_duration")(_duration)

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


class ConcurrencyConfig(_Strict):
    """At most ``max_in_flight`` requests at once (from admission until the response, or
    the stream, ends); with ``queue_timeout_ms`` > 0 a request finding no free slot waits
    up to that long for one, first come first served, before it is refused (429)."""

    max_in_flight: Annotated[int, Field(gt=0, le=MAX_IN_FLIGHT)]
    queue_timeout_ms: Annotated[int, Field(ge=0, le=MAX_QUEUE_TIMEOUT_MS)] = 0
    mode: LimitMode = "enforce"  # shadow: slots counted, never waited for or refused


class _Governed(_Strict):
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None
    concurrency: ConcurrencyConfig | None = None


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


class ProviderKeyConfig(_Strict):
    value: str = Field(min_length=1, repr=False)
    id: NonEmpty | None = None  # named in a virtual key's allowed_keys; defaults to key-<index>
    weight: Annotated[float, Field(gt=0, le=1_000_000)] = 1.0
    models: list[NonEmpty] = []  # empty = every model


# The types of `providers.adapters.ADAPTERS`: openai, azure, anthropic, gemini, bedrock, vertex, then the
# OpenAI-compatible presets of `providers.presets` (a unit test keeps the lists equal).
ProviderType = Literal["openai", "azure", "anthropic", "gemini", "bedrock", "vertex", "mistral", "groq", "deepseek",
                       "together", "fireworks", "openrouter", "xai", "cerebras", "perplexity", "ollama", "vllm"]


class ProviderSettings(_Governed):
    type: ProviderType
    base_url: str | None = None
    keys: list[ProviderKeyConfig] = []  # at least one, except for local presets (ollama, vllm)
    api_version: str | None = None  # azure
    deployments: dict[str, str] = {}  # azure: model -> deployment (default: the model name)
    # vertex: the Google Cloud project and region (location) of Vertex AI, the service
    # account's JSON key (inline, as env.NAME gives it, or a file's path; unset: Application
    # Default Credentials), and which publisher serves a model its name does not tell.
    project: str | None = None
    region: str | None = None
    credentials: str | None = Field(default=None, repr=False)
    publishers: dict[str, Literal["google", "anthropic"]] = {}
    timeout: str = "60s"
    connect_timeout: str = "5s"
    max_retries: Annotated[int, Field(ge=0, le=10)] = 0
    retry_backoff: Annotated[float, Field(ge=0, le=60)] = 0.5  # seconds before the first retry; doubles each time
    headers: dict[str, str] = {}
    # Egress: an http:// forward proxy for this provider ("none": direct, whatever the
    # environment says; unset: HTTPS_PROXY / HTTP_PROXY / NO_PROXY), a CA bundle to trust
    # instead of the system's, a client certificate (and its key) for mutual TLS.
    proxy: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    # Whether the provider serves OpenAI's Responses API itself (default: yes for openai and
    # azure, no for the presets). false: /v1/responses is translated to chat completions
    # (servers that only have chat). Anthropic providers are always translated.
    responses_api: bool | None = None
    responses_api_version: str = "2025-04-01-preview"  # azure: the api-version of /openai/responses
    # bedrock: the AWS region (`region` above), and the credentials (explicit values, a named
    # profile, or botocore's default chain; role_arn: assumed through STS with those as the source)
    profile: NonEmpty | None = None
    aws_access_key_id: NonEmpty | None = Field(None, repr=False)
    aws_secret_access_key: NonEmpty | None = Field(None, repr=False)
    aws_session_token: str | None = Field(None, repr=False, min_length=1)
    role_arn: NonEmpty | None = None

    _check_durations = field_validator("timeout", "connect_timeout")(_duration)

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        return value if value is None or value.strip().lower() in ("none", "direct") else _http_proxy_url(value)

    @model_validator(mode="after")
    def _keys(self) -> ProviderSettings:
        if not self.keys:
            if adapter_for(self.type).needs_key:
                raise ValueError(f"a {self.type} provider needs at least one key: keys: [{{value: env.API_KEY}}]")
            self.keys = [ProviderKeyConfig(value="unused")]  # a local server: any bearer token does
        return self

    @model_validator(mode="before")
    @classmethod
    def _one_transport(cls, data: Any) -> Any:
        # `http_client` chose between two upstream clients until the aiohttp one was
        # removed; say so rather than "extra inputs are not permitted".
        if isinstance(data, dict) and "http_client" in data:
            raise ValueError("http_client was removed: Tollway has one upstream HTTP client (proxies, CA bundles and "
                             "mutual TLS included); delete the setting")
        return data

    @model_validator(mode="after")
    def _client_key_needs_cert(self) -> ProviderSettings:
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        return self

    @model_validator(mode="after")
    def _type_needs(self) -> ProviderSettings:
        adapter_for(self.type).check(self)  # what this type needs (azure: base_url, api_version ...)
        return self


def _http_proxy_url(value: str) -> str:
    parts = urlsplit(value if "://" in value else f"http://{value}")
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError(f"{value!r} is not an http://[user:password@]host:port proxy URL")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value


class EgressConfig(_Strict):
    """The environment's proxy settings, as the loader read them (HTTPS_PROXY, HTTP_PROXY,
    NO_PROXY, upper or lower case) unless the file sets them; a provider's `proxy` wins."""

    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None

    @field_validator("http_proxy", "https_proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        return value if not value else _http_proxy_url(value)


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
