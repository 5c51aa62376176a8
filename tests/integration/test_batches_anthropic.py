"""Anthropic message batches through the real gateway and the `anthropic` SDK: the worst
case charged at submission (every request's prompt bound plus its max_tokens, at the batch
price), refused in Anthropic's error shape when it does not fit, results fetched through the
gateway, settled from them, and given back on cancel."""

from __future__ import annotations

import math
from typing import Any

import anthropic
import pytest

from tests.integration.conftest import mock_control
from tests.integration.test_batches import LIMITS, counters, follow_up
from tests.integration.test_governance import key
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import anthropic_client
from tollway.providers.client import Api
from tollway.proxy.worst_case import analyse

KEY = "tw-batch-a-0123456789abcdefghijklmnop"
OTHER = "tw-batch-b-0123456789abcdefghijklmnop"
MODEL = "anthropic/claude-sonnet-4-5"
PRICING = {MODEL: {"input": 3, "output": 15, "batch_ratio": 0.5}}
NANO_IN, NANO_OUT = 3_000, 15_000
PROMPT, OUTPUT = 10, 5  # what the mock reports for each succeeded request


def request(index: int, max_tokens: int = 50, **params: Any) -> dict[str, Any]:
    return {"custom_id": f"q{index}", "params": {"model": MODEL, "max_tokens": max_tokens,
                                                  "messages": [{"role": "user", "content": f"Question {index}"}],
                                                  **params}}


def worst(requests: list[dict[str, Any]]) -> tuple[int, int]:
    tokens = cost = 0
    for item in requests:
        case = analyse(Api.MESSAGES, {**item["params"], "model": "claude-sonnet-4-5"}, "claude-sonnet-4-5")
        output = case.output_tokens(case.cap or 0)
        tokens += case.prompt_tokens + output
        cost += math.ceil((case.prompt_tokens * NANO_IN + output * NANO_OUT) * 0.5)
    return tokens, cost


def anthropic_gateway(gateway, mock, keys: list[dict[str, Any]]) -> RunningGateway:
    return gateway({"providers": mock_providers(mock.url), "enforce_virtual_keys": True, "pricing": PRICING,
                    "governance": {"virtual_keys": keys}})


def sdk(running: RunningGateway, value: str = KEY) -> anthropic.AsyncAnthropic:
    return anthropic_client(running.url, value)


async def test_a_message_batch_is_charged_at_submission_and_settled_from_its_results(gateway, mock) -> None:
    running = anthropic_gateway(gateway, mock, [key(KEY, **LIMITS)])
    client = sdk(running)
    requests = [request(i) for i in range(3)]
    batch = await client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    tokens, cost = worst(requests)
    assert counters(running) == (3, tokens, cost)
    assert batch.processing_status == "in_progress"
    sent = (await mock_control(mock, "GET", "/_mock/requests?path=/v1/messages/batches"))[-1]["body"]
    assert [item["params"]["model"] for item in sent["requests"]] == ["claude-sonnet-4-5"] * 3

    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    retrieved = await client.messages.batches.retrieve(batch.id)
    assert retrieved.processing_status == "ended"
    assert retrieved.results_url and retrieved.results_url.startswith(running.url)  # fetched through the gateway
    results = [result async for result in await client.messages.batches.results(batch.id)]
    assert [result.result.type for result in results] == ["succeeded"] * 3
    assert await follow_up(running) == 1
    settled = math.ceil((PROMPT * NANO_IN + OUTPUT * NANO_OUT) * 0.5)
    assert counters(running) == (3 + 2 + 1, 3 * (PROMPT + OUTPUT), 3 * settled)  # + retrieve, results (2 calls)
    assert running.runtime.enforcer.reservations_in_flight == 0


async def test_a_message_batch_that_does_not_fit_is_refused_in_anthropics_shape(gateway, mock) -> None:
    requests = [request(i, max_tokens=4000) for i in range(2)]
    tokens, _ = worst(requests)
    rate = {"token_max_limit": tokens - 1, "token_reset_duration": "1d"}
    running = anthropic_gateway(gateway, mock, [key(KEY, rate_limit=rate)])
    before = len(mock.state.requests)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await sdk(running).messages.batches.create(requests=requests)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "token_limited" and body["error"]["scope"]["level"] == "virtual_key"
    assert len(mock.state.requests) == before


async def test_a_cancelled_message_batch_gives_its_charge_back(gateway, mock) -> None:
    running = anthropic_gateway(gateway, mock, [key(KEY, **LIMITS)])
    client = sdk(running)
    batch = await client.messages.batches.create(requests=[request(i) for i in range(2)])  # type: ignore[arg-type]
    cancelled = await client.messages.batches.cancel(batch.id)
    assert cancelled.id == batch.id
    await follow_up(running)
    assert counters(running) == (1, 0, 0)  # the cancel; the requests never ran


async def test_another_keys_message_batch_is_not_found(gateway, mock) -> None:
    running = anthropic_gateway(gateway, mock, [key(KEY, **LIMITS), key(OTHER, id="other", **LIMITS)])
    batch = await sdk(running).messages.batches.create(requests=[request(0)])  # type: ignore[arg-type]
    thief = sdk(running, OTHER)
    with pytest.raises(anthropic.NotFoundError):
        await thief.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        await thief.messages.batches.cancel(batch.id)
    listed = [item.id async for item in thief.messages.batches.list()]
    assert listed == []
    assert [item.id async for item in sdk(running).messages.batches.list()] == [batch.id]
