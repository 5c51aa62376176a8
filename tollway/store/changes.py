"""The config change log: which entities each config version changed.

Every committed configuration change bumps the config version and, in the same
transaction, records here the kind and id of each entity it created, changed or
deleted. A node holding version ``v`` reads the changes after ``v`` and rebuilds the
policy of just those entities (their state as of the version it reads, or their
absence) instead of reloading everything. The entity's state is read from its own
tables rather than copied into the log: one format, and a node reading the log and the
entities in one transaction always sees them at one version.

Only the last `KEPT_VERSIONS` versions are kept; a node further behind (or one that
finds a version with no recorded change, say written by an older release) reloads the
whole policy instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, and_, bindparam, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.tables import ConfigChange

KEPT_VERSIONS = 1000
PRUNE_EVERY = 50  # versions between two prunings of the log (each change paid a DELETE)
MAX_CHANGES_APPLIED = 50_000  # beyond this many changed entities a full reload is as cheap

# Core statements on the table, built once with bound parameters: every API change runs
# the first two and every node the third four times a second. Built per call, and as ORM
# statements (an ORM DELETE compiles its WHERE into a Python evaluator per execution),
# they cost more CPU than the database took to run them, on the loop requests wait for.
_TABLE = cast(Table, ConfigChange.__table__)
_INSERT = insert(_TABLE)
_PRUNE = delete(_TABLE).where(_TABLE.c.version <= bindparam("oldest_dropped"))
# Read a page at a time, the loop running between pages: a bulk call logs 10,000
# changes in one version, and decoding them in one go held the loop for 25 ms. Pages
# follow (version, id): a version's changes may span pages.
CHANGES_PER_READ = 1000
_SINCE = (
    select(_TABLE.c.version, _TABLE.c.kind, _TABLE.c.entity_id, _TABLE.c.id)
    .where(_TABLE.c.version > bindparam("held"), _TABLE.c.version <= bindparam("current"),
           or_(_TABLE.c.version > bindparam("after_version"),
               and_(_TABLE.c.version == bindparam("after_version"), _TABLE.c.id > bindparam("after_id"))))
    .order_by(_TABLE.c.version, _TABLE.c.id)
    .limit(bindparam("page"))
)


@dataclass(frozen=True, slots=True)
class Change:
    """One changed entity: ``kind`` is the audit entity type ("virtual_key", "team", …)."""

    version: int
    kind: str
    entity_id: str


async def record_changes(session: AsyncSession, version: int, entities: Iterable[tuple[str, str]]) -> None:
    """Record that ``version`` changed ``entities`` ((kind, id) pairs), and every
    `PRUNE_EVERY` versions prune the log to the last `KEPT_VERSIONS`, inside the caller's
    transaction (a node further behind reloads everything whether or not older versions
    are still there)."""
    rows = [{"version": version, "kind": kind, "entity_id": ident} for kind, ident in sorted(set(entities))]
    if rows:
        await session.execute(_INSERT, rows)
    if version % PRUNE_EVERY == 0:  # a statement less for the other changes: the log holds up to PRUNE_EVERY more
        await session.execute(_PRUNE, {"oldest_dropped": version - KEPT_VERSIONS})


async def changes_since(session: AsyncSession, held: int, current: int) -> Sequence[Change] | None:
    """The changes of versions ``held + 1`` … ``current``, oldest first; None when the log
    cannot say (versions pruned or never recorded, or too many changes to be worth it):
    then the caller reloads everything."""
    if current - held > KEPT_VERSIONS:
        return None
    changes: list[Change] = []
    after_version, after_id = held, 0
    while len(changes) <= MAX_CHANGES_APPLIED:
        page = (await session.execute(_SINCE, {"held": held, "current": current, "after_version": after_version,
                                               "after_id": after_id, "page": CHANGES_PER_READ})).all()
        changes += [Change(int(version), kind, ident) for version, kind, ident, _ in page]
        if len(page) < CHANGES_PER_READ:
            break
        after_version, after_id = page[-1][0], page[-1][3]
        await asyncio.sleep(0)  # let requests run between pages
    if len(changes) > MAX_CHANGES_APPLIED or not covers(changes, held, current):
        return None
    return changes


def covers(changes: Sequence[Change], held: int, current: int) -> bool:
    """Whether every version after ``held`` up to ``current`` has at least one change:
    a version without any means the log missed it, and applying the rest would be wrong."""
    return {change.version for change in changes} == set(range(held + 1, current + 1))
