"""Building the immutable `PolicySnapshot` the governance engine decides over.

Money becomes integer nano-dollars, durations are parsed and calendar alignment is
resolved here, once per configuration version, so the hot path never runs SQL or parses
anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeVar

from immutables import Map, MapMutation
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.governance.durations import Alignment, Duration, parse_duration
from tollway.governance.limit_rules import LimitRule, new_rule
from tollway.governance.model import (
    ESTIMATE,
    NEVER_MS,
    SHADOW,
    BudgetPolicy,
    ConcurrencyPolicy,
    Enforcement,
    Governed,
    Level,
    PolicySnapshot,
    ProviderConfigPolicy,
    RateLimitPolicy,
    Scope,
    TeamPolicy,
    VirtualKeyPolicy,
)
from tollway.governance.names import model_key
from tollway.store.database import Database
from tollway.store.end_user_templates import source_policy, template_policy
from tollway.store.limit_rule_tables import LimitRuleRow
from tollway.store.tables import (
    Budget,
    ConcurrencyLimit,
    Customer,
    EndUserOverride,
    ModelConfig,
    Provider,
    RateLimit,
    Tag,
    Team,
    VirtualKey,
    VKProviderConfig,
)
from tollway.store.version import config_version, read_version

__all__ = ["PolicyReader", "config_version", "load_snapshot", "usd_to_nano"]  # config_version: from version.py

K = TypeVar("K")
V = TypeVar("V")

BATCH_ROWS = 5000
_IDS_PER_QUERY = 500  # bound parameters per IN list (SQLite allows 32,766 in all)
_ROWS_PER_TURN = 500  # rows looked through per turn of the loop (under a millisecond)
_NO_NAMES: frozenset[str] = frozenset()
# Columns no policy reads: left out of the loader's queries (a million rows of timestamps
# and usage would cost more to convert than the policies themselves).
_NOT_POLICY = frozenset({"created_at", "updated_at", "description", "value_prefix", "settings", "current_usage",
                         "last_reset", "token_current_usage", "request_current_usage", "token_last_reset",
                         "request_last_reset", "last_used_at"})
_NO_CONFIGS: Mapping[str, ProviderConfigPolicy] = MappingProxyType({})


def usd_to_nano(amount: Decimal) -> int:
    """Exact for the 9-decimal amounts the store holds."""
    return int(amount.scaleb(9).to_integral_value())


async def load_snapshot(db: Database, *, enforce_virtual_keys: bool, version: int | None = None,
                        defaults: Enforcement = ESTIMATE) -> PolicySnapshot:
    """Read every governance entity and return the snapshot.

    ``version`` defaults to the stored config version, read before the entities: a
    change committed meanwhile then shows up as a newer version at the next check, so
    no change is ever missed (at worst it is loaded twice).
    """
    async with db.session() as session:
        if version is None:
            version = await read_version(session)
        return await PolicyReader(session, defaults).snapshot(enforce_virtual_keys, version)


class PolicyReader:
    """Builds policies from rows: of every entity (`snapshot`), or of some
    (`tollway.store.policy_changes`, which loads their limits with `load_limits`).

    Rows are read as plain column tuples in batches, never as ORM objects, and the
    event loop gets a turn between batches: a million keys load in seconds without
    holding up the requests served meanwhile.
    """

    def __init__(self, session: AsyncSession, defaults: Enforcement = ESTIMATE) -> None:
        self.defaults = defaults  # the global enforcement, for limits that state none
        self.session = session
        self.defaults = defaults
        self.budgets: dict[str, BudgetPolicy] = {}
        self.rate_limits: dict[str, RateLimitPolicy] = {}
        self.concurrency: dict[str, ConcurrencyPolicy] = {}
        # Stored end-user overrides by (owner level, owner id), then end user.
        self.end_user_overrides: dict[tuple[str, str], dict[str, Any]] = {}

    async def snapshot(self, enforce_virtual_keys: bool, version: int, *, keys: bool = True) -> PolicySnapshot:
        """Every entity's policy; without ``keys``, none of the virtual keys (they are then
        loaded on demand, `tollway.store.key_cache`) nor their limits."""
        provider_rows, model_rows = await self.rows(Provider), await self.rows(ModelConfig)
        customer_rows, team_rows = await self.rows(Customer), await self.rows(Team)
        tag_rows, rule_rows = await self.rows(Tag), await self.rows(LimitRuleRow)
        await self.load_limits(None if keys else [*provider_rows, *model_rows, *customer_rows, *team_rows, *tag_rows,
                                                  *rule_rows])
        providers = {
            row.name: self._governed(row, Level.PROVIDER, row.name, row.name)
            for row in provider_rows
            if row.budget_id or row.rate_limit_id or row.concurrency_limit_id
        }
        model_configs = {(model_key(row.model_name), row.provider): self.model_config(row) for row in model_rows}
        customers = {row.id: self.customer(row) for row in customer_rows}
        teams = {row.id: self.team(row) for row in team_rows}
        return PolicySnapshot(
            providers=Map(providers),
            model_configs=Map(model_configs),
            keys_by_hash=await self._all_keys() if keys else Map(),
            teams=Map(teams),
            customers=Map(customers),
            tags=Map({row.id: policy for row in tag_rows if (policy := self.tag(row)) is not None}),
            limit_rules=Map({row.id: rule for row in rule_rows if (rule := self.limit_rule(row)) is not None}),
            enforce_virtual_keys=enforce_virtual_keys,
            version=version,
        )

    async def _all_keys(self) -> Map[str, VirtualKeyPolicy]:
        by_key: dict[str, dict[str, ProviderConfigPolicy]] = {}
        async for batch in self.batches(VKProviderConfig):
            for pc in batch:
                by_key.setdefault(pc.virtual_key_id, {})[pc.provider] = self._provider_config(pc)
        keys: MapMutation[str, VirtualKeyPolicy] = Map().mutate()
        async for batch in self.batches(VirtualKey):
            for row in batch:
                for digest, policy in self._key_entries(self._virtual_key(row, by_key.get(row.id, _NO_CONFIGS)), row):
                    keys[digest] = policy
        return keys.finish()

    async def load_limits(self, owners: Iterable[Any] | None = None) -> None:
        """Load the budgets, rate limits and concurrency limits of ``owners`` (rows), or all
        of them. Retained limits (kept with their usage after their owner dropped them)
        govern nothing and are skipped."""
        refs = None if owners is None else await _references(owners)
        async for batch in self.batches(Budget, None if refs is None else refs.budgets):
            for row in batch:
                if row.retained_for is None:
                    self.budgets[row.id] = budget_policy(row, self.defaults)
        async for batch in self.batches(RateLimit, None if refs is None else refs.rate_limits):
            for row in batch:
                if row.retained_for is None:
                    self.rate_limits[row.id] = rate_limit_policy(row, self.defaults)
        async for batch in self.batches(ConcurrencyLimit, None if refs is None else refs.concurrency):
            for row in batch:
                self.concurrency[row.id] = concurrency_policy(row)
        templated = None if refs is None else refs.templated
        if templated != set():
            async for batch in self.batches(EndUserOverride, templated, "owner_id"):
                for row in batch:
                    self.end_user_overrides.setdefault((row.owner_level, row.owner_id), {})[row.end_user] = row.limits

    async def rows(self, entity: type, ids: Collection[Any] | None = None, column: str = "id") -> list[Any]:
        """The rows of ``entity`` (those whose ``column`` is in ``ids``, when given)."""
        return [row async for batch in self.batches(entity, ids, column) for row in batch]

    async def batches(self, entity: type, ids: Collection[Any] | None = None,
                      column: str = "id") -> AsyncIterator[Sequence[Any]]:
        """``entity``'s rows as column tuples, `BATCH_ROWS` at a time, yielding to the loop."""
        table = entity.__table__  # type: ignore[attr-defined]
        statement = _policy_columns(table)
        if ids is not None:
            ordered = sorted(ids, key=str)
            for start in range(0, len(ordered), _IDS_PER_QUERY):
                chunk = ordered[start:start + _IDS_PER_QUERY]
                yield (await self.session.execute(statement.where(table.c[column].in_(chunk)))).all()
                await asyncio.sleep(0)
            return
        result = await self.session.stream(statement.execution_options(yield_per=BATCH_ROWS))
        async for batch in result.partitions(BATCH_ROWS):
            yield batch
            await asyncio.sleep(0)  # let requests run between batches

    def model_config(self, row: Any) -> Governed:
        return self._governed(row, Level.MODEL, row.id, _model_label(row))

    def customer(self, row: Any) -> Governed:
        return self._governed(row, Level.CUSTOMER, row.id, row.name)

    def team(self, row: Any) -> TeamPolicy:
        return TeamPolicy(customer_id=row.customer_id, limits=self._governed(row, Level.TEAM, row.id, row.name))

    def tag(self, row: Any) -> Governed | None:
        """A tag's limits; None when it has none (it is then left out of the snapshot: a
        request carrying it costs nothing)."""
        if not (row.budget_id or row.rate_limit_id or row.concurrency_limit_id):
            return None
        return self._governed(row, Level.TAG, row.id, row.id)

    def limit_rule(self, row: Any) -> LimitRule | None:
        """A limit rule as the engine matches it; None when it has no limit left (it is
        then left out of the snapshot)."""
        if not (row.budget_id or row.rate_limit_id or row.concurrency_limit_id):
            return None
        limits = self._governed(row, Level.LIMIT, row.id, row.id)
        return new_rule(row.id, row.match, budget=limits.budget, rate_limit=limits.rate_limit,
                        concurrency=limits.concurrency, per=row.per or (), when_missing=row.when_missing)

    def provider(self, row: Any) -> Governed | None:
        """A provider's limits; None when it has none (it is then left out of the snapshot)."""
        if not (row.budget_id or row.rate_limit_id or row.concurrency_limit_id):
            return None
        return self._governed(row, Level.PROVIDER, row.name, row.name)

    def virtual_key_entries(self, row: Any, provider_configs: Iterable[Any]) -> list[tuple[str, VirtualKeyPolicy]]:
        """A key's policies by value hash, from its row and the rows of its provider configs:
        its current value's, and during a rotation's grace period the replaced value's."""
        configs = {pc.provider: self._provider_config(pc) for pc in provider_configs}
        return self._key_entries(self._virtual_key(row, configs or _NO_CONFIGS), row)

    @staticmethod
    def _key_entries(policy: VirtualKeyPolicy, row: Any) -> list[tuple[str, VirtualKeyPolicy]]:
        entries = [(row.value_hash, policy)]
        if row.previous_value_hash and row.previous_value_expires_at is not None:
            # The replaced value: the same key, until its grace period ends (or the key expires).
            until = min(policy.expires_at_ms, _epoch_ms(row.previous_value_expires_at))
            entries.append((row.previous_value_hash, dataclasses.replace(policy, expires_at_ms=until,
                                                                         retired_value=True, previous_hash=None)))
        return entries

    def _governed(self, row: Any, level: Level, ident: str, name: str) -> Governed:
        scope = Scope(level, ident, name)
        template = getattr(row, "end_user_limits", None)  # customers, teams and keys have one
        return Governed(
            scope=scope,
            budget=self.budgets.get(row.budget_id) if row.budget_id else None,
            rate_limit=self.rate_limits.get(row.rate_limit_id) if row.rate_limit_id else None,
            concurrency=self.concurrency.get(row.concurrency_limit_id) if row.concurrency_limit_id else None,
            end_user_limits=template_policy(template, scope, self.defaults,
                                            self.end_user_overrides.get((level.value, ident))) if template else None,
        )

    def _provider_config(self, row: Any) -> ProviderConfigPolicy:
        return ProviderConfigPolicy(
            provider=row.provider,
            weight=row.weight,
            allowed_models=_model_keys(row.allowed_models),
            allowed_keys=_names(row.allowed_keys),
            limits=self._governed(row, Level.PROVIDER_CONFIG, row.id, row.provider),
        )

    def _virtual_key(self, row: Any, provider_configs: Mapping[str, ProviderConfigPolicy]) -> VirtualKeyPolicy:
        return VirtualKeyPolicy(
            id=row.id,
            name=row.name,
            is_active=row.is_active,
            team_id=row.team_id,
            customer_id=row.customer_id,
            allowed_models=_model_keys(row.allowed_models),
            provider_configs=provider_configs if provider_configs is _NO_CONFIGS else _frozen(provider_configs),
            limits=self._governed(row, Level.VIRTUAL_KEY, row.id, row.name),
            expires_at_ms=NEVER_MS if row.expires_at is None else _epoch_ms(row.expires_at),
            previous_hash=row.previous_value_hash if row.previous_value_expires_at is not None else None,
            allowed_tags=_names(row.allowed_tags),
            forced_tags=tuple(row.forced_tags) if row.forced_tags else (),
            end_user=source_policy(row.end_user),
        )


