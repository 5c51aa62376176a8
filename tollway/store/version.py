"""The config version: one number that every configuration change bumps.

Nodes compare it with the version of the snapshot they hold to know when to reload
(the multi-node change propagation reads it; bumping it inside the change's own
transaction makes the change and the new number visible together).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.database import Database
from tollway.store.tables import ConfigVersion

# Built once: every management API change runs all three and every node polls the
# first four times a second; building them per call was a third of a key creation's
# CPU on the node serving the API (on the event loop its proxied requests share).
# Core statements on the table, not the ORM entity: an ORM UPDATE first compiles its
# WHERE into a Python evaluator to synchronise the session (per execution), which was
# two fifths of the ORM work of a key created through the API.
_TABLE = cast(Table, ConfigVersion.__table__)
_READ = select(_TABLE.c.version).where(_TABLE.c.id == 1)
_LOCK = update(_TABLE).where(_TABLE.c.id == 1).values(version=_TABLE.c.version)
_BUMP = update(_TABLE).where(_TABLE.c.id == 1).values(version=_TABLE.c.version + 1).returning(_TABLE.c.version)


async def read_version(session: AsyncSession) -> int:
    """The current version as seen by ``session`` (0 before any change)."""
    version = await session.scalar(_READ)
    return int(version or 0)


async def lock_config(session: AsyncSession) -> None:
    """Take the configuration write lock until the caller's transaction ends.

    A no-op write on the version row: PostgreSQL locks the row, SQLite takes its write
    lock before anything is read. Concurrent changes (another node's bootstrap, an API
    call) then wait for each other instead of failing on each other's inserts.
    """
    await session.execute(_LOCK)


@asynccontextmanager
async def config_change(db: Database) -> AsyncIterator[AsyncSession]:
    """A transaction holding the configuration write lock (`lock_config`), committed when
    the block ends without an error.

    One at a time per node, queued in the process before a connection is taken: changes
    wait for each other on the lock anyway, and a change waiting there held a pooled
    connection meanwhile. A burst of API calls then opened overflow connections (on
    PostgreSQL a new TLS context, a handshake and an authentication each, on the event
    loop the node's requests share) only to close them again.
    """
    async with db.change_queue, db.session() as session:
        await lock_config(session)
        yield session


async def bump_version(session: AsyncSession) -> int:
    """Add one to the version inside the caller's transaction; returns the new version.

    On PostgreSQL the row lock also serialises concurrent configuration changes.
    """
    version = (await session.execute(_BUMP)).scalar()  # the new number in the same round trip
    if version is None:  # the row is created by the migration; recreate if lost
        session.add(ConfigVersion(id=1, version=1))
        await session.flush()
        return 1
    return int(version)


async def config_version(db: Database) -> int:
    """The committed config version."""
    async with db.session() as session:
        return await read_version(session)
