"""The periodic usage flush writes only the counters whose state changed since it last
wrote (or loaded) them: a store of a million limits is not rewritten every interval."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from tests.store.example import settings
from tollway.governance.counters.base import CounterState, SettleOp
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.store import usage_flush
from tollway.store.bootstrap import apply_config
from tollway.store.database import Database
from tollway.store.tables import Budget
from tollway.store.usage import load_counters
from tollway.store.usage_flush import UsageFlusher

T0_MS = 1_740_830_400_000


async def _tamper_every_budget(db: Database) -> None:
    """Write usage behind the flusher's back: a counter it rewrites shows the change undone."""
    async with db.session() as session:
        await session.execute(update(Budget).values(current_usage=7))


async def _in_process_store(db: Database) -> tuple[dict[str, CounterState], MemoryCounterStore, UsageFlusher]:
    """The example configuration applied, its counters loaded into an in-process store and a flusher."""
    await apply_config(db, settings())
    loaded = dict(await load_counters(db))
    store = MemoryCounterStore()
    await store.load(loaded)
    return loaded, store, UsageFlusher(db, loaded)


async def test_unchanged_counters_are_not_written_and_changed_ones_are(db: Database) -> None:
    await apply_config(db, settings())
    loaded = await load_counters(db)
    flusher = UsageFlusher(db, loaded)
    budget = next(name for name in sorted(loaded) if name.startswith("b:"))
    await _tamper_every_budget(db)

    assert await flusher.flush(loaded) == 0
    changed = dict(loaded) | {budget: CounterState(2_000_000_000, T0_MS)}
    assert await flusher.flush(changed) == 1

    stored = await load_counters(db)
    assert stored[budget] == CounterState(2_000_000_000, T0_MS)  # written
    others = [name for name in stored if name.startswith("b:") and name != budget]
    assert others and all(stored[name].used == 7_000_000_000 for name in others)  # left alone
    assert await flusher.flush(changed) == 0


