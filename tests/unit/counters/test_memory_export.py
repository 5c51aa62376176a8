"""Exporting a large in-process counter store (every flush interval) lets the event loop
run between slices, so requests are not held up by 200,000 counters, and still returns
every counter's state, each read whole."""

from __future__ import annotations

import asyncio
import gc

from tollway.governance.counters import memory
from tollway.governance.counters.base import CounterState
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
