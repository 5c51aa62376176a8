"""Fixtures of the management API tests: one mock upstream for the session, one gateway
per module (per database where a module runs on both)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from tests.api.support import MockThread, admin, gateway_config
from tests.support.gateway import RunningGateway, start_gateway


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockThread]:
    mock = MockThread().start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            upstream: MockThread) -> Iterator[RunningGateway]:
    """The module's gateway on a database of its own, once on SQLite and once on PostgreSQL
    (a module that needs another set-up defines its own `gateway`)."""
    if request.param == "sqlite":  # copies of a database migrated once (tests/support/templates.py)
        url = request.getfixturevalue("sqlite_template").copy_to(tmp_path_factory.mktemp("api") / "tollway.db")
    else:
        url = request.getfixturevalue("postgres_template").create()
    running = start_gateway(gateway_config(url, upstream.url))
    yield running
    running.stop()


@pytest.fixture
def api(gateway: RunningGateway) -> Iterator[httpx2.Client]:
    """An admin client of the module's `gateway`."""
    with admin(gateway) as client:
        yield client