async def test_a_failed_write_is_retried_at_the_next_flush(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await apply_config(db, settings())
    loaded = await load_counters(db)
    flusher = UsageFlusher(db, loaded)
    name = sorted(loaded)[0]
    changed = dict(loaded) | {name: CounterState(5, T0_MS)}
    real_save = usage_flush.save_counters

    async def failing(*_: object) -> None:
        raise OSError("database went away")

    monkeypatch.setattr(usage_flush, "save_counters", failing)
    with pytest.raises(OSError):
        await flusher.flush(changed)
    monkeypatch.setattr(usage_flush, "save_counters", real_save)

    assert await flusher.flush(changed) == 1
    assert (await load_counters(db))[name] == CounterState(5, T0_MS)


async def test_without_what_was_loaded_the_first_flush_writes_everything(db: Database) -> None:
    await apply_config(db, settings())
    loaded = await load_counters(db)
    assert await UsageFlusher(db).flush(loaded) == len(loaded)


async def test_many_counters_are_compared_in_slices_with_the_loop_running_between(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """200,000 counters compared at once held the proxy up for hundreds of milliseconds."""
    await apply_config(db, settings())
    loaded = await load_counters(db)
    monkeypatch.setattr(usage_flush, "COMPARED_PER_TURN", 1)
    flusher = UsageFlusher(db, loaded)
    turns = 0
    seen_at: list[int] = []  # the other task's turns when each state was compared

    class Watched(dict):
        def items(self):  # type: ignore[override]
            for item in super().items():
                seen_at.append(turns)
                yield item

    async def request_path() -> None:
        nonlocal turns
        while len(seen_at) < len(loaded):
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(request_path())
    await asyncio.sleep(0)
    name = sorted(loaded)[-1]
    assert await flusher.flush(Watched(dict(loaded) | {name: CounterState(9, T0_MS)})) == 1
    await other
    assert len(set(seen_at)) == len(loaded)  # the other task ran between any two comparisons
    assert (await load_counters(db))[name] == CounterState(9, T0_MS)


async def test_from_the_in_process_store_only_touched_counters_are_compared(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush costs what changed since the last one, not what the store holds."""
    loaded, store, flusher = await _in_process_store(db)
    budget = next(name for name in sorted(loaded) if name.startswith("b:"))
    await _tamper_every_budget(db)
    compared: list[int] = []
    real_changed = usage_flush._changed

    async def counting(states, stored):  # type: ignore[no-untyped-def]
        compared.append(len(states))
        return await real_changed(states, stored)

    monkeypatch.setattr(usage_flush, "_changed", counting)
    assert await flusher.flush_from(store) == 0
    await store.settle([SettleOp(budget, 0, 1_000_000_000, 0, loaded[budget].last_reset_ms)])
    assert await flusher.flush_from(store) == 1
    assert compared == [0, 1]

    stored = await load_counters(db)
    assert stored[budget] == CounterState(loaded[budget].used + 1_000_000_000, loaded[budget].last_reset_ms)
    others = [name for name in stored if name.startswith("b:") and name != budget]
    assert others and all(stored[name].used == 7_000_000_000 for name in others)  # left alone


async def test_touched_counters_a_failed_write_lost_are_written_at_the_next_flush(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store forgets its marks when asked: the flusher keeps what it could not write."""
    loaded, store, flusher = await _in_process_store(db)
    first, second = sorted(name for name in loaded if name.startswith("b:"))[:2]
    real_save = usage_flush.save_counters

    async def failing(*_: object) -> None:
        raise OSError("database went away")

    await store.settle([SettleOp(first, 0, 5, 0, loaded[first].last_reset_ms)])
    monkeypatch.setattr(usage_flush, "save_counters", failing)
    with pytest.raises(OSError):
        await flusher.flush_from(store)
    monkeypatch.setattr(usage_flush, "save_counters", real_save)
    await store.settle([SettleOp(first, 0, 2, 0, loaded[first].last_reset_ms),
                        SettleOp(second, 0, 3, 0, loaded[second].last_reset_ms)])

    assert await flusher.flush_from(store) == 2
    stored = await load_counters(db)
    assert stored[first].used == loaded[first].used + 7  # the newer state, not the one the failed write held
    assert stored[second].used == loaded[second].used + 3
    assert await flusher.flush_from(store) == 0


async def test_a_flush_that_overlaps_another_waits_for_it_and_the_newer_state_is_written_last(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The periodic flush, an API call's and shutdown's can overlap: the second returns only
    once the first has written what it took, and writes after it (never older over newer)."""
    loaded, store, flusher = await _in_process_store(db)
    budget = next(name for name in sorted(loaded) if name.startswith("b:"))
    real_save = usage_flush.save_counters
    first_may_write = asyncio.Event()
    writes: list[int] = []
    calls = 0

    async def gated(database: Database, states) -> None:  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            await first_may_write.wait()  # the first flush's write is slow
        writes.append(states[budget].used)
        await real_save(database, states)

    monkeypatch.setattr(usage_flush, "save_counters", gated)
    await store.settle([SettleOp(budget, 0, 5, 0, loaded[budget].last_reset_ms)])
    first = asyncio.create_task(flusher.flush_from(store))
    await asyncio.sleep(0.05)  # the first has taken the touched counters and waits in its write
    await store.settle([SettleOp(budget, 0, 2, 0, loaded[budget].last_reset_ms)])
    second = asyncio.create_task(flusher.flush_from(store))
    await asyncio.sleep(0.05)
    assert not second.done()  # it waits for the first: what the caller asked for is not written yet
    first_may_write.set()
    assert (await first, await second) == (1, 1)
    assert writes == [loaded[budget].used + 5, loaded[budget].used + 7]
    assert (await load_counters(db))[budget].used == loaded[budget].used + 7
