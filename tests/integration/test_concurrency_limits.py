"""Concurrency limits through the real server: the mock upstream counts the requests it
serves at once, and the gateway must never let more than ``max_in_flight`` through;
slots come back on every path (done, stream cut, upstream error, timeout, client gone)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.integration.conftest import mock_control
from tests.integration.test_governance import HELLO, config, key, sdk
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import anthropic_client
from tollway.governance.counters.base import CounterOp
from tollway.governance.model import in_flight_counter

KEY = "tw-conc-0123456789abcdefghijklmnop"
BODY = {"model": "openai/gpt-4o-mini", "messages": HELLO}


def limited(mock, max_in_flight: int, queue_timeout_ms: int = 0, **extra: Any) -> dict[str, Any]:
    slots = {"max_in_flight": max_in_flight, "queue_timeout_ms": queue_timeout_ms}
    return config(mock, keys=[key(KEY, concurrency=slots)], **extra)


def in_flight(running: RunningGateway) -> int:
    """The key's requests in flight, as the counter store holds them."""
    limits = next(iter(running.runtime.snapshot.keys_by_hash.values())).limits
    (reading,) = running.call(running.runtime.store.read([CounterOp(in_flight_counter(limits.concurrency.id),
                                                                    0, 0, 0, 0)]))
    return reading.reserved


def settled(running: RunningGateway, want: int = 0, timeout_s: float = 5) -> int:
    """``in_flight`` once it reaches ``want`` (a cut stream is settled a moment after it ends)."""
    deadline = time.monotonic() + timeout_s
    while (now := in_flight(running)) != want and time.monotonic() < deadline:
        time.sleep(0.01)
    return now


