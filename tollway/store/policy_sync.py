"""Keeping a node's policy at the stored config version.

At start (and when the change log cannot bring it up to date) the node loads the whole
policy; otherwise it applies the logged changes since the version it holds
(`tollway.store.policy_changes`), which costs in proportion to what changed, not to the
number of keys. Either way readers keep the snapshot they hold: a new one is swapped in
whole, and only ever a newer one.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from tollway.governance.model import PolicySnapshot
from tollway.store.changes import changes_since
from tollway.store.database import Database
from tollway.store.policy_changes import Policy, UnknownChange, apply_changes, indexed
from tollway.store.snapshot import PolicyReader
from tollway.store.version import read_version

log = logging.getLogger(__name__)


class PolicyFollower:
    """The node's current policy, kept up to date by `refresh` (cheap when nothing changed)."""

    def __init__(self, db: Database, *, enforce_virtual_keys: bool) -> None:
        self.db = db
        self.enforce_virtual_keys = enforce_virtual_keys
        self.policy: Policy | None = None
        self.full_loads = 0  # how often everything was loaded (start included)
        self.changes_applied = 0  # changed entities applied incrementally
        self._lock = asyncio.Lock()  # one refresh at a time: the poller's and an API change's

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
        version, or everything when the log has a gap (or this node holds nothing yet)."""
        async with self._lock, self.db.session() as session:
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
            try:
                self.policy = await apply_changes(session, self.policy, changes, current)  # type: ignore[arg-type]
            except UnknownChange as kind:
                log.info("config change of kind %s cannot be applied by itself: reloading the policy", kind)
                await self._load_all(session, current)
            else:
                self.changes_applied += len(changes)
        return self.snapshot

    async def _load_all(self, session: AsyncSession, version: int) -> None:
        snapshot = await PolicyReader(session).snapshot(self.enforce_virtual_keys, version)
        self.policy = await indexed(snapshot)
        self.full_loads += 1
