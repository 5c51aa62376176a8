"""The config store's tables (SQLAlchemy 2 declarative), shared by SQLite and PostgreSQL.

Budgets, rate limits and concurrency limits are owned 1:1: each row is referenced by at
most one parent (`budget_id` / `rate_limit_id` / `concurrency_limit_id`, unique). Budgets and
rate limits are also the usage rows, so they are never deleted with their parent: a parent
that drops one (or is deleted) leaves it *retained* (``retained_for`` names the parent's
slot, `tollway.store.retention`) and a limit created later at the same slot takes it back,
usage included. A concurrency limit holds no usage and goes with its parent
(``delete-orphan``). Customers, teams, virtual keys, model configs and providers say who
manages them (``managed_by``: ``config`` for the config file, ``api`` for the management
API; `tollway.store.ownership`).

Migrations in `tollway/store/migrations` must match these definitions exactly (a test
compares them).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, relationship

from tollway.store.types import Money, UtcDateTime

# Stable constraint names: SQLite migrations rebuild tables by name, PostgreSQL drops by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(256)  # ids and names from the config file or the API (schema: at most 256)
UUID_ID = String(36)
SLOT = String(1024)  # "virtual_key/<id>/provider/<name>": two ids and a little more
MANAGED_BY_API = "api"
MANAGED_BY_CONFIG = "config"


def new_id() -> str:
    """A fresh id for rows the operator does not name (budgets, rate limits, …)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Budget(Base):
    """A spending cap in USD over a reset window; usage is flushed here from the counters."""

    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint("max_limit > 0", name="max_limit_positive"),
        CheckConstraint("week_start >= 0 AND week_start <= 6", name="week_start_range"),
    )

    id: Mapped[str] = mapped_column(UUID_ID, primary_key=True, default=new_id)
    max_limit: Mapped[Decimal] = mapped_column(Money)
    reset_duration: Mapped[str] = mapped_column(String(16))
    calendar_aligned: Mapped[bool] = mapped_column(default=False, server_default=false())
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    week_start: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    current_usage: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default=text("0"))
    last_reset: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    retained_for: Mapped[str | None] = mapped_column(SLOT, index=True)
    enforcement: Mapped[str | None] = mapped_column(String(16))  # estimate | strict; null: the global default
    on_insufficient: Mapped[str | None] = mapped_column(String(16))  # refuse | clamp; null: the global default
    mode: Mapped[str] = mapped_column(String(16), default="enforce", server_default="enforce")  # enforce | shadow


class RateLimit(Base):
    """Token and request limits with independent windows; either side may be absent."""

    __tablename__ = "rate_limits"

    id: Mapped[str] = mapped_column(UUID_ID, primary_key=True, default=new_id)
    token_max_limit: Mapped[int | None] = mapped_column(BigInteger)
    token_reset_duration: Mapped[str | None] = mapped_column(String(16))
    request_max_limit: Mapped[int | None] = mapped_column(BigInteger)
    request_reset_duration: Mapped[str | None] = mapped_column(String(16))
    token_current_usage: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    request_current_usage: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    token_last_reset: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    request_last_reset: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    retained_for: Mapped[str | None] = mapped_column(SLOT, index=True)
    enforcement: Mapped[str | None] = mapped_column(String(16))  # of the token side; null: the global default
    on_insufficient: Mapped[str | None] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16), default="enforce", server_default="enforce")  # enforce | shadow


class ConcurrencyLimit(Base):
    """At most ``max_in_flight`` requests at once; a request finding none free waits up
    to ``queue_timeout_ms`` for one (0: refused at once). It has no usage to flush."""

    __tablename__ = "concurrency_limits"
    __table_args__ = (
        CheckConstraint("max_in_flight > 0", name="max_in_flight_positive"),
        CheckConstraint("queue_timeout_ms >= 0", name="queue_timeout_ms_not_negative"),
    )

    id: Mapped[str] = mapped_column(UUID_ID, primary_key=True, default=new_id)
    max_in_flight: Mapped[int] = mapped_column(Integer)
    queue_timeout_ms: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    mode: Mapped[str] = mapped_column(String(16), default="enforce", server_default="enforce")  # enforce | shadow


class _Governed:
    """An owner of at most one budget, one rate limit and one concurrency limit."""

    budget_id: Mapped[str | None] = mapped_column(ForeignKey("budgets.id", ondelete="SET NULL"), unique=True)
    rate_limit_id: Mapped[str | None] = mapped_column(ForeignKey("rate_limits.id", ondelete="SET NULL"), unique=True)
    concurrency_limit_id: Mapped[str | None] = mapped_column(
        ForeignKey("concurrency_limits.id", ondelete="SET NULL"), unique=True)

    # No delete cascade: a dropped limit is retained with its usage (`EntityWriter`).
    @declared_attr
    def budget(cls) -> Mapped[Budget | None]:
        return relationship(Budget, cascade="save-update, merge")

    @declared_attr
    def rate_limit(cls) -> Mapped[RateLimit | None]:
        return relationship(RateLimit, cascade="save-update, merge")

    @declared_attr
    def concurrency(cls) -> Mapped[ConcurrencyLimit | None]:
        return relationship(ConcurrencyLimit, cascade="all, delete-orphan", single_parent=True)


