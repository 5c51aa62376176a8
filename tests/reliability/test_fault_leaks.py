"""Nothing leaks under faults: 1,000 injected upstream faults of mixed kinds (plus clients
that hang up mid-stream), through the real gateway at a concurrency of about 20, and
afterwards the open connections, file descriptors, asyncio tasks and reservations are
back where they started.

The figures are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from typing import Any

import aiohttp

from tests.reliability.harness import HELLO, control, gateway_tasks, upstream_pool
from tests.support.gateway import RunningGateway, mock_providers

FAULTS = 1000
CONCURRENCY = 20
MAX_REQUESTS = 4 * FAULTS  # a bound on the loop, far above what the faults need
VK = "tw-reliability-leaks-0123456789abcd"
PROVIDERS = ("openai", "anthropic", "azure")


def _faults(rng: random.Random) -> list[dict[str, Any]]:
    kinds: list[tuple[int, dict[str, Any]]] = [
        (20, {"status": 500}), (10, {"status": 502}), (10, {"status": 503}), (10, {"status": 429, "retry_after": 0}),
        (5, {"status": 400}), (10, {"drop": "before_response"}), (20, {"drop": "mid_stream"}),
        (5, {"status": 200, "body": "not json at all"}), (4, {"delay_ms": 3000}),  # hangs past the 1 s timeout
    ]
    weights = [weight for weight, _ in kinds]
    chosen = rng.choices([fault for _, fault in kinds], weights, k=FAULTS)
    return [{**fault, "after_chunks": rng.randint(0, 6)} if fault.get("drop") == "mid_stream" else dict(fault)
            for fault in chosen]


def _request(rng: random.Random) -> tuple[str, dict[str, Any], dict[str, str]]:
    headers = {"x-tollway-vk": VK}
    roll = rng.random()
    if roll < 0.45:
        return "/chat/completions", {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True, "max_tokens": 8}, headers
    if roll < 0.75:
        return "/chat/completions", {"model": "openai/gpt-4o-mini", "messages": HELLO, "max_tokens": 8}, headers
    if roll < 0.9:
        headers["anthropic-version"] = "2023-06-01"
        return "/messages", {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": rng.random() < 0.5,
                             "max_tokens": 8}, headers
    return "/chat/completions", {"model": "main", "messages": HELLO, "max_tokens": 8}, headers


async def _one(session: aiohttp.ClientSession, gateway: RunningGateway, rng: random.Random, outcomes: Counter) -> None:
    path, body, headers = _request(rng)
    hang_up = body.get("stream") and rng.random() < 0.05  # a client that goes away mid-stream
    try:
        async with session.post(gateway.v1 + path, json=body, headers=headers) as response:
            if hang_up:
                await response.content.readline()
                response.close()
                outcomes["client hung up"] += 1
                return
            text = await response.text()
            cut = body.get("stream") and response.status == 200 and ("stream_interrupted" in text or "event: error" in text)
            outcomes["200 cut mid-stream" if cut else str(response.status)] += 1
    except aiohttp.ClientError as exc:
        outcomes[type(exc).__name__] += 1


def _fds() -> dict[str, int]:
    """Sockets and other descriptors (database files: the engine pools its connections)."""
    sockets = others = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith("socket:"):
            sockets += 1
        else:
            others += 1
    return {"socket_fds": sockets, "other_fds": others}


def _snapshot(gateway: RunningGateway, mock_url: str) -> dict[str, int]:
    stats = control(mock_url, "GET", "/_mock/stats")
    pools = [upstream_pool(gateway, name) for name in PROVIDERS]
    pool_open, pool_idle = sum(open_ for open_, _ in pools), sum(idle for _, idle in pools)
    return {
        **_fds(),
        "tasks": gateway_tasks(gateway),
        "reservations": gateway.runtime.enforcer.reservations_in_flight,
        "mock_open_connections": stats["open_connections"] - 1,  # less the connection asking
        "mock_in_flight": stats["in_flight"],
        "pool_open": pool_open,
        "pool_idle": pool_idle,
    }


async def _settled(gateway: RunningGateway, mock_url: str, baseline: dict[str, int]) -> dict[str, int]:
    """The counts once the last closes have been noticed (both ends see a close a moment apart)."""
    deadline = time.monotonic() + 10
    while True:
        now = await asyncio.to_thread(_snapshot, gateway, mock_url)
        quiet = (now["tasks"] <= baseline["tasks"] and now["reservations"] == 0 and now["mock_in_flight"] == 0
                 and now["pool_open"] == now["pool_idle"] and now["mock_open_connections"] == now["pool_open"]
                 and now["socket_fds"] <= baseline["socket_fds"] + 2 * max(0, now["pool_open"] - baseline["pool_open"]))
        if quiet or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.1)


async def test_a_thousand_faults_leak_no_connection_task_fd_or_reservation(gateway, mock) -> None:
    rng = random.Random(7)
    providers = mock_providers(mock.url, openai={"timeout": "1s", "max_retries": 1, "retry_backoff": 0})
    limits = {"request_max_limit": 1_000_000, "request_reset_duration": "1h",
              "token_max_limit": 10**12, "token_reset_duration": "1h"}
    running = gateway({"providers": providers, "model_aliases": {"main": "openai/gpt-4o-mini"},
                       "fallbacks": {"main": ["anthropic/claude-3-5-haiku-latest"]},
                       "governance": {"virtual_keys": [{"id": "vk-leaks", "name": "leaks", "value": VK,
                                                        "rate_limit": limits}]}})
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        warm = Counter()  # fill the upstream pools the way the load below will use them
        await asyncio.gather(*(_one(session, running, random.Random(i), warm) for i in range(3 * CONCURRENCY)))
    baseline = await _settled(running, mock.url, {"tasks": 10**6, "socket_fds": 10**6, "pool_open": 0})

    await asyncio.to_thread(control, mock.url, "POST", "/_mock/faults", _faults(rng))
    outcomes: Counter = Counter()
    sent = 0
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def client(seed: int) -> None:
            nonlocal sent
            own = random.Random(seed)
            while mock.mock.state.faults and sent < MAX_REQUESTS:  # the mock's queue, read across threads
                sent += 1
                await _one(session, running, own, outcomes)

        await asyncio.gather(*(client(rng.randrange(1 << 30)) for _ in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    stats = await asyncio.to_thread(control, mock.url, "GET", "/_mock/stats")
    after = await _settled(running, mock.url, baseline)

    print(f"\nfaults injected: {stats['faults_applied']} in {sent} requests ({elapsed:.1f} s); outcomes: {dict(outcomes)}")
    print(f"baseline: {baseline}\nafter:    {after}")
    assert stats["faults_applied"] >= FAULTS
    assert sum(outcomes.values()) == sent  # every request got an answer or a clean error
    assert outcomes["client hung up"] > 0 and outcomes["200 cut mid-stream"] > 0 and outcomes["504"] > 0
    assert after["reservations"] == 0
    assert after["tasks"] <= baseline["tasks"]  # a leak adds tasks; one the baseline caught mid-run may have ended
    assert after["mock_in_flight"] == 0
    assert after["pool_open"] == after["pool_idle"]  # no connection is held by a finished request
    assert after["mock_open_connections"] == after["pool_open"] <= 3 * CONCURRENCY
    # Two descriptors per pooled loopback connection (both ends live in this process).
    assert after["socket_fds"] <= baseline["socket_fds"] + 2 * max(0, after["pool_open"] - baseline["pool_open"])
    # Database files: the engine's pool (5) and the request log's connection, each with its WAL.
    assert after["other_fds"] <= baseline["other_fds"] + 2 * 6
