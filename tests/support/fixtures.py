"""Session-wide fixtures shared by every test folder (registered in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import RunningGateway, start_gateway
from tests.support.postgres import PostgresServer, PostgresUnavailable, start_postgres
from tests.support.templates import PostgresTemplate, SqliteTemplate, sqlite_path
from tollway.server.services import Services


def postgres_or_skip() -> PostgresServer:
    """A new PostgreSQL server; skipped where it is not installed, except in CI (there: fail)."""
    try:
        return start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but cannot be started: {exc}")
        pytest.skip(f"PostgreSQL tests need a local PostgreSQL server: {exc}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (skipped where it is not installed, except in CI)."""
    server = postgres_or_skip()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database: a temp SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tollway.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    """A SQLite database migrated once for the session (per worker), copied per test."""
    return SqliteTemplate(tmp_path_factory.mktemp("template") / "migrated.db")


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> PostgresTemplate:
    """A database of the session's PostgreSQL migrated once, cloned per test."""
    return PostgresTemplate(postgres_server)


def migrate_by_copy(request: pytest.FixtureRequest, url: str) -> bool:
    """Bring the new, empty database at ``url`` (from `database_url`) to the newest schema
    by copying the session's template; False where that cannot be done (then migrate)."""
    path = sqlite_path(url)
    if path is not None:
        if path.exists():
            return False
        request.getfixturevalue("sqlite_template").copy_to(path)
        return True
    if url.startswith("postgresql://"):
        request.getfixturevalue("postgres_template").refill(url)
        return True
    return False


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh database already at the newest schema: a temp SQLite file, or a new database
    on the test server (both copies of a template migrated once per session)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_template").copy_to(tmp_path / "tollway.db")
    return request.getfixturevalue("postgres_template").create()


@pytest.fixture
def gateway(tmp_path: Path, sqlite_template: SqliteTemplate) -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    """Start gateways from config dicts; each gets its own SQLite file (already migrated)
    unless given a database."""
    running: list[RunningGateway] = []

    def start(config: dict[str, Any], services: Services | None = None, *,
              tls: tuple[str, str] | None = None) -> RunningGateway:
        if "database_url" not in config:
            config = {"database_url": sqlite_template.copy_to(tmp_path / f"gateway-{len(running)}.db"), **config}
        started = start_gateway({"flush_interval": "1s", **config}, services, tls=tls)
        running.append(started)
        return started

    yield start
    for started in running:
        started.stop()
