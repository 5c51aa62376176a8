"""Request tags through the real server, with the official SDKs as clients: the header and
``metadata.tags`` (taken out of the body before it goes upstream), a tag budget shared by
every key, forced and allowed tags, spellings that must not dodge a tag's limits, bad tags
(400 naming the header or field), and the request log, spend report and key info by tag."""

from __future__ import annotations

import aiohttp
import anthropic
import openai
import pytest

from tests.integration.conftest import mock_control
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import anthropic_client, openai_client

ADMIN = "twa-tags-admin-0123456789abcdef"
KEY_A = "tw-tags-a-0123456789abcdefghijklmnop"
KEY_B = "tw-tags-b-0123456789abcdefghijklmnop"
KEY_LOCKED = "tw-tags-l-0123456789abcdefghijklmnop"
GPT = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-3-5-haiku-latest"
HI = [{"role": "user", "content": "Hi"}]
# Requests of this test cost about 0.000023 USD each (mock prices below): a budget of
# 0.00005 admits two requests and refuses the third.
PRICING = {GPT: {"input": 1, "output": 2}, CLAUDE: {"input": 1, "output": 2}}


def tagged_config(mock, **governance) -> dict:
    keys = [
        {"id": "a", "name": "app a", "value": KEY_A},
        {"id": "b", "name": "app b", "value": KEY_B, "forced_tags": ["Billing"]},
        {"id": "locked", "name": "locked", "value": KEY_LOCKED, "allowed_tags": ["support", "search"]},
    ]
    tags = [{"name": "Support", "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1h"}},
            {"name": "billing", "budget": {"max_limit": 1, "reset_duration": "1d"}}]
    return {"providers": mock_providers(mock.url), "pricing": PRICING, "admin_token": ADMIN,
            "governance": {"virtual_keys": keys, "tags": tags, **governance}}


def openai_sdk(gateway: RunningGateway, key: str, tags: str | None = None) -> openai.AsyncOpenAI:
    headers = {"x-tollway-tags": tags} if tags is not None else None
    return openai_client(gateway.v1, key, default_headers=headers)


def anthropic_sdk(gateway: RunningGateway, key: str) -> anthropic.AsyncAnthropic:
    return anthropic_client(gateway.url, key)


