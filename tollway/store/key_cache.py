"""Virtual keys loaded on demand, by value hash, for a node with more keys than it loads
at start (`virtual_key_cache.load_all_up_to`).

Reading a million keys takes longer than a node may take to start (the rows alone
take seconds per hundred thousand), so such a node starts with every other entity and
loads a key the first time a request presents it; the key then stays in the policy,
where the change log keeps it current like any other (`PolicyFollower`), until it is
evicted (beyond ``max_keys``, a tenth of the keys held at a time).

What keeps a flood of unknown keys off the database:

- a hash found nowhere is remembered as unknown for ``miss_ttl`` (a bounded set; a key
  created or given that value meanwhile is dropped from it by the change that made it);
- the hashes waiting for a lookup are coalesced: one lookup at a time, each reading up
  to `LOOKUP_BATCH` hashes in one query, and a hash asked for twice is looked up once;
- at most ``max_pending`` distinct hashes wait; beyond that a request gets
  `KeyLookupBusy` (503) instead of a place in the queue.

So the database sees at most one query per `LOOKUP_BATCH` distinct unknown hashes,
one at a time, whatever the request rate. Governance is unchanged: a key loaded
on demand carries its own limits, its team's and customer's are in the policy already,
and its counters are seeded from the database (unless the store has them) before the
key is used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select

from tollway.governance.counters.base import CounterState, CounterStore
from tollway.governance.model import PolicySnapshot, VirtualKeyPolicy
from tollway.store.database import Database
from tollway.store.policy_sync import PolicyFollower
from tollway.store.snapshot import PolicyReader
from tollway.store.tables import VirtualKey, VKProviderConfig
from tollway.store.usage import counter_states_of

LOOKUP_BATCH = 500  # hashes per query


class KeyLookupBusy(Exception):
    """Too many distinct keys are waiting to be looked up."""


class KeyCache:
    """Loads keys the policy does not hold, remembering the unknown ones."""

    def __init__(self, follower: PolicyFollower, counters: CounterStore, *, max_keys: int, miss_ttl_s: float,
                 max_misses: int = 100_000, max_pending: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.follower = follower
        self.counters = counters
        self.max_keys = max_keys
        self.miss_ttl_s = miss_ttl_s
        self.max_misses = max_misses
        self.max_pending = max_pending
        self.clock = clock
        self.queries = 0  # lookups that reached the database
        self.hashes_looked_up = 0
        self._misses: OrderedDict[str, float] = OrderedDict()  # unknown hash -> when to ask again
        self._pending: dict[str, asyncio.Future[PolicySnapshot]] = {}
        self._queue: list[str] = []
        self._worker: asyncio.Task[None] | None = None
        follower.on_keys_changed = self._forget_misses

    @property
    def misses_cached(self) -> int:
        return len(self._misses)

    async def snapshot_with(self, key_hash: str) -> PolicySnapshot:
        """A snapshot holding the key with this hash if it exists (without it if not)."""
        snapshot = self.follower.snapshot
        if key_hash in snapshot.keys_by_hash or self._known_missing(key_hash):
            return snapshot
        future = self._pending.get(key_hash)
        if future is None:
            if len(self._pending) >= self.max_pending:
                raise KeyLookupBusy(f"{len(self._pending)} virtual keys are waiting to be looked up")
            future = self._pending[key_hash] = asyncio.get_running_loop().create_future()
            self._queue.append(key_hash)
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._drain(), name="virtual-key-lookups")
        # Shielded: a request that goes away must not cancel the lookup others wait for.
        return await asyncio.shield(future)

    def _known_missing(self, key_hash: str) -> bool:
        until = self._misses.get(key_hash)
        if until is None:
            return False
        if until > self.clock():
            return True
        del self._misses[key_hash]
        return False

    def _forget_misses(self, hashes: set[str] | None) -> None:
        """Keys now exist with these hashes (None: everything was reloaded)."""
        if hashes is None:
            self._misses.clear()
            return
        for key_hash in hashes:
            self._misses.pop(key_hash, None)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:LOOKUP_BATCH], self._queue[LOOKUP_BATCH:]
            try:
                snapshot = await self._look_up(batch)
            except Exception as exc:  # the database is down: these requests fail, nothing is cached
                for key_hash in batch:
                    future = self._pending.pop(key_hash)
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved here: a request that went away leaves no warning
                continue
            for key_hash in batch:
                future = self._pending.pop(key_hash)
                if not future.done():
                    future.set_result(snapshot)

    async def _look_up(self, hashes: Sequence[str]) -> PolicySnapshot:
        follower = self.follower
        epoch = follower.key_epoch
        self.queries += 1
        self.hashes_looked_up += len(hashes)
        async with follower.db.session() as session:
            reader = PolicyReader(session, follower.defaults)
            rows = await reader.rows(VirtualKey, hashes, "value_hash")
            # A value replaced by a rotation still works through its grace period.
            found = {row.id for row in rows}
            rows += [row for row in await reader.rows(VirtualKey, hashes, "previous_value_hash") if row.id not in found]
            configs = await reader.rows(VKProviderConfig, [row.id for row in rows], "virtual_key_id")
            await reader.load_limits([*rows, *configs])
            states = await counter_states_of(session, reader.budgets.keys(), reader.rate_limits.keys())
        # Seeded before the key is usable: its first request counts from the stored usage
        # (a store that holds the counter already keeps its own, newer state).
        await self.counters.load(states)
        policies = _policies(reader, rows, configs)
        if follower.hold_keys(policies, epoch, self.max_keys):
            now = self.clock()
            for key_hash in hashes:
                if key_hash not in policies:
                    self._remember_missing(key_hash, now)
            return follower.snapshot
        # A key changed while these rows were read: they may predate the change. They
        # serve the requests that asked (as if those came a moment earlier); nothing is kept.
        snapshot = follower.snapshot
        return dataclasses.replace(snapshot, keys_by_hash=snapshot.keys_by_hash.update(policies))  # type: ignore[attr-defined]

    def _remember_missing(self, key_hash: str, now: float) -> None:
        self._misses[key_hash] = now + self.miss_ttl_s
        self._misses.move_to_end(key_hash)
        while len(self._misses) > self.max_misses:
            self._misses.popitem(last=False)


async def count_virtual_keys(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(VirtualKey))).scalar_one())


async def held_counters(db: Database, snapshot: PolicySnapshot) -> dict[str, CounterState]:
    """The stored counter states of the limits ``snapshot`` holds (at start without keys:
    those of providers, models, customers and teams)."""
    governed = [*snapshot.providers.values(), *snapshot.model_configs.values(), *snapshot.customers.values(),
                *(team.limits for team in snapshot.teams.values()),
                *(key.limits for key in snapshot.keys_by_hash.values())]
    budgets = {limits.budget.id for limits in governed if limits.budget is not None}
    rate_limits = {limits.rate_limit.id for limits in governed if limits.rate_limit is not None}
    async with db.session() as session:
        return await counter_states_of(session, budgets, rate_limits)


def _policies(reader: PolicyReader, rows: Sequence[Any], configs: Sequence[Any]) -> dict[str, VirtualKeyPolicy]:
    configs_of: dict[str, list[Any]] = defaultdict(list)
    for config in configs:
        configs_of[config.virtual_key_id].append(config)
    return {digest: policy for row in rows for digest, policy in reader.virtual_key_entries(row, configs_of.get(row.id, ()))}
