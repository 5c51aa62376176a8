"""Usage that outlives its owner: budgets and rate limits are retained, never deleted.

A budget or rate limit is also the row its usage is flushed to. When its owner drops it
(``budget: null``, a provider config taken off a key, the entity deleted through the
API, or removed from the config file) the row stays, marked ``retained_for`` the
owner's *slot*, and its counter keeps running in the counter store. A limit created
later at the same slot takes that row back, id and usage included, so deleting and
re-creating a key, team, customer or model config (or dropping and re-adding a budget)
never gives a fresh budget inside the current window: that would be a way to erase
spend. Once the window has passed, the usage counts as zero anyway (the engine's rule
for expired windows), so nothing stale is ever charged. Only an explicit reset (the
reset routes, ``reset_usage``) zeroes usage.

Retained rows whose every window has passed hold nothing (their usage counts as zero):
`purge_expired` deletes them at start, so churn (keys made and deleted all day) does not
pile rows up.

A virtual key is also known by its value: a deleted key's value hash is remembered
(`RetiredKeyValue`), and a key created with that value under another id takes over
the deleted key's retained limits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.governance.durations import Alignment, next_reset_ms, parse_duration
from tollway.store.limit_rule_tables import LimitRuleRow
from tollway.store.tables import (
    Budget,
    Customer,
    ModelConfig,
    Provider,
    RateLimit,
    RetiredKeyValue,
    Tag,
    Team,
    VirtualKey,
    VKProviderConfig,
)
from tollway.store.usage import datetime_to_ms

_KEY = "virtual_key"
_SIDES = ("token", "request")


def slot_of(owner: Any) -> str:
    """The stable name of the place a limit hangs from: "team/search",
    "virtual_key/vk-1/provider/openai", "model_config/openai/gpt-4o" ("*": any provider)."""
    if isinstance(owner, VirtualKey):
        return f"{_KEY}/{owner.id}"
    if isinstance(owner, VKProviderConfig):
        key_id = owner.virtual_key.id if owner.virtual_key is not None else owner.virtual_key_id
        return f"{_KEY}/{key_id}/provider/{owner.provider}"
    if isinstance(owner, Team):
        return f"team/{owner.id}"
    if isinstance(owner, Customer):
        return f"customer/{owner.id}"
    if isinstance(owner, Tag):
        return f"tag/{owner.id}"
    if isinstance(owner, Provider):
        return f"provider/{owner.name}"
    if isinstance(owner, ModelConfig):
        return f"model_config/{owner.provider or '*'}/{owner.model_name}"
    if isinstance(owner, LimitRuleRow):  # a rule's templated counters are named after its limits: kept too
        return f"limit/{owner.id}"
    raise TypeError(f"{type(owner).__name__} owns no limits")


def purge_expired(session: Session, now: datetime) -> int:
    """Delete the retained limits whose every window has passed at ``now`` (taking one
    back would bring nothing); returns how many."""
    now_ms = datetime_to_ms(now)
    expired: list[Budget | RateLimit] = []
    for budget in session.scalars(select(Budget).where(Budget.retained_for.is_not(None))):
        alignment = Alignment(budget.timezone, budget.week_start) if budget.calendar_aligned else None
        if _passed(budget.reset_duration, budget.last_reset, now_ms, alignment):
            expired.append(budget)
    for limit in session.scalars(select(RateLimit).where(RateLimit.retained_for.is_not(None))):
        if all(_passed(getattr(limit, f"{side}_reset_duration"), getattr(limit, f"{side}_last_reset"), now_ms)
               for side in _SIDES):
            expired.append(limit)
    for row in expired:
        session.delete(row)
    return len(expired)


def _passed(duration: str | None, last_reset: datetime, now_ms: int, alignment: Alignment | None = None) -> bool:
    """Whether the window that began at ``last_reset`` is over (a side without one: yes)."""
    if duration is None:
        return True
    return now_ms >= next_reset_ms(parse_duration(duration), datetime_to_ms(last_reset), alignment)


class Retention:
    """Retaining and taking back limits in one session (the caller's transaction)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._aliases: dict[str, str] = {}  # a new key's slot -> the deleted key's slot it inherits

    def retain(self, owner: Any, attribute: str) -> Budget | RateLimit | None:
        """Detach ``owner``'s budget or rate limit, keeping the row for its slot."""
        limit: Budget | RateLimit | None = getattr(owner, attribute)
        if limit is not None:
            limit.retained_for = slot_of(owner)
            setattr(owner, attribute, None)
        return limit

    def take_back(self, owner: Any, entity: type[Budget | RateLimit]) -> Budget | RateLimit | None:
        """The limit of kind ``entity`` retained at ``owner``'s slot (or at the slot of the
        deleted key it inherits from), no longer marked retained; None when there is none."""
        for slot in self._candidates(slot_of(owner)):
            statement = select(entity).where(entity.retained_for == slot).order_by(entity.id).limit(1)
            # No autoflush: flushing a half-built owner here would write it twice (and
            # bump its updated_at); what is retained was flushed in an earlier change.
            with self.session.no_autoflush:
                limit: Budget | RateLimit | None = self.session.scalars(statement).first()  # type: ignore[assignment]
            if limit is not None:
                limit.retained_for = None
                return limit
        return None

    def retire_key_value(self, key: VirtualKey, now: datetime) -> None:
        """Remember a deleted key's value, so that a new key with it inherits its usage."""
        self.session.merge(RetiredKeyValue(value_hash=key.value_hash, virtual_key_id=key.id, retired_at=now))

    def inherit_by_value(self, key_id: str, value_hash: str) -> str | None:
        """When ``value_hash`` was a deleted key's value, make key ``key_id`` take back that
        key's retained limits (its own slot's come first); returns the deleted key's id."""
        retired = self.session.get(RetiredKeyValue, value_hash)
        if retired is None:
            return None
        self.session.delete(retired)  # the value is in use again: the new key carries its usage on
        if retired.virtual_key_id != key_id:
            self._aliases[f"{_KEY}/{key_id}"] = f"{_KEY}/{retired.virtual_key_id}"
        return retired.virtual_key_id

    def _candidates(self, slot: str) -> list[str]:
        candidates = [slot]
        for prefix, inherited in self._aliases.items():
            if slot == prefix or slot.startswith(prefix + "/"):
                candidates.append(inherited + slot[len(prefix):])
        return candidates
