"""Running report queries where they cannot slow the proxy.

On SQLite a query through aiosqlite still processes its rows on the event loop's thread,
between the proxy's requests; reports run instead on a worker thread of their own, on a
plain sqlite3 connection that may only read (WAL: readers never block the request log's
writer, nor it them). On PostgreSQL they run through the async engine in a REPEATABLE READ
transaction, so that all of a report's statements see one snapshot (the log rows and the
rollups they add to are committed together); MVCC readers take no lock a writer waits for.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event

from tollway.store.database import SQLITE_BUSY_TIMEOUT_MS, Database

T = TypeVar("T")
_READERS: weakref.WeakKeyDictionary[Database, _SqliteReports] = weakref.WeakKeyDictionary()
_THREADS = 2  # two tabs' reports at once; more would only compete with the proxy for the CPU


class _SqliteReports:
    """A read-only SQLAlchemy engine on the SQLite file, used from its own worker threads."""

    def __init__(self, path: str) -> None:
        self.engine = _read_only_engine(path)
        self.threads = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="tollway-reports")

    def run(self, query: Callable[[Connection], T]) -> T:
        with self.engine.connect() as connection, connection.begin():  # one snapshot for the whole report
            return query(connection)

    def close(self) -> None:
        self.threads.shutdown(wait=False)
        self.engine.dispose()


async def run_report(db: Database, query: Callable[[Connection], T]) -> T:
    """``query`` run on a connection in one read transaction (see the module docstring)."""
    path = db.sqlite_path
    if path is not None:
        reports = _READERS.get(db)
        if reports is None:
            reports = _READERS[db] = _SqliteReports(path)
            weakref.finalize(db, reports.close)
        return await asyncio.get_running_loop().run_in_executor(reports.threads, reports.run, query)
    async with db.engine.connect() as connection:
        if db.dialect == "postgresql":
            connection = await connection.execution_options(isolation_level="REPEATABLE READ")
        async with connection.begin():
            return await connection.run_sync(query)


def _read_only_engine(path: str) -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False,
                                                             "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begun explicitly below
        dbapi_connection.execute("PRAGMA query_only=ON")

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine
