"""Fixtures of the reliability suite: one mock upstream on its own thread for the session
(reset before each test); `gateway` comes from tests/support/fixtures.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.support import MockThread
from tests.reliability.harness import control


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockThread]:
    mock = MockThread().start()
    yield mock
    mock.stop()


@pytest.fixture
def mock(upstream: MockThread) -> MockThread:
    """The session's mock upstream with no faults, default settings and zeroed counters."""
    control(upstream.url, "POST", "/_mock/reset")
    return upstream
