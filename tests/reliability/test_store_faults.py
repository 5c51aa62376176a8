"""Store faults: with the database gone at runtime, requests keep flowing on in-memory
state, usage and request logs wait (bounded, visible in /metrics) and are written when
the database is back; at start, an unreachable database is a clear error and exit code 3.

PostgreSQL is stopped and started again (a throw-away server; skipped where PostgreSQL is
not installed, except in CI). SQLite is made unwritable the way root cannot get around:
another connection holds its write lock past the gateway's busy timeout (5 s).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import text

from tests.reliability.harness import HELLO, eventually, run_serve, slow
from tests.support.fixtures import postgres_or_skip
from tests.support.gateway import RunningGateway, free_port, mock_providers
from tests.support.postgres import PostgresServer
from tollway.store.database import SQLITE_BUSY_TIMEOUT_MS, Database

VK = "tw-reliability-store-0123456789abcdef"
ADMIN = "admin-token-reliability-0123456789"


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, since the test stops it."""
    server = postgres_or_skip()
    yield server
    try:
        server.stop()
    except RuntimeError:  # already stopped by a test that failed half-way
        shutil.rmtree(server.root, ignore_errors=True)


def _stop(server: PostgresServer) -> None:
    server._run("pg_ctl", "-D", str(server.data_dir), "-m", "fast", "-w", "stop")


def _start(server: PostgresServer) -> None:
    options = f"-p {server.port} -k {server.root} -c listen_addresses=127.0.0.1 -c fsync=off"
    server._run("pg_ctl", "-D", str(server.data_dir), "-l", str(server.root / "server.log"), "-o", options, "-w", "start")


def _config(database_url: str, mock_url: str) -> dict[str, Any]:
    limits = {"request_max_limit": 10_000, "request_reset_duration": "1h"}
    return {"database_url": database_url, "flush_interval": "1s", "admin_token": ADMIN,
            "providers": mock_providers(mock_url),
            "governance": {"virtual_keys": [{"id": "vk-store", "name": "store", "value": VK, "rate_limit": limits}]}}


def _requests(gateway: RunningGateway, count: int) -> None:
    with httpx2.Client(timeout=10, headers={"x-tollway-vk": VK}) as client:
        for index in range(count):
            reply = client.post(gateway.v1 + "/chat/completions", json={
                "model": "openai/gpt-4o-mini", "messages": HELLO, "max_tokens": 3, "stream": index % 2 == 1})
            assert reply.status_code == 200, reply.text


