"""Session-wide fixtures shared by every test folder (registered in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer, PostgresUnavailable, start_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (skipped where it is not installed, except in CI)."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but cannot be started: {exc}")
        pytest.skip(f"PostgreSQL tests need a local PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database: a temp SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tollway.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
