"""Migrated databases by copy instead of by migration, for tests that need a store at the
newest schema but do not test the migrations themselves.

Running every migration takes about 0.4 s on a new SQLite file and 1 s on a new PostgreSQL
database, and the suite needs well over a thousand such databases (each gateway, each
store test). So the migrations run once per session (per xdist worker), into a template:
a SQLite file that is copied with SQLite's backup API, and a PostgreSQL database that
``CREATE DATABASE ... TEMPLATE`` clones. The copy is what the migrations would have left:
the gateway's own start-up still runs ``upgrade`` and finds it at head. The migrations
themselves are tested on empty databases (tests/store/test_migrations.py, the e2e tests).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.postgres import PostgresServer
from tollway.store import migrate


def run_outside_any_loop(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(work())`` on a thread of its own: a fixture may be set up while an
    event loop already runs on this thread (an async test's, Playwright's)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as exc:  # re-raised on the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="migrate-template")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class SqliteTemplate:
    """A SQLite file migrated to head once; `copy_to` gives each test a copy of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        run_outside_any_loop(lambda: migrate.upgrade(f"sqlite:///{path}"))

    def copy_to(self, target: Path) -> str:
        """Write the migrated database to ``target`` (a new file); returns its URL."""
        # The backup API copies a consistent database whatever its journal mode (a WAL
        # file next to the template would be missed by a file copy).
        with closing(sqlite3.connect(self.path)) as source, closing(sqlite3.connect(target)) as copy:
            source.backup(copy)
        return f"sqlite:///{target}"


class PostgresTemplate:
    """A database of ``server`` migrated to head once; `create` clones it (the server copies
    its files, no migration runs)."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        url = server.create_database(prefix="tw_template")
        self.name = database_name(url)
        run_outside_any_loop(lambda: migrate.upgrade(url))

    def create(self) -> str:
        """A new database at head; returns its URL."""
        return self.server.create_database(template=self.name)

    def refill(self, url: str) -> None:
        """Replace the (new, unused) database at ``url`` with a clone of the template."""
        self.server.recreate_database(database_name(url), template=self.name)


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or None for any other database."""
    prefix = "sqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) else None
