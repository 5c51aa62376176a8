"""Each crossing is delivered once however many nodes see it: monitors of several nodes
tick at the same moment over one database (SQLite and PostgreSQL) and one set of
counters; the database's unique claim decides which node delivers."""

from __future__ import annotations

import asyncio

from tests import factories as f
from tests.alerts.conftest import SECRET, T0, Clock, MonitorFactory, deliveries, set_usage
from tests.support.webhook_receiver import WebhookReceiver
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.model import request_counter
from tollway.store import migrate
from tollway.store.database import Database

LIMITS = 6
NODES = 3


async def test_three_nodes_ticking_together_deliver_each_crossing_once(
        monitors: MonitorFactory, receiver: WebhookReceiver, database_url: str) -> None:
    await migrate.upgrade(database_url)
    databases = [Database(database_url) for _ in range(NODES)]  # a pool per node, as separate gateways have
    keys = {f.key_value(f"k{i}"): f.virtual_key(f"vk-{i}", rate_limit=f.rate_limit(
        requests=10, request_window="1h", id=f"rl-{i}")) for i in range(LIMITS)}
    store, clock = MemoryCounterStore(), Clock(T0 + 60_000)  # one store: the nodes share counters (Redis)
    webhooks = [{"url": receiver.url(), "secret": SECRET}]
    nodes = [await monitors(f.snapshot(keys=keys), store, clock, database=db, webhooks=webhooks) for db in databases]
    try:
        for used in (5, 8, 10):  # every limit crosses 50 %, then 80 %, then 100 %
            for i in range(LIMITS):
                await set_usage(store, request_counter(f"rl-{i}"), used)
            queued = await asyncio.gather(*(node.tick() for node in nodes))
            assert sum(queued) == LIMITS
            clock.ms += 1_000
        await receiver.wait_for("/hook", 3 * LIMITS)
        assert sum(await asyncio.gather(*(node.tick() for node in nodes))) == 0
        await asyncio.sleep(0.2)  # time for a duplicate to arrive, were there one
        sent = sorted((r.json["id"], r.json["threshold"]) for r in receiver.received)
        assert sent == sorted((f"vk-{i}", t) for i in range(LIMITS) for t in (0.5, 0.8, 1.0))
        assert len(await deliveries(databases[0])) == 3 * LIMITS
    finally:
        for db in databases:
            await db.close()