class _Managed:
    """An entity the config file or the management API manages (never both)."""

    managed_by: Mapped[str] = mapped_column(String(16), default=MANAGED_BY_API, server_default=MANAGED_BY_API)


class _Timestamps:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class _EndUserOwner:
    """An owner of an end-user template (``end_user_limits``, SPEC §8): its budget, rate
    limit and concurrency limit in the config shape, with the ``id`` that names the
    counters of its end users (`tollway.store.end_user_templates`); null: none."""

    end_user_limits: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Customer(_EndUserOwner, _Governed, _Managed, _Timestamps, Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(ID)


class Team(_EndUserOwner, _Governed, _Managed, _Timestamps, Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(ID)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)


class VirtualKey(_EndUserOwner, _Governed, _Managed, _Timestamps, Base):
    """A client credential; only the sha256 of its value and an 8-character prefix are kept."""

    __tablename__ = "virtual_keys"
    __table_args__ = (
        CheckConstraint("team_id IS NULL OR customer_id IS NULL", name="one_owner"),
        # Listing and searching a million keys: by name prefix, and by status in id order.
        Index(None, "name", postgresql_ops={"name": "text_pattern_ops"}),
        Index(None, "is_active", "id"),
        Index(None, "previous_value_hash"),  # a new key's value must not be a rotated one still in grace
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(ID)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    value_hash: Mapped[str] = mapped_column(String(64), unique=True)
    value_prefix: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), index=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    # Where its requests name their end user ({"source": [...], "required": bool}); null: anywhere, optional.
    end_user: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    allowed_models: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Lifecycle: the key stops authenticating at ``expires_at``; a rotation keeps the replaced
    # value's hash working until ``previous_value_expires_at`` (its grace period). ``last_used_at``
    # is written with the periodic usage flush, never per request.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    previous_value_hash: Mapped[str | None] = mapped_column(String(64))
    previous_value_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Request tags (`tollway.governance.tags`): the only ones its requests may name (empty:
    # any), and those added to every request it makes.
    allowed_tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    forced_tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")

    provider_configs: Mapped[list[VKProviderConfig]] = relationship(
        back_populates="virtual_key", cascade="all, delete-orphan", order_by="VKProviderConfig.provider"
    )


class VKProviderConfig(_Governed, Base):
    """A virtual key's routing and limits for one provider."""

    __tablename__ = "vk_provider_configs"
    __table_args__ = (UniqueConstraint("virtual_key_id", "provider"),)

    id: Mapped[str] = mapped_column(UUID_ID, primary_key=True, default=new_id)
    virtual_key_id: Mapped[str] = mapped_column(ForeignKey("virtual_keys.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(ID)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    allowed_models: Mapped[list[str]] = mapped_column(JSON, default=list)
    allowed_keys: Mapped[list[str]] = mapped_column(JSON, default=list)

    virtual_key: Mapped[VirtualKey] = relationship(back_populates="provider_configs")


class Provider(_Governed, _Managed, _Timestamps, Base):
    """An upstream provider's governance and non-secret settings (keys stay in the file)."""

    __tablename__ = "providers"

    name: Mapped[str] = mapped_column(ID, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str | None] = mapped_column(String(2048))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ModelConfig(_Governed, _Managed, _Timestamps, Base):
    """Limits for one model on one provider, or on every provider when provider is NULL.

    (model_name, provider) is unique, NULL included: a unique constraint covers named
    providers and a partial unique index on model_name covers the NULL ones.
    """

    __tablename__ = "model_configs"
    __table_args__ = (
        UniqueConstraint("model_name", "provider"),
        Index(
            "uq_model_configs_model_name_any_provider",
            "model_name",
            unique=True,
            sqlite_where=text("provider IS NULL"),
            postgresql_where=text("provider IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(UUID_ID, primary_key=True, default=new_id)
    model_name: Mapped[str] = mapped_column(ID)
    provider: Mapped[str | None] = mapped_column(ID)


class Tag(_Governed, _Managed, _Timestamps, Base):
    """A request tag's limits (``governance.tags``), shared by every request that carries
    the tag; ``id`` is the tag's normalised name (`tollway.governance.tags`)."""

    __tablename__ = "tags"

    id: Mapped[str] = mapped_column(ID, primary_key=True)


class RetiredKeyValue(Base):
    """The value of a deleted virtual key (its sha256), so a key created later with the
    same value takes over the deleted key's retained usage instead of a fresh budget."""

    __tablename__ = "retired_key_values"

    value_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    virtual_key_id: Mapped[str] = mapped_column(ID)
    retired_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RequestLog(Base):
    """One proxied request (written in batches off the hot path). Strings are unbounded
    so that no client-supplied value can make an insert fail."""

    __tablename__ = "request_logs"
    __table_args__ = (Index(None, "virtual_key_id", "at"), Index(None, "route", "at"), Index(None, "end_user", "at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    request_id: Mapped[str] = mapped_column(String)
    virtual_key_id: Mapped[str | None] = mapped_column(String)
    team_id: Mapped[str | None] = mapped_column(String)
    customer_id: Mapped[str | None] = mapped_column(String)
    provider: Mapped[str | None] = mapped_column(String)
    model: Mapped[str | None] = mapped_column(String)
    status: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String)
    denied_level: Mapped[str | None] = mapped_column(String)
    denied_id: Mapped[str | None] = mapped_column(String)
    # Shadow limits (SPEC §8): the decision and scope of the denial a shadow limit would have given.
    would_deny: Mapped[str | None] = mapped_column(String(32))
    would_deny_level: Mapped[str | None] = mapped_column(String)
    would_deny_id: Mapped[str | None] = mapped_column(String)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    stream: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    # The API the request used (`tollway.server.routes`: chat, messages, images.generations,
    # audio.speech, responses.get ...); null on rows written before it was recorded.
    route: Mapped[str | None] = mapped_column(String)
    # The request's tags, comma-separated (null: none); `RequestLogTag` indexes them.
    tags: Mapped[str | None] = mapped_column(String)
    # The end user the request named (SPEC §8 "end user"); null when it named none.
    end_user: Mapped[str | None] = mapped_column(String)


class RequestLogTag(Base):
    """One tag of one logged request: what filters the log and reports spend by tag. It
    names its request by (``at``, ``request_id``), both copied from the request's row
    (written in the same transaction): a batch insert learns no generated ids."""

    __tablename__ = "request_log_tags"
    __table_args__ = (Index(None, "tag", "at", "request_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # the retention prunes by it
    request_id: Mapped[str] = mapped_column(String)
    tag: Mapped[str] = mapped_column(String(64))


class EndUserOverride(_Timestamps, Base):
    """Other limits for one end user of a template's owner (a key, team or customer):
    ``limits`` in the ``end_user_limits`` shape; a part it leaves out is the template's."""

    __tablename__ = "end_user_overrides"

    owner_level: Mapped[str] = mapped_column(String(16), primary_key=True)  # virtual_key | team | customer
    owner_id: Mapped[str] = mapped_column(ID, primary_key=True)
    end_user: Mapped[str] = mapped_column(ID, primary_key=True)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)


class EndUserCounter(Base):
    """An end user's counter as last flushed (``b:<template>:<end user>`` …, nano-dollars
    for budgets): where an idle end user's usage is kept while their counter is out of
    memory, and read back when they return (`tollway.store.end_user_counters`)."""

    __tablename__ = "end_user_counters"

    counter: Mapped[str] = mapped_column(String(512), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger)
    last_reset_ms: Mapped[int] = mapped_column(BigInteger)


class _SpendSums:
    """What every rollup row adds up (spend in integer nano-dollars: sums stay exact on SQLite too)."""

    spend_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    denied_requests: Mapped[int] = mapped_column(BigInteger, default=0)


class SpendTotal(_SpendSums, Base):
    """Request-log totals per UTC hour and per UTC day, overall (dimension "all") and per
    value of one dimension (virtual_key_id, team_id, customer_id, provider or model): what
    an unfiltered spend report reads, a handful of rows per bucket. Written in the request
    log's own transaction; an absent id is the value ""."""

    __tablename__ = "spend_totals"
    __table_args__ = (
        UniqueConstraint("span", "bucket_start", "dimension", "value"),
        Index(None, "dimension", "span", "bucket_start"),
        Index(None, "dimension", "value", "span", "bucket_start"),  # one filtered value's buckets
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    span: Mapped[str] = mapped_column(String(8))  # "hour", "day" or "month"
    bucket_start: Mapped[datetime] = mapped_column(UtcDateTime)
    dimension: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String)


class SpendRollup(_SpendSums, Base):
    """Request-log totals per UTC day and per (key, team, customer, provider, model): what a
    report filtered by some of those reads for its whole days. Written in the request log's
    own transaction; absent ids are stored as "" so that one row stands for each combination
    (NULLs never conflict in a unique index)."""

    __tablename__ = "spend_rollups"
    __table_args__ = (
        UniqueConstraint("day", "virtual_key_id", "team_id", "customer_id", "provider", "model",
                         name="uq_spend_rollups_day_group"),  # the generated name is over PostgreSQL's 63
        Index(None, "virtual_key_id", "day"),
        Index(None, "team_id", "day"),
        Index(None, "customer_id", "day"),
        Index(None, "provider", "day"),
        Index(None, "model", "day"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    day: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    virtual_key_id: Mapped[str] = mapped_column(String)
    team_id: Mapped[str] = mapped_column(String)
    customer_id: Mapped[str] = mapped_column(String)
    provider: Mapped[str] = mapped_column(String)
    model: Mapped[str] = mapped_column(String)


class SpendRollupHour(_SpendSums, Base):
    """`SpendRollup` per UTC hour: what an hourly report filtered by one of (key, team,
    customer, provider, model) and grouped by another reads (a model's keys over a day)."""

    __tablename__ = "spend_rollup_hours"
    __table_args__ = (
        UniqueConstraint("hour", "virtual_key_id", "team_id", "customer_id", "provider", "model",
                         name="uq_spend_rollup_hours_hour_group"),
        Index(None, "virtual_key_id", "hour"),
        Index(None, "team_id", "hour"),
        Index(None, "customer_id", "hour"),
        Index(None, "provider", "hour"),
        Index(None, "model", "hour"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    virtual_key_id: Mapped[str] = mapped_column(String)
    team_id: Mapped[str] = mapped_column(String)
    customer_id: Mapped[str] = mapped_column(String)
    provider: Mapped[str] = mapped_column(String)
    model: Mapped[str] = mapped_column(String)


class AuditEntry(Base):
    """Who changed which entity, with the changed fields before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(256))
    # The admin token that made the change (its id and name, never its value); None for
    # the config file. The bootstrap token from the config is id "bootstrap".
    token_id: Mapped[str | None] = mapped_column(ID)
    token_name: Mapped[str | None] = mapped_column(ID)
    action: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(ID)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ConfigVersion(Base):
    """A single row whose version every config change bumps (nodes poll it to reload)."""

    __tablename__ = "config_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class ConfigChange(Base):
    """One entity a config version changed (kind and id; its new state is the row as of
    that version, or its absence). Nodes apply the changes since the version they hold;
    old rows are pruned (see `tollway.store.changes`)."""

    __tablename__ = "config_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(512))  # "key/provider" for a key's provider config


class EntityCount(Base):
    """How many rows a governed entity's table holds, kept exact by triggers on that table
    (migration 0017_entity_counts) in the transaction that inserts or deletes the rows:
    an unfiltered list's ``count`` at a million keys without counting them
    (`tollway.store.entity_counts`)."""

    __tablename__ = "entity_counts"

    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)


class AlertWebhook(Base):
    """A webhook added through the management API (those of the config file live there).
    The secret signs deliveries, so it is kept as given: it is never shown after creation."""

    __tablename__ = "alert_webhooks"

    id: Mapped[str] = mapped_column(UUID_ID, primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(ID)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(512))
    events: Mapped[list[str] | None] = mapped_column(JSON)  # None: every event
    format: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AlertCrossing(Base):
    """One alert of one limit's window, claimed by the node whose insert succeeded: the
    unique constraint is what makes a crossing delivered once, however many nodes see it."""

    __tablename__ = "alert_crossings"
    __table_args__ = (UniqueConstraint("counter", "window_start_ms", "event", "threshold"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    counter: Mapped[str] = mapped_column(String(512))
    window_start_ms: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


class AlertDelivery(Base):
    """One alert posted to one webhook: its status, attempts and last error (the delivery log)."""

    __tablename__ = "alert_deliveries"

    id: Mapped[str] = mapped_column(UUID_ID, primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String)
    counter: Mapped[str] = mapped_column(String(512))
    threshold: Mapped[float] = mapped_column(Float)
    webhook_id: Mapped[str] = mapped_column(ID)  # no foreign key: the log outlives a deleted webhook
    target: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16))  # pending, retrying, delivered, failed, dropped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class AdminToken(Base):
    """A scoped management API token (`tollway.api.admin_tokens`): only the sha256 of its
    value and a short prefix are kept. Revoked tokens stay (the audit log names them)."""

    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(ID)
    role: Mapped[str] = mapped_column(String(32))  # admin, manager, viewer, usage_reader
    scope_type: Mapped[str | None] = mapped_column(String(16))  # team or customer (managers only)
    scope_id: Mapped[str | None] = mapped_column(ID)
    value_hash: Mapped[str] = mapped_column(String(64), unique=True)
    value_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(ID)  # the id of the token that created it
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# The batch tables and the limit rules' table live in their own modules (one concern); imported here so that every
# user of `Base.metadata` (migrations, the schema checks) sees them.
from tollway.store import batch_tables, limit_rule_tables  # noqa: E402, F401
