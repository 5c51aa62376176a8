"""`ProviderClient` against the real mock upstream, over the gateway's one upstream HTTP
client: keep-alive, streams, faults, timeouts and errors as callers see them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.integration.conftest import mock_control
from tests.support.gateway import mock_providers
from tests.support.sdk_clients import openai_client
from tollway.config.schema import ProviderSettings
from tollway.providers.client import Api, ProviderClient, ProviderKey
from tollway.providers.http import UpstreamConnectError, UpstreamDisconnected, UpstreamHTTPError, UpstreamTimeout
from tollway.testing.mock_upstream import MockUpstream

KEY = ProviderKey(id="k0", value="sk-test", weight=1.0, models=frozenset())


def _chat(stream: bool = False, **extra: Any) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}],
                         "max_tokens": 8, "stream": stream, **extra})


def _client(mock: MockUpstream, timeout: str) -> ProviderClient:
    settings = ProviderSettings.model_validate({"type": "openai", "base_url": mock.url + "/v1", "keys": [{"value": "sk-test"}],
                                                "timeout": timeout})
    return ProviderClient("mock", settings, [KEY])


@pytest.fixture
async def provider(mock: MockUpstream) -> AsyncIterator[ProviderClient]:
    client = _client(mock, "1s")  # short, for the hanging-upstream test
    yield client
    await client.close()


def _open_connections(mock: MockUpstream) -> int:
    return mock.state.stats_dict()["open_connections"]


async def _until(predicate: Any, timeout_s: float = 2.0) -> None:
    """The mock notices a disconnect a moment after the client makes it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


async def test_sequential_requests_share_one_keep_alive_connection(provider: ProviderClient, mock: MockUpstream) -> None:
    for _ in range(5):
        response = await provider.post(Api.CHAT, "gpt-4o-mini", _chat(), KEY, stream=False)
        body = orjson.loads(await response.read())
        response.release()
        assert response.status == 200
        assert body["usage"]["completion_tokens"] == 8
    assert _open_connections(mock) == 1
    recorded = mock.state.requests[-1]
    assert recorded["headers"]["authorization"] == "Bearer sk-test"
    assert recorded["headers"]["accept-encoding"] == "identity"


