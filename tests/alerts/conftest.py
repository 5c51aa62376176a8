"""Alert fixtures: a real webhook receiver on 127.0.0.1, a migrated database, an
injected clock, and monitors built over a memory counter store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.support import sdk_clients
from tests.support.webhook_receiver import WebhookReceiver
from tollway.alerts.config import AlertsConfig
from tollway.alerts.delivery import Dispatcher
from tollway.alerts.monitor import AlertMonitor
from tollway.governance.counters.base import CounterState
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.model import PolicySnapshot
from tollway.store import migrate
from tollway.store.database import Database
from tollway.store.tables import AlertDelivery

T0 = f.at(2026, 12, 1, 9)
SECRET = "test-secret-0123456789"


@pytest.fixture(autouse=True)
async def close_sdk_clients() -> AsyncIterator[None]:
    """Every SDK client a test made is closed on the test's own loop (tests/support/sdk_clients.py says why)."""
    yield
    await sdk_clients.close_all()


@dataclass
class Clock:
    ms: int = T0

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.stop()


@pytest.fixture
async def db(tmp_path) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    await migrate.upgrade(url)
    database = Database(url)
    yield database
    await database.close()


async def set_usage(store: MemoryCounterStore, counter: str, used: int, window_start_ms: int = T0) -> None:
    """Put ``counter`` at ``used`` in the window that began at ``window_start_ms``."""
    await store.forget([counter])
    await store.load({counter: CounterState(used, window_start_ms)})


async def deliveries(db: Database) -> list[AlertDelivery]:
    async with db.session() as session:
        return list((await session.scalars(select(AlertDelivery).order_by(AlertDelivery.created_at))).all())


MonitorFactory = Callable[..., Awaitable[AlertMonitor]]


@pytest.fixture
async def monitors(db: Database) -> AsyncIterator[MonitorFactory]:
    """Build started monitors (closed at the end): ``make(snapshot, store, clock, **alerts config)``."""
    started: list[AlertMonitor] = []

    async def make(snapshot: PolicySnapshot, store: MemoryCounterStore, clock: Clock, *, database: Database = db,
                   forecast_min_span_ms: int = 5 * 60_000, **config: Any) -> AlertMonitor:
        settings = AlertsConfig.model_validate({"retry_backoff": 0.05, **config})
        monitor = AlertMonitor(settings, database, store, lambda: snapshot, clock,
                               Dispatcher(database, settings, clock), forecast_min_span_ms=forecast_min_span_ms)
        await monitor.start()
        started.append(monitor)
        return monitor

    yield make
    for monitor in started:
        await monitor.close()
