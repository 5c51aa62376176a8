"""Fixtures of the management API tests: one mock upstream for the session, one gateway
per module (per database where a module runs on both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.support import MockThread


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockThread]:
    mock = MockThread().start()
    yield mock
    mock.stop()