async def api(gateway: RunningGateway, method: str, path: str, **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.request(
            method, gateway.url + path, headers={"Authorization": f"Bearer {ADMIN}"}, **kwargs) as response:
        return response.status, await response.json()


@pytest.fixture
def tagged(gateway, mock) -> RunningGateway:
    return gateway(tagged_config(mock))


async def test_a_tag_limit_binds_header_and_metadata_tags_in_every_spelling(tagged, mock) -> None:
    client = openai_sdk(tagged, KEY_A)
    await openai_sdk(tagged, KEY_A, "support").chat.completions.create(model=GPT, messages=HI)
    await openai_sdk(tagged, KEY_A, "SUPPORT , search").chat.completions.create(model=GPT, messages=HI)
    # OpenAI's metadata holds strings: the SDK sends "support" as metadata {"tags": "Support"}.
    await client.chat.completions.create(model=GPT, messages=HI, metadata={"tags": "Support"}, store=False)
    with pytest.raises(openai.RateLimitError) as refused:
        await openai_sdk(tagged, KEY_B, "sUpPoRt").chat.completions.create(model=GPT, messages=HI)
    error = refused.value.body
    assert error["code"] == "request_limited" and error["scope"] == {"level": "tag", "id": "support", "name": "support"}
    assert refused.value.response.headers["retry-after"]
    # Untagged requests (and other tags) are not bound by it.
    assert (await client.chat.completions.create(model=GPT, messages=HI)).choices
    served = await mock_control(mock, "GET", "/_mock/requests?path=chat")
    assert all("tags" not in (r["body"].get("metadata") or {}) for r in served)  # never forwarded upstream


async def test_anthropic_metadata_tags_count_and_are_not_forwarded(tagged, mock) -> None:
    client = anthropic_sdk(tagged, KEY_A)
    for _ in range(3):
        await client.messages.create(model=CLAUDE, max_tokens=20, messages=HI,
                                     extra_body={"metadata": {"tags": ["support"], "user_id": "u-1"}})
    with pytest.raises(anthropic.RateLimitError) as refused:
        await client.messages.create(model=CLAUDE, max_tokens=20, messages=HI,
                                     extra_headers={"x-tollway-tags": "support"})
    assert refused.value.body["error"]["scope"]["level"] == "tag"
    served = await mock_control(mock, "GET", "/_mock/requests?path=messages")
    assert [r["body"]["metadata"] for r in served] == [{"user_id": "u-1"}] * 3


async def test_a_forced_tag_is_charged_when_the_client_omits_it(tagged) -> None:
    client = openai_sdk(tagged, KEY_B)
    await client.chat.completions.create(model=GPT, messages=HI)
    status, usage = await api(tagged, "GET", "/api/governance/usage", params={"level": "tag", "id": "billing"})
    assert status == 200
    [budget] = usage["usage"]
    assert budget["kind"] == "budget" and budget["used"] > 0
    status, logs = await api(tagged, "GET", "/api/logs", params={"tag": "BILLING"})
    assert status == 200 and logs["count"] == 1 and logs["logs"][0]["tags"] == ["billing"]


async def test_allowed_tags_refuse_another_tag_with_403_naming_it(tagged) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await openai_sdk(tagged, KEY_LOCKED, "support,finance").chat.completions.create(model=GPT, messages=HI)
    assert refused.value.body["code"] == "tag_not_allowed" and "'finance'" in refused.value.body["message"]
    with pytest.raises(anthropic.PermissionDeniedError):
        await anthropic_sdk(tagged, KEY_LOCKED).messages.create(
            model=CLAUDE, max_tokens=20, messages=HI, extra_headers={"x-tollway-tags": "Finance"})
    assert (await openai_sdk(tagged, KEY_LOCKED, "Search").chat.completions.create(model=GPT, messages=HI)).choices


@pytest.mark.parametrize(("headers", "body_extra", "field"), [
    ({"x-tollway-tags": "two words"}, {}, "x-tollway-tags"),
    ({"x-tollway-tags": "a,,b"}, {}, "x-tollway-tags"),
    ({"x-tollway-tags": ",".join(f"t{i}" for i in range(10_000))}, {}, "x-tollway-tags"),
    ({}, {"metadata": {"tags": ["ok", "fіnance"]}}, "metadata.tags"),  # a Cyrillic look-alike
    ({}, {"metadata": {"tags": [1, 2]}}, "metadata.tags"),
    ({}, {"metadata": {"tags": ["x"] * 1000}}, "metadata.tags"),
], ids=["space", "empty-item", "ten-thousand", "look-alike", "not-strings", "huge-list"])
async def test_a_bad_tag_is_a_400_naming_where_it_came_from(tagged, mock, headers, body_extra, field) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            tagged.v1 + "/chat/completions", json={"model": GPT, "messages": HI, **body_extra},
            headers={"Authorization": f"Bearer {KEY_A}", **headers}) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == field and field in error["message"]
    assert await mock_control(mock, "GET", "/_mock/requests") == []  # nothing forwarded, nothing charged


async def test_spend_by_tag_counts_a_request_in_each_of_its_tags(tagged) -> None:
    await openai_sdk(tagged, KEY_A, "support,search").chat.completions.create(model=GPT, messages=HI)
    await openai_sdk(tagged, KEY_A, "search").chat.completions.create(model=GPT, messages=HI)
    await openai_sdk(tagged, KEY_A).chat.completions.create(model=GPT, messages=HI)
    status, report = await api(tagged, "GET", "/api/usage/spend", params={"group_by": "tag"})
    assert status == 200
    requests = {row["group"]: row["requests"] for row in report["series"]}
    assert requests == {"search": 2, "support": 1, None: 1}  # None: untagged
    assert report["total"]["requests"] == 3
    status, only = await api(tagged, "GET", "/api/usage/spend", params={"tag": "Search"})
    assert only["total"]["requests"] == 2


async def test_tag_limits_through_the_management_api_apply_without_a_restart(tagged) -> None:
    status, created = await api(tagged, "POST", "/api/governance/tags",
                                json={"name": " Search ", "rate_limit": {"request_max_limit": 1,
                                                                           "request_reset_duration": "1h"}})
    assert status == 201 and created["tag"]["name"] == "search"
    client = openai_sdk(tagged, KEY_A, "search")
    await client.chat.completions.create(model=GPT, messages=HI)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=GPT, messages=HI)
    status, _ = await api(tagged, "PUT", "/api/governance/tags/search",
                          json={"rate_limit": {"request_max_limit": 5}})
    assert status == 200
    assert (await client.chat.completions.create(model=GPT, messages=HI)).choices
    status, body = await api(tagged, "PUT", "/api/governance/tags/support", json={"rate_limit": None})
    assert status == 409 and "config" in body["error"]["message"]  # the config file's tag


async def test_key_info_shows_the_tag_limits_that_bind_the_key(tagged) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            tagged.v1 + "/tollway/key", headers={"Authorization": f"Bearer {KEY_B}"}) as response:
        info = await response.json()
    assert response.status == 200
    assert [(row["level"], row["id"]) for row in info["limits"] if row["level"] == "tag"] == [("tag", "billing")]
