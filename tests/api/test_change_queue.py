"""A node's configuration changes queue in the process, not on database connections: a
burst of concurrent API changes takes one pooled connection at a time (changes wait for
each other on the configuration lock anyway; waiting there, each held a connection, and a
burst opened overflow connections only to close them again). On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
from sqlalchemy import event

from tests.api.support import admin, unique
from tests.support.gateway import RunningGateway

KEYS = "/api/governance/virtual-keys"
BURST = 24


class CheckedOut:
    """How many of the engine's pooled connections are held at once, at most."""

    def __init__(self, gateway: RunningGateway) -> None:
        self._engine = gateway.runtime.db.engine.sync_engine
        self._lock = threading.Lock()
        self.now = self.most = 0

    def __enter__(self) -> CheckedOut:
        event.listen(self._engine, "checkout", self._checkout)
        event.listen(self._engine, "checkin", self._checkin)
        return self

    def __exit__(self, *_: Any) -> None:
        event.remove(self._engine, "checkout", self._checkout)
        event.remove(self._engine, "checkin", self._checkin)

    def _checkout(self, *_: Any) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def _checkin(self, *_: Any) -> None:
        with self._lock:
            self.now -= 1


def test_a_burst_of_changes_holds_one_connection_at_a_time_and_makes_every_change(gateway: RunningGateway,
                                                                                  api: httpx2.Client) -> None:
    version = gateway.runtime.snapshot.version
    ids = [unique("vk-burst") for _ in range(BURST)]
    start = threading.Barrier(BURST)

    def create(key_id: str) -> int:
        with admin(gateway) as client:
            start.wait()  # every request in flight together
            return client.post(KEYS, json={"id": key_id, "name": "burst"}).status_code

    with CheckedOut(gateway) as pool, ThreadPoolExecutor(BURST) as threads:
        statuses = list(threads.map(create, ids))
    assert statuses == [201] * BURST
    # One for the queued change, one for the policy poll or a flush that may overlap it;
    # without the queue every waiting change held one (up to the pool's 15).
    assert pool.most <= 2, f"{pool.most} connections held at once"
    listed = {key["id"] for key in api.get(KEYS, params={"search": "burst", "limit": 500}).json()["virtual_keys"]}
    assert set(ids) <= listed
    assert gateway.runtime.snapshot.version == version + BURST
