"""Budgets that cannot be overshot, through the real server and the official SDKs.

Prices are $1 per token (input and output) so that dollars read as tokens. The mock is
told to answer long and, in the cut-off tests, to ignore the output cap; the gateway must
still keep every strict budget within its limit, tell the client, and charge what was
produced.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest

from tests.integration.conftest import mock_control
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.redis_server import require_redis
from tests.support.sdk_clients import anthropic_client, openai_client
from tollway.governance.engine import hash_key
from tollway.governance.model import budget_counter

KEY = "tw-strict-0123456789abcdefghijklmnopq"
DOLLAR_A_TOKEN = {"input": 1_000_000, "output": 1_000_000}
PRICING = {"openai/gpt-4o-mini": DOLLAR_A_TOKEN, "anthropic/claude-sonnet-4-5": DOLLAR_A_TOKEN}
HELLO = [{"role": "user", "content": "Hello"}]


def _gateway(gateway, mock, budget: dict[str, Any], **extra: Any) -> RunningGateway:
    return gateway({
        "providers": mock_providers(mock.url), "pricing": PRICING, **extra,
        "governance": {"virtual_keys": [{"id": "k", "name": "strict key", "value": KEY, "budget": budget}]},
    })


def _spent(running: RunningGateway) -> tuple[int, int]:
    """(used, limit) of the key's budget, in nano-dollars."""
    budget = running.runtime.snapshot.keys_by_hash[hash_key(KEY)].limits.budget
    state = running.counters().get(budget_counter(budget.id))
    return (state.used if state else 0), budget.max_limit_nano


async def test_concurrent_requests_are_clamped_and_never_pass_the_budget(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"completion_tokens": 60, "latency_ms": 30})
    running = _gateway(gateway, mock, {"max_limit": 1500, "reset_duration": "1d", "enforcement": "strict",
                                       "on_insufficient": "clamp"})
    client = openai_client(running.v1, KEY)

    async def one(cap: int | None) -> tuple[int, int | None]:
        extra = {} if cap is None else {"max_completion_tokens": cap}
        try:
            raw = await client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=HELLO,
                                                                         **extra)
        except openai.APIStatusError as exc:
            return exc.status_code, None
        clamped = raw.headers.get("x-tollway-clamped-max-tokens")
        return 200, int(clamped) if clamped else None

    results = await asyncio.gather(*(one(100) for _ in range(40)), one(None))
    used, limit = _spent(running)
    assert 0 < used <= limit
    assert {status for status, _ in results} <= {200, 402}
    # Whoever came late got what was left: one of the capped requests, or the uncapped one when
    # a busy machine let it in first (clamped to everything left, it leaves the others nothing).
    assert any(cap is not None for _, cap in results)
    assert all(0 < cap < 100 for _, cap in results[:40] if cap is not None)
    sent = await mock_control(mock, "GET", "/_mock/requests")
    caps = [r["body"].get("max_completion_tokens") for r in sent if r["path"].endswith("/chat/completions")]
    assert len(caps) == sum(status == 200 for status, _ in results)
    assert all(isinstance(cap, int) and cap <= 4096 for cap in caps)  # none was sent uncapped


async def test_strict_refuse_answers_402_with_spent_and_reserved(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"latency_ms": 300})
    running = _gateway(gateway, mock, {"max_limit": 120, "reset_duration": "1d", "enforcement": "strict"})
    client = openai_client(running.v1, KEY)
    first = asyncio.ensure_future(client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO,
                                                                 max_completion_tokens=80))
    await asyncio.sleep(0.1)  # the first holds its worst case
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_completion_tokens=80)
    await first
    error = caught.value.body.get("error", caught.value.body)
    assert caught.value.status_code == 402 and error["code"] == "budget_exceeded"
    assert error["reserved"] > 80 and error["spent"] == 0 and "reserved by requests in flight" in error["message"]


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"])  # as it is, and translated
async def test_a_stream_that_ignores_its_cap_is_cut_off_at_the_budget(gateway, mock, model) -> None:
    # Paced (2000 chunks take 4 s) so the upstream cannot finish into socket buffers
    # before the cut-off reaches it on a loaded machine: the cancellation is what's tested.
    await mock_control(mock, "POST", "/_mock/settings",
                       {"completion_tokens": 2000, "ignore_max_tokens": True, "chunk_delay_ms": 2})
    running = _gateway(gateway, mock, {"max_limit": 200, "reset_duration": "1d", "enforcement": "strict"})
    client = openai_client(running.v1, KEY)
    stream = await client.chat.completions.create(model=model, messages=HELLO, max_tokens=20, stream=True)
    text, finish = [], None
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    assert finish == "length" and "cut off" in str(caught.value.message)
    assert 20 < len("".join(text)) < 200  # more than the ignored cap, less than the budget
    used, limit = _spent(running)
    assert len("".join(text)) <= used <= limit  # charged what was produced, never past the limit
    assert await _upstream_dropped(mock)


