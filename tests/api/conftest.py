"""Fixtures of the management API tests: one mock upstream for the session, one gateway
per module (per database where a module runs on both)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from tests.api.support import MockThread, admin
from tests.support.gateway import RunningGateway


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockThread]:
    mock = MockThread().start()
    yield mock
    mock.stop()


@pytest.fixture
def api(gateway: RunningGateway) -> Iterator[httpx2.Client]:
    """An admin client of the module's `gateway`."""
    with admin(gateway) as client:
        yield client
