"""Session-wide fixtures shared by every test folder (registered in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import RunningGateway, start_gateway
from tests.support.postgres import PostgresServer, PostgresUnavailable, start_postgres
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


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    """Start gateways from config dicts; each gets its own SQLite file unless given one."""
    running: list[RunningGateway] = []

    def start(config: dict[str, Any], services: Services | None = None, *,
              tls: tuple[str, str] | None = None) -> RunningGateway:
        config = {"database_url": f"sqlite:///{tmp_path}/gateway-{len(running)}.db", "flush_interval": "1s", **config}
        started = start_gateway(config, services, tls=tls)
        running.append(started)
        return started

    yield start
    for started in running:
        started.stop()
