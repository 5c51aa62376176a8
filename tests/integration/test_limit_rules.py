"""Limit rules through the real server, with the official SDKs as clients: a rule binding
team × model refuses with scope level ``limit`` while other models and teams pass, in any
spelling of the model; a per-end-user template gives each end user of a team a counter of
their own and (``when_missing: deny``) refuses a request naming none."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import openai
import pytest

from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import anthropic_client, openai_client

KEY_T1 = "tw-rules-t1-0123456789abcdefghijklmn"
KEY_T1_OTHER = "tw-rules-t1b-0123456789abcdefghijklm"
KEY_T2 = "tw-rules-t2-0123456789abcdefghijklmn"
GPT = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-3-5-haiku-latest"
HI = [{"role": "user", "content": "Hi"}]
HOURLY = {"request_reset_duration": "1h"}
ADMIN = "twa-rules-admin-0123456789abcdef"


def rules_config(mock) -> dict:
    keys = [{"id": "t1-app", "name": "t1 app", "value": KEY_T1, "team_id": "t1"},
            {"id": "t1-other", "name": "t1 other", "value": KEY_T1_OTHER, "team_id": "t1"},
            {"id": "t2-app", "name": "t2 app", "value": KEY_T2, "team_id": "t2"}]
    limits = [
        {"name": "t1-gpt", "match": {"team": "t1", "model": "GPT-4o-Mini"},
         "rate_limit": {"request_max_limit": 2, **HOURLY}},
        {"name": "t2-users", "match": {"team": "t2"}, "per": "end_user", "when_missing": "deny",
         "rate_limit": {"request_max_limit": 1, **HOURLY}},
        {"name": "t1-keys", "match": {"team": "t1"}, "per": "virtual_key", "budget": {"max_limit": 1, "reset_duration": "1d"}},
    ]
    return {"providers": mock_providers(mock.url), "admin_token": ADMIN,
            "governance": {"teams": [{"id": "t1", "name": "T1"}, {"id": "t2", "name": "T2"}],
                           "virtual_keys": keys, "limits": limits}}


def openai_sdk(gateway: RunningGateway, key: str) -> openai.AsyncOpenAI:
    return openai_client(gateway.v1, key)


@pytest.fixture
def ruled(gateway, mock) -> RunningGateway:
    return gateway(rules_config(mock))


async def test_a_team_model_rule_denies_that_model_for_the_team_only(ruled) -> None:
    await openai_sdk(ruled, KEY_T1).chat.completions.create(model=GPT, messages=HI)
    await openai_sdk(ruled, KEY_T1_OTHER).chat.completions.create(model=GPT, messages=HI)  # shared by the team
    with pytest.raises(openai.RateLimitError) as refused:
        await openai_sdk(ruled, KEY_T1).chat.completions.create(model="openai/GPT-4O-MINI", messages=HI)
    body = refused.value.body
    assert body["code"] == "request_limited"
    assert body["scope"] == {"level": "limit", "id": "t1-gpt", "name": "t1-gpt"}
    assert "Limit rule 't1-gpt'" in body["message"] and refused.value.response.headers["retry-after"]
    # Another model of the same team, and the same model for another team, pass.
    claude = anthropic_client(ruled.url, KEY_T1)
    assert (await claude.messages.create(model=CLAUDE, max_tokens=20, messages=HI)).content
    assert (await openai_sdk(ruled, KEY_T2).chat.completions.create(model=GPT, messages=HI, user="u")).choices


async def test_each_end_user_of_a_team_gets_a_counter_and_one_is_required(ruled) -> None:
    client = openai_sdk(ruled, KEY_T2)
    await client.chat.completions.create(model=GPT, messages=HI, user="alice")
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=GPT, messages=HI, extra_headers={"x-tollway-user": "alice"})
    assert refused.value.body["scope"]["id"] == "t2-users:alice"
    assert (await client.chat.completions.create(model=GPT, messages=HI, user="bob")).choices
    with pytest.raises(openai.BadRequestError) as missing:
        await client.chat.completions.create(model=GPT, messages=HI)
    assert missing.value.body["code"] == "limit_value_missing" and "per end_user" in missing.value.body["message"]
    claude = anthropic_client(ruled.url, KEY_T2)
    with pytest.raises(anthropic.RateLimitError):  # alice again, named the Anthropic way
        await claude.messages.create(model=CLAUDE, max_tokens=20, messages=HI, metadata={"user_id": "alice"})


async def admin_api(gateway: RunningGateway, method: str, path: str, **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session, session.request(
            method, gateway.url + path, headers={"Authorization": f"Bearer {ADMIN}"}, **kwargs) as response:
        return response.status, await response.json()


async def test_key_info_lists_the_rules_that_bind_the_key(ruled) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            ruled.v1 + "/tollway/key", headers={"Authorization": f"Bearer {KEY_T1}"}) as response:
        info = await response.json()
    assert response.status == 200
    # Its team's rule, and its own value of the per-key template; not t2's rule.
    assert sorted((row["id"], row["kind"]) for row in info["limits"] if row["level"] == "limit") == [
        ("t1-gpt", "requests"), ("t1-keys:t1-app", "budget")]


async def test_usage_reads_a_rule_and_a_templated_rules_values(ruled) -> None:
    client = openai_sdk(ruled, KEY_T2)
    for user in ("alice", "bob"):
        await client.chat.completions.create(model=GPT, messages=HI, user=user)
    await openai_sdk(ruled, KEY_T1).chat.completions.create(model=GPT, messages=HI)
    status, usage = await admin_api(ruled, "GET", "/api/governance/usage", params={"level": "limit"})
    assert status == 200 and [(row["id"], row["used"]) for row in usage["usage"]] == [("t1-gpt", 1)]
    status, alice = await admin_api(ruled, "GET", "/api/governance/usage", params={"level": "limit", "id": "t2-users:alice"})
    assert status == 200 and [(row["kind"], row["used"], row["limit"]) for row in alice["usage"]] == [("requests", 1, 1)]
    await asyncio.to_thread(ruled.call, ruled.runtime.flush_usage(), 60)  # a busy machine: a generous bound
    status, top = await admin_api(ruled, "GET", "/api/governance/limits/t2-users/values")
    assert status == 200, top
    assert sorted(value["value"] for value in top["values"]) == ["alice", "bob"]
    assert all(value["usage"][0]["used"] == 1 for value in top["values"])
    status, body = await admin_api(ruled, "GET", "/api/governance/limits/t1-gpt/values")
    assert status == 400 and "not a template" in body["error"]["message"]


async def test_a_file_rule_is_read_only_through_the_api(ruled) -> None:
    status, body = await admin_api(ruled, "PATCH", "/api/governance/limits/t1-gpt", json={"per": ["end_user"]})
    assert status == 409 and "config" in body["error"]["message"]
    status, body = await admin_api(ruled, "GET", "/api/governance/limits/t1-gpt")
    assert status == 200 and body["limit_rule"]["managed_by"] == "config"


async def test_explain_names_the_rule_that_would_deny(ruled) -> None:
    for _ in range(2):
        await openai_sdk(ruled, KEY_T1).chat.completions.create(model=GPT, messages=HI)
    ask = {"virtual_key_id": "t1-app", "model": "openai/GPT-4o-mini", "prompt_tokens": 5}
    status, explained = await admin_api(ruled, "POST", "/api/governance/explain", json=ask)
    assert status == 200 and not explained["allowed"], explained
    assert explained["scope"] == {"level": "limit", "id": "t1-gpt", "name": "t1-gpt"}
    assert {(row["level"], row["id"]) for row in explained["limits"]} >= {("limit", "t1-gpt"), ("limit", "t1-keys:t1-app")}
