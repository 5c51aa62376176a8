"""Which end users' counters this process holds, loading them back and evicting idle ones.

A million end users a day cannot all stay in memory: counters of an end user idle for
``idle_ms`` are taken out of the in-process store (`MemoryCounterStore.evict`, only those
holding no reservation) and written to the database; on Redis, which expires idle
counters itself (two windows after their last use, when their usage is zero anyway),
this process only forgets that it has seen them. A returning end user's counters are
read back from the database and seeded (`CounterStore.load`, which keeps a counter the
store still has) before their request is decided.

Race-free within a process: the first request of an end user not held starts one load
and every concurrent request of theirs waits for it, so none is decided on a counter
created empty in the meantime; the loads started in one event-loop turn (a burst of new
end users) are one database read; states evicted but not yet written are served from
memory (`_unsaved`) to a user who returns meanwhile. The clock is the enforcer's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping

from tollway.governance.counters.base import CounterState, CounterStore, CounterUnavailable

Loader = Callable[[Collection[str]], Awaitable[dict[str, CounterState]]]
Saver = Callable[[Mapping[str, CounterState]], Awaitable[None]]


class EndUserResidency:
    """Loads end users' counters on first use and evicts the idle ones (see module doc)."""

    def __init__(self, store: CounterStore, load: Loader, save: Saver, *, evicts_cells: bool) -> None:
        self._store = store
        self._load = load
        self._save = save
        self._evicts_cells = evicts_cells  # the in-process store: cells are taken out; Redis expires its own
        self._seen: dict[str, int] = {}  # counter -> when a request last used it (epoch ms)
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._unsaved: dict[str, CounterState] = {}  # evicted, not yet in the database
        # The read-back being gathered in this event-loop turn (see `_load_now`).
        self._batch: list[str] = []
        self._batch_seen = 0
        self._batch_future: asyncio.Future[None] | None = None
        self._batch_task: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """End-user counters this process holds now."""
        return len(self._seen)

    async def ensure(self, counters: Collection[str], now_ms: int) -> None:
        """Make sure ``counters`` hold their stored usage before a request is decided on them."""
        seen = self._seen
        missing = []
        for name in counters:
            if name in seen:
                seen[name] = now_ms
            else:
                missing.append(name)
        if not missing:
            return
        waits = [self._loading[name] for name in missing if name in self._loading]
        mine = [name for name in missing if name not in self._loading]
        if mine:
            await self._load_now(mine, now_ms)
        for pending in waits:
            await asyncio.shield(pending)  # a cancelled waiter must not cancel the others' load
        for name in missing:
            seen[name] = now_ms

    async def _load_now(self, names: list[str], now_ms: int) -> None:
        """Load ``names`` with those of every other request of this event-loop turn: one
        database read for the new end users of a burst, not one each."""
        future = self._batch_future
        if future is None:
            future = self._batch_future = asyncio.get_running_loop().create_future()
            self._batch_task = asyncio.create_task(self._load_batch(future), name="end-user-read-back")
        for name in names:
            self._loading[name] = future
        self._batch.extend(names)
        self._batch_seen = max(self._batch_seen, now_ms)
        await asyncio.shield(future)  # a cancelled waiter must not cancel the others' load

    async def _load_batch(self, future: asyncio.Future[None]) -> None:
        names, now_ms = self._batch, self._batch_seen
        self._batch, self._batch_seen, self._batch_future = [], 0, None
        try:
            states = {name: self._unsaved[name] for name in names if name in self._unsaved}
            rest = [name for name in names if name not in states]
            if rest:
                try:
                    states |= await self._load(rest)
                except Exception as exc:  # the requests cannot be decided exactly: the caller's fail-open/closed
                    raise CounterUnavailable(f"end users' counters could not be read back: {exc}") from exc
            if states:
                await self._store.load(states)
            for name in names:
                self._seen[name] = now_ms
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else CounterUnavailable("load cancelled"))
            future.exception()  # marked retrieved: waiters re-raise it, nobody else must
            if not isinstance(exc, Exception):
                raise
        finally:
            for name in names:
                if self._loading.get(name) is future:
                    del self._loading[name]

    async def evict_idle(self, now_ms: int, idle_ms: int) -> int:
        """Take out the counters no request used for ``idle_ms`` (with the in-process store:
        only those holding no reservation) and write their states; returns how many."""
        idle = [name for name, last in self._seen.items() if now_ms - last >= idle_ms and name not in self._loading]
        if not idle:
            return 0
        if self._evicts_cells:
            evicted = await self._store.evict(idle)  # type: ignore[attr-defined]
            for name in evicted:
                del self._seen[name]
            self._unsaved.update(evicted)
            await self.save_evicted()
            return len(evicted)
        for name in idle:
            del self._seen[name]
        return len(idle)

    async def save_evicted(self) -> None:
        """Write evicted states not yet written (retried at the next eviction when this fails)."""
        if not self._unsaved:
            return
        batch = dict(self._unsaved)
        await self._save(batch)
        for name, state in batch.items():
            if self._unsaved.get(name) == state:
                del self._unsaved[name]
