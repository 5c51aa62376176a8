"""Building the immutable `PolicySnapshot` the governance engine decides over.

Money becomes integer nano-dollars, durations are parsed and calendar alignment is
resolved here, once per configuration version, so the hot path never runs SQL or parses
anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.governance.durations import Alignment, parse_duration
from tollway.governance.model import (
    BudgetPolicy,
    ConcurrencyPolicy,
    Governed,
    Level,
    PolicySnapshot,
    ProviderConfigPolicy,
    RateLimitPolicy,
    Scope,
    TeamPolicy,
    VirtualKeyPolicy,
)
from tollway.store.database import Database
from tollway.store.tables import (
    Budget,
    ConcurrencyLimit,
    Customer,
    ModelConfig,
    Provider,
    RateLimit,
    Team,
    VirtualKey,
    VKProviderConfig,
)
from tollway.store.version import config_version, read_version

__all__ = ["config_version", "load_snapshot", "usd_to_nano"]  # config_version: from version.py

K = TypeVar("K")
V = TypeVar("V")


def usd_to_nano(amount: Decimal) -> int:
    """Exact for the 9-decimal amounts the store holds."""
    return int(amount.scaleb(9).to_integral_value())


async def load_snapshot(db: Database, *, enforce_virtual_keys: bool, version: int | None = None) -> PolicySnapshot:
    """Read every governance entity and return the snapshot.

    ``version`` defaults to the stored config version, read before the entities: a
    change committed meanwhile then shows up as a newer version at the next check, so
    no change is ever missed (at worst it is loaded twice).
    """
    async with db.session() as session:
        if version is None:
            version = await read_version(session)
        return await _Reader(session).snapshot(enforce_virtual_keys, version)


class _Reader:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.budgets: dict[str, BudgetPolicy] = {}
        self.rate_limits: dict[str, RateLimitPolicy] = {}
        self.concurrency: dict[str, ConcurrencyPolicy] = {}

    async def snapshot(self, enforce_virtual_keys: bool, version: int) -> PolicySnapshot:
        # Retained limits (kept with their usage after their owner dropped them) govern nothing.
        for budget in await self.session.scalars(select(Budget).where(Budget.retained_for.is_(None))):
            self.budgets[budget.id] = _budget_policy(budget)
        for rate_limit in await self.session.scalars(select(RateLimit).where(RateLimit.retained_for.is_(None))):
            self.rate_limits[rate_limit.id] = _rate_limit_policy(rate_limit)
        for limit in await self._all(ConcurrencyLimit):
            self.concurrency[limit.id] = ConcurrencyPolicy(limit.id, limit.max_in_flight, limit.queue_timeout_ms)
        providers = {
            row.name: self._governed(row, Level.PROVIDER, row.name, row.name)
            for row in await self._all(Provider)
            if row.budget_id or row.rate_limit_id or row.concurrency_limit_id
        }
        model_configs = {
            (row.model_name, row.provider): self._governed(row, Level.MODEL, row.id, _model_label(row))
            for row in await self._all(ModelConfig)
        }
        customers = {row.id: self._governed(row, Level.CUSTOMER, row.id, row.name) for row in await self._all(Customer)}
        teams = {
            row.id: TeamPolicy(customer_id=row.customer_id, limits=self._governed(row, Level.TEAM, row.id, row.name))
            for row in await self._all(Team)
        }
        by_key: dict[str, dict[str, ProviderConfigPolicy]] = {}
        for pc in await self._all(VKProviderConfig):
            by_key.setdefault(pc.virtual_key_id, {})[pc.provider] = self._provider_config(pc)
        keys_by_hash = {
            row.value_hash: self._virtual_key(row, by_key.get(row.id, {})) for row in await self._all(VirtualKey)
        }
        return PolicySnapshot(
            providers=_frozen(providers),
            model_configs=_frozen(model_configs),
            keys_by_hash=_frozen(keys_by_hash),
            teams=_frozen(teams),
            customers=_frozen(customers),
            enforce_virtual_keys=enforce_virtual_keys,
            version=version,
        )

    async def _all(self, entity: type[V]) -> list[V]:
        return list(await self.session.scalars(select(entity)))

    def _governed(self, row: Any, level: Level, ident: str, name: str) -> Governed:
        return Governed(
            scope=Scope(level, ident, name),
            budget=self.budgets.get(row.budget_id) if row.budget_id else None,
            rate_limit=self.rate_limits.get(row.rate_limit_id) if row.rate_limit_id else None,
            concurrency=self.concurrency.get(row.concurrency_limit_id) if row.concurrency_limit_id else None,
        )

    def _provider_config(self, row: VKProviderConfig) -> ProviderConfigPolicy:
        return ProviderConfigPolicy(
            provider=row.provider,
            weight=row.weight,
            allowed_models=frozenset(row.allowed_models or ()),
            allowed_keys=frozenset(row.allowed_keys or ()),
            limits=self._governed(row, Level.PROVIDER_CONFIG, row.id, row.provider),
        )

    def _virtual_key(self, row: VirtualKey, provider_configs: Mapping[str, ProviderConfigPolicy]) -> VirtualKeyPolicy:
        return VirtualKeyPolicy(
            id=row.id,
            name=row.name,
            is_active=row.is_active,
            team_id=row.team_id,
            customer_id=row.customer_id,
            allowed_models=frozenset(row.allowed_models or ()),
            provider_configs=_frozen(provider_configs),
            limits=self._governed(row, Level.VIRTUAL_KEY, row.id, row.name),
        )


def _budget_policy(row: Budget) -> BudgetPolicy:
    return BudgetPolicy(
        id=row.id,
        max_limit_nano=usd_to_nano(row.max_limit),
        duration=parse_duration(row.reset_duration),
        alignment=Alignment(row.timezone, row.week_start) if row.calendar_aligned else None,
    )


def _rate_limit_policy(row: RateLimit) -> RateLimitPolicy:
    tokens = row.token_max_limit is not None and row.token_reset_duration is not None
    requests = row.request_max_limit is not None and row.request_reset_duration is not None
    return RateLimitPolicy(
        id=row.id,
        token_max_limit=row.token_max_limit if tokens else None,
        token_duration=parse_duration(row.token_reset_duration) if tokens else None,  # type: ignore[arg-type]
        request_max_limit=row.request_max_limit if requests else None,
        request_duration=parse_duration(row.request_reset_duration) if requests else None,  # type: ignore[arg-type]
    )


def _model_label(row: ModelConfig) -> str:
    return f"{row.provider}/{row.model_name}" if row.provider else row.model_name


def _frozen(mapping: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping))