def _epoch_ms(moment: datetime) -> int:
    """An aware datetime as epoch milliseconds (exact: no float)."""
    return (moment - _EPOCH) // _MS


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


@dataclasses.dataclass(slots=True)
class _References:
    """What some owners' limits are: the ids they refer to, and the owners with an
    end-user template."""

    budgets: set[str] = dataclasses.field(default_factory=set)
    rate_limits: set[str] = dataclasses.field(default_factory=set)
    concurrency: set[str] = dataclasses.field(default_factory=set)
    templated: set[str] = dataclasses.field(default_factory=set)


async def _references(owners: Iterable[Any]) -> _References:
    """The `_References` of ``owners``, `_ROWS_PER_TURN` rows per turn of the loop: a
    bulk change of 10,000 keys went through them in one go, holding the loop 30 ms."""
    refs = _References()
    for count, row in enumerate(owners, 1):
        if row.budget_id is not None:
            refs.budgets.add(row.budget_id)
        if row.rate_limit_id is not None:
            refs.rate_limits.add(row.rate_limit_id)
        if row.concurrency_limit_id is not None:
            refs.concurrency.add(row.concurrency_limit_id)
        if getattr(row, "end_user_limits", None):
            refs.templated.add(row.id)
        if count % _ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
    return refs


def _names(names: Iterable[str] | None) -> frozenset[str]:
    """A frozen set of names; the empty one shared (most keys allow every model)."""
    return frozenset(names) if names else _NO_NAMES


