"""Loading the config file's governance into the config store, idempotently.

`apply_config` runs at every start. In one transaction it creates the entities of the
file that are missing and updates the fields that differ, matching customers, teams
and virtual keys by id, providers by name and model configs by (model_name, provider).
For every entity it declares, the file wins: its budget, rate limit and (for a virtual
key) provider configs become exactly what the file says; a budget or rate limit removed
in the file is deleted. It never touches the usage or last reset of an existing budget
or rate limit, and never deletes entities the file does not mention (the management API
may have created them). Running it twice with the same file writes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tollway.config.loader import provider_key_ids
from tollway.config.schema import (
    VK_PREFIX,
    BudgetConfig,
    ModelLimitConfig,
    ProviderConfigEntry,
    RateLimitConfig,
    Settings,
    VirtualKeyConfig,
)
from tollway.governance.engine import hash_key
from tollway.store.database import Database
from tollway.store.tables import (
    AuditEntry,
    Base,
    Budget,
    Customer,
    ModelConfig,
    Provider,
    RateLimit,
    Team,
    VirtualKey,
    VKProviderConfig,
    new_id,
    utcnow,
)
from tollway.store.types import to_money
from tollway.store.version import bump_version, lock_config

T = TypeVar("T", bound=Base)
Diff = dict[str, tuple[Any, Any]]  # field -> (before, after)

VALUE_PREFIX_LENGTH = 8


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A virtual key value generated at creation; shown to the operator once, never stored."""

    id: str
    name: str
    value: str = field(repr=False)


class BootstrapError(Exception):
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
            await bump_version(session)
    return applier.generated


def _apply(session: Session, settings: Settings, now: datetime, actor: str) -> _Applier:
    """The synchronous part (run inside the async session's greenlet, so the ORM may lazy-load)."""
    applier = _Applier(session, now, actor)
    applier.run(settings)
    return applier


