"""Loading the config file's governance into the config store, at every start.

Ownership (`tollway.store.ownership`): the file is the source of truth for what it
declares. Every customer, team, virtual key and model config it declares is
``managed_by: config``: `apply_config` makes it exactly what the file says (fields the
file leaves out take their defaults; a key's value is kept when the file gives none),
and the management API refuses to change or delete it (409 ``managed_by_config``; its
usage may still be reset). A provider's settings always come from the file; its budget
and rate limit are the file's when the file states either, else the API's.

In one transaction it creates what is missing and updates what differs, matching
customers, teams and virtual keys by id, providers by name and model configs by
(model_name, provider). An API-managed entity the file now declares is taken over by
the file (logged as a warning). A config-managed entity the file no longer declares is
deleted, like any delete: its budgets and rate limits are retained with their usage,
so declaring it again restores its spend (`tollway.store.retention`); one that
API-managed entities still refer to (a team with keys created through the API) is
handed over to the API instead, with a warning. Usage is never touched, and running it
twice with the same file writes nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tollway.config.loader import provider_key_ids
from tollway.config.schema import (
    VK_PREFIX,
    LimitRuleConfig,
    ModelLimitConfig,
    Settings,
    TagConfig,
    VirtualKeyConfig,
)
from tollway.governance.engine import hash_key
from tollway.governance.names import model_key
from tollway.store.changes import record_changes
from tollway.store.database import Database
from tollway.store.entities import Diff, EntityError, EntityWriter, assign
from tollway.store.limit_rule_entities import check_rule_entities
from tollway.store.limit_rule_tables import LimitRuleRow
from tollway.store.ownership import delete_undeclared_keys, release_removed, take_over
from tollway.store.retention import purge_expired
from tollway.store.tables import (
    MANAGED_BY_API,
    MANAGED_BY_CONFIG,
    Base,
    Customer,
    ModelConfig,
    Provider,
    Tag,
    Team,
    VirtualKey,
    VKProviderConfig,
    new_id,
    utcnow,
)
from tollway.store.version import bump_version, config_change

T = TypeVar("T", bound=Base)

VALUE_PREFIX_LENGTH = 8
log = logging.getLogger(__name__)
_IDS_PER_QUERY = 500
_OWNER_FIELDS = frozenset({"team_id", "customer_id"})


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A virtual key value generated at creation; shown to the operator once, never stored."""

    id: str
    name: str
    value: str = field(repr=False)


class BootstrapError(EntityError):
    """The file conflicts with what the database holds (e.g. a key value already in use)."""


async def apply_config(
    db: Database, settings: Settings, *, now: datetime | None = None, actor: str = "config-file"
) -> list[GeneratedKey]:
    """Load ``settings.governance`` and each provider's limits; returns generated key values.

    The config version is bumped when anything changed; each changed entity gets an
    audit entry by ``actor``.
    """
    async with config_change(db) as session:
        applier = await session.run_sync(_apply, settings, now or utcnow(), actor)
        if applier.changed:
            await record_changes(session, await bump_version(session), applier.touched)
    return applier.generated


def _apply(session: Session, settings: Settings, now: datetime, actor: str) -> _Applier:
    """The synchronous part (run inside the async session's greenlet, so the ORM may lazy-load)."""
    applier = _Applier(session, now, actor)
    applier.run(settings)
    return applier