def budget_policy(row: Any, defaults: Enforcement) -> BudgetPolicy:
    """A stored budget as the engine's policy (``defaults``: the global enforcement)."""
    return BudgetPolicy(
        id=row.id,
        max_limit_nano=usd_to_nano(row.max_limit),
        duration=_duration(row.reset_duration),
        alignment=Alignment(row.timezone, row.week_start) if row.calendar_aligned else None,
        enforcement=enforcement(row.enforcement, row.on_insufficient, defaults),
        shadow=row.mode == SHADOW,
    )


def concurrency_policy(row: Any) -> ConcurrencyPolicy:
    return ConcurrencyPolicy(row.id, row.max_in_flight, row.queue_timeout_ms, row.mode == SHADOW)


def enforcement(mode: str | None, on_insufficient: str | None, defaults: Enforcement) -> Enforcement:
    """A limit's stated enforcement over the global default (None: not stated)."""
    strict = defaults.strict if mode is None else mode == "strict"
    clamp = defaults.clamp if on_insufficient is None else on_insufficient == "clamp"
    if strict == defaults.strict and clamp == defaults.clamp:
        return defaults
    return Enforcement(strict, clamp)


def _model_keys(names: list[str] | None) -> frozenset[str]:
    """Allowed models ("model" or "provider/model"), keyed as requests are matched (`model_key`)."""
    return frozenset(model_key(name) for name in names) if names else _NO_NAMES


