"""Fixtures of the reliability suite: one mock upstream on its own thread for the session
(reset before each test), and gateways started from config dicts in threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.support import MockThread
from tests.reliability.harness import control
from tests.support.gateway import RunningGateway, start_gateway


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


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    """Start gateways from config dicts; each gets its own SQLite file unless given one."""
    running: list[RunningGateway] = []

    def start(config: dict[str, Any]) -> RunningGateway:
        config = {"database_url": f"sqlite:///{tmp_path}/gateway-{len(running)}.db", "flush_interval": "1s", **config}
        started = start_gateway(config)
        running.append(started)
        return started

    yield start
    for started in running:
        started.stop()
