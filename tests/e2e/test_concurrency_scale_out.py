"""Concurrency limits across real gateway processes sharing one Redis: the limit holds
exactly over both, and the slots of a SIGKILLed gateway come back when its lease ends.

The mock provider process counts the requests it serves at once (``max_in_flight`` in
``/_mock/stats``): that is what the limit must cap.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN_TOKEN, GatewayProcess, start_gateways
from tests.support.postgres import PostgresServer
from tests.support.redis_server import RedisServer

MODEL = "mock/gpt-4o-mini"
SLOTS = 6
LEASE_MS = 2_000
VK = "tw-e2e-conc-0123456789abcdef"


def node_config(database_url: str, redis_url: str, mock_port: int) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "log_level": "warning",
        "counters": {"backend": "redis", "url": redis_url, "timeout_ms": 1000, "lease_ms": LEASE_MS},
        "providers": {"mock": {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                               "keys": [{"value": "sk-mock"}]}},
        "governance": {"virtual_keys": [{"id": "vk-conc", "name": "conc", "value": VK,
                                         "concurrency": {"max_in_flight": SLOTS}}]},
    }


@pytest.fixture(scope="module")
def nodes(postgres_server: PostgresServer, redis: RedisServer, mock_port: int,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    """Two gateways sharing one PostgreSQL (so one concurrency limit) and one Redis."""
    config = node_config(postgres_server.create_database(), redis.url, mock_port)
    directory = tmp_path_factory.mktemp("concurrency")
    started = [GatewayProcess(config, directory, name) for name in ("conc-0", "conc-1")]
    try:
        start_gateways(started)
        yield started
    finally:
        for node in started:
            node.stop()


async def mock(mock_port: int, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"http://127.0.0.1:{mock_port}/_mock{path}", json=body) as response:
        response.raise_for_status()
        return await response.json()


async def chat(session: aiohttp.ClientSession, node: GatewayProcess) -> tuple[int, dict[str, Any]]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
    try:
        async with session.post(f"{node.url}/v1/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {VK}"}) as response:
            return response.status, await response.json(content_type=None)
    except aiohttp.ClientError:
        return 0, {}  # its gateway was killed mid-request


async def test_two_gateways_share_max_in_flight_exactly(nodes, mock_port) -> None:
    await mock(mock_port, "POST", "/reset")
    await mock(mock_port, "POST", "/settings", {"latency_ms": 1500})
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            results = await asyncio.gather(*(chat(session, nodes[i % 2]) for i in range(60)))
    finally:
        await mock(mock_port, "POST", "/settings", {"latency_ms": 0})
    statuses = [status for status, _ in results]
    assert set(statuses) == {200, 429} and statuses.count(200) >= SLOTS
    assert (await mock(mock_port, "GET", "/stats"))["max_in_flight"] == SLOTS
    assert {payload["error"]["code"] for status, payload in results if status == 429} == {"concurrency_limited"}


async def test_the_slots_of_a_killed_gateway_come_back_when_its_lease_runs_out(nodes, mock_port) -> None:
    killed, survivor = nodes
    await mock(mock_port, "POST", "/settings", {"latency_ms": 30_000})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        holding = [asyncio.ensure_future(chat(session, killed)) for _ in range(SLOTS)]
        deadline = time.monotonic() + 10
        while (await mock(mock_port, "GET", "/stats"))["in_flight"] < SLOTS:
            assert time.monotonic() < deadline, "the requests never reached the upstream"
            await asyncio.sleep(0.02)
        await mock(mock_port, "POST", "/settings", {"latency_ms": 0})
        assert killed.process is not None
        os.killpg(killed.process.pid, signal.SIGKILL)  # no settle, no release, no lease given up
        killed.process.wait(timeout=10)
        killed.process = None
        await asyncio.gather(*holding)
        assert (await chat(session, survivor))[0] == 429  # the dead gateway's slots are still held
        gone_at = time.monotonic()
        while (status := (await chat(session, survivor))[0]) == 429:
            assert time.monotonic() - gone_at < LEASE_MS / 1000 + 5, "slots never came back"
            await asyncio.sleep(0.1)
        assert status == 200
        assert time.monotonic() - gone_at >= LEASE_MS / 1000 / 2  # not before its lease could have run out
        results = await asyncio.gather(*(chat(session, survivor) for _ in range(SLOTS)))
        assert [status for status, _ in results] == [200] * SLOTS