def rate_limit_policy(row: Any, defaults: Enforcement) -> RateLimitPolicy:
    """A stored rate limit as the engine's policy; a side without both limit and window is absent."""
    tokens = row.token_max_limit is not None and row.token_reset_duration is not None
    requests = row.request_max_limit is not None and row.request_reset_duration is not None
    return RateLimitPolicy(
        id=row.id,
        token_max_limit=row.token_max_limit if tokens else None,
        token_duration=_duration(row.token_reset_duration) if tokens else None,  # type: ignore[arg-type]
        request_max_limit=row.request_max_limit if requests else None,
        request_duration=_duration(row.request_reset_duration) if requests else None,  # type: ignore[arg-type]
        enforcement=enforcement(row.enforcement, row.on_insufficient, defaults),
        shadow=row.mode == SHADOW,
    )


@functools.lru_cache(maxsize=1024)
def _duration(text: str) -> Duration:
    """Parsed once per distinct text: limits share a handful of windows ("1m", "1M")."""
    return parse_duration(text)


def _model_label(row: Any) -> str:
    return f"{row.provider}/{row.model_name}" if row.provider else row.model_name


def _frozen(mapping: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping))



@functools.cache
def _policy_columns(table: Any) -> Any:
    """The SELECT of ``table``'s policy columns, built once per table (a change applied on
    a node reads a few tables each time, and building the statement cost more CPU
    than running it)."""
    return select(*(c for c in table.c if c.name not in _NOT_POLICY))
