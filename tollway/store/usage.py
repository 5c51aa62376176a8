"""Persisting counter states: usage flushed from the counter store, and loaded back at start.

Counter keys follow `tollway.governance.model`: ``b:<budget id>`` (nano-dollars),
``rt:<rate limit id>`` (tokens) and ``rr:<rate limit id>`` (requests).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.governance.counters.base import CounterState
from tollway.governance.model import budget_counter, request_counter, token_counter
from tollway.store.database import Database
from tollway.store.end_user_counters import is_end_user_counter, save_end_user_counters
from tollway.store.snapshot import usd_to_nano
from tollway.store.tables import Budget, RateLimit

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)

_BUDGETS = cast(Table, Budget.__table__)
_RATE_LIMITS = cast(Table, RateLimit.__table__)

# One executemany statement per kind of counter; rows that no longer exist match nothing.
_UPDATE_BUDGETS = (
    update(_BUDGETS)
    .where(_BUDGETS.c.id == bindparam("row_id"))
    .values(current_usage=bindparam("used"), last_reset=bindparam("reset"))
)
_UPDATE_TOKENS = (
    update(_RATE_LIMITS)
    .where(_RATE_LIMITS.c.id == bindparam("row_id"))
    .values(token_current_usage=bindparam("used"), token_last_reset=bindparam("reset"))
)
_UPDATE_REQUESTS = (
    update(_RATE_LIMITS)
    .where(_RATE_LIMITS.c.id == bindparam("row_id"))
    .values(request_current_usage=bindparam("used"), request_last_reset=bindparam("reset"))
)


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (exact, no float rounding)."""
    return _EPOCH + ms * _MS


def datetime_to_ms(moment: datetime) -> int:
    """An aware datetime as epoch milliseconds."""
    return (moment - _EPOCH) // _MS


def nano_to_usd(nano: int) -> Decimal:
    return Decimal(nano).scaleb(-9)


async def save_counters(db: Database, states: Mapping[str, CounterState]) -> None:
    """Write counter states into their budgets and rate limits, in one transaction.

    End users' counters go to their own table (`tollway.store.end_user_counters`).
    Counters whose row was deleted meanwhile, and keys of unknown kinds, are ignored.
    """
    budgets: list[dict[str, Any]] = []
    tokens: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    end_users: dict[str, CounterState] = {}
    targets = {"b": budgets, "rt": tokens, "rr": requests}
    for key, state in states.items():
        if is_end_user_counter(key):
            if not key.startswith("cf:"):  # an in-flight counter has no usage to keep
                end_users[key] = state
            continue
        kind, _, row_id = key.partition(":")
        target = targets.get(kind)
        if target is None or not row_id:
            continue
        used: int | Decimal = nano_to_usd(state.used) if kind == "b" else state.used
        target.append({"row_id": row_id, "used": used, "reset": ms_to_datetime(state.last_reset_ms)})
    if not (budgets or tokens or requests or end_users):
        return
    async with db.session() as session:
        for statement, rows in ((_UPDATE_BUDGETS, budgets), (_UPDATE_TOKENS, tokens), (_UPDATE_REQUESTS, requests)):
            if rows:
                await session.execute(statement, rows)
        if end_users:
            await save_end_user_counters(session, end_users)


async def load_counters(db: Database) -> dict[str, CounterState]:
    """Every stored counter state: each budget, and each configured side of each rate limit."""
    states: dict[str, CounterState] = {}
    async with db.session() as session:
        _budget_states(await session.execute(_BUDGET_STATES), states)
        _rate_limit_states(await session.execute(select(_RATE_LIMITS)), states)
    return states


async def counter_states_of(session: AsyncSession, budget_ids: Collection[str],
                            rate_limit_ids: Collection[str]) -> dict[str, CounterState]:
    """The stored counter states of these budgets and rate limits (those that exist)."""
    states: dict[str, CounterState] = {}
    for chunk in _chunks(budget_ids):
        _budget_states(await session.execute(_BUDGET_STATES.where(_BUDGETS.c.id.in_(chunk))), states)
    for chunk in _chunks(rate_limit_ids):
        _rate_limit_states(await session.execute(select(_RATE_LIMITS).where(_RATE_LIMITS.c.id.in_(chunk))), states)
    return states


_BUDGET_STATES = select(_BUDGETS.c.id, _BUDGETS.c.current_usage, _BUDGETS.c.last_reset)
_IDS_PER_QUERY = 500


def _chunks(ids: Collection[str]) -> list[list[str]]:
    ordered = sorted(ids)
    return [ordered[start:start + _IDS_PER_QUERY] for start in range(0, len(ordered), _IDS_PER_QUERY)]


def _budget_states(rows: Iterable[Any], into: dict[str, CounterState]) -> None:
    for row in rows:
        into[budget_counter(row.id)] = CounterState(usd_to_nano(row.current_usage), datetime_to_ms(row.last_reset))


def _rate_limit_states(rows: Iterable[Any], into: dict[str, CounterState]) -> None:
    for row in rows:
        if row.token_max_limit is not None:
            into[token_counter(row.id)] = CounterState(int(row.token_current_usage), datetime_to_ms(row.token_last_reset))
        if row.request_max_limit is not None:
            into[request_counter(row.id)] = CounterState(
                int(row.request_current_usage), datetime_to_ms(row.request_last_reset)
            )