async def until(condition: Any, timeout_s: float = 5) -> None:
    """Wait (polling the gateway's state from the test's loop) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the gateway"
        await asyncio.sleep(0.005)


async def post(session: aiohttp.ClientSession, running: RunningGateway, body: dict | None = None,
               **extra: Any) -> tuple[int, dict[str, str], Any]:
    async with session.post(running.v1 + "/chat/completions", json=body or BODY,
                            headers={"x-tollway-vk": KEY}, **extra) as response:
        return response.status, dict(response.headers), await response.json()


async def stats(mock) -> dict[str, Any]:
    return await mock_control(mock, "GET", "/_mock/stats")


async def test_50_concurrent_slow_requests_never_put_more_than_max_in_flight_upstream(gateway, mock) -> None:
    running = gateway(limited(mock, 5))
    mock.settings.latency_ms = 800
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(post(session, running) for _ in range(50)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) >= 5 and set(statuses) == {200, 429}
    assert (await stats(mock))["max_in_flight"] == 5
    for status, headers, payload in results:
        if status == 429:
            assert headers["Retry-After"] == "1"
            assert payload["error"]["code"] == payload["error"]["type"] == "concurrency_limited"
            assert payload["error"]["scope"]["level"] == "virtual_key" and payload["error"]["limit"] == 5
    assert settled(running) == 0


async def test_the_openai_sdk_sees_a_rate_limit_error_naming_the_limit(gateway, mock) -> None:
    running = gateway(limited(mock, 1))
    mock.settings.latency_ms = 600
    slow = asyncio.ensure_future(sdk(running, KEY).chat.completions.create(**BODY))
    await until(lambda: in_flight(running) == 1)
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk(running, KEY).chat.completions.create(**BODY)
    assert refused.value.code == "concurrency_limited"
    assert refused.value.response.headers["retry-after"] == "1"
    await slow


async def test_the_anthropic_sdk_sees_the_denial_in_its_own_shape(gateway, mock) -> None:
    running = gateway(limited(mock, 1))
    mock.settings.latency_ms = 600
    slow = asyncio.ensure_future(sdk(running, KEY).chat.completions.create(**BODY))
    await until(lambda: in_flight(running) == 1)
    async with anthropic_client(running.url, KEY) as client:
        with pytest.raises(anthropic.RateLimitError) as refused:
            await client.messages.create(model="anthropic/claude-3-5-haiku-latest", max_tokens=16,
                                         messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["error"]["type"] == "concurrency_limited"
    assert refused.value.body["error"]["scope"]["level"] == "virtual_key"
    assert refused.value.response.headers["retry-after"] == "1"
    await slow
    assert settled(running) == 0


async def test_waiters_are_let_through_in_order_of_arrival(gateway, mock) -> None:
    running = gateway(limited(mock, 1, queue_timeout_ms=20_000))
    mock.settings.latency_ms = 400
    async with aiohttp.ClientSession() as session:
        tasks = []
        for index in range(6):
            body = {**BODY, "messages": [{"role": "user", "content": f"request {index}"}]}
            tasks.append(asyncio.ensure_future(post(session, running, body)))
            # each holds the slot or queues before the next is sent
            await until(lambda queued=index: in_flight(running) == 1 and running.runtime.enforcer.requests_waiting == queued)
        results = await asyncio.gather(*tasks)
    assert [status for status, _, _ in results] == [200] * 6
    served = await mock_control(mock, "GET", "/_mock/requests")
    contents = [request["body"]["messages"][0]["content"] for request in served]
    assert contents == [f"request {index}" for index in range(6)]
    assert (await stats(mock))["max_in_flight"] == 1
    assert settled(running) == 0 and running.runtime.enforcer.requests_waiting == 0


async def test_a_waiter_is_refused_after_its_queue_timeout(gateway, mock) -> None:
    running = gateway(limited(mock, 1, queue_timeout_ms=200))
    mock.settings.latency_ms = 4000
    async with aiohttp.ClientSession() as session:
        holder = asyncio.ensure_future(post(session, running))
        await until(lambda: in_flight(running) == 1)
        started = time.monotonic()
        status, headers, payload = await post(session, running)
        waited = time.monotonic() - started
        assert (status, headers["Retry-After"], payload["error"]["code"]) == (429, "1", "concurrency_limited")
        assert 0.19 <= waited < 1.4 and "waited" in payload["error"]["message"]
        assert (await holder)[0] == 200
    assert settled(running) == 0


async def test_a_waiting_client_that_hangs_up_leaves_the_queue(gateway, mock) -> None:
    running = gateway(limited(mock, 1, queue_timeout_ms=30_000))
    mock.settings.latency_ms = 700
    async with aiohttp.ClientSession() as session:
        holder = asyncio.ensure_future(post(session, running))
        await until(lambda: in_flight(running) == 1)
        quitter = asyncio.ensure_future(post(session, running))
        await until(lambda: running.runtime.enforcer.requests_waiting == 1)
        quitter.cancel()  # closes its connection
        await until(lambda: running.runtime.enforcer.requests_waiting == 0)
        assert (await holder)[0] == 200
    requests_before = (await stats(mock))["requests"]
    assert settled(running) == 0
    assert (await stats(mock))["requests"] == requests_before  # the quitter never reached the upstream


async def test_a_stream_holds_its_slot_until_it_ends_and_a_cut_stream_gives_it_back(gateway, mock) -> None:
    running = gateway(limited(mock, 1))
    mock.settings.chunk_delay_ms = 100
    async with aiohttp.ClientSession() as session, session.post(
            running.v1 + "/chat/completions", json={**BODY, "stream": True, "max_tokens": 50},
            headers={"x-tollway-vk": KEY}) as response:
        assert response.status == 200
        await response.content.readline()
        assert in_flight(running) == 1
        assert (await post(session, running))[0] == 429
        response.close()  # the client hangs up mid-stream
    assert settled(running) == 0
    mock.settings.chunk_delay_ms = 0
    stream = await sdk(running, KEY).chat.completions.create(**BODY, stream=True)
    assert [chunk async for chunk in stream]
    assert settled(running) == 0


async def test_upstream_errors_and_timeouts_give_the_slot_back(gateway, mock) -> None:
    providers = mock_providers(mock.url)
    providers["openai"]["timeout"] = "1s"
    running = gateway(limited(mock, 1, providers=providers))
    async with aiohttp.ClientSession() as session:
        await mock_control(mock, "POST", "/_mock/faults", {"status": 500, "count": 1, "delay_ms": 300})
        failing = asyncio.ensure_future(post(session, running))
        await until(lambda: in_flight(running) == 1)
        assert (await failing)[0] == 500
        assert settled(running) == 0
        await mock_control(mock, "POST", "/_mock/faults", {"delay_ms": 3000, "count": 1})
        timing_out = asyncio.ensure_future(post(session, running))
        await until(lambda: in_flight(running) == 1)  # held while the upstream hangs
        assert (await post(session, running))[0] == 429
        assert (await timing_out)[0] == 504
        assert settled(running) == 0
        assert (await post(session, running))[0] == 200
    assert settled(running) == 0
