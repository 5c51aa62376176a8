"""Flushing counter usage to the config store: only what changed since the last flush.

Writing every counter every flush interval costs in proportion to the number of limits:
at a hundred thousand keys it held SQLite's write lock for seconds every ten seconds,
and every management API change waited behind it. The counters' states are absolute
values, so a counter whose state is the one this process last wrote (or loaded) needs
no write; anything else is written, whoever changed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from tollway.governance.counters.base import CounterState, CounterStore
from tollway.store.database import Database
from tollway.store.usage import save_counters

COMPARED_PER_TURN = 5000  # states compared per turn of the event loop (about a millisecond)


@runtime_checkable
class TracksTouched(Protocol):
    """A counter store that can say which counters changed since it was last asked
    (`MemoryCounterStore.export_touched`)."""

    async def export_touched(self) -> tuple[Mapping[str, CounterState], frozenset[str]]: ...


class UsageFlusher:
    """Writes counter states that differ from those last written or loaded."""

    def __init__(self, db: Database, loaded: Mapping[str, CounterState] | None = None) -> None:
        self.db = db
        self._stored: dict[str, CounterState] = dict(loaded or {})  # what the store holds, as far as we know
        self._unwritten: dict[str, CounterState] = {}  # touched states a failed write did not store
        # One flush at a time (the periodic one, an API call's, shutdown's): two at once wrote
        # in either order, so an older state could land over a newer one, and the second
        # returned, finding nothing touched, before the first had written what it took.
        self._lock = asyncio.Lock()

    async def flush_from(self, store: CounterStore) -> int:
        """Write what changed in ``store``: only the counters it says were touched since
        the last flush when it can say (the in-process store), else every counter's state
        compared with what was last written (`flush`). When it returns, everything the store
        held when it was called is written (after any flush already under way)."""
        async with self._lock:
            return await self._flush_from(store)

    async def _flush_from(self, store: CounterStore) -> int:
        if not isinstance(store, TracksTouched):
            return await self._flush(await store.export())
        touched, dropped = await store.export_touched()
        stored, unwritten = self._stored, self._unwritten
        for name in dropped:  # forgotten or evicted: whoever loads it back brings its state
            stored.pop(name, None)
            unwritten.pop(name, None)
        states = {**unwritten, **touched} if unwritten else touched  # the newer state wins
        changed = await _changed(states, stored)
        try:
            if changed:
                await save_counters(self.db, changed)
        except BaseException:
            self._unwritten = changed  # the marks are gone from the store: kept here for the next flush
            raise
        self._unwritten = {}
        stored.update(changed)
        return len(changed)

    async def flush(self, states: Mapping[str, CounterState]) -> int:
        """Write the states that changed; returns how many. A failed write is retried
        whole at the next flush (nothing is marked written)."""
        async with self._lock:
            return await self._flush(states)

    async def _flush(self, states: Mapping[str, CounterState]) -> int:
        stored = self._stored
        changed = await _changed(states, stored)
        if changed:
            await save_counters(self.db, changed)
            stored.update(changed)
        if len(stored) > len(states):  # counters forgotten (limits deleted): stop tracking them
            self._stored = {name: stored[name] for name in states if name in stored}
        return len(changed)


async def _changed(states: Mapping[str, CounterState], stored: Mapping[str, CounterState]) -> dict[str, CounterState]:
    """The states that differ from ``stored``, with a turn of the event loop every
    `COMPARED_PER_TURN` (200,000 counters compared at once held requests up). One state
    at a time, nothing kept but the changed ones: a slice held in a list lived through
    collections of the young generations, and its objects went on to make each flush
    run the collector's oldest generation."""
    changed: dict[str, CounterState] = {}
    for count, (name, state) in enumerate(states.items(), 1):
        if stored.get(name) != state:
            changed[name] = state
        if count % COMPARED_PER_TURN == 0:
            await asyncio.sleep(0)
    return changed