class _Applier(EntityWriter):
    def __init__(self, session: Session, now: datetime, actor: str) -> None:
        super().__init__(session, now, actor)
        self.generated: list[GeneratedKey] = []

    def run(self, settings: Settings) -> None:
        gov = settings.governance
        purged = purge_expired(self.session, self.now)
        if purged:
            log.info("config store: %d retained budgets and rate limits whose windows have passed were removed", purged)
        self._providers(settings)
        self._customers_and_teams(settings)
        delete_undeclared_keys(self, gov)
        self._virtual_keys(gov.virtual_keys)
        self._model_configs(gov.model_configs)
        self._tags(gov.tags)
        self._limit_rules(gov.limits)
        release_removed(self, gov)
        self.session.flush()

    # -- entities ----------------------------------------------------------------------

    def _providers(self, settings: Settings) -> None:
        existing = self._load(Provider, lambda p: p.name)
        for name, provider in settings.providers.items():
            # A provider's settings always come from the file; its limits when it states either.
            values = {"type": provider.type, "base_url": provider.base_url, "settings": _provider_settings(settings, name)}
            row = existing.get(name)
            if provider.model_fields_set & {"budget", "rate_limit"}:
                row, diff = self._governed(row, Provider, {"name": name}, values, provider, f"providers.{name}")
            else:
                row, diff = self.upsert(row, Provider, {"name": name}, values)
                if row.managed_by == MANAGED_BY_CONFIG:
                    self._release_provider_limits(row, diff)
            self.record(row, "provider", name, diff)
        for name, row in existing.items():
            if name not in settings.providers and row.managed_by == MANAGED_BY_CONFIG:
                # Gone from the file: it serves nothing; its limits stay as they were, the API's now.
                log.warning("config: provider %r is no longer in the config file; its limits are kept and managed "
                            "through the API from now on", name)
                diff = {}
                assign(row, {"managed_by": MANAGED_BY_API}, diff)
                self.record(row, "provider", name, diff)
        self.session.flush()

    def _release_provider_limits(self, row: Provider, diff: Diff) -> None:
        """The file stopped stating a provider's limits: they go (retained with their
        usage) and the API manages its limits from now on."""
        log.warning("config: provider %r: the file no longer states its budget or rate limit; they are removed "
                    "(usage retained) and its limits are managed through the API from now on", row.name)
        self.sync_budget(row, None, diff)
        self.sync_rate_limit(row, None, diff)
        assign(row, {"managed_by": MANAGED_BY_API}, diff)

    def _customers_and_teams(self, settings: Settings) -> None:
        customers = self._load(Customer, lambda c: c.id, only=[c.id for c in settings.governance.customers])
        for customer in settings.governance.customers:
            row, diff = self._governed(customers.get(customer.id), Customer, {"id": customer.id},
                                       {"name": customer.name}, customer, f"governance.customers {customer.id!r}")
            self.record(row, "customer", customer.id, diff)
        self.session.flush()  # teams reference customers
        teams = self._load(Team, lambda t: t.id, only=[t.id for t in settings.governance.teams])
        for team in settings.governance.teams:
            team_row, diff = self._governed(teams.get(team.id), Team, {"id": team.id},
                                            {"name": team.name, "customer_id": team.customer_id}, team,
                                            f"governance.teams {team.id!r}")
            self.record(team_row, "team", team.id, diff)
        self.session.flush()

    def _virtual_keys(self, keys: Iterable[VirtualKeyConfig]) -> None:
        keys = list(keys)
        existing = self._load(
            VirtualKey,
            lambda k: k.id,
            selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.budget),
            selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.rate_limit),
            selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.concurrency),
            only=[key.id for key in keys],
        )
        owners = _value_owners(self.session, [hash_key(key.value) for key in keys if key.value is not None])
        for key in keys:
            row = existing.get(key.id)
            values = {
                "name": key.name,
                "description": key.description,
                "is_active": key.is_active,
                "team_id": key.team_id,
                "customer_id": key.customer_id,
                "allowed_models": list(key.allowed_models),
                "expires_at": key.expires_at,
                "allowed_tags": list(key.allowed_tags),
                "forced_tags": list(key.forced_tags),
            }
            value = key.value
            if value is None and row is None:
                value = VK_PREFIX + secrets.token_urlsafe(32)
                self.generated.append(GeneratedKey(key.id, key.name, value))
            if value is not None:
                digest = hash_key(value)
                owner = owners.setdefault(digest, key.id)
                if owner != key.id:
                    raise BootstrapError(f"virtual key {key.id!r}: its value is already used by virtual key {owner!r}")
                values |= {"value_hash": digest, "value_prefix": value[:VALUE_PREFIX_LENGTH]}
                if row is None:
                    self.retention.inherit_by_value(key.id, digest)
            row, diff = self._governed(row, VirtualKey, {"id": key.id}, values, key,
                                       f"governance.virtual_keys {key.id!r}")
            self.sync_provider_configs(row, key.provider_configs, diff)
            self.record(row, "virtual_key", key.id, diff)
        self.session.flush()

    def _model_configs(self, configs: Iterable[ModelLimitConfig]) -> None:
        # Matched as requests are (without regard to case): a config the API created as
        # "GPT-4o" is the file's "gpt-4o", not a second set of limits for the same model.
        existing = self._load(ModelConfig, lambda m: (model_key(m.model_name), m.provider))
        for config in configs:
            row = existing.get((model_key(config.model_name), config.provider))
            identity = {"id": new_id(), "model_name": config.model_name, "provider": config.provider}
            where = f"governance.model_configs {config.model_name!r} on {config.provider or 'any provider'}"
            row, diff = self._governed(row, ModelConfig, identity, {}, config, where)
            self.record(row, "model_config", row.id, diff)

    def _tags(self, tags: Iterable[TagConfig]) -> None:
        tags = list(tags)
        existing = self._load(Tag, lambda t: t.id, only=[tag.name for tag in tags])
        for tag in tags:
            row, diff = self._governed(existing.get(tag.name), Tag, {"id": tag.name}, {}, tag,
                                       f"governance.tags {tag.name!r}")
            self.record(row, "tag", tag.name, diff)
        self.session.flush()

    def _limit_rules(self, rules: Iterable[LimitRuleConfig]) -> None:
        rules = list(rules)
        existing = self._load(LimitRuleRow, lambda r: r.id, only=[rule.name for rule in rules])
        for rule in rules:
            where = f"governance.limits {rule.name!r}"
            check_rule_entities(self.session, rule, where)
            values = {"match": rule.match.named(), "per": list(rule.per), "when_missing": rule.when_missing,
                      "description": rule.description}
            row, diff = self._governed(existing.get(rule.name), LimitRuleRow, {"id": rule.name}, values, rule, where)
            self.record(row, "limit_rule", rule.name, diff)
        self.session.flush()

    # -- building blocks -----------------------------------------------------------------

    def _load(self, entity: type[T], key: Callable[[T], Any], *options: Any,
              only: list[str] | None = None) -> dict[Any, T]:
        """Every row of ``entity`` (or those with an id in ``only``: the store may hold a
        million keys the file does not name) with its budget, rate limit and concurrency
        limit, by ``key``."""
        statement = select(entity).options(
            selectinload(entity.budget), selectinload(entity.rate_limit),  # type: ignore[attr-defined]
            selectinload(entity.concurrency), *options  # type: ignore[attr-defined]
        )
        if only is None:
            return {key(row): row for row in self.session.scalars(statement)}
        rows: dict[Any, T] = {}
        for start in range(0, len(only), _IDS_PER_QUERY):
            chunk = only[start:start + _IDS_PER_QUERY]
            rows |= {key(row): row for row in self.session.scalars(statement.where(entity.id.in_(chunk)))}  # type: ignore[attr-defined]
        return rows

    def _governed(self, row: T | None, entity: type[T], identity: Mapping[str, Any], values: Mapping[str, Any],
                  config: Any, where: str) -> tuple[T, Diff]:
        """Create or update the row as the file's, then its budget, rate limit and concurrency limit."""
        if row is not None:
            take_over(row, where)
        row, diff = self.upsert(row, entity, identity, {**values, "managed_by": MANAGED_BY_CONFIG})
        self.sync_budget(row, config.budget, diff)
        self.sync_rate_limit(row, config.rate_limit, diff)
        self.sync_concurrency(row, config.concurrency, diff)
        self.sync_end_users(row, config, diff)
        return row, diff


def _value_owners(session: Session, digests: list[str]) -> dict[str, str]:
    """The stored keys holding any of ``digests``: value hash -> key id."""
    owners: dict[str, str] = {}
    for start in range(0, len(digests), _IDS_PER_QUERY):
        chunk = digests[start:start + _IDS_PER_QUERY]
        owners |= dict(session.execute(select(VirtualKey.value_hash, VirtualKey.id)
                                       .where(VirtualKey.value_hash.in_(chunk))).tuples().all())
    return owners


def _provider_settings(settings: Settings, name: str) -> dict[str, Any]:
    """A provider's settings without secrets: key ids and weights, never key values or
    header values."""
    provider = settings.providers[name]
    keys = [
        {"id": key_id, "weight": key.weight, "models": list(key.models)}
        for key_id, key in zip(provider_key_ids(settings, name), provider.keys, strict=True)
    ]
    return {
        "api_version": provider.api_version,
        "deployments": dict(provider.deployments),
        "timeout": provider.timeout,
        "connect_timeout": provider.connect_timeout,
        "max_retries": provider.max_retries,
        "retry_backoff": provider.retry_backoff,
        "keys": keys,
        "header_names": sorted(provider.headers),
    }
