"""Counter states flushed to the store and loaded back at start."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from tests.store.example import example_raw, settings
from tollway.governance.counters.base import CounterState
from tollway.store.bootstrap import apply_config
from tollway.store.database import Database
from tollway.store.tables import Budget, RateLimit, VirtualKey
from tollway.store.usage import load_counters, save_counters

T0_MS = 1_740_830_400_000  # 2025-03-01T12:00:00Z


async def test_save_and_load_round_trip_exactly(db: Database) -> None:
    await apply_config(db, settings())
    loaded = await load_counters(db)
    states = {
        key: CounterState(used=123_456_789_012_345 + i, last_reset_ms=T0_MS + 1_001 + i)  # 123456.789012345 USD
        for i, key in enumerate(sorted(loaded))
    }

    await save_counters(db, states)

    assert await load_counters(db) == states


async def test_budget_usage_is_stored_as_usd(db: Database) -> None:
    await apply_config(db, settings())
    async with db.session() as session:
        key = await session.get(VirtualKey, "vk-search")
    assert key is not None
    await save_counters(db, {f"b:{key.budget_id}": CounterState(1_500_000_001, T0_MS)})
    async with db.session() as session:
        budget = await session.get(Budget, key.budget_id)
    assert budget is not None and budget.current_usage == Decimal("1.500000001")


async def test_load_returns_each_budget_and_each_configured_rate_limit_side(db: Database) -> None:
    await apply_config(db, settings())
    async with db.session() as session:
        budgets = set(await session.scalars(select(Budget.id)))
        limits = list(await session.scalars(select(RateLimit)))

    keys = set(await load_counters(db))

    expected = {f"b:{b}" for b in budgets}
    expected |= {f"rt:{r.id}" for r in limits if r.token_max_limit is not None}
    expected |= {f"rr:{r.id}" for r in limits if r.request_max_limit is not None}
    assert keys == expected
    assert len([k for k in keys if k.startswith("rt:")]) == 1  # only the key's rate limit counts tokens


async def test_retained_limits_keep_being_saved_and_unknown_counters_are_ignored(db: Database) -> None:
    await apply_config(db, settings())
    before = await load_counters(db)
    raw = example_raw()
    raw["governance"]["teams"][0]["budget"] = None  # stated as null: dropped, its row retained with its usage
    await apply_config(db, settings(raw))
    states = {key: CounterState(7, T0_MS) for key in before}  # includes the team's retained budget
    states |= {"x:whatever": CounterState(1, T0_MS), "b:": CounterState(1, T0_MS), "b:no-such-id": CounterState(1, T0_MS)}

    await save_counters(db, states)

    loaded = await load_counters(db)
    assert loaded == {key: CounterState(7, T0_MS) for key in before}


async def test_saving_nothing_is_a_no_op(db: Database) -> None:
    await save_counters(db, {})
    assert await load_counters(db) == {}
