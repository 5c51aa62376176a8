"""Keeping a node's policy at the stored config version.

At start (and when the change log cannot bring it up to date) the node loads the whole
policy; otherwise it applies the logged changes since the version it holds
(`tollway.store.policy_changes`), which costs in proportion to what changed, not to the
number of keys. The node that commits a change (the management API's) applies it inside
the change's own transaction instead (`PolicyFollower.prepare`) and swaps it in after the
commit (`install`). Either way readers keep the snapshot they hold: a new one is swapped in
whole, and only ever a newer one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tollway.governance.model import ESTIMATE, Enforcement, PolicySnapshot, VirtualKeyPolicy
from tollway.store.changes import Change, changes_since
from tollway.store.database import Database
from tollway.store.policy_changes import Policy, UnknownChange, apply_changes, indexed
from tollway.store.snapshot import PolicyReader
from tollway.store.version import read_version

log = logging.getLogger(__name__)


class PolicyFollower:
    """The node's current policy, kept up to date by `refresh` (cheap when nothing changed)."""

    def __init__(self, db: Database, *, enforce_virtual_keys: bool, defaults: Enforcement = ESTIMATE,
                 keys_on_demand: bool = False) -> None:
        self.db = db
        self.enforce_virtual_keys = enforce_virtual_keys
        self.defaults = defaults  # the global enforcement of limits that state none
        # Keys are loaded by `tollway.store.key_cache` when first presented, not at start;
        # changes then update the keys held and leave the others to be loaded when asked.
        self.keys_on_demand = keys_on_demand
        self.key_epoch = 0  # bumped whenever keys may have changed: rows read before are stale
        self.on_keys_changed: Callable[[set[str] | None], None] | None = None  # hashes that exist now; None: all
        self.policy: Policy | None = None
        self.full_loads = 0  # how often everything was loaded (start included)
        self.changes_applied = 0  # changed entities applied incrementally
        self._lock = asyncio.Lock()  # one refresh at a time: the poller's and an API change's
        self._waiting: asyncio.Task[PolicySnapshot] | None = None  # a refresh waiting for the lock
        self.refreshes = 0  # refreshes run (calls that joined a waiting one not counted)

    @property
    def snapshot(self) -> PolicySnapshot:
        return self.policy.snapshot if self.policy else PolicySnapshot(enforce_virtual_keys=self.enforce_virtual_keys)

    async def reload(self) -> PolicySnapshot:
        """Load the whole policy at the stored version."""
        async with self._lock, self.db.session() as session:
            await self._load_all(session, await read_version(session))
        return self.snapshot

    async def refresh(self) -> PolicySnapshot:
        """Bring the policy to the stored version: the logged changes since the held
        version, or everything when the log has a gap (or this node holds nothing yet).

        Calls that arrive while a refresh waits for its turn join it instead of queueing
        their own: it reads the version after they were made, so it brings their changes
        (a node serving 100 API changes a second ran one refresh per change, each a few
        queries, on the loop its requests wait for)."""
        waiting = self._waiting
        if waiting is None:
            # A task of its own: a caller that goes away (a cancelled API request) does
            # not take the refresh away from the others waiting for it.
            waiting = self._waiting = asyncio.create_task(self._refresh_when_turn_comes(), name="policy-refresh")
            waiting.add_done_callback(_retrieve)
        return await asyncio.shield(waiting)

    async def _refresh_when_turn_comes(self) -> PolicySnapshot:
        async with self._lock:
            self._waiting = None  # from here on, a new call waits for the next refresh
            self.refreshes += 1
            return await self._refresh()

    async def _refresh(self) -> PolicySnapshot:
        async with self.db.session() as session:
            current = await read_version(session)
            held = self.policy.snapshot.version if self.policy else None
            if current == held:
                return self.snapshot
            if held is None or current < held:  # nothing yet, or a database restored to an older state
                await self._load_all(session, current)
                return self.snapshot
            changes = await changes_since(session, held, current)
            if changes is None:
                log.info("config change log does not reach back to version %d (now %d): reloading the policy",
                         held, current)
                await self._load_all(session, current)
                return self.snapshot
            existing: set[str] = set()
            try:
                self.policy = await apply_changes(session, self.policy, changes, current, self.defaults,  # type: ignore[arg-type]
                                                  held_only=self.keys_on_demand, key_hashes_seen=existing)
            except UnknownChange as kind:
                log.info("config change of kind %s cannot be applied by itself: reloading the policy", kind)
                await self._load_all(session, current)
            else:
                self._applied(len(changes), _touches_keys(changes), existing)
        return self.snapshot

    def _applied(self, changes: int, touches_keys: bool, key_hashes: set[str]) -> None:
        """Bookkeeping after changes were applied incrementally."""
        self.changes_applied += changes
        if touches_keys:
            self.key_epoch += 1
            if self.on_keys_changed is not None:
                self.on_keys_changed(key_hashes)

    async def prepare(self, session: AsyncSession, version: int,
                      touched: Iterable[tuple[str, str]]) -> PreparedChange | None:
        """The policy with a change this node is committing applied, read through the
        change's own ``session`` (inside its transaction, under the config lock: it sees
        the entities as of ``version``); None when that cannot be done on its own (the
        node does not hold the version before, or a kind it cannot apply) — the caller
        then refreshes after the commit.

        The node serving the management API applied its own change in a refresh of its
        own after the commit: another session (a connection check, BEGIN, COMMIT) and two
        more queries, re-reading the version and the log it had just written — a quarter
        of the CPU a change cost it, on the loop its proxied requests wait for."""
        policy = self.policy
        changes = [Change(version, kind, ident) for kind, ident in sorted(set(touched))]
        if policy is None or policy.snapshot.version != version - 1 or not changes:
            return None
        existing: set[str] = set()
        try:
            applied = await apply_changes(session, policy, changes, version, self.defaults,
                                          held_only=self.keys_on_demand, key_hashes_seen=existing)
        except UnknownChange:
            return None
        return PreparedChange(policy, applied, len(changes), _touches_keys(changes), existing)

    async def install(self, prepared: PreparedChange) -> bool:
        """Swap in a `prepare`d policy once its change is committed; False (nothing done)
        when the policy moved on meanwhile (a refresh, keys loaded on demand): then the
        caller refreshes."""
        async with self._lock:  # a refresh running now finishes first, and sees what it may
            if self.policy is not prepared.base:
                return False
            self.policy = prepared.policy
            self._applied(prepared.changes, prepared.touches_keys, prepared.key_hashes)
            return True

    def hold_keys(self, policies: Mapping[str, VirtualKeyPolicy], epoch: int, max_keys: int) -> bool:
        """Add keys loaded on demand (by value hash), read when `key_epoch` was ``epoch``;
        False, adding nothing, when keys may have changed since. Beyond ``max_keys`` a
        tenth of the keys held are dropped, in the map's order (by hash: arbitrary, so no
        recency bookkeeping costs memory per key; a dropped key loads again when presented)."""
        if epoch != self.key_epoch or self.policy is None:
            return False
        policy = self.policy
        keys, hashes = policy.snapshot.keys_by_hash.mutate(), policy.key_hashes.mutate()  # type: ignore[attr-defined]
        for key_hash, key in policies.items():
            keys[key_hash] = key
            hashes[key.id] = key_hash
        if len(keys) > max_keys:
            held = policy.snapshot.keys_by_hash
            for key_hash in list(itertools.islice((h for h in held if h not in policies), len(keys) - max_keys * 9 // 10)):
                hashes.pop(keys.pop(key_hash).id, None)
        snapshot = dataclasses.replace(policy.snapshot, keys_by_hash=keys.finish())
        self.policy = dataclasses.replace(policy, snapshot=snapshot, key_hashes=hashes.finish())
        return True

    async def _load_all(self, session: AsyncSession, version: int) -> None:
        snapshot = await PolicyReader(session, self.defaults).snapshot(self.enforce_virtual_keys, version,
                                                                       keys=not self.keys_on_demand)
        self.policy = await indexed(snapshot)
        if len(snapshot.keys_by_hash) >= FREEZE_FROM_KEYS:
            _freeze_for_the_collector()
        self.full_loads += 1
        self.key_epoch += 1
        if self.on_keys_changed is not None:
            self.on_keys_changed(None)


_KEY_KINDS = frozenset({"virtual_key", "provider_config"})
FREEZE_FROM_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class PreparedChange:
    """A policy computed inside a change's transaction (`PolicyFollower.prepare`)."""

    base: Policy  # the policy it was computed from: installed only while that is still held
    policy: Policy
    changes: int
    touches_keys: bool
    key_hashes: set[str]  # value hashes of the changed keys that exist


def _touches_keys(changes: Sequence[Change]) -> bool:
    return any(change.kind in _KEY_KINDS for change in changes)


def _retrieve(task: asyncio.Task[PolicySnapshot]) -> None:
    """Its callers get the failure; with none left, this keeps asyncio from warning."""
    if not task.cancelled():
        task.exception()


def _freeze_for_the_collector() -> None:
    """Move every object alive now, the new policy's included, out of the garbage
    collector's scans (`gc.freeze`). A policy of 100,000 keys is over half a million
    objects: a full collection scanning them took 0.9–2 s on the loaded 2-core machine
    (none once frozen), and collections run while requests wait. The runtime freezes at
    start; this covers a full reload later (a gap in the change log). The young
    generations are collected first, so that little garbage is frozen with it (frozen
    objects are still freed when their last reference goes)."""
    gc.collect(1)
    gc.freeze()
