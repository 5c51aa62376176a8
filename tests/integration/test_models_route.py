"""`GET /v1/models` and `/v1/models/{id}` follow authentication and a key's allowed models;
routes the gateway does not serve answer 404/405 naming what it does serve, in the client's
error shape."""

from __future__ import annotations

import aiohttp
import anthropic
import openai
import pytest

from tests.integration.test_governance import config, key
from tests.support.gateway import RunningGateway
from tests.support.sdk_clients import anthropic_client, openai_client

KEY_A = "tw-models-a-0123456789abcdefghijklmn"  # openai/gpt-4o-mini only
KEY_B = "tw-models-b-0123456789abcdefghijklmn"  # blocked
KEY_C = "tw-models-c-0123456789abcdefghijklmn"  # anything


@pytest.fixture
def running(gateway, mock) -> RunningGateway:
    return gateway(config(mock, enforce_virtual_keys=True, model_aliases={"fast": "openai/gpt-4o-mini",
                                                                          "smart": "anthropic/claude-3-5-haiku-latest"},
                          keys=[key(KEY_A, id="vk-a", allowed_models=["gpt-4o-mini"], provider_configs=[{"provider": "openai"}]),
                                key(KEY_B, id="vk-b", is_active=False), key(KEY_C, id="vk-c")]))


def oai(running: RunningGateway, value: str) -> openai.AsyncOpenAI:
    return openai_client(running.v1, value)


def ant(running: RunningGateway, value: str) -> anthropic.AsyncAnthropic:
    return anthropic_client(running.url, value)


async def test_listing_models_needs_a_valid_key_when_keys_are_enforced(running) -> None:
    with pytest.raises(openai.AuthenticationError) as missing:
        await oai(running, "sk-placeholder").models.list()
    assert missing.value.body["code"] == "virtual_key_required"
    with pytest.raises(openai.AuthenticationError) as unknown:
        await oai(running, "tw-nobody-0123456789abcdefghijklmn").models.list()
    assert unknown.value.body["code"] == "virtual_key_not_found"
    with pytest.raises(openai.PermissionDeniedError) as blocked:
        await oai(running, KEY_B).models.retrieve("openai/gpt-4o-mini")
    assert blocked.value.body["code"] == "virtual_key_blocked"
    with pytest.raises(anthropic.AuthenticationError) as anthropic_missing:
        await ant(running, "sk-placeholder").models.list()
    assert anthropic_missing.value.body["type"] == "error"  # Anthropic's shape for Anthropic's SDK


async def test_a_key_sees_only_the_models_it_may_use(running) -> None:
    restricted = {m.id async for m in oai(running, KEY_A).models.list()}
    everything = {m.id async for m in oai(running, KEY_C).models.list()}
    assert restricted == {"openai/gpt-4o-mini", "fast"}  # "fast" is an alias of it; "smart" is not
    assert {"openai/gpt-4o-mini", "fast", "smart", "anthropic/claude-3-5-haiku-latest"} <= everything
    assert (await oai(running, KEY_A).models.retrieve("openai/gpt-4o-mini")).id == "openai/gpt-4o-mini"
    # A model the key may not use looks exactly like one that does not exist.
    for hidden in ("smart", "anthropic/claude-3-5-haiku-latest", "openai/no-such-model"):
        with pytest.raises(openai.NotFoundError) as denied:
            await oai(running, KEY_A).models.retrieve(hidden)
        assert denied.value.body["code"] == "model_not_found"
        assert "may not use it" in denied.value.body["message"]


async def test_anthropic_sdk_lists_and_retrieves_in_anthropics_shape(running) -> None:
    page = await ant(running, KEY_A).models.list()
    assert {m.id for m in page.data} == {"openai/gpt-4o-mini", "fast"}
    assert page.data[0].type == "model"
    assert (await ant(running, KEY_C).models.retrieve("smart")).id == "smart"
    with pytest.raises(anthropic.NotFoundError):
        await ant(running, KEY_A).models.retrieve("smart")


async def test_unknown_routes_say_what_the_gateway_serves_in_the_clients_shape(running) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(running.v1 + "/assistants", json={}) as response:
            openai_shaped = await response.json()
            assert response.status == 404
        async with session.post(running.v1 + "/assistants", json={}, headers={"anthropic-version": "2023-06-01"}) as response:
            anthropic_shaped = await response.json()
            assert response.status == 404
        async with session.get(running.v1 + "/chat/completions") as response:
            assert response.status == 405
            assert response.headers["allow"] == "POST"
    message = openai_shaped["error"]["message"]
    assert "POST /v1/assistants" in message
    assert "POST /v1/chat/completions" in message and "POST /v1/messages" in message and "GET /v1/models" in message
    assert anthropic_shaped["type"] == "error" and anthropic_shaped["error"]["message"] == message


async def test_open_gateway_lists_every_model_without_a_key(gateway, mock) -> None:
    running = gateway(config(mock))
    models = {m.id async for m in oai(running, "sk-placeholder").models.list()}
    assert "openai/gpt-4o-mini" in models
