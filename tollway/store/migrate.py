"""Schema migrations of the config store, run programmatically (``tollway db upgrade``).

The Alembic environment ships inside the package (`tollway/store/migrations`), so no
alembic.ini is needed where the gateway runs. Each command opens its own engine,
runs in one transaction (DDL is transactional on PostgreSQL and, through `Database`'s
BEGIN handling, on SQLite) and closes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from tollway.store.database import Database

T = TypeVar("T")

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
# Serialises migrations of nodes that start at the same time against one PostgreSQL.
_PG_LOCK_KEY = 0x746F6C6C77617901


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for the packaged migrations, bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the newest)."""

    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    await _run(url, run)


async def downgrade(url: str, revision: str) -> None:
    """Migrate down to ``revision`` ("base" removes every table)."""

    def run(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    await _run(url, run)


async def current(url: str) -> str | None:
    """The revision the database is at, or None when it was never migrated."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return await _run(url, read)


def head() -> str:
    """The newest revision shipped with this version of Tollway."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


async def _run(url: str, work: Callable[[Connection], T]) -> T:
    db = Database(url, sqlite_foreign_keys=False)
    try:
        await db.ping()
        async with db.engine.begin() as connection:
            if db.dialect == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            return await connection.run_sync(work)
    finally:
        await db.close()
