"""What a key's holder learns with the key alone, through the real server: `GET
/v1/tollway/key` (its limits and those above it that bind it, nothing of anyone else's)
and the ``x-tollway-budget-*`` headers of the tightest budget on every governed
response — both API shapes, translated and passthrough, streamed or not."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import RunningGateway, mock_providers

KEY_A = "tw-key-info-a-0123456789abcdefghijkl"
KEY_B = "tw-key-info-b-0123456789abcdefghijkl"  # the same team as A
KEY_OTHER = "tw-key-info-other-0123456789abcdefgh"  # another team of the same customer
KEY_GLOBEX = "tw-key-info-globex-0123456789abcdefg"  # another customer
KEY_BLOCKED = "tw-key-info-blocked-0123456789abcdef"
KEY_FREE = "tw-key-info-free-0123456789abcdefghi"  # no budget anywhere above it
PRICING = {"openai/gpt-4o-mini": {"input": 1, "output": 2}, "anthropic/claude-3-5-haiku-latest": {"input": 1, "output": 2}}
HELLO = [{"role": "user", "content": "Hello"}]


def hierarchy(mock_url: str) -> dict[str, Any]:
    budget = {"reset_duration": "1d"}
    providers = mock_providers(mock_url, openai={"budget": {"max_limit": 100, **budget}},
                               anthropic={"rate_limit": {"request_max_limit": 1000, "request_reset_duration": "1m"}})
    return {
        "providers": providers, "pricing": PRICING,
        "governance": {
            "customers": [{"id": "acme", "name": "Acme", "budget": {"max_limit": 50, **budget}},
                          {"id": "globex", "name": "Globex", "budget": {"max_limit": 70, **budget}}],
            "teams": [{"id": "search", "name": "Search", "customer_id": "acme",
                       "rate_limit": {"token_max_limit": 100000, "token_reset_duration": "1h"}},
                      {"id": "ads", "name": "Ads", "customer_id": "acme", "budget": {"max_limit": 40, **budget}}],
            "virtual_keys": [
                {"id": "vk-a", "name": "a", "value": KEY_A, "team_id": "search", "allowed_models": ["gpt-4o-mini"],
                 "budget": {"max_limit": 10, **budget}, "concurrency": {"max_in_flight": 4},
                 "rate_limit": {"request_max_limit": 60, "request_reset_duration": "1m"},
                 "provider_configs": [{"provider": "openai", "budget": {"max_limit": 3, "reset_duration": "1h"}}]},
                {"id": "vk-b", "name": "b", "value": KEY_B, "team_id": "search", "budget": {"max_limit": 1, **budget}},
                {"id": "vk-other", "name": "other", "value": KEY_OTHER, "team_id": "ads"},
                {"id": "vk-globex", "name": "globex key", "value": KEY_GLOBEX, "customer_id": "globex"},
                {"id": "vk-blocked", "name": "blocked", "value": KEY_BLOCKED, "team_id": "search", "is_active": False},
            ],
            "model_configs": [
                {"model_name": "gpt-4o-mini", "provider": "openai",
                 "rate_limit": {"request_max_limit": 500, "request_reset_duration": "1m"}},
                {"model_name": "gpt-4o-mini", "budget": {"max_limit": 60, **budget}},
                {"model_name": "o3", "budget": {"max_limit": 5, **budget}},  # a model the key may not use
                {"model_name": "claude-3-5-haiku-latest", "provider": "anthropic",
                 "budget": {"max_limit": 6, **budget}},  # a provider it may not use
            ],
        },
    }


async def get_info(gateway: RunningGateway, headers: dict[str, str], path: str = "/v1/tollway/key") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(gateway.url + path, headers=headers) as response:
        return response.status, await response.json()


async def post(gateway: RunningGateway, path: str, body: dict[str, Any], value: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {value}", "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as session, session.post(gateway.url + path, json=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


def chat_body(model: str = "openai/gpt-4o-mini", stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": HELLO, "max_tokens": 16, "stream": stream}


async def test_key_info_shows_the_key_and_every_limit_that_binds_it_and_nothing_else(gateway, mock) -> None:
    running = gateway(hierarchy(mock.url))
    status, _, _ = await post(running, "/v1/chat/completions", chat_body(), KEY_A)
    assert status == 200
    status, info = await get_info(running, {"Authorization": f"Bearer {KEY_A}"})
    assert status == 200, info
    assert (info["object"], info["id"], info["team_id"], info["customer_id"]) == ("tollway.key", "vk-a", "search", "acme")
    seen = {(limit["level"], limit["id"], limit["kind"]) for limit in info["limits"]}
    model_ids = {config.scope.id: config.scope.name for config in running.runtime.snapshot.model_configs.values()}
    models = {name: ident for ident, name in model_ids.items()}
    provider_config = running.runtime.snapshot.keys_by_hash[next(iter(
        h for h, k in running.runtime.snapshot.keys_by_hash.items() if k.id == "vk-a"))].provider_configs["openai"]
    assert seen == {
        ("provider", "openai", "budget"),
        ("model", models["openai/gpt-4o-mini"], "requests"), ("model", models["gpt-4o-mini"], "budget"),
        ("virtual_key", "vk-a", "requests"), ("virtual_key", "vk-a", "budget"), ("virtual_key", "vk-a", "in_flight"),
        ("provider_config", provider_config.limits.scope.id, "budget"),
        ("team", "search", "tokens"), ("customer", "acme", "budget"),
    }
    key_budget = next(limit for limit in info["limits"] if limit["level"] == "virtual_key" and limit["kind"] == "budget")
    assert key_budget["limit"] == 10 and key_budget["used"] > 0 and key_budget["reserved"] == 0
    assert key_budget["unit"] == "usd" and datetime.fromisoformat(key_budget["reset_at"]).tzinfo is not None
    requests = next(limit for limit in info["limits"] if limit["level"] == "virtual_key" and limit["kind"] == "requests")
    assert (requests["limit"], requests["used"], requests["remaining"]) == (60, 1, 59)
    text = json.dumps(info)
    for foreign in ("vk-b", "vk-other", "vk-globex", "vk-blocked", "globex", "ads", "Ads", "o3", "anthropic", "claude",
                    "limit_id", "virtual_key_id"):
        assert foreign not in text, foreign


@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "x-bf-vk", "x-tollway-vk"])
async def test_key_info_takes_the_key_in_every_header_the_proxy_does(gateway, mock, header) -> None:
    running = gateway(hierarchy(mock.url))
    value = f"Bearer {KEY_B}" if header == "Authorization" else KEY_B
    status, info = await get_info(running, {header: value})
    assert status == 200 and info["id"] == "vk-b"


async def test_key_info_answers_only_about_the_key_presented(gateway, mock) -> None:
    running = gateway(hierarchy(mock.url))
    headers = {"Authorization": f"Bearer {KEY_B}"}
    # Another key's id in the query, or another value in a second header: still B only.
    for path in ("/v1/tollway/key?id=vk-a", "/v1/tollway/key?virtual_key_id=vk-a&team_id=ads"):
        status, info = await get_info(running, headers, path)
        assert status == 200 and info["id"] == "vk-b"
        assert {limit["id"] for limit in info["limits"]} >= {"vk-b", "acme", "search"}
        assert "vk-a" not in json.dumps(info) and "Ads" not in json.dumps(info)
    # The key's team has other keys: their limits (A's budget of 10, its provider config) are not B's.
    assert all(limit["level"] not in ("provider_config",) for limit in info["limits"])
    assert sorted(limit["limit"] for limit in info["limits"] if limit["level"] == "virtual_key") == [1]


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({"Authorization": "Bearer tw-unknown-key-0123456789abcdefghij"}, 401, "virtual_key_not_found"),
    ({}, 401, "virtual_key_required"),
    ({"Authorization": "Bearer sk-not-a-virtual-key"}, 401, "virtual_key_required"),
    ({"Authorization": f"Bearer {KEY_BLOCKED}"}, 403, "virtual_key_blocked"),
])
async def test_key_info_refuses_what_the_proxy_refuses_and_says_nothing_more(gateway, mock, headers, status, code) -> None:
    running = gateway(hierarchy(mock.url))
    got, body = await get_info(running, headers)
    assert (got, body["error"]["code"]) == (status, code)
    assert "limits" not in body and "acme" not in json.dumps(body) and "search" not in json.dumps(body)


# -- budget headers ------------------------------------------------------------------------------


def budget_headers(headers: dict[str, str]) -> tuple[Decimal, str]:
    lowered = {name.lower(): value for name, value in headers.items()}
    remaining = lowered["x-tollway-budget-remaining"]
    assert "e" not in remaining.lower()  # a plain decimal, never exponent notation
    return Decimal(remaining), lowered["x-tollway-budget-reset"]


async def test_the_budget_headers_name_the_tightest_budget_after_this_requests_reservation(gateway, mock) -> None:
    running = gateway(hierarchy(mock.url))
    status, first, _ = await post(running, "/v1/chat/completions", chat_body(), KEY_A)
    assert status == 200
    _, info = await get_info(running, {"x-api-key": KEY_A})
    tightest = next(limit for limit in info["limits"] if limit["level"] == "provider_config")  # 3 USD per hour
    spent = Decimal(str(tightest["used"]))
    status, second, _ = await post(running, "/v1/chat/completions", chat_body(), KEY_A)
    remaining_1, reset_1 = budget_headers(first)
    remaining_2, reset_2 = budget_headers(second)
    # The same request reserves the same estimate: the headers differ by what the first one cost.
    assert remaining_1 - remaining_2 == spent > 0
    assert remaining_1 < 3 and reset_1 == reset_2
    assert datetime.fromisoformat(reset_1) == datetime.fromisoformat(tightest["reset_at"])  # the hourly one, not a daily


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "model"), [
    ("/v1/chat/completions", "openai/gpt-4o-mini"),  # OpenAI shape, passthrough
    ("/v1/chat/completions", "anthropic/claude-3-5-haiku-latest"),  # OpenAI shape, translated
    ("/v1/messages", "anthropic/claude-3-5-haiku-latest"),  # Anthropic shape, passthrough
    ("/v1/messages", "openai/gpt-4o-mini"),  # Anthropic shape, translated
])
async def test_every_governed_response_carries_the_budget_headers(gateway, mock, path, model, stream) -> None:
    config = hierarchy(mock.url)
    config["governance"]["virtual_keys"].append({"id": "vk-h", "name": "h", "value": KEY_FREE, "customer_id": "globex"})
    running = gateway(config)
    status, headers, body = await post(running, path, chat_body(model, stream), KEY_FREE)
    assert status == 200, body
    remaining, reset = budget_headers(headers)
    # Tightest for this key: the anthropic model's 6 USD, or globex's 70 USD on openai (its model budget is 60).
    assert remaining < (6 if "claude" in model else 60)
    assert remaining > (5 if "claude" in model else 59)
    assert datetime.fromisoformat(reset) > datetime.now(timezone.utc)
    if stream:
        assert b"data:" in body or b"event:" in body


async def test_a_key_with_no_budget_above_it_gets_no_budget_headers(gateway, mock) -> None:
    running = gateway({"providers": mock_providers(mock.url), "pricing": PRICING, "governance": {"virtual_keys": [
        {"id": "vk-free", "name": "free", "value": KEY_FREE,
         "rate_limit": {"request_max_limit": 10, "request_reset_duration": "1m"}}]}})
    for stream in (False, True):
        status, headers, _ = await post(running, "/v1/chat/completions", chat_body(stream=stream), KEY_FREE)
        assert status == 200
        lowered = {name.lower() for name in headers}
        assert "x-ratelimit-limit-requests" in lowered
        assert not {"x-tollway-budget-remaining", "x-tollway-budget-reset"} & lowered
