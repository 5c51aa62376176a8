"""Creating, changing and deleting governance entities: shared by the config file's
bootstrap and the management API.

`EntityWriter` works on a synchronous ORM session (run it through
``AsyncSession.run_sync``, so relationships may lazy-load). It keeps every budget, rate
limit and concurrency limit 1:1 with its owner, changes limits but never usage (resets are
explicit), notes each changed field in a diff and writes one audit entry per changed entity.

A budget or rate limit its owner drops is retained with its usage, never deleted, and a
limit created at the same place later takes it back (`tollway.store.retention`): deleting
and re-creating an entity cannot erase its spend. (A concurrency limit has no usage: it
goes with its owner.) The writer notes the counters of the limits it created or took back
(to seed in the counter store after the commit); it never drops one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from tollway.config.schema import BudgetConfig, ConcurrencyConfig, ProviderConfigEntry, RateLimitConfig
from tollway.governance.counters.base import CounterState
from tollway.governance.model import budget_counter, in_flight_counter, request_counter, token_counter
from tollway.store.end_user_templates import source_value, template_value
from tollway.store.retention import Retention
from tollway.store.snapshot import usd_to_nano
from tollway.store.tables import (
    AuditEntry,
    Base,
    Budget,
    ConcurrencyLimit,
    RateLimit,
    VirtualKey,
    VKProviderConfig,
    new_id,
)
from tollway.store.types import to_money
from tollway.store.usage import datetime_to_ms

T = TypeVar("T", bound=Base)
Diff = dict[str, tuple[Any, Any]]  # field -> (before, after)

CREATED = "(created)"
_ENFORCEMENT_FIELDS = ("enforcement", "on_insufficient")  # SPEC §8; null: the global default
LIMIT_FIELDS = {
    "budget": ("max_limit", "reset_duration", "calendar_aligned", "timezone", "week_start", *_ENFORCEMENT_FIELDS,
               "mode"),
    "rate_limit": ("token_max_limit", "token_reset_duration", "request_max_limit", "request_reset_duration",
                   *_ENFORCEMENT_FIELDS, "mode"),
    "concurrency": ("max_in_flight", "queue_timeout_ms", "mode"),
}
_PROVIDER_CONFIG_FIELDS = ("weight", "allowed_models", "allowed_keys")
_SIDES = {"token": token_counter, "request": request_counter}


class EntityError(Exception):
    """A value the store cannot hold; ``field`` names it (dotted path) when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class EntityWriter:
    """Writes entities in the caller's transaction, as ``actor`` at ``now``."""

    def __init__(self, session: Session, now: datetime, actor: str) -> None:
        self.session = session
        self.now = now
        self.actor = actor
        # The admin token acting (id, name), recorded with each audit entry; None: the config file.
        self.token: tuple[str, str] | None = None
        self.changed = False
        self.seeds: dict[str, CounterState] = {}  # counters of limits created or taken back here
        self.retention = Retention(session)
        self.touched: set[tuple[str, str]] = set()  # (kind, id) of each entity audited: the change log's entries

    # -- rows ------------------------------------------------------------------------------

    def upsert(self, row: T | None, entity: type[T], identity: Mapping[str, Any],
               values: Mapping[str, Any]) -> tuple[T, Diff]:
        """Create ``entity`` (``identity`` + ``values``) or set the values that differ."""
        diff: Diff = {}
        if row is None:
            row = entity(**identity, **values)
            if hasattr(entity, "created_at"):
                row.created_at = row.updated_at = self.now  # type: ignore[attr-defined]
            self.session.add(row)
            diff[CREATED] = (None, {**identity, **values})
        else:
            assign(row, values, diff)
        return row, diff

    def delete(self, row: Any, kind: str, ident: str, before: Mapping[str, Any]) -> None:
        """Delete ``row`` (with a key's provider configs), retaining its budgets and rate
        limits with their usage; audited with ``before`` as the entity's view."""
        for owner in (row, *getattr(row, "provider_configs", ())):
            self.retention.retain(owner, "budget")
            self.retention.retain(owner, "rate_limit")
        if isinstance(row, VirtualKey):
            self.retention.retire_key_value(row, self.now)
        self.session.delete(row)
        self.audit("delete", kind, ident, dict(before), None)

    # -- owned limits ----------------------------------------------------------------------

    def sync_budget(self, owner: Any, config: BudgetConfig | None, diff: Diff, prefix: str = "budget") -> None:
        """Make ``owner``'s budget what ``config`` says (None removes it, retained); usage is kept."""
        values: dict[str, Any] | None = None
        if config is not None:
            max_limit = to_money(config.max_limit)
            if max_limit <= 0:
                raise EntityError(f"a budget of {config.max_limit} USD rounds to zero at nano-dollar precision",
                                  f"{prefix}.max_limit")
            values = {"max_limit": max_limit, "reset_duration": config.reset_duration,
                      "calendar_aligned": config.calendar_aligned, "timezone": config.timezone,
                      "week_start": config.week_start, "enforcement": config.enforcement,
                      "on_insufficient": config.on_insufficient, "mode": config.mode}
        self._sync_owned(owner, "budget", values, diff, prefix,
                         lambda: Budget(id=new_id(), current_usage=Decimal(0), last_reset=self.now))

    def sync_rate_limit(self, owner: Any, config: RateLimitConfig | None, diff: Diff,
                        prefix: str = "rate_limit") -> None:
        """Make ``owner``'s rate limit what ``config`` says (None removes it, retained).
        Usage is kept on every side: a side switched off keeps its counter, and one switched
        on again continues from it (a window that has passed meanwhile counts as zero)."""
        if owner.rate_limit is None and config is not None:
            self._take_back(owner, RateLimit, diff, prefix)
        current: RateLimit | None = owner.rate_limit
        values = None if config is None else config.model_dump()
        if current is not None and values is not None:
            for side, counter in _SIDES.items():
                if values[f"{side}_max_limit"] is not None and getattr(current, f"{side}_max_limit") is None:
                    self.seeds[counter(current.id)] = CounterState(
                        int(getattr(current, f"{side}_current_usage")),
                        datetime_to_ms(getattr(current, f"{side}_last_reset")))
        self._sync_owned(owner, "rate_limit", values, diff, prefix,
                         lambda: RateLimit(id=new_id(), token_current_usage=0, request_current_usage=0,
                                           token_last_reset=self.now, request_last_reset=self.now))

    def sync_concurrency(self, owner: Any, config: ConcurrencyConfig | None, diff: Diff,
                         prefix: str = "concurrency") -> None:
        """Make ``owner``'s concurrency limit what ``config`` says (None deletes it). A
        changed limit keeps its counter: the requests in flight keep their slots."""
        values = None if config is None else config.model_dump()
        self._sync_owned(owner, "concurrency", values, diff, prefix, lambda: ConcurrencyLimit(id=new_id()))

    def sync_end_users(self, owner: Any, config: Any, diff: Diff, *, stated_only: bool = False) -> None:
        """Make ``owner``'s ``end_user_limits`` (and a key's ``end_user``) what ``config``
        says; with ``stated_only`` (a partial update) only the fields it states. Owners
        without them (providers, model configs) are left alone."""
        stated = config.model_fields_set if stated_only else None
        for name, value_of in (("end_user_limits", lambda c: template_value(c, owner.end_user_limits)),
                               ("end_user", source_value)):
            if not hasattr(owner, name) or name not in type(config).model_fields:
                continue
            if stated is None or name in stated:
                assign(owner, {name: value_of(getattr(config, name))}, diff)

    def sync_provider_configs(self, key: VirtualKey, configs: Iterable[ProviderConfigEntry], diff: Diff) -> None:
        """Make the key's provider configs exactly ``configs`` (matched by provider, so the
        budgets and rate limits of the ones that stay keep their usage)."""
        configs = list(configs)
        current = {pc.provider: pc for pc in key.provider_configs}
        wanted = {pc.provider for pc in configs}
        for provider, row in current.items():
            if provider not in wanted:
                diff[f"provider_configs.{provider}"] = (view(row, _PROVIDER_CONFIG_FIELDS), None)
                self.retention.retain(row, "budget")
                self.retention.retain(row, "rate_limit")
                key.provider_configs.remove(row)  # delete-orphan removes the config; its limits stay retained
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
                assign(existing, values, diff, prefix + ".")
            self.sync_budget(existing, config.budget, diff, prefix + ".budget")
            self.sync_rate_limit(existing, config.rate_limit, diff, prefix + ".rate_limit")
            self.sync_concurrency(existing, config.concurrency, diff, prefix + ".concurrency")

    def _sync_owned(self, owner: Any, attribute: str, values: dict[str, Any] | None, diff: Diff, prefix: str,
                    make: Callable[[], Budget | RateLimit | ConcurrencyLimit]) -> None:
        current = getattr(owner, attribute)
        if values is None:
            if current is not None:
                diff[prefix] = (view(current, LIMIT_FIELDS[attribute]), None)
                if attribute == "concurrency":
                    setattr(owner, attribute, None)  # no usage to keep: delete-orphan removes the row
                else:
                    self.retention.retain(owner, attribute)
            return
        if current is None and attribute == "budget":
            current = self._take_back(owner, Budget, diff, prefix)
        if current is None:
            created = make()
            for name, value in values.items():
                setattr(created, name, value)
            setattr(owner, attribute, created)
            diff[prefix] = (None, values)
            for counter in _limit_counters(created, configured_only=True):
                self.seeds[counter] = CounterState(0, datetime_to_ms(self.now))
            return
        assign(current, values, diff, prefix + ".")

    def _take_back(self, owner: Any, entity: type[Budget | RateLimit], diff: Diff,
                   prefix: str) -> Budget | RateLimit | None:
        """Attach the limit retained at ``owner``'s slot (usage and all) and seed its counters
        (the store keeps a live counter it still has)."""
        limit = self.retention.take_back(owner, entity)
        if limit is None:
            return None
        setattr(owner, "budget" if entity is Budget else "rate_limit", limit)
        diff[prefix + ".retained_usage"] = ("(retained)", "(taken back)")
        self.seeds.update(retained_states(limit))
        return limit

    # -- audit -----------------------------------------------------------------------------

    def record(self, row: Any, kind: str, ident: str, diff: Diff) -> bool:
        """Bump the row's updated_at and write a create/update audit entry when ``diff``
        has anything; returns whether it had."""
        if not diff:
            return False
        if diff.pop("value_hash", None) is not None:  # a key's hash stays out of the audit log
            diff["value"] = ("(previous)", "(replaced)")
        diff.pop("previous_value_hash", None)  # so does a rotated one's
        created = diff.pop(CREATED, None)
        if created is None:
            if hasattr(row, "updated_at"):
                row.updated_at = self.now
            before: dict[str, Any] | None = {name: old for name, (old, _) in diff.items()}
            after = {name: new for name, (_, new) in diff.items()}
        else:
            before, after = None, {**created[1], **{name: new for name, (_, new) in diff.items()}}
            after.pop("value_hash", None)
        self.audit("create" if created is not None else "update", kind, ident, before, after)
        return True

    def audit(self, action: str, kind: str, ident: str, before: Any, after: Any) -> None:
        """Write one audit entry (values made JSON-ready) and mark the write as a change."""
        self.changed = True
        self.touched.add((kind, ident))
        token_id, token_name = self.token or (None, None)
        self.session.add(AuditEntry(at=self.now, actor=self.actor, action=action, entity_type=kind,
                                    entity_id=ident, before=jsonable(before), after=jsonable(after),
                                    token_id=token_id, token_name=token_name))