async def test_stream_arrives_complete(provider: ProviderClient, mock: MockUpstream) -> None:
    response = await provider.post(Api.CHAT, "gpt-4o-mini", _chat(stream=True), KEY, stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    body = b"".join([chunk async for chunk in response.iter_chunks()])
    response.release()
    assert body.count(b"data: ") == 8 + 3  # role, 8 tokens, finish, [DONE]
    assert body.endswith(b"data: [DONE]\n\n")
    assert mock.state.stats.streams_completed == 1


async def test_error_statuses_come_back_as_responses(provider: ProviderClient, mock: MockUpstream) -> None:
    await mock_control(mock, "POST", "/_mock/faults", {"status": 429, "retry_after": 2})
    response = await provider.post(Api.CHAT, "gpt-4o-mini", _chat(), KEY, stream=False)
    assert (response.status, response.headers.get("retry-after"), response.headers.get("Retry-After")) == (429, "2", "2")
    assert b"rate_limit" in await response.read()
    response.release()


async def test_mid_stream_drop_raises_and_the_connection_is_discarded(provider: ProviderClient, mock: MockUpstream) -> None:
    await mock_control(mock, "POST", "/_mock/faults", {"drop": "mid_stream", "after_chunks": 3})
    response = await provider.post(Api.CHAT, "gpt-4o-mini", _chat(stream=True), KEY, stream=True)
    received = b""
    with pytest.raises(UpstreamHTTPError):
        async for chunk in response.iter_chunks():
            received += chunk
    response.close()
    assert received.count(b"data: ") == 3
    await _until(lambda: _open_connections(mock) == 0)
    assert _open_connections(mock) == 0
    response = await provider.post(Api.CHAT, "gpt-4o-mini", _chat(), KEY, stream=False)  # a fresh one works
    await response.read()
    response.release()


async def test_close_aborts_the_upstream_stream(provider: ProviderClient, mock: MockUpstream) -> None:
    mock.settings.chunk_delay_ms = 20
    response = await provider.post(Api.CHAT, "gpt-4o-mini", _chat(stream=True, max_tokens=200), KEY, stream=True)
    chunks = response.iter_chunks()
    assert b"data: " in await chunks.__anext__()
    response.close()
    await _until(lambda: mock.state.stats.streams_cancelled == 1)
    assert mock.state.stats.streams_cancelled == 1
    assert mock.state.stats.streams_completed == 0


async def test_a_drop_before_the_response_on_a_fresh_connection_is_an_error(provider: ProviderClient,
                                                                            mock: MockUpstream) -> None:
    await mock_control(mock, "POST", "/_mock/faults", {"drop": "before_response"})
    with pytest.raises(UpstreamDisconnected):
        await provider.post(Api.CHAT, "gpt-4o-mini", _chat(), KEY, stream=False)
    assert mock.state.stats.requests == 1  # a fresh connection is never retried


async def test_a_hanging_upstream_times_out(provider: ProviderClient, mock: MockUpstream) -> None:
    await mock_control(mock, "POST", "/_mock/faults", {"delay_ms": 5000})
    started = asyncio.get_running_loop().time()
    with pytest.raises(asyncio.TimeoutError) as caught:
        await provider.post(Api.CHAT, "gpt-4o-mini", _chat(), KEY, stream=False)
    assert isinstance(caught.value, UpstreamTimeout)
    assert asyncio.get_running_loop().time() - started < 3
    await _until(lambda: mock.state.stats.requests_cancelled == 1)
    assert mock.state.stats.requests_cancelled == 1  # the upstream saw us give up


async def test_large_bodies_both_ways(mock: MockUpstream) -> None:
    prompts = ["word " * 50_000] + [f"item {n}" for n in range(63)]  # ~250 KB out
    body = orjson.dumps({"model": "text-embedding-3-small", "input": prompts, "dimensions": 4096})
    provider = _client(mock, "30s")  # the mock takes over a second to build 2 MB on a busy machine
    try:
        response = await provider.post(Api.EMBEDDINGS, "text-embedding-3-small", body, KEY, stream=False)
        data = await response.read()
        response.release()
    finally:
        await provider.close()
    assert response.status == 200
    assert len(data) > 2_000_000
    parsed = orjson.loads(data)
    assert len(parsed["data"]) == 64 and len(parsed["data"][0]["embedding"]) == 4096


async def test_models_are_listed(provider: ProviderClient) -> None:
    listed = await provider.get_json("/models", KEY)
    assert any(model["id"] == "gpt-4o-mini" for model in listed["data"])


async def test_an_unreachable_provider_is_a_connect_error(mock: MockUpstream, unused_tcp_port: int) -> None:
    settings = ProviderSettings.model_validate({"type": "openai", "base_url": f"http://127.0.0.1:{unused_tcp_port}/v1",
                                                "keys": [{"value": "k"}]})
    client = ProviderClient("dead", settings, [KEY])
    try:
        with pytest.raises(UpstreamConnectError) as caught:
            await client.post(Api.CHAT, "m", _chat(), KEY, stream=False)
        assert caught.value.port == unused_tcp_port
    finally:
        await client.close()


async def test_the_gateway_reuses_one_connection_per_provider(gateway, mock: MockUpstream) -> None:
    running = gateway({"providers": mock_providers(mock.url)})
    async with openai_client(running.v1, "x") as oai:
        for _ in range(3):
            reply = await oai.chat.completions.create(model="openai/gpt-4o-mini", max_tokens=5,
                                                      messages=[{"role": "user", "content": "hi"}])
            assert reply.usage is not None and reply.usage.completion_tokens == 5
        stream = await oai.chat.completions.create(model="anthropic/claude-3-5-haiku-latest", max_tokens=6,
                                                   stream=True, messages=[{"role": "user", "content": "hi"}])
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        assert len(text.split()) == 6
    # Keep-alive: the gateway's requests travelled on at most one connection per provider.
    assert _open_connections(mock) <= 2
