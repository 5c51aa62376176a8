"""The config version: one number that every configuration change bumps.

Nodes compare it with the version of the snapshot they hold to know when to reload
(the multi-node change propagation reads it; bumping it inside the change's own
transaction makes the change and the new number visible together).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.store.database import Database
from tollway.store.tables import ConfigVersion

# Built once: every management API change runs all three and every node polls the
# first four times a second; building them per call was a third of a key creation's
# CPU on the node serving the API (on the event loop its proxied requests share).
_READ = select(ConfigVersion.version).where(ConfigVersion.id == 1)
_LOCK = update(ConfigVersion).where(ConfigVersion.id == 1).values(version=ConfigVersion.version)
_BUMP = update(ConfigVersion).where(ConfigVersion.id == 1).values(version=ConfigVersion.version + 1)


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


async def bump_version(session: AsyncSession) -> int:
    """Add one to the version inside the caller's transaction; returns the new version.

    On PostgreSQL the row lock also serialises concurrent configuration changes.
    """
    result = await session.execute(_BUMP)
    if result.rowcount == 0:  # type: ignore[attr-defined]  # the row is created by the migration; recreate if lost
        session.add(ConfigVersion(id=1, version=1))
        await session.flush()
    return await read_version(session)


async def config_version(db: Database) -> int:
    """The committed config version."""
    async with db.session() as session:
        return await read_version(session)
