"""Creating, changing and deleting governance entities: shared by the config file's
bootstrap and the management API.

`EntityWriter` works on a synchronous ORM session (run it through
``AsyncSession.run_sync``, so relationships may lazy-load). It keeps every budget and
rate limit 1:1 with its owner, changes limits but never usage (resets are explicit),
notes each changed field in a diff and writes one audit entry per changed entity. It
also notes the counters of the budgets and rate limits it created or dropped, so the
caller can seed or forget them in the counter store after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from tollway.config.schema import BudgetConfig, ProviderConfigEntry, RateLimitConfig
from tollway.governance.counters.base import CounterState
from tollway.governance.model import budget_counter, request_counter, token_counter
from tollway.store.tables import AuditEntry, Base, Budget, RateLimit, VirtualKey, VKProviderConfig, new_id
from tollway.store.types import to_money
from tollway.store.usage import datetime_to_ms

T = TypeVar("T", bound=Base)
Diff = dict[str, tuple[Any, Any]]  # field -> (before, after)

CREATED = "(created)"
_ENFORCEMENT_FIELDS = ("enforcement", "on_insufficient")  # SPEC §8; null: the global default
LIMIT_FIELDS = {
    "budget": ("max_limit", "reset_duration", "calendar_aligned", "timezone", "week_start", *_ENFORCEMENT_FIELDS),
    "rate_limit": ("token_max_limit", "token_reset_duration", "request_max_limit", "request_reset_duration",
                   *_ENFORCEMENT_FIELDS),
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
        self.changed = False
        self.seeds: dict[str, CounterState] = {}  # counters of limits created here, at zero
        self.dropped: set[str] = set()  # counters of limits deleted (or sides removed) here

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
        """Delete ``row`` with its own budget, rate limit and (for a key) provider
        configs, noting their counters; audited with ``before`` as the entity's view."""
        owners = [row, *getattr(row, "provider_configs", ())]
        for owner in owners:
            self.dropped.update(owned_counters(owner))
        self.session.delete(row)
        self.audit("delete", kind, ident, dict(before), None)

    # -- owned limits ----------------------------------------------------------------------

    def sync_budget(self, owner: Any, config: BudgetConfig | None, diff: Diff, prefix: str = "budget") -> None:
        """Make ``owner``'s budget what ``config`` says (None deletes it); usage is kept."""
        values: dict[str, Any] | None = None
        if config is not None:
            max_limit = to_money(config.max_limit)
            if max_limit <= 0:
                raise EntityError(f"a budget of {config.max_limit} USD rounds to zero at nano-dollar precision",
                                  f"{prefix}.max_limit")
            values = {"max_limit": max_limit, "reset_duration": config.reset_duration,
                      "calendar_aligned": config.calendar_aligned, "timezone": config.timezone,
                      "week_start": config.week_start, "enforcement": config.enforcement,
                      "on_insufficient": config.on_insufficient}
        self._sync_owned(owner, "budget", values, diff, prefix,
                         lambda: Budget(id=new_id(), current_usage=Decimal(0), last_reset=self.now))

    def sync_rate_limit(self, owner: Any, config: RateLimitConfig | None, diff: Diff,
                        prefix: str = "rate_limit") -> None:
        """Make ``owner``'s rate limit what ``config`` says (None deletes it); usage is kept
        on the sides that stay, and a side that is switched on starts from zero."""
        current: RateLimit | None = owner.rate_limit
        values = None if config is None else config.model_dump()
        if current is not None and values is not None:
            for side, counter in _SIDES.items():
                was_on = getattr(current, f"{side}_max_limit") is not None
                is_on = values[f"{side}_max_limit"] is not None
                if was_on and not is_on:
                    self.dropped.add(counter(current.id))
                elif is_on and not was_on:
                    setattr(current, f"{side}_current_usage", 0)
                    setattr(current, f"{side}_last_reset", self.now)
                    self.seeds[counter(current.id)] = CounterState(0, datetime_to_ms(self.now))
        self._sync_owned(owner, "rate_limit", values, diff, prefix,
                         lambda: RateLimit(id=new_id(), token_current_usage=0, request_current_usage=0,
                                           token_last_reset=self.now, request_last_reset=self.now))

    def sync_provider_configs(self, key: VirtualKey, configs: Iterable[ProviderConfigEntry], diff: Diff) -> None:
        """Make the key's provider configs exactly ``configs`` (matched by provider, so the
        budgets and rate limits of the ones that stay keep their usage)."""
        configs = list(configs)
        current = {pc.provider: pc for pc in key.provider_configs}
        wanted = {pc.provider for pc in configs}
        for provider, row in current.items():
            if provider not in wanted:
                diff[f"provider_configs.{provider}"] = (view(row, _PROVIDER_CONFIG_FIELDS), None)
                self.dropped.update(owned_counters(row))
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
                assign(existing, values, diff, prefix + ".")
            self.sync_budget(existing, config.budget, diff, prefix + ".budget")
            self.sync_rate_limit(existing, config.rate_limit, diff, prefix + ".rate_limit")

    def _sync_owned(self, owner: Any, attribute: str, values: dict[str, Any] | None, diff: Diff, prefix: str,
                    make: Callable[[], Budget | RateLimit]) -> None:
        current = getattr(owner, attribute)
        if values is None:
            if current is not None:
                diff[prefix] = (view(current, LIMIT_FIELDS[attribute]), None)
                self.dropped.update(_limit_counters(current))
                setattr(owner, attribute, None)  # delete-orphan deletes the row
            return
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

    # -- audit -----------------------------------------------------------------------------

    def record(self, row: Any, kind: str, ident: str, diff: Diff) -> bool:
        """Bump the row's updated_at and write a create/update audit entry when ``diff``
        has anything; returns whether it had."""
        if not diff:
            return False
        if diff.pop("value_hash", None) is not None:  # a key's hash stays out of the audit log
            diff["value"] = ("(previous)", "(replaced)")
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
        self.session.add(AuditEntry(at=self.now, actor=self.actor, action=action, entity_type=kind,
                                    entity_id=ident, before=jsonable(before), after=jsonable(after)))


def owned_counters(owner: Any) -> list[str]:
    """The counters of ``owner``'s own budget and rate limit."""
    counters: list[str] = []
    for limit in (owner.budget, owner.rate_limit):
        if limit is not None:
            counters += _limit_counters(limit)
    return counters


def _limit_counters(limit: Budget | RateLimit, configured_only: bool = False) -> list[str]:
    if isinstance(limit, Budget):
        return [budget_counter(limit.id)]
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
