"""Governance of the Responses API and of token counting through the real gateway: usage
charged with cached and reasoning tokens, request limits on every route, the stored-response
routes reaching only the provider and the key that made the response, count_tokens
governed but never charged."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import openai
import pytest
from sqlalchemy import select

from tests.integration.conftest import mock_control
from tests.integration.test_governance import KEY_A, KEY_B, key, key_limits
from tests.integration.test_responses_api import (
    MODELS,
    WEATHER_TOOL,
    responses_providers,
    sdk,
)
from tests.support.gateway import RunningGateway
from tests.support.sdk_clients import anthropic_client
from tollway.governance.model import budget_counter, request_counter, token_counter
from tollway.store.tables import RequestLog
from tollway.testing import mock_content

# 1 USD per million input tokens, 0.5 per million cached, 2 per million output: in nano-dollars per token.
PRICE = {"input": 1, "output": 2, "cached_input": 0.5}
PRICING = {f"{provider}/{model.split('/')[1]}": PRICE for provider, model in MODELS.items()}
LIMITS = {"token_max_limit": 1_000_000, "token_reset_duration": "1h", "request_max_limit": 1000,
          "request_reset_duration": "1h"}


def governed(gateway, mock, *keys: dict, **extra) -> RunningGateway:
    return gateway({"providers": responses_providers(mock.url), "pricing": PRICING,
                    "governance": {"virtual_keys": list(keys)}, **extra})


def cost_nano(usage) -> int:
    cached = usage.input_tokens_details.cached_tokens
    return (usage.input_tokens - cached) * 1000 + cached * 500 + usage.output_tokens * 2000


@pytest.mark.parametrize("provider", ["openai", "azure", "anthropic", "local"])
async def test_usage_is_charged_with_cached_and_reasoning_tokens_json_and_stream(gateway, mock, provider) -> None:
    running = governed(gateway, mock, key(KEY_A, rate_limit=LIMITS, budget={"max_limit": 10, "reset_duration": "1d"}))
    await mock_control(mock, "POST", "/_mock/settings", {"cached_tokens": 4})
    client = sdk(running, KEY_A)
    reasoning = {"effort": "low"} if provider in ("openai", "azure") else None
    first = await client.responses.create(model=MODELS[provider], input="Hello there, how are you?",
                                          max_output_tokens=7, reasoning=reasoning)
    async with client.responses.stream(model=MODELS[provider], input="Hello again", reasoning=reasoning) as stream:
        second = await stream.get_final_response()
    if provider in ("openai", "azure", "anthropic"):
        assert first.usage.input_tokens_details.cached_tokens == 4
    if reasoning:
        assert second.usage.output_tokens_details.reasoning_tokens == 8
    limits = key_limits(running, KEY_A)
    counters = running.counters()
    assert counters[token_counter(limits.rate_limit.id)].used == first.usage.total_tokens + second.usage.total_tokens
    assert counters[budget_counter(limits.budget.id)].used == cost_nano(first.usage) + cost_nano(second.usage)
    assert counters[request_counter(limits.rate_limit.id)].used == 2
    assert running.runtime.enforcer.reservations_in_flight == 0


async def test_max_output_tokens_is_reserved_before_the_call(gateway, mock) -> None:
    # 300 tokens fit the prompt but not a 10,000-token output cap: refused before the provider is called.
    running = governed(gateway, mock, key(KEY_A, rate_limit={"token_max_limit": 300, "token_reset_duration": "1h"}))
    before = len(mock.state.requests)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk(running, KEY_A).responses.create(model=MODELS["openai"], input="Hi", max_output_tokens=10_000)
    assert caught.value.body["type"] == "token_limited"
    assert len(mock.state.requests) == before


async def test_request_limit_counts_create_stored_routes_and_token_counting(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A, rate_limit={"request_max_limit": 3, "request_reset_duration": "1h"}))
    client = sdk(running, KEY_A)
    made = await client.responses.create(model=MODELS["openai"], input="Hi")
    await client.responses.retrieve(made.id)
    await anthropic_client(running.url, KEY_A).messages.count_tokens(
        model=MODELS["openai"], messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.RateLimitError) as caught:
        await client.responses.input_items.list(made.id)
    assert caught.value.body["type"] == "request_limited"
    limits = key_limits(running, KEY_A).rate_limit
    assert running.counters()[request_counter(limits.id)].used == 3


@pytest.mark.parametrize("provider", ["openai", "azure"])
async def test_stored_routes_reach_the_provider_that_made_the_response(gateway, mock, provider) -> None:
    running = governed(gateway, mock, key(KEY_A))
    client = sdk(running, KEY_A)
    made = await client.responses.create(model=MODELS[provider], input="Remember this")
    prefix = "/v1/responses" if provider == "openai" else "/openai/responses"
    fetched = await client.responses.retrieve(made.id)
    assert fetched.id == made.id and fetched.output_text == made.output_text
    assert mock.state.requests[-1]["path"] == f"{prefix}/{made.id}"
    items = await client.responses.input_items.list(made.id)
    assert [item.content[0].text for item in items.data] == ["Remember this"]
    assert mock.state.requests[-1]["path"] == f"{prefix}/{made.id}/input_items"
    if provider == "azure":
        assert mock.state.requests[-1]["query"]["api-version"]
    await client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(made.id)


async def test_background_response_is_charged_its_cap_and_cancelled_at_its_provider(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A, rate_limit=LIMITS))
    client = sdk(running, KEY_A)
    queued = await client.responses.create(model=MODELS["azure"], input="Slow work", background=True,
                                           max_output_tokens=500)
    assert queued.status == "queued" and queued.usage is None
    # No usage comes back with a queued response: it is charged the most it can produce.
    used = running.counters()[token_counter(key_limits(running, KEY_A).rate_limit.id)].used
    assert 500 < used < 700
    cancelled = await client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert mock.state.requests[-1]["path"] == f"/openai/responses/{queued.id}/cancel"


async def test_an_uncapped_background_response_is_refused_before_the_provider(gateway, mock) -> None:
    running = governed(gateway, mock)
    before = len(mock.state.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(running).responses.create(model=MODELS["openai"], input="Endless work", background=True)
    assert caught.value.body["param"] == "background" and "max_output_tokens" in caught.value.message
    assert len(mock.state.requests) == before


async def test_another_key_cannot_reach_a_response_it_did_not_make(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A), key(KEY_B))
    made = await sdk(running, KEY_A).responses.create(model=MODELS["openai"], input="Secret plans")
    other = sdk(running, KEY_B)
    before = len(mock.state.requests)
    for attempt in (other.responses.retrieve(made.id), other.responses.input_items.list(made.id),
                    other.responses.delete(made.id)):
        with pytest.raises(openai.NotFoundError):
            await attempt
    with pytest.raises(openai.NotFoundError) as caught:  # nor continue its conversation
        await other.responses.create(model=MODELS["openai"], input="Go on", previous_response_id=made.id)
    assert caught.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):  # nor reach it without a key
        await sdk(running).responses.retrieve(made.id)
    assert len(mock.state.requests) == before  # the provider was never asked
    assert (await sdk(running, KEY_A).responses.retrieve(made.id)).id == made.id


async def test_stored_routes_follow_identity_rules(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A, provider_configs=[{"provider": "openai"}]), enforce_virtual_keys=True)
    made = await sdk(running, KEY_A).responses.create(model=MODELS["openai"], input="Hi")
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk(running).responses.retrieve(made.id)
    assert caught.value.body["type"] == "virtual_key_required"
    unknown = sdk(running, "tw-unknown-0123456789abcdefghijkl")
    with pytest.raises(openai.AuthenticationError) as caught:
        await unknown.responses.retrieve(made.id)
    assert caught.value.body["type"] == "virtual_key_not_found"


async def test_unknown_stored_route_is_a_404_and_wrong_method_a_405(served_plain) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(served_plain.v1 + "/responses/resp_x/nothing") as response:
            assert response.status == 404
        async with session.put(served_plain.v1 + "/responses/resp_x") as response:
            assert response.status == 405
        async with session.get(served_plain.v1 + "/responses/resp_never_made") as response:
            assert response.status == 404
            assert "not found" in (await response.json())["error"]["message"]


@pytest.fixture
def served_plain(gateway, mock) -> RunningGateway:
    return governed(gateway, mock)


# --- count_tokens ------------------------------------------------------------------------------

async def test_count_tokens_is_forwarded_to_anthropic_and_estimated_elsewhere(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A, rate_limit=LIMITS, budget={"max_limit": 1, "reset_duration": "1d"}))
    client = anthropic_client(running.url, KEY_A)
    messages = [{"role": "user", "content": "How many tokens is this sentence, with ünïcödé?"}]
    exact = mock_content.chat_prompt_tokens(messages, "Be brief.")
    counted = await client.messages.with_raw_response.count_tokens(model=MODELS["anthropic"], messages=messages,
                                                                   system="Be brief.")
    assert (await counted.parse()).input_tokens == exact
    assert mock.state.requests[-1]["path"] == "/v1/messages/count_tokens"
    before = len(mock.state.requests)
    estimated = await client.messages.with_raw_response.count_tokens(model=MODELS["openai"], messages=messages,
                                                                     system="Be brief.")
    assert estimated.headers["x-tollway-token-count"] == "estimated"
    assert (await estimated.parse()).input_tokens >= exact  # an upper bound
    assert len(mock.state.requests) == before  # answered by the gateway
    limits = key_limits(running, KEY_A)
    counters = running.counters()
    assert counters[request_counter(limits.rate_limit.id)].used == 2
    assert counters[token_counter(limits.rate_limit.id)].used == 0  # never charged
    assert counters[budget_counter(limits.budget.id)].used == 0


async def test_count_tokens_follows_identity_and_answers_in_anthropic_shape(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A, allowed_models=["claude-sonnet-4-5"]), enforce_virtual_keys=True)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await anthropic_client(running.url, "sk-ant-placeholder").messages.count_tokens(
            model=MODELS["anthropic"], messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["error"]["type"] == "virtual_key_required"
    client = anthropic_client(running.url, KEY_A)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await client.messages.count_tokens(model=MODELS["openai"], messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["error"]["type"] == "model_blocked"
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.count_tokens(model=MODELS["anthropic"], messages=[])
    assert "messages" in caught.value.body["error"]["message"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stream_cut_by_the_provider_ends_with_an_error_event_and_is_charged_what_was_produced(
        gateway, mock, provider) -> None:
    running = governed(gateway, mock, key(KEY_A, rate_limit=LIMITS))
    await mock_control(mock, "POST", "/_mock/faults", {"drop": "mid_stream", "after_chunks": 6, "count": 1})
    stream = await sdk(running, KEY_A).responses.create(model=MODELS[provider], input="Hi", max_output_tokens=50,
                                                        stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "error" and "interrupted" in events[-1].message
    produced = sum(1 for event in events if event.type == "response.output_text.delta")
    used = running.counters()[token_counter(key_limits(running, KEY_A).rate_limit.id)].used
    assert produced >= 1 and produced <= used < 50  # the prompt estimate plus what was produced, not the 50 reserved
    assert running.runtime.enforcer.reservations_in_flight == 0


async def test_every_responses_route_leaves_a_request_log_row(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A))
    client = sdk(running, KEY_A)
    made = await client.responses.create(model=MODELS["openai"], input="Hi")
    await client.responses.retrieve(made.id)
    await client.responses.input_items.list(made.id)
    with pytest.raises(openai.NotFoundError):
        await sdk(running, KEY_A).responses.retrieve("resp_never_made")
    await anthropic_client(running.url, KEY_A).messages.count_tokens(
        model=MODELS["openai"], messages=[{"role": "user", "content": "Hi"}])
    runtime = running.runtime

    async def rows() -> list[tuple[str | None, str | None, int]]:
        await runtime.log_writer.flush()
        async with runtime.db.session() as session:
            found = await session.execute(select(RequestLog.provider, RequestLog.virtual_key_id, RequestLog.status)
                                          .order_by(RequestLog.at))
            return [tuple(row) for row in found]

    logged = running.call(rows())
    assert sorted(logged, key=str) == sorted([("openai", KEY_A[:8], 200)] * 4 + [(None, None, 404)], key=str)


async def test_responses_input_tokens_is_forwarded_where_served_and_estimated_elsewhere(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A, rate_limit=LIMITS))
    client = sdk(running, KEY_A)
    request = {"input": "How many tokens is this sentence?", "instructions": "Be brief.", "tools": [WEATHER_TOOL]}
    exact = mock_content.chat_prompt_tokens([{"role": "user", "content": request["input"]}], request["instructions"])
    for provider in ("openai", "azure"):
        counted = await client.responses.input_tokens.with_raw_response.count(model=MODELS[provider], **request)
        assert counted.parse().input_tokens == exact and "x-tollway-token-count" not in counted.headers
        assert mock.state.requests[-1]["path"].endswith("/responses/input_tokens")
    before = len(mock.state.requests)
    for provider in ("anthropic", "local"):
        estimated = await client.responses.input_tokens.with_raw_response.count(model=MODELS[provider], **request)
        assert estimated.headers["x-tollway-token-count"] == "estimated"
        assert estimated.parse().input_tokens >= exact
    assert len(mock.state.requests) == before
    limits = key_limits(running, KEY_A).rate_limit
    counters = running.counters()
    assert counters[request_counter(limits.id)].used == 4 and counters[token_counter(limits.id)].used == 0


async def test_stored_routes_hold_an_in_flight_slot_of_the_key(gateway, mock) -> None:
    running = governed(gateway, mock, key(KEY_A, concurrency={"max_in_flight": 1, "queue_timeout_ms": 0}))
    client = sdk(running, KEY_A)
    made = await client.responses.create(model=MODELS["openai"], input="Hi")
    await mock_control(mock, "POST", "/_mock/settings", {"latency_ms": 300})
    results = await asyncio.gather(client.responses.retrieve(made.id), client.responses.retrieve(made.id),
                                   return_exceptions=True)
    denied = [result for result in results if isinstance(result, openai.RateLimitError)]
    assert len(denied) == 1 and denied[0].body["type"] == "concurrency_limited"
    assert sum(1 for result in results if not isinstance(result, Exception)) == 1
    running.counters()  # once the answered requests are settled
    assert running.runtime.enforcer.reservations_in_flight == 0
