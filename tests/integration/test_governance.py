"""Governance through the real server: every denial with its status, body and headers,
exact limits under real concurrency, accounting of streams, shared budgets, restarts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import openai
import pytest
from sqlalchemy import select

from tests.integration.conftest import mock_control
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import openai_client
from tollway.governance.engine import hash_key
from tollway.governance.model import budget_counter, request_counter, token_counter
from tollway.store.tables import RequestLog

KEY_A = "tw-key-a-0123456789abcdefghijklmnop"
KEY_B = "tw-key-b-0123456789abcdefghijklmnop"
HELLO = [{"role": "user", "content": "Hello"}]
# The mock's model is priced so each request's cost is known: 1 USD per million input, 2 per million output.
PRICING = {"openai/gpt-4o-mini": {"input": 1, "output": 2}, "azure/gpt-4o-mini": {"input": 1, "output": 2}}


def sdk(gateway: RunningGateway, key: str | None = None) -> openai.AsyncOpenAI:
    return openai_client(gateway.v1, key or "sk-placeholder")


def config(mock, *, keys: list[dict] | None = None, **extra: Any) -> dict[str, Any]:
    governance = extra.pop("governance", {})
    governance.setdefault("virtual_keys", keys or [])
    return {"providers": extra.pop("providers", mock_providers(mock.url)), "pricing": PRICING,
            "governance": governance, **extra}


def key(value: str, **fields: Any) -> dict[str, Any]:
    return {"id": fields.pop("id", value[:8]), "name": fields.pop("name", f"key {value[3:8]}"), "value": value, **fields}


def key_limits(gateway: RunningGateway, value: str):
    return gateway.runtime.snapshot.keys_by_hash[hash_key(value)].limits


async def post_raw(gateway: RunningGateway, body: dict, headers: dict | None = None) -> tuple[int, dict, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.v1 + "/chat/completions", json=body, headers=headers or {}) as response:
            return response.status, dict(response.headers), await response.json()


# --- identity ------------------------------------------------------------------------------

async def test_identity_denials_have_their_status_and_type(gateway, mock) -> None:
    running = gateway(config(mock, enforce_virtual_keys=True, keys=[
        key(KEY_A, allowed_models=["gpt-4o-mini"], provider_configs=[{"provider": "openai"}]),
        key(KEY_B, is_active=False),
    ]))
    body = {"model": "openai/gpt-4o-mini", "messages": HELLO}
    cases = [
        ({}, 401, "virtual_key_required"),
        ({"Authorization": "Bearer tw-unknown-0123456789abcdef"}, 401, "virtual_key_not_found"),
        ({"x-bf-vk": KEY_B}, 403, "virtual_key_blocked"),
    ]
    for headers, status, kind in cases:
        got, _, payload = await post_raw(running, body, headers)
        assert (got, payload["error"]["type"], payload["error"]["code"]) == (status, kind, kind)
    got, _, payload = await post_raw(running, {**body, "model": "anthropic/claude-3-5-haiku-latest"}, {"x-tollway-vk": KEY_A})
    assert (got, payload["error"]["type"]) == (403, "provider_blocked")
    got, _, payload = await post_raw(running, {**body, "model": "openai/gpt-4o"}, {"x-tollway-vk": KEY_A})
    assert (got, payload["error"]["type"]) == (403, "model_blocked")
    assert payload["error"]["scope"]["level"] == "virtual_key"
    reply = await sdk(running, KEY_A).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert reply.choices


# --- exact request limits ---------------------------------------------------------------

async def test_request_limit_is_exact_under_200_concurrent_requests(gateway, mock) -> None:
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"request_max_limit": 25, "request_reset_duration": "1h"})]))
    await mock_control(mock, "POST", "/_mock/settings", {"latency_ms": 20})
    body = {"model": "openai/gpt-4o-mini", "messages": HELLO, "max_tokens": 4}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> tuple[int, dict, dict]:
            async with session.post(running.v1 + "/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {KEY_A}"}) as response:
                return response.status, dict(response.headers), await response.json()

        results = await asyncio.gather(*(one() for _ in range(200)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 25 and statuses.count(429) == 175
    denied = next(r for r in results if r[0] == 429)
    error = denied[2]["error"]
    assert error["type"] == "request_limited"
    assert error["scope"] == {"level": "virtual_key", "id": KEY_A[:8], "name": f"key {KEY_A[3:8]}"}
    assert (error["limit"], error["used"]) == (25, 25)
    assert 1 <= int(denied[1]["Retry-After"]) <= 3600
    counters = running.counters()
    assert counters[request_counter(key_limits(running, KEY_A).rate_limit.id)].used == 25
    assert running.runtime.enforcer.reservations_in_flight == 0


async def test_allowed_responses_carry_the_tightest_rate_limit_headers(gateway, mock) -> None:
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"request_max_limit": 10, "request_reset_duration": "1m",
                                                               "token_max_limit": 100_000, "token_reset_duration": "1h"})],
                             providers=mock_providers(mock.url, openai={"rate_limit": {"request_max_limit": 1000,
                                                                                       "request_reset_duration": "1m"}})))
    status, headers, _ = await post_raw(running, {"model": "openai/gpt-4o-mini", "messages": HELLO}, {"x-tollway-vk": KEY_A})
    assert status == 200
    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-remaining-requests"] == "9"
    assert headers["x-ratelimit-limit-tokens"] == "100000"
    assert headers["x-ratelimit-reset-requests"].endswith("s")


# --- budgets and tokens ------------------------------------------------------------------

async def test_budget_denies_with_402_naming_the_key_and_charges_actual_cost(gateway, mock) -> None:
    # Each request costs (prompt + 2 × 5 completion tokens) micro-dollars; the budget fits only a few.
    running = gateway(config(mock, keys=[key(KEY_A, budget={"max_limit": 0.00005, "reset_duration": "1d"})]))
    client = sdk(running, KEY_A)
    served = 0
    with pytest.raises(openai.APIStatusError) as caught:
        for _ in range(50):
            await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=5)
            served += 1
    assert caught.value.status_code == 402
    error = caught.value.body
    assert error["type"] == "budget_exceeded" and error["scope"]["level"] == "virtual_key"
    assert error["limit"] == pytest.approx(0.00005) and error["reset_at"].endswith("Z")
    assert int(caught.value.response.headers["Retry-After"]) > 0
    used = running.counters()[budget_counter(key_limits(running, KEY_A).budget.id)].used
    assert 0 < used <= 50_000 and served >= 1  # nano-dollars: never past the budget sequentially


async def test_token_limit_denies_with_429_token_limited(gateway, mock) -> None:
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"token_max_limit": 60, "token_reset_duration": "1h"})]))
    client = sdk(running, KEY_A)
    first = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(20):
            await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=5)
    assert caught.value.body["type"] == "token_limited"
    assert caught.value.body["limit"] == 60
    used = running.counters()[token_counter(key_limits(running, KEY_A).rate_limit.id)].used
    assert used <= 60 and used % first.usage.total_tokens == 0  # whole requests charged, by their actual usage


async def test_stream_is_charged_exactly_once_with_reported_usage(gateway, mock) -> None:
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"token_max_limit": 10_000, "token_reset_duration": "1h",
                                                               "request_max_limit": 100, "request_reset_duration": "1h"})]))
    stream = await sdk(running, KEY_A).chat.completions.create(
        model="openai/gpt-4o-mini", messages=HELLO, max_tokens=8, stream=True, stream_options={"include_usage": True})
    usage = [chunk.usage async for chunk in stream if chunk.usage][0]  # noqa: RUF015 - an async stream
    limits = key_limits(running, KEY_A).rate_limit
    counters = running.counters()
    assert counters[token_counter(limits.id)].used == usage.total_tokens
    assert counters[request_counter(limits.id)].used == 1


async def test_cut_stream_is_charged_for_what_was_produced(gateway, mock) -> None:
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"token_max_limit": 100_000, "token_reset_duration": "1h"})]))
    await mock_control(mock, "POST", "/_mock/faults", {"drop": "mid_stream", "after_chunks": 4, "count": 1})
    got: list[str] = []
    with pytest.raises(openai.APIError):
        stream = await sdk(running, KEY_A).chat.completions.create(
            model="openai/gpt-4o-mini", messages=HELLO, max_tokens=50, stream=True)
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    used = running.counters()[token_counter(key_limits(running, KEY_A).rate_limit.id)].used
    assert 4 <= used < 50 + 200  # the prompt estimate plus the chunks relayed, not the 50 reserved
    assert running.runtime.enforcer.reservations_in_flight == 0  # nothing left reserved


async def test_client_leaving_a_slow_answer_cancels_the_upstream_and_frees_the_reservation(gateway, mock) -> None:
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"token_max_limit": 100_000, "token_reset_duration": "1h",
                                                               "request_max_limit": 10, "request_reset_duration": "1h"})]))
    await mock_control(mock, "POST", "/_mock/settings", {"latency_ms": 8000})
    body = {"model": "openai/gpt-4o-mini", "messages": HELLO, "max_tokens": 900}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):  # the client gives up after 1.5 s (the watch arms after 1 s)
            await session.post(running.v1 + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY_A}"},
                               timeout=aiohttp.ClientTimeout(total=1.5))
    for _ in range(60):  # the upstream call is dropped within moments, not after the mock's 8 s
        stats = await mock_control(mock, "GET", "/_mock/stats")
        if stats["requests_cancelled"] >= 1 and running.runtime.enforcer.reservations_in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert stats["requests_cancelled"] >= 1 and stats["in_flight"] == 0
    assert running.runtime.enforcer.reservations_in_flight == 0
    limits = key_limits(running, KEY_A).rate_limit
    counters = running.counters()
    assert counters[request_counter(limits.id)].used == 1
    assert 0 < counters[token_counter(limits.id)].used < 900  # the prompt's estimate, not the 900 reserved for the answer
    async with aiohttp.ClientSession() as session, session.get(running.url + "/metrics") as r:
        assert 'status="499"' in await r.text()


async def test_failed_upstream_call_charges_nothing(gateway, mock) -> None:
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"})]))
    await mock_control(mock, "POST", "/_mock/faults", {"status": 500, "count": 1})
    with pytest.raises(openai.InternalServerError):
        await sdk(running, KEY_A).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    reply = await sdk(running, KEY_A).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert reply.choices  # the failed call released its slot


# --- levels --------------------------------------------------------------------------------

async def test_provider_limit_applies_without_a_key(gateway, mock) -> None:
    providers = mock_providers(mock.url, openai={"rate_limit": {"request_max_limit": 3, "request_reset_duration": "1h"}})
    running = gateway(config(mock, providers=providers))
    for _ in range(3):
        await sdk(running).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk(running).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert caught.value.body["scope"] == {"level": "provider", "id": "openai", "name": "openai"}
    await sdk(running).chat.completions.create(model="azure/gpt-4o-mini", messages=HELLO)  # another provider is free


async def test_model_only_config_spans_providers_and_model_provider_config_does_not(gateway, mock) -> None:
    running = gateway(config(mock, governance={"model_configs": [
        {"model_name": "gpt-4o-mini", "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1h"}},
        {"model_name": "gpt-4o-mini", "provider": "azure", "rate_limit": {"request_max_limit": 1, "request_reset_duration": "1h"}},
    ]}))
    client = sdk(running)
    await client.chat.completions.create(model="azure/gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="azure/gpt-4o-mini", messages=HELLO)
    assert caught.value.body["scope"]["level"] == "model"  # the (model, azure) config
    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError):  # the model-only config: 3 across both providers
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)


async def test_team_and_customer_budgets_are_shared_by_their_keys(gateway, mock) -> None:
    running = gateway(config(mock, governance={
        "customers": [{"id": "acme", "name": "Acme", "rate_limit": {"request_max_limit": 5, "request_reset_duration": "1h"}}],
        "teams": [{"id": "search", "name": "Search", "customer_id": "acme",
                   "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1h"}}],
    }, keys=[key(KEY_A, team_id="search"), key(KEY_B, customer_id="acme")]))
    a, b = sdk(running, KEY_A), sdk(running, KEY_B)
    for _ in range(3):
        await a.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await a.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert caught.value.body["scope"]["name"] == "Search"  # the team's 3
    # The customer counts the team's 3 through the team and b's own, directly: 5 in all.
    await b.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    await b.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await b.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert caught.value.body["scope"] == {"level": "customer", "id": "acme", "name": "Acme"}


async def test_team_budget_denial_names_the_team(gateway, mock) -> None:
    running = gateway(config(mock, governance={
        "teams": [{"id": "search", "name": "Search", "budget": {"max_limit": 0.00003, "reset_duration": "1M",
                                                                "calendar_aligned": True}}],
    }, keys=[key(KEY_A, team_id="search"), key(KEY_B, team_id="search")]))
    with pytest.raises(openai.APIStatusError) as caught:
        for client in [sdk(running, KEY_A), sdk(running, KEY_B)] * 20:
            await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, max_tokens=5)
    assert caught.value.status_code == 402
    assert caught.value.body["scope"] == {"level": "team", "id": "search", "name": "Search"}
    assert caught.value.body["reset_at"].endswith("-01T00:00:00Z")  # calendar month


# --- persistence -----------------------------------------------------------------------------

@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_restart_keeps_usage(gateway, mock, tmp_path, request, database: str) -> None:
    url = f"sqlite:///{tmp_path / 'kept.db'}" if database == "sqlite" else request.getfixturevalue("postgres_server").create_database()
    settings = config(mock, database_url=url, keys=[key(KEY_A, rate_limit={"request_max_limit": 5, "request_reset_duration": "1h"})])
    first = gateway(settings)
    for _ in range(3):
        await sdk(first, KEY_A).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    first.stop()  # graceful: the last usage is flushed
    second = gateway(settings)
    client = sdk(second, KEY_A)
    for _ in range(2):
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    assert caught.value.body["used"] == 5


async def test_request_log_rows_older_than_the_retention_are_pruned(gateway, mock) -> None:
    running = gateway(config(mock, request_log_retention="30d"))
    for _ in range(2):
        await sdk(running).chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
    runtime = running.runtime
    old = datetime.now(timezone.utc) - timedelta(days=31)

    async def add_old_row_and_prune() -> tuple[int, list[str]]:
        await runtime.log_writer.flush()  # the two requests' rows are in the table
        async with runtime.db.session() as session:
            session.add(RequestLog(at=old, request_id="ancient", status=200, decision="allow"))
        removed = await runtime.prune_request_log()
        async with runtime.db.session() as session:
            return removed, list(await session.scalars(select(RequestLog.request_id)))

    removed, kept = running.call(add_old_row_and_prune())
    assert removed == 1
    assert len(kept) == 2 and "ancient" not in kept