def _metric(gateway: RunningGateway, name: str) -> float:
    for line in httpx2.get(gateway.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not exported")


async def _stored(url: str) -> tuple[int, int]:
    """(request log rows, the key's request usage as flushed) read through a fresh connection."""
    db = Database(url)
    try:
        async with db.engine.connect() as connection:
            rows = (await connection.execute(text("SELECT count(*) FROM request_logs"))).scalar_one()
            used = (await connection.execute(text(
                "SELECT r.request_current_usage FROM rate_limits r JOIN virtual_keys k ON k.rate_limit_id = r.id "
                "WHERE k.id = 'vk-store'"))).scalar_one()
        return int(rows), int(used)
    finally:
        await db.close()


def stored(url: str) -> tuple[int, int]:
    return asyncio.run(_stored(url))


def _outage_checks(gateway: RunningGateway, before: int) -> None:
    """What must hold while the database is away (``before`` requests were stored)."""
    _requests(gateway, 20)  # every one of them is served
    health = httpx2.get(gateway.url + "/health").json()
    assert health["status"] == "degraded" and health["database"].startswith("unavailable")
    assert (health["counters"], health["counter_backend"]) == ("ok", "memory")  # in-process: nothing to lose
    api = httpx2.get(gateway.url + "/api/governance/virtual-keys", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=15)
    assert api.status_code == 503, api.text  # a clear "store unavailable", not a 500
    assert "unavailable" in api.json()["error"]["message"]
    pending = eventually(lambda: _metric(gateway, "tollway_request_log_pending"), lambda n: n >= 20)
    assert pending >= 20  # waiting in memory, bounded by the writer's buffer
    assert _metric(gateway, "tollway_request_log_dropped") == 0
    assert eventually(lambda: _metric(gateway, "tollway_usage_flush_failures"), lambda n: n >= 1) >= 1


def test_postgres_outage_keeps_requests_flowing_and_writes_everything_when_it_returns(gateway, mock, postgres, caplog) -> None:
    url = postgres.create_database()
    running = gateway(_config(url, mock.url))
    _requests(running, 5)
    assert eventually(lambda: stored(url), lambda s: s == (5, 5)) == (5, 5)

    _stop(postgres)
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    _outage_checks(running, 5)
    time.sleep(max(0.0, 3.0 - (time.monotonic() - started)))  # a few failed flushes and policy refreshes
    _start(postgres)

    assert eventually(lambda: stored(url), lambda s: s == (25, 25), timeout_s=10) == (25, 25)
    assert eventually(lambda: _metric(running, "tollway_request_log_pending"), lambda n: n == 0) == 0
    assert eventually(lambda: _metric(running, "tollway_usage_flush_failures"), lambda n: n == 0) == 0
    assert httpx2.get(running.url + "/health").json()["status"] == "ok"
    # The outage is reported, not a traceback a second for every background job.
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("tollway.server")]
    assert 1 <= len(problems) <= 2, [r.getMessage() for r in problems]  # usage flush, policy refresh: once each
    assert any("recovered" in r.getMessage() for r in caplog.records if r.name.startswith("tollway.server"))


@slow
def test_sqlite_write_lock_held_by_another_process_keeps_requests_flowing(gateway, mock, tmp_path) -> None:
    """Slow by design (about 9 s: the lock must outlast the 5 s busy timeout), so it runs only
    with TOLLWAY_SLOW_TESTS=1; PostgreSQL's outage test covers the same path by default."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    running = gateway(_config(url, mock.url))
    _requests(running, 5)
    assert eventually(lambda: stored(url), lambda s: s == (5, 5)) == (5, 5)

    holder = sqlite3.connect(tmp_path / "locked.db", timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # no other writer gets in
    locked_at = time.monotonic()
    try:
        _requests(running, 20)
        assert _metric(running, "tollway_request_log_pending") >= 20
        # Past the busy timeout, a flush that began during the lock has failed, not just waited.
        time.sleep(max(0.0, SQLITE_BUSY_TIMEOUT_MS / 1000 + 1.5 - (time.monotonic() - locked_at)))
        assert _metric(running, "tollway_usage_flush_failures") >= 1
        assert _metric(running, "tollway_request_log_dropped") == 0
    finally:
        holder.rollback()
        holder.close()
    assert eventually(lambda: stored(url), lambda s: s == (25, 25), timeout_s=15) == (25, 25)
    assert eventually(lambda: _metric(running, "tollway_usage_flush_failures"), lambda n: n == 0, timeout_s=5) == 0


@pytest.mark.parametrize("database_url", [
    "postgresql://tollway:secret-password@127.0.0.1:{port}/tollway",
    "sqlite:///{tmp}/no/such/directory/tollway.db",
])
def test_an_unreachable_database_at_start_is_a_clear_error_and_exit_code_3(tmp_path: Path, database_url: str) -> None:
    url = database_url.format(port=free_port(), tmp=tmp_path)
    config = tmp_path / "tollway.yaml"
    config.write_text(f"database_url: {url}\nmanagement_api: false\n")
    result = run_serve(config)
    assert result.returncode == 3, result.stderr
    assert "cannot reach the database at" in result.stderr
    assert "secret-password" not in result.stderr + result.stdout  # the URL is shown with its password masked
    assert "Traceback" not in result.stderr
