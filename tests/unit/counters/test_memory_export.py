"""Exporting a large in-process counter store (every flush interval) lets the event loop
run between slices, so requests are not held up by 200,000 counters, and still returns
every counter's state, each read whole."""

from __future__ import annotations

import asyncio
import gc

from tollway.governance.counters import memory
from tollway.governance.counters.base import CounterOp, CounterState, SettleOp
from tollway.governance.counters.memory import MemoryCounterStore


async def test_a_large_export_yields_to_the_loop_and_returns_every_state() -> None:
    store = MemoryCounterStore()
    count = memory.EXPORT_BATCH * 5 + 7
    await store.load({f"c{i}": CounterState(i, 1_000 + i) for i in range(count)})
    turns = 0
    stop = asyncio.Event()

    async def request_path() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await store.reset([f"c{count - 1}"], 9_999)  # a write between two slices of the export
            await asyncio.sleep(0)

    other = asyncio.create_task(request_path())
    await asyncio.sleep(0)
    exported = await store.export()
    stop.set()
    await other

    assert turns > 5  # the loop ran between slices
    assert len(exported) == count
    assert all(exported[f"c{i}"] == CounterState(i, 1_000 + i) for i in range(count - 1))
    assert exported[f"c{count - 1}"] == CounterState(0, 9_999)  # read whole, after the reset


async def test_an_export_keeps_no_object_for_the_collector_to_scan_per_counter() -> None:
    """States held as pairs of ints: 200,000 `CounterState` objects alive across a sliced
    export made each collection of the oldest generation scan them all."""
    store = MemoryCounterStore()
    await store.load({f"c{i}": CounterState(i, 7) for i in range(10_000)})
    gc.collect()
    before = len(gc.get_objects())
    exported = await store.export()
    gc.collect(0)  # the collector's first look at the new pairs stops tracking them
    assert len(gc.get_objects()) - before < 100
    assert exported["c42"] == CounterState(42, 7) and len(exported) == 10_000
    assert dict(exported.items()) == {f"c{i}": CounterState(i, 7) for i in range(10_000)}


async def test_export_touched_returns_only_what_changed_since_it_was_last_asked() -> None:
    """The usage flush's input: a counter settled, reset or rolled into a new window since
    the last call; not the 200,000 others a large store holds."""
    store = MemoryCounterStore()
    await store.load({f"c{i}": CounterState(i, 1_000) for i in range(1_000)})
    assert await store.export_touched() == ({}, frozenset())

    await store.settle([SettleOp("c1", 0, 5, 0, 1_000)])
    await store.reset(["c2"], 2_000)
    await store.acquire([CounterOp("c3", 10**9, 1, 1_500, 2_000)])  # rolls c3 into the window from 2_000
    await store.acquire([CounterOp("c4", 10**9, 1, 0, 1_000)])  # a reservation only: no state to write
    touched, dropped = await store.export_touched()
    assert dict(touched) == {"c1": CounterState(6, 1_000), "c2": CounterState(0, 2_000), "c3": CounterState(0, 2_000)}
    assert dropped == frozenset()
    assert await store.export_touched() == ({}, frozenset())  # the marks were cleared


async def test_export_touched_names_the_counters_taken_out_meanwhile() -> None:
    store = MemoryCounterStore()
    await store.load({"kept": CounterState(1, 1), "forgotten": CounterState(2, 1), "evicted": CounterState(3, 1)})
    await store.settle([SettleOp("forgotten", 0, 1, 0, 1), SettleOp("kept", 0, 1, 0, 1)])
    await store.forget(["forgotten"])
    await store.evict(["evicted"])
    touched, dropped = await store.export_touched()
    assert dict(touched) == {"kept": CounterState(2, 1)}
    assert dropped == {"forgotten", "evicted"}
