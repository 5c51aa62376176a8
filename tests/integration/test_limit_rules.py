"""Limit rules through the real server, with the official SDKs as clients: a rule binding
team × model refuses with scope level ``limit`` while other models and teams pass, in any
spelling of the model; a per-end-user template gives each end user of a team a counter of
their own and (``when_missing: deny``) refuses a request naming none."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.support.gateway import RunningGateway, mock_providers

KEY_T1 = "tw-rules-t1-0123456789abcdefghijklmn"
KEY_T1_OTHER = "tw-rules-t1b-0123456789abcdefghijklm"
KEY_T2 = "tw-rules-t2-0123456789abcdefghijklmn"
GPT = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-3-5-haiku-latest"
HI = [{"role": "user", "content": "Hi"}]
HOURLY = {"request_reset_duration": "1h"}


def rules_config(mock) -> dict:
    keys = [{"id": "t1-app", "name": "t1 app", "value": KEY_T1, "team_id": "t1"},
            {"id": "t1-other", "name": "t1 other", "value": KEY_T1_OTHER, "team_id": "t1"},
            {"id": "t2-app", "name": "t2 app", "value": KEY_T2, "team_id": "t2"}]
    limits = [
        {"name": "t1-gpt", "match": {"team": "t1", "model": "GPT-4o-Mini"},
         "rate_limit": {"request_max_limit": 2, **HOURLY}},
        {"name": "t2-users", "match": {"team": "t2"}, "per": "end_user", "when_missing": "deny",
         "rate_limit": {"request_max_limit": 1, **HOURLY}},
    ]
    return {"providers": mock_providers(mock.url),
            "governance": {"teams": [{"id": "t1", "name": "T1"}, {"id": "t2", "name": "T2"}],
                           "virtual_keys": keys, "limits": limits}}


def openai_sdk(gateway: RunningGateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0)


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
    claude = anthropic.AsyncAnthropic(base_url=ruled.url, api_key=KEY_T1, max_retries=0)
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
    claude = anthropic.AsyncAnthropic(base_url=ruled.url, api_key=KEY_T2, max_retries=0)
    with pytest.raises(anthropic.RateLimitError):  # alice again, named the Anthropic way
        await claude.messages.create(model=CLAUDE, max_tokens=20, messages=HI, metadata={"user_id": "alice"})