async def _upstream_dropped(mock) -> bool:
    """Whether the mock saw its one stream cancelled (it learns of the closed connection
    when it next writes, so this polls for a moment)."""
    for _ in range(100):
        stats = await mock_control(mock, "GET", "/_mock/stats")
        if stats["streams_cancelled"] == 1:
            return stats["streams_completed"] == 0
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"])  # as it is, and translated
async def test_an_anthropic_stream_is_cut_off_in_its_own_shape(gateway, mock, model) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"completion_tokens": 2000, "ignore_max_tokens": True})
    running = _gateway(gateway, mock, {"max_limit": 200, "reset_duration": "1d", "enforcement": "strict"})
    client = anthropic_client(running.v1.removesuffix("/v1"), KEY)
    events = []
    with pytest.raises(anthropic.APIStatusError):
        async with client.messages.stream(model=model, max_tokens=20, messages=HELLO) as s:
            async for event in s:
                events.append(event.type)
    assert events[-1] == "message_delta" and "content_block_stop" in events
    used, limit = _spent(running)
    assert 0 < used <= limit


async def test_estimate_mode_streams_are_cut_off_where_they_would_cross_the_limit(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"completion_tokens": 2000})
    running = _gateway(gateway, mock, {"max_limit": 300, "reset_duration": "1d"})  # estimate mode (the default)
    client = openai_client(running.v1, KEY)
    stream = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    used, limit = _spent(running)
    assert 0 < used <= limit


async def test_model_spellings_share_one_price_and_require_price_refuses_the_unpriced(gateway, mock) -> None:
    running = _gateway(gateway, mock, {"max_limit": 1000, "reset_duration": "1d"}, require_price=True)
    client = openai_client(running.v1, KEY)
    await client.chat.completions.create(model=" OpenAI/GPT-4o-MINI ", messages=HELLO, max_tokens=5)
    assert _spent(running)[0] > 0  # charged at the override's price, not free
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="openai/gpt-4o-mini\u200b", messages=HELLO)
    assert caught.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="openai/some-unpriced-model-xyz", messages=HELLO)
    assert caught.value.body["code"] == "model_unpriced"


@pytest.fixture(scope="module")
def shared_redis():
    server = require_redis()
    yield server
    server.stop()


async def test_two_gateways_sharing_redis_never_pass_a_strict_budget_together(gateway, mock, postgres_server,
                                                                              shared_redis) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"completion_tokens": 60, "latency_ms": 20})
    shared = {"database_url": postgres_server.create_database(), "counters": {"backend": "redis", "url": shared_redis.url}}
    budget = {"max_limit": 1200, "reset_duration": "1d", "enforcement": "strict", "on_insufficient": "clamp"}
    nodes = [_gateway(gateway, mock, budget, **shared) for _ in range(2)]
    clients = [openai_client(node.v1, KEY) for node in nodes]

    async def one(i: int) -> int:
        extra = {"max_completion_tokens": 100} if i % 3 else {}  # every third sets no cap
        try:
            await clients[i % 2].chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, **extra)
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    statuses = await asyncio.gather(*(one(i) for i in range(60)))
    assert set(statuses) <= {200, 402} and 200 in statuses and 402 in statuses
    used, limit = _spent(nodes[0])
    assert 0 < used <= limit and _spent(nodes[1]) == (used, limit)  # one budget, counted in Redis
