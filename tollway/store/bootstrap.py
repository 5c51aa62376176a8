"""Loading the config file's governance into the config store, idempotently.

`apply_config` runs at every start. In one transaction it creates the entities of the
file that are missing and updates existing ones, matching customers, teams and virtual
keys by id, providers by name and model configs by (model_name, provider).

For an entity that already exists, only the fields the file actually states are applied
(pydantic's ``model_fields_set``): a key blocked through the management API stays
blocked at the next restart unless the file says ``is_active``, and a budget added
through the API stays unless the file states ``budget`` (``budget: null`` deletes it).
A stated budget, rate limit or list of provider configs is applied whole: it becomes
exactly what the file says. A key's owner (``team_id``, ``customer_id``) is one
statement: stating either sets both. New entities get every field, defaults included.

It never touches the usage or last reset of an existing budget or rate limit, and never
deletes entities the file does not mention (the management API may have created them).
Running it twice with the same file writes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tollway.config.loader import provider_key_ids
from tollway.config.schema import VK_PREFIX, ModelLimitConfig, Settings, VirtualKeyConfig
from tollway.governance.engine import hash_key
from tollway.store.changes import record_changes
from tollway.store.database import Database
from tollway.store.entities import Diff, EntityError, EntityWriter
from tollway.store.tables import Base, Customer, ModelConfig, Provider, Team, VirtualKey, VKProviderConfig, new_id, utcnow
from tollway.store.version import bump_version, lock_config

T = TypeVar("T", bound=Base)

VALUE_PREFIX_LENGTH = 8
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
    async with db.session() as session:
        await lock_config(session)
        applier = await session.run_sync(_apply, settings, now or utcnow(), actor)
        if applier.changed:
            await record_changes(session, await bump_version(session), applier.touched)
    return applier.generated


def _apply(session: Session, settings: Settings, now: datetime, actor: str) -> _Applier:
    """The synchronous part (run inside the async session's greenlet, so the ORM may lazy-load)."""
    applier = _Applier(session, now, actor)
    applier.run(settings)
    return applier


def _stated(config: BaseModel, row: Any, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` for a new row; for an existing one, those the file states."""
    if row is None:
        return values
    stated = set(config.model_fields_set)
    if stated & _OWNER_FIELDS:
        stated |= _OWNER_FIELDS
    return {name: value for name, value in values.items() if name in stated}


class _Applier(EntityWriter):
    def __init__(self, session: Session, now: datetime, actor: str) -> None:
        super().__init__(session, now, actor)
        self.generated: list[GeneratedKey] = []

    def run(self, settings: Settings) -> None:
        gov = settings.governance
        self._providers(settings)
        self._customers_and_teams(settings)
        self._virtual_keys(gov.virtual_keys)
        self._model_configs(gov.model_configs)
        self.session.flush()

    # -- entities ----------------------------------------------------------------------

    def _providers(self, settings: Settings) -> None:
        existing = self._load(Provider, lambda p: p.name)
        for name, provider in settings.providers.items():
            # A provider's settings always come from the file; its limits only when stated.
            values = {"type": provider.type, "base_url": provider.base_url, "settings": _provider_settings(settings, name)}
            row, diff = self._governed(existing.get(name), Provider, {"name": name}, values, provider)
            self.record(row, "provider", name, diff)
        self.session.flush()

    def _customers_and_teams(self, settings: Settings) -> None:
        customers = self._load(Customer, lambda c: c.id, only=[c.id for c in settings.governance.customers])
        for customer in settings.governance.customers:
            row = customers.get(customer.id)
            values = _stated(customer, row, {"name": customer.name})
            row, diff = self._governed(row, Customer, {"id": customer.id}, values, customer)
            self.record(row, "customer", customer.id, diff)
        self.session.flush()  # teams reference customers
        teams = self._load(Team, lambda t: t.id, only=[t.id for t in settings.governance.teams])
        for team in settings.governance.teams:
            team_row = teams.get(team.id)
            values = _stated(team, team_row, {"name": team.name, "customer_id": team.customer_id})
            team_row, diff = self._governed(team_row, Team, {"id": team.id}, values, team)
            self.record(team_row, "team", team.id, diff)
        self.session.flush()

    def _virtual_keys(self, keys: Iterable[VirtualKeyConfig]) -> None:
        keys = list(keys)
        existing = self._load(
            VirtualKey,
            lambda k: k.id,
            selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.budget),
            selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.rate_limit),
            only=[key.id for key in keys],
        )
        owners = _value_owners(self.session, [hash_key(key.value) for key in keys if key.value is not None])
        for key in keys:
            row = existing.get(key.id)
            values = _stated(key, row, {
                "name": key.name,
                "description": key.description,
                "is_active": key.is_active,
                "team_id": key.team_id,
                "customer_id": key.customer_id,
                "allowed_models": list(key.allowed_models),
            })
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
            created = row is None
            row, diff = self._governed(row, VirtualKey, {"id": key.id}, values, key)
            if created or "provider_configs" in key.model_fields_set:
                self.sync_provider_configs(row, key.provider_configs, diff)
            self.record(row, "virtual_key", key.id, diff)
        self.session.flush()

    def _model_configs(self, configs: Iterable[ModelLimitConfig]) -> None:
        existing = self._load(ModelConfig, lambda m: (m.model_name, m.provider))
        for config in configs:
            row = existing.get((config.model_name, config.provider))
            identity = {"id": new_id(), "model_name": config.model_name, "provider": config.provider}
            row, diff = self._governed(row, ModelConfig, identity, {}, config)
            self.record(row, "model_config", row.id, diff)

    # -- building blocks -----------------------------------------------------------------

    def _load(self, entity: type[T], key: Callable[[T], Any], *options: Any,
              only: list[str] | None = None) -> dict[Any, T]:
        """Every row of ``entity`` (or those with an id in ``only``: the store may hold a
        million keys the file does not name) with its budget and rate limit, by ``key``."""
        statement = select(entity).options(
            selectinload(entity.budget), selectinload(entity.rate_limit), *options  # type: ignore[attr-defined]
        )
        if only is None:
            return {key(row): row for row in self.session.scalars(statement)}
        rows: dict[Any, T] = {}
        for start in range(0, len(only), _IDS_PER_QUERY):
            chunk = only[start:start + _IDS_PER_QUERY]
            rows |= {key(row): row for row in self.session.scalars(statement.where(entity.id.in_(chunk)))}  # type: ignore[attr-defined]
        return rows

    def _governed(self, row: T | None, entity: type[T], identity: Mapping[str, Any], values: Mapping[str, Any],
                  config: Any) -> tuple[T, Diff]:
        """Create or update the row, then its budget and rate limit (when new or stated)."""
        created = row is None
        row, diff = self.upsert(row, entity, identity, values)
        if created or "budget" in config.model_fields_set:
            self.sync_budget(row, config.budget, diff)
        if created or "rate_limit" in config.model_fields_set:
            self.sync_rate_limit(row, config.rate_limit, diff)
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