class _Applier:
    def __init__(self, session: Session, now: datetime, actor: str) -> None:
        self.session = session
        self.now = now
        self.actor = actor
        self.generated: list[GeneratedKey] = []
        self.changed = False

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
            values = {"type": provider.type, "base_url": provider.base_url, "settings": _provider_settings(settings, name)}
            row, diff = self._governed(existing.get(name), Provider, {"name": name}, values,
                                       provider.budget, provider.rate_limit)
            self._record(row, "provider", name, diff)
        self.session.flush()

    def _customers_and_teams(self, settings: Settings) -> None:
        customers = self._load(Customer, lambda c: c.id)
        for customer in settings.governance.customers:
            customer_row, diff = self._governed(customers.get(customer.id), Customer, {"id": customer.id},
                                                {"name": customer.name}, customer.budget, customer.rate_limit)
            self._record(customer_row, "customer", customer.id, diff)
        self.session.flush()  # teams reference customers
        teams = self._load(Team, lambda t: t.id)
        for team in settings.governance.teams:
            values = {"name": team.name, "customer_id": team.customer_id}
            team_row, diff = self._governed(teams.get(team.id), Team, {"id": team.id}, values,
                                            team.budget, team.rate_limit)
            self._record(team_row, "team", team.id, diff)
        self.session.flush()

    def _virtual_keys(self, keys: Iterable[VirtualKeyConfig]) -> None:
        existing = self._load(
            VirtualKey,
            lambda k: k.id,
            selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.budget),
            selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.rate_limit),
        )
        owners = {key.value_hash: key.id for key in existing.values()}
        for key in keys:
            row = existing.get(key.id)
            values: dict[str, Any] = {
                "name": key.name,
                "description": key.description,
                "is_active": key.is_active,
                "team_id": key.team_id,
                "customer_id": key.customer_id,
                "allowed_models": list(key.allowed_models),
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
            row, diff = self._governed(row, VirtualKey, {"id": key.id}, values, key.budget, key.rate_limit)
            self._provider_configs(row, key.provider_configs, diff)
            self._record(row, "virtual_key", key.id, diff)
        self.session.flush()

    def _provider_configs(self, key: VirtualKey, configs: list[ProviderConfigEntry], diff: Diff) -> None:
        current = {pc.provider: pc for pc in key.provider_configs}
        wanted = {pc.provider for pc in configs}
        for provider, row in current.items():
            if provider not in wanted:
                diff[f"provider_configs.{provider}"] = (_view(row, ("weight", "allowed_models", "allowed_keys")), None)
                key.provider_configs.remove(row)  # delete-orphan removes it with its limits
        for config in configs:
            values = {"weight": config.weight, "allowed_models": list(config.allowed_models),
                      "allowed_keys": list(config.allowed_keys)}
            prefix = f"provider_configs.{config.provider}"
            existing = current.get(config.provider)
            if existing is None:
                existing = VKProviderConfig(id=new_id(), provider=config.provider, **values)
                key.provider_configs.append(existing)
                diff[prefix] = (None, values)
            else:
                _assign(existing, values, diff, prefix + ".")
            self._budget(existing, config.budget, diff, prefix + ".budget")
            self._rate_limit(existing, config.rate_limit, diff, prefix + ".rate_limit")

    def _model_configs(self, configs: Iterable[ModelLimitConfig]) -> None:
        existing = self._load(ModelConfig, lambda m: (m.model_name, m.provider))
        for config in configs:
            row = existing.get((config.model_name, config.provider))
            identity = {"id": new_id(), "model_name": config.model_name, "provider": config.provider}
            row, diff = self._governed(row, ModelConfig, identity, {}, config.budget, config.rate_limit)
            self._record(row, "model_config", row.id, diff)

    # -- building blocks -----------------------------------------------------------------

    def _load(self, entity: type[T], key: Callable[[T], Any], *options: Any) -> dict[Any, T]:
        """Every row of ``entity`` with its budget and rate limit, by ``key``."""
        statement = select(entity).options(
            selectinload(entity.budget), selectinload(entity.rate_limit), *options  # type: ignore[attr-defined]
        )
        return {key(row): row for row in self.session.scalars(statement)}

    def _governed(self, row: T | None, entity: type[T], identity: Mapping[str, Any], values: Mapping[str, Any],
                  budget: BudgetConfig | None, rate_limit: RateLimitConfig | None) -> tuple[T, Diff]:
        """Create ``entity`` (``identity`` + ``values``) or update the differing values,
        then sync its budget and rate limit; returns the row and what changed."""
        diff: Diff = {}
        if row is None:
            row = entity(**identity, **values, created_at=self.now, updated_at=self.now)
            self.session.add(row)
            diff[_CREATED] = (None, {**identity, **values})
        else:
            _assign(row, values, diff)
        self._budget(row, budget, diff, "budget")
        self._rate_limit(row, rate_limit, diff, "rate_limit")
        return row, diff

    def _budget(self, owner: Any, config: BudgetConfig | None, diff: Diff, prefix: str) -> None:
        values: dict[str, Any] | None = None
        if config is not None:
            max_limit = to_money(config.max_limit)
            if max_limit <= 0:
                raise BootstrapError(f"a budget of {config.max_limit} USD rounds to zero at nano-dollar precision")
            values = {
                "max_limit": max_limit,
                "reset_duration": config.reset_duration,
                "calendar_aligned": config.calendar_aligned,
                "timezone": config.timezone,
                "week_start": config.week_start,
            }
        self._sync_owned(owner, "budget", values, diff, prefix,
                         lambda: Budget(id=new_id(), current_usage=Decimal(0), last_reset=self.now))

    def _rate_limit(self, owner: Any, config: RateLimitConfig | None, diff: Diff, prefix: str) -> None:
        values = None if config is None else config.model_dump()
        self._sync_owned(owner, "rate_limit", values, diff, prefix,
                         lambda: RateLimit(id=new_id(), token_current_usage=0, request_current_usage=0,
                                           token_last_reset=self.now, request_last_reset=self.now))

    def _sync_owned(self, owner: Any, attribute: str, values: dict[str, Any] | None, diff: Diff, prefix: str,
                    make: Callable[[], Budget | RateLimit]) -> None:
        """Create, update (limits only, never usage) or delete an owned budget / rate limit."""
        current = getattr(owner, attribute)
        if values is None:
            if current is not None:
                diff[prefix] = (_view(current, _LIMIT_FIELDS[attribute]), None)
                setattr(owner, attribute, None)  # delete-orphan deletes the row
            return
        if current is None:
            created = make()
            for name, value in values.items():
                setattr(created, name, value)
            setattr(owner, attribute, created)
            diff[prefix] = (None, values)
            return
        _assign(current, values, diff, prefix + ".")

    def _record(self, row: Any, kind: str, ident: str, diff: Diff) -> None:
        """Bump the row's updated_at and write an audit entry when anything changed."""
        if not diff:
            return
        self.changed = True
        if diff.pop("value_hash", None) is not None:  # a key's hash stays out of the audit log
            diff["value"] = ("(previous)", "(replaced)")
        created = diff.pop(_CREATED, None)
        if created is None:
            row.updated_at = self.now
            before: dict[str, Any] | None = {name: old for name, (old, _) in diff.items()}
            after = {name: new for name, (_, new) in diff.items()}
        else:
            before, after = None, {**created[1], **{name: new for name, (_, new) in diff.items()}}
            after.pop("value_hash", None)
        action = "create" if created is not None else "update"
        self.session.add(AuditEntry(at=self.now, actor=self.actor, action=action, entity_type=kind,
                                    entity_id=ident, before=_jsonable(before), after=_jsonable(after)))


_CREATED = "(created)"
_LIMIT_FIELDS = {
    "budget": ("max_limit", "reset_duration", "calendar_aligned", "timezone", "week_start"),
    "rate_limit": ("token_max_limit", "token_reset_duration", "request_max_limit", "request_reset_duration"),
}


def _assign(row: Any, values: Mapping[str, Any], diff: Diff, prefix: str = "") -> None:
    """Set the fields that differ (so unchanged rows are never written) and note them."""
    for name, value in values.items():
        old = getattr(row, name)
        if old != value:
            setattr(row, name, value)
            diff[prefix + name] = (old, value)


def _view(row: Any, fields: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in fields}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


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
