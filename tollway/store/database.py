"""The connection to the config store: one async engine per `Database` object.

Supported URLs: ``sqlite:///path.db`` (the default, zero set-up) and
``postgresql://user:pw@host/db`` (or ``postgres://``); they are mapped to the async
drivers aiosqlite and asyncpg.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_SUPPORTED = "sqlite:///path/to/tollway.db or postgresql://user:password@host:5432/dbname"
SQLITE_BUSY_TIMEOUT_MS = 5_000
POSTGRES_CONNECT_TIMEOUT_S = 10


class DatabaseUnavailable(Exception):
    """The config store cannot be reached; the message names the URL (no password) and why."""


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a configured database URL.

    ``sqlite:///x.db`` → ``sqlite+aiosqlite:///x.db``; ``postgresql://`` and
    ``postgres://`` → ``postgresql+asyncpg://`` (libpq's ``sslmode`` becomes asyncpg's
    ``ssl``). Anything else raises ValueError.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"invalid database_url {safe_url(url)!r}: use {_SUPPORTED}") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database_url scheme {parsed.drivername!r}: use {_SUPPORTED}"
        )
    parsed = parsed.set(drivername=driver)
    if driver.startswith("postgresql") and "sslmode" in parsed.query:
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


class Database:
    """The config store's engine and sessions.

    SQLite connections get WAL mode, a busy timeout and enforced foreign keys, and real
    transactions (SQLAlchemy's recipe: the driver's own implicit transactions are off
    and every transaction starts with BEGIN), so DDL in migrations is transactional too.
    ``sqlite_foreign_keys=False`` is for migrations, whose SQLite table rebuilds would
    otherwise trip over references.
    """

    def __init__(self, url: str, *, echo: bool = False, sqlite_foreign_keys: bool = True) -> None:
        self.url = async_url(url)
        self.safe_url = safe_url(self.url)
        self.dialect = make_url(self.url).get_backend_name()
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo, **self._engine_options())
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, foreign_keys=sqlite_foreign_keys)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.change_queue = asyncio.Lock()  # configuration changes, one at a time (`version.config_change`)

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite file, for writers that go through the sqlite3 module (None otherwise)."""
        database = make_url(self.url).database if self.dialect == "sqlite" else None
        return database if database and database != ":memory:" else None

    def _engine_options(self) -> dict[str, Any]:
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if not database or database == ":memory:":
                # One shared connection, or every connection would see its own empty database.
                return {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            return {}
        connect_args: dict[str, Any] = {}
        if "timeout" not in make_url(self.url).query:
            connect_args["timeout"] = POSTGRES_CONNECT_TIMEOUT_S
        return {"pool_pre_ping": True, "connect_args": connect_args}

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction, committed when the block ends without an error."""
        async with self._sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Check that the database answers; raise `DatabaseUnavailable` when it does not."""
        self._check_sqlite_directory()
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DBAPIError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _check_sqlite_directory(self) -> None:
        # Said up front because it is the usual mistake, and because a failed aiosqlite
        # connect leaks its worker thread (omnilib/aiosqlite#241).
        database = make_url(self.url).database if self.dialect == "sqlite" else None
        if database and database != ":memory:" and not Path(database).parent.is_dir():
            raise DatabaseUnavailable(
                f"cannot reach the database at {self.safe_url}: directory {Path(database).parent} does not exist"
            )

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        """The error to raise when connecting failed with ``exc``."""
        return DatabaseUnavailable(f"cannot reach the database at {self.safe_url}: {describe_error(exc)}")

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"


def describe_error(exc: BaseException) -> str:
    """The driver's own words for a database error, without SQLAlchemy's boilerplate."""
    original = getattr(exc, "orig", None) or exc
    message = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {message}" if message else type(original).__name__


def _configure_sqlite(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit transactions; see on_begin
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commits
        cursor.close()

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