def retained_states(limit: Budget | RateLimit) -> dict[str, CounterState]:
    """The stored counter states of a limit (its configured sides)."""
    if isinstance(limit, Budget):
        return {budget_counter(limit.id): CounterState(usd_to_nano(limit.current_usage),
                                                       datetime_to_ms(limit.last_reset))}
    return {counter(limit.id): CounterState(int(getattr(limit, f"{side}_current_usage")),
                                            datetime_to_ms(getattr(limit, f"{side}_last_reset")))
            for side, counter in _SIDES.items() if getattr(limit, f"{side}_max_limit") is not None}


def _limit_counters(limit: Budget | RateLimit | ConcurrencyLimit, configured_only: bool = False) -> list[str]:
    if isinstance(limit, Budget):
        return [budget_counter(limit.id)]
    if isinstance(limit, ConcurrencyLimit):
        # Never seeded (it has no usage to load); dropped with its limit.
        return [] if configured_only else [in_flight_counter(limit.id)]
    return [counter(limit.id) for side, counter in _SIDES.items()
            if not configured_only or getattr(limit, f"{side}_max_limit") is not None]


def assign(row: Any, values: Mapping[str, Any], diff: Diff, prefix: str = "") -> None:
    """Set the fields that differ (so unchanged rows are never written) and note them."""
    for name, value in values.items():
        old = getattr(row, name)
        if old != value:
            setattr(row, name, value)
            diff[prefix + name] = (old, value)


def view(row: Any, fields: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in fields}


def jsonable(value: Any) -> Any:
    """``value`` with Decimals as strings and datetimes as ISO-8601, for JSON columns."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
