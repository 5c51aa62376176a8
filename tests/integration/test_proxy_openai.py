"""The OpenAI-compatible routes through the real gateway, with the official openai SDK."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from tests.integration.conftest import mock_control
from tests.support.gateway import free_port, mock_providers
from tests.support.sdk_clients import openai_client


def client(gateway, **kwargs) -> openai.AsyncOpenAI:
    return openai_client(gateway.v1, "sk-placeholder", **kwargs)


async def test_chat_completion_reports_the_upstream_usage(proxied, mock) -> None:
    reply = await client(proxied).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], max_tokens=5)
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens == 5
    seen = (await mock_control(mock, "GET", "/_mock/requests"))[-1]
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == "gpt-4o-mini"  # the provider prefix is stripped
    assert seen["headers"]["authorization"] == "Bearer sk-test-openai"  # the provider's key, not the client's


async def test_stream_without_include_usage_hides_the_usage_chunk_but_gateway_asks_for_it(proxied, mock) -> None:
    stream = await client(proxied).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Count"}], max_tokens=7, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert len(text.split()) == 7
    seen = (await mock_control(mock, "GET", "/_mock/requests"))[-1]
    assert seen["body"]["stream_options"] == {"include_usage": True}


async def test_stream_with_include_usage_gets_exact_usage(proxied) -> None:
    stream = await client(proxied).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Count"}], max_tokens=9, stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 9 and not chunks[-1].choices


async def test_alias_completions_embeddings_and_models(proxied) -> None:
    sdk = client(proxied)
    completion = await sdk.completions.create(model="fast", prompt="Once upon a time", max_tokens=4)
    assert completion.usage.completion_tokens == 4
    embedding = await sdk.embeddings.create(model="openai/text-embedding-3-small", input=["a", "b"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) > 0
    models = [m.id async for m in sdk.models.list()]
    assert "fast" in models


async def test_azure_provider_uses_deployment_url_and_api_key_header(proxied, mock) -> None:
    reply = await client(proxied).chat.completions.create(
        model="azure/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert reply.usage.completion_tokens == 3
    seen = (await mock_control(mock, "GET", "/_mock/requests"))[-1]
    assert seen["path"] == "/openai/deployments/mini-deploy/chat/completions"
    assert seen["query"]["api-version"] == "2024-06-01"
    assert seen["headers"]["api-key"] == "azure-test-key"


async def test_upstream_error_passes_through_in_openai_shape(proxied, mock) -> None:
    await mock_control(mock, "POST", "/_mock/faults", {"status": 400, "count": 1})
    with pytest.raises(openai.BadRequestError) as caught:
        await client(proxied).chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 400
    assert "sk-test-openai" not in str(caught.value.body)


async def test_5xx_is_retried_with_backoff_then_succeeds(gateway, mock) -> None:
    providers = mock_providers(mock.url, openai={"max_retries": 2, "retry_backoff": 0.05})
    running = gateway({"providers": providers})
    await mock_control(mock, "POST", "/_mock/faults", {"status": 503, "count": 1})
    reply = await client(running).chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert reply.choices
    paths = [r["path"] for r in await mock_control(mock, "GET", "/_mock/requests")]
    assert paths.count("/v1/chat/completions") == 2


async def test_fallback_serves_when_the_primary_fails(gateway, mock) -> None:
    running = gateway({"providers": mock_providers(mock.url), "model_aliases": {"main": "openai/gpt-4o-mini"},
                       "fallbacks": {"main": ["anthropic/claude-3-5-haiku-latest"]}})
    await mock_control(mock, "POST", "/_mock/faults", {"status": 500, "count": 1, "path": "/v1/chat/completions"})
    reply = await client(running).chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}], max_tokens=4)
    assert reply.usage.completion_tokens == 4
    assert (await mock_control(mock, "GET", "/_mock/requests"))[-1]["path"] == "/v1/messages"


async def test_hanging_upstream_times_out_with_504(gateway, mock) -> None:
    running = gateway({"providers": mock_providers(mock.url, openai={"timeout": "1s"})})
    await mock_control(mock, "POST", "/_mock/faults", {"status": 200, "delay_ms": 5000, "count": 1})
    with pytest.raises(openai.APIStatusError) as caught:
        await client(running).chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 504
    assert caught.value.body["type"] == "upstream_timeout"


async def test_unreachable_upstream_is_502(gateway) -> None:
    running = gateway({"providers": {"dead": {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                                              "keys": [{"value": "sk-dead"}]}}})
    with pytest.raises(openai.APIStatusError) as caught:
        await client(running).chat.completions.create(model="dead/m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502
    assert "cannot connect" in caught.value.message


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{oops", 400, "not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "missing required field 'model'"),
        (b'{"model": "nowhere/x", "messages": [{"role": "user", "content": "x"}]}', 404, "unknown provider 'nowhere'"),
        (b'{"model": "openai/x", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}', 400, "max_tokens"),
    ],
)
async def test_bad_requests_get_a_clear_4xx(proxied, body: bytes, status: int, fragment: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxied.v1 + "/chat/completions", data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == status
            assert fragment in (await r.json())["error"]["message"]


async def test_oversized_body_is_413_before_it_is_read(gateway, mock) -> None:
    running = gateway({"providers": mock_providers(mock.url), "max_body_bytes": 1000})
    async with aiohttp.ClientSession() as session, session.post(running.v1 + "/chat/completions", data=b"x" * 5000) as r:
        assert r.status == 413
        assert "max_body_bytes" in (await r.json())["error"]["message"]


async def test_client_disconnect_mid_stream_cancels_the_upstream(proxied, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"chunk_delay_ms": 50, "completion_tokens": 200})
    async with aiohttp.ClientSession() as session:
        response = await session.post(proxied.v1 + "/chat/completions", json={
            "model": "openai/gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "long"}]})
        await response.content.readline()
        response.close()  # the client goes away after the first line
    for _ in range(100):
        stats = await mock_control(mock, "GET", "/_mock/stats")
        if stats["streams_cancelled"] >= 1:
            break
        await asyncio.sleep(0.05)
    assert stats["streams_cancelled"] >= 1


async def test_metrics_count_requests_and_tokens(proxied) -> None:
    await client(proxied).chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=6)
    async with aiohttp.ClientSession() as session, session.get(proxied.url + "/metrics") as r:
        text = await r.text()
    assert 'tollway_requests_total{api="chat",decision="allow",model="gpt-4o-mini",provider="openai",status="200"} 1.0' in text
    assert 'tollway_tokens_total{model="gpt-4o-mini",provider="openai",type="completion"} 6.0' in text


async def test_a_preset_provider_is_served_and_charged_from_the_catalog(gateway, mock) -> None:
    running = gateway({"providers": {"fast": {"type": "groq", "base_url": f"{mock.url}/v1", "keys": [{"value": "gsk"}]}}})
    client = openai_client(running.v1, "sk-placeholder")
    reply = await client.chat.completions.create(model="fast/llama-3.1-8b-instant",
                                                 messages=[{"role": "user", "content": "Hi"}])
    assert reply.usage is not None and reply.usage.total_tokens > 0
    assert mock.state.requests[-1]["headers"]["authorization"] == "Bearer gsk"
    async with aiohttp.ClientSession() as session, session.get(running.url + "/metrics") as response:
        metrics = await response.text()
    line = next(line for line in metrics.splitlines()
                if line.startswith("tollway_cost_usd_total") and 'model="llama-3.1-8b-instant"' in line)
    assert float(line.rsplit(" ", 1)[1]) > 0  # priced by genai-prices under groq's id, no pricing: entry
