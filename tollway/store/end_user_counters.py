"""End users' counters in the database: written by the usage flush and by eviction, read
back when an evicted end user returns (`tollway.governance.counters.end_user_residency`).

Their names hold the end user after the template's id (``b:<template id>:<end user>``),
which is how they are told from the counters of budgets and rate limits (whose rows are
updated in place, `tollway.store.usage`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.governance.counters.base import CounterState
from tollway.store.database import Database
from tollway.store.tables import EndUserCounter

_ROWS_PER_STATEMENT = 500


def is_end_user_counter(name: str) -> bool:
    """``b:<template id>:<end user>``: a second separator after the kind's."""
    return name.count(":") >= 2


async def save_end_user_counters(session: AsyncSession, states: Mapping[str, CounterState]) -> None:
    """Insert or overwrite each state (absolute values: the last write wins)."""
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    rows = [{"counter": name, "used": state.used, "last_reset_ms": state.last_reset_ms} for name, state in states.items()]
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        statement: Any = insert(EndUserCounter).values(rows[start:start + _ROWS_PER_STATEMENT])
        statement = statement.on_conflict_do_update(
            index_elements=["counter"],
            set_={"used": statement.excluded.used, "last_reset_ms": statement.excluded.last_reset_ms})
        await session.execute(statement)


async def load_end_user_counters(db: Database, names: Collection[str]) -> dict[str, CounterState]:
    """The stored states of the counters ``names`` (those that have one)."""
    states: dict[str, CounterState] = {}
    ordered = sorted(names)
    async with db.session() as session:
        for start in range(0, len(ordered), _ROWS_PER_STATEMENT):
            chunk = ordered[start:start + _ROWS_PER_STATEMENT]
            rows = await session.execute(select(EndUserCounter.counter, EndUserCounter.used, EndUserCounter.last_reset_ms)
                                         .where(EndUserCounter.counter.in_(chunk)))
            for counter, used, last_reset_ms in rows:
                states[counter] = CounterState(int(used), int(last_reset_ms))
    return states
