"""Gemini through the gateway: the OpenAI and Anthropic SDKs on a `type: gemini` provider
(translated through chat), Google's own SDK (`google-genai`) on the gateway's
`/v1beta/models/{model}:generateContent` route, governed like the rest; the provider is the
project's mock speaking Gemini's JSON and SSE."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.integration.conftest import mock_control
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import anthropic_client, openai_client
from tollway.governance.engine import hash_key
from tollway.governance.model import budget_counter
from tollway.testing.mock_gemini import THOUGHT_TOKENS

genai = pytest.importorskip("google.genai", reason="google-genai is a test extra")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types as genai_types  # noqa: E402

KEY = "tw-gemini-0123456789abcdefghijklmnop"
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# 1 USD per million input tokens, 2 per million output: every request's cost is known.
PRICING = {"gemini/gemini-2.0-flash": {"input": 1, "output": 2, "cached_input": 0.25}}


def config(mock, **extra: Any) -> dict[str, Any]:
    providers = mock_providers(mock.url, gemini={"type": "gemini", "base_url": mock.url,
                                                 "keys": [{"value": "AIza-test-gemini"}]})
    governance = extra.pop("governance", {})
    for name, overrides in extra.pop("provider_limits", {}).items():
        providers[name].update(overrides)
    return {"providers": providers, "pricing": PRICING, "governance": governance, **extra}


def vk(**fields: Any) -> dict[str, Any]:
    return {"id": "gem", "name": "gemini key", "value": KEY, **fields}


def openai_sdk(gateway: RunningGateway, key: str = "sk-placeholder") -> openai.AsyncOpenAI:
    return openai_client(gateway.v1, key)


def google_sdk(gateway: RunningGateway, key: str = KEY) -> Any:
    return genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=gateway.url,
                                                                           retry_options=None))


async def last_upstream(mock) -> dict[str, Any]:
    return (await mock_control(mock, "GET", "/_mock/requests"))[-1]


# --- OpenAI chat clients on a Gemini provider -------------------------------------------------

async def test_openai_chat_reaches_gemini_translated_both_ways(gateway, mock) -> None:
    running = gateway(config(mock))
    reply = await openai_sdk(running).chat.completions.create(
        model="gemini/gemini-2.0-flash", max_tokens=5,
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5
    seen = await last_upstream(mock)
    assert seen["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert seen["headers"]["x-goog-api-key"] == "AIza-test-gemini" and "authorization" not in seen["headers"]
    assert seen["body"] == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                            "systemInstruction": {"parts": [{"text": "Be brief"}]},
                            "generationConfig": {"maxOutputTokens": 5}}


async def test_openai_stream_from_gemini_carries_usage_and_sse(gateway, mock) -> None:
    running = gateway(config(mock))
    stream = await openai_sdk(running).chat.completions.create(
        model="gemini/gemini-2.0-flash", max_tokens=6, stream=True, stream_options={"include_usage": True},
        messages=HELLO)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 tok4 tok5"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [6]
    seen = await last_upstream(mock)
    assert seen["path"] == "/v1beta/models/gemini-2.0-flash:streamGenerateContent" and seen["query"] == {"alt": "sse"}


async def test_function_tools_round_trip_through_gemini(gateway, mock) -> None:
    running = gateway(config(mock))
    client = openai_sdk(running)
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = await client.chat.completions.create(model="gemini/gemini-2.0-flash", messages=[question],
                                                 tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"Paris"}'
    sent = (await last_upstream(mock))["body"]
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "The weather in a city",
        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"]}]}]
    second = await client.chat.completions.create(model="gemini/gemini-2.0-flash", tools=[WEATHER_TOOL], messages=[
        question, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}])
    assert second.choices[0].message.content
    contents = (await last_upstream(mock))["body"]["contents"]
    assert contents[1] == {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}
    assert contents[2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                           "response": {"temperature": 21}}}]}


async def test_a_streamed_tool_call_arrives_whole(gateway, mock) -> None:
    running = gateway(config(mock))
    stream = await openai_sdk(running).chat.completions.create(
        model="gemini/gemini-2.0-flash", stream=True, tools=[WEATHER_TOOL], tool_choice="required", messages=HELLO)
    calls = [call for chunk in [c async for c in stream] if chunk.choices
             for call in chunk.choices[0].delta.tool_calls or ()]
    assert [(c.index, c.function.name, c.function.arguments) for c in calls] == [(0, "get_weather", '{"city":"Paris"}')]
    assert (await last_upstream(mock))["body"]["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


async def test_a_field_gemini_cannot_take_is_a_400_naming_it(gateway, mock) -> None:
    running = gateway(config(mock))
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk(running).chat.completions.create(model="gemini/gemini-2.0-flash", messages=HELLO,
                                                          logit_bias={"1": 5})
    assert caught.value.body["param"] == "logit_bias" and "Gemini" in caught.value.body["message"]
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


async def test_gemini_errors_reach_openai_clients_in_openai_shape(gateway, mock) -> None:
    running = gateway(config(mock))
    await mock_control(mock, "POST", "/_mock/faults", {"path": "/v1beta/models/", "status": 429, "count": 1})
    with pytest.raises(openai.RateLimitError) as caught:
        await openai_sdk(running).chat.completions.create(model="gemini/gemini-2.0-flash", messages=HELLO)
    assert caught.value.body["code"] == "RESOURCE_EXHAUSTED" and "mock fault" in caught.value.body["message"]


async def test_embeddings_reach_gemini_embed_content(gateway, mock) -> None:
    running = gateway(config(mock))
    result = await openai_sdk(running).embeddings.create(model="gemini/text-embedding-004", input="hello",
                                                         dimensions=4)
    assert len(result.data[0].embedding) == 4
    seen = await last_upstream(mock)
    assert seen["path"] == "/v1beta/models/text-embedding-004:embedContent"
    assert seen["body"] == {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}


# --- Anthropic and Responses clients on a Gemini provider ---------------------------------------

async def test_anthropic_count_tokens_is_counted_by_gemini(gateway, mock) -> None:
    running = gateway(config(mock))
    client = anthropic_client(running.url, "placeholder")
    counted = await client.messages.count_tokens(model="gemini/gemini-2.0-flash", system="Be brief",
                                                 messages=[{"role": "user", "content": "Hello there"}])
    assert counted.input_tokens == 3 + 3 + 2 + 3  # the mock's count: "Hello there" and "Be brief", 3 a turn
    seen = await last_upstream(mock)
    assert seen["path"] == "/v1beta/models/gemini-2.0-flash:countTokens"
    assert seen["body"]["generateContentRequest"]["model"] == "models/gemini-2.0-flash"


async def test_the_model_list_names_geminis_models(gateway, mock) -> None:
    running = gateway(config(mock))
    listed = [model.id async for model in openai_sdk(running).models.list()]
    assert "gemini/gemini-2.5-flash" in listed and "gemini/text-embedding-004" in listed


async def test_anthropic_messages_reach_gemini_through_chat(gateway, mock) -> None:
    running = gateway(config(mock))
    client = anthropic_client(running.url, "placeholder")
    message = await client.messages.create(model="gemini/gemini-2.0-flash", max_tokens=4, system="Be brief",
                                           messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].text == "tok0 tok1 tok2 tok3" and message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4
    async with client.messages.stream(model="gemini/gemini-2.0-flash", max_tokens=3,
                                      messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "tok0 tok1 tok2" and final.usage.output_tokens == 3


async def test_responses_api_reaches_gemini_through_chat(gateway, mock) -> None:
    running = gateway(config(mock))
    response = await openai_sdk(running).responses.create(model="gemini/gemini-2.0-flash", input="Hi",
                                                          max_output_tokens=3)
    assert response.output_text == "tok0 tok1 tok2" and response.usage.output_tokens == 3


# --- usage and cost ----------------------------------------------------------------------------

async def test_cached_and_thinking_tokens_are_charged_at_their_rates(gateway, mock) -> None:
    running = gateway(config(mock, governance={"virtual_keys": [
        vk(budget={"max_limit": 10, "reset_duration": "1d"})]}))
    await mock_control(mock, "POST", "/_mock/settings", {"cached_tokens": 2})
    reply = await openai_sdk(running, KEY).chat.completions.create(
        model="gemini/gemini-2.0-flash", max_tokens=4, reasoning_effort="low", messages=HELLO)
    usage = reply.usage
    assert usage.prompt_tokens_details.cached_tokens == 2
    assert usage.completion_tokens_details.reasoning_tokens == THOUGHT_TOKENS
    assert usage.completion_tokens == 4 + THOUGHT_TOKENS  # thoughts are billed as output
    sent = (await last_upstream(mock))["body"]["generationConfig"]
    assert sent["thinkingConfig"] == {"thinkingBudget": 1024}
    limits = running.runtime.snapshot.keys_by_hash[hash_key(KEY)].limits
    used = running.counters()[budget_counter(limits.budget.id)].used
    # nano-dollars: uncached input at 1 USD/M, cached at 0.25, output (answer + thoughts) at 2
    assert used == (usage.prompt_tokens - 2) * 1_000 + 2 * 250 + usage.completion_tokens * 2_000


# --- Google's own route -----------------------------------------------------------------------

async def test_google_sdk_generates_through_the_gateway(gateway, mock) -> None:
    running = gateway(config(mock, governance={"virtual_keys": [vk()]}))
    client = google_sdk(running)
    response = await client.aio.models.generate_content(
        model="gemini/gemini-2.0-flash", contents="Hello",
        config=genai_types.GenerateContentConfig(max_output_tokens=3, system_instruction="Be brief"))
    assert response.text == "tok0 tok1 tok2"
    assert response.usage_metadata.candidates_token_count == 3
    seen = await last_upstream(mock)
    assert seen["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert seen["headers"]["x-goog-api-key"] == "AIza-test-gemini"  # the provider's key, never the virtual key
    assert seen["body"]["generationConfig"]["maxOutputTokens"] == 3 and "model" not in seen["body"]


async def test_google_sdk_streams_through_the_gateway(gateway, mock) -> None:
    running = gateway(config(mock, governance={"virtual_keys": [vk()]}))
    stream = await google_sdk(running).aio.models.generate_content_stream(
        model="gemini/gemini-2.0-flash", contents="Hello",
        config=genai_types.GenerateContentConfig(max_output_tokens=4))
    chunks = [chunk async for chunk in stream]
    assert "".join(c.text or "" for c in chunks) == "tok0 tok1 tok2 tok3"
    assert chunks[-1].usage_metadata.candidates_token_count == 4


async def test_google_route_takes_the_key_from_the_query(gateway, mock) -> None:
    running = gateway(config(mock, enforce_virtual_keys=True, governance={"virtual_keys": [vk()]}))
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    url = running.url + "/v1beta/models/gemini/gemini-2.0-flash:generateContent"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, params={"key": KEY}, json=body) as response:
            assert response.status == 200, await response.text()
        seen = await last_upstream(mock)
        assert seen["query"] == {} and seen["headers"]["x-goog-api-key"] == "AIza-test-gemini"  # never the virtual key
        async with session.post(url, json=body) as response:  # no key: refused in Google's shape
            error = (await response.json())["error"]
            assert response.status == 401 and error["status"] == "UNAUTHENTICATED" and error["code"] == 401


async def test_google_route_denials_are_in_googles_shape(gateway, mock) -> None:
    running = gateway(config(mock, governance={"virtual_keys": [
        vk(rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"})]}))
    client = google_sdk(running)
    await client.aio.models.generate_content(model="gemini/gemini-2.0-flash", contents="Hi")
    with pytest.raises(genai_errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini/gemini-2.0-flash", contents="Hi")
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    assert "request" in caught.value.message
    assert caught.value.details["error"]["details"][0]["metadata"]["scope.level"] == "virtual_key"
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 1


async def test_google_route_reserves_every_candidate_at_its_cap(gateway, mock) -> None:
    # 6 output tokens at most fit: one candidate of 4 does, two of 4 (8) do not.
    running = gateway(config(mock, governance={"virtual_keys": [
        vk(rate_limit={"token_max_limit": 400, "token_reset_duration": "1h"})]}))
    client = google_sdk(running)
    big = genai_types.GenerateContentConfig(max_output_tokens=390, candidate_count=2)
    with pytest.raises(genai_errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini/gemini-2.0-flash", contents="Hi", config=big)
    assert caught.value.code == 429
    one = genai_types.GenerateContentConfig(max_output_tokens=300, candidate_count=1)
    await client.aio.models.generate_content(model="gemini/gemini-2.0-flash", contents="Hi", config=one)


async def test_provider_and_model_limits_govern_gemini(gateway, mock) -> None:
    running = gateway(config(mock, provider_limits={"gemini": {"rate_limit": {
        "request_max_limit": 2, "request_reset_duration": "1h"}}}, governance={"model_configs": [
            {"model_name": "gemini-2.5-flash", "provider": "gemini",
             "rate_limit": {"request_max_limit": 1, "request_reset_duration": "1h"}}]}))
    client = openai_sdk(running)
    await client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=HELLO)
    assert caught.value.body["scope"]["level"] == "model"
    await client.chat.completions.create(model="gemini/gemini-2.0-flash", messages=HELLO)
    with pytest.raises(genai_errors.ClientError) as caught:  # the provider's limit spans its models and routes
        await google_sdk(running, "placeholder").aio.models.generate_content(model="gemini/gemini-2.0-flash",
                                                                             contents="Hi")
    info = caught.value.details["error"]["details"][0]
    assert caught.value.code == 429 and info["reason"] == "request_limited"
    assert info["metadata"]["scope.level"] == "provider" and info["metadata"]["scope.id"] == "gemini"


# --- strict budgets: clamped caps and streams cut off, in each client's shape ---------------------

DOLLAR_A_TOKEN = {"gemini/gemini-2.0-flash": {"input": 1_000_000, "output": 1_000_000}}


def strict(mock, gateway, **budget: Any) -> RunningGateway:
    return gateway({**config(mock, governance={"virtual_keys": [vk(budget={
        "max_limit": 200, "reset_duration": "1d", "enforcement": "strict", **budget})]}), "pricing": DOLLAR_A_TOKEN})


def spent(running: RunningGateway) -> tuple[int, int]:
    budget = running.runtime.snapshot.keys_by_hash[hash_key(KEY)].limits.budget
    state = running.counters().get(budget_counter(budget.id))
    return (state.used if state else 0), budget.max_limit_nano


async def test_a_gemini_stream_that_ignores_its_cap_is_cut_off_at_the_budget(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"completion_tokens": 2000, "ignore_max_tokens": True})
    running = strict(mock, gateway)
    stream = await openai_sdk(running, KEY).chat.completions.create(
        model="gemini/gemini-2.0-flash", messages=HELLO, max_tokens=20, stream=True)
    text, finish = [], None
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    assert finish == "length" and "cut off" in str(caught.value.message)
    assert 20 < len("".join(text)) < 200
    used, limit = spent(running)
    assert len("".join(text)) <= used <= limit


async def test_a_google_stream_is_cut_off_in_googles_shape(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"completion_tokens": 2000, "ignore_max_tokens": True})
    running = strict(mock, gateway)
    url = running.url + "/v1beta/models/gemini/gemini-2.0-flash:streamGenerateContent?alt=sse"
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generationConfig": {"maxOutputTokens": 20}}
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers={"x-goog-api-key": KEY}) as r:
        events = [orjson.loads(line[6:]) for line in (await r.read()).split(b"\n") if line.startswith(b"data: ")]
    assert events[-2]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert events[-1]["error"]["status"] == "RESOURCE_EXHAUSTED" and "cut off" in events[-1]["error"]["message"]
    used, limit = spent(running)
    assert 0 < used <= limit


async def test_strict_clamp_lowers_googles_max_output_tokens(gateway, mock) -> None:
    running = strict(mock, gateway, on_insufficient="clamp")
    client = google_sdk(running)
    await client.aio.models.generate_content(model="gemini/gemini-2.0-flash", contents="Hi",
                                             config=genai_types.GenerateContentConfig(max_output_tokens=5000))
    sent = (await last_upstream(mock))["body"]["generationConfig"]["maxOutputTokens"]
    assert 0 < sent < 200


async def test_google_route_refuses_a_model_of_another_provider_type(gateway, mock) -> None:
    running = gateway(config(mock, governance={"virtual_keys": [vk()]}))
    with pytest.raises(genai_errors.ClientError) as caught:
        await google_sdk(running).aio.models.generate_content(model="openai/gpt-4o-mini", contents="Hi")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert "generate_content" in caught.value.message
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


async def test_google_route_bad_bodies_are_400s_naming_the_field(gateway, mock) -> None:
    running = gateway(config(mock))
    url = running.url + "/v1beta/models/gemini/gemini-2.0-flash:generateContent"
    cases = [({"contents": []}, "contents"), ({}, "contents"),
             ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 0}},
              "generationConfig.candidateCount"),
             ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": -1}},
              "generationConfig.maxOutputTokens")]
    async with aiohttp.ClientSession() as session:
        for body, field in cases:
            async with session.post(url, json=body, headers={"x-goog-api-key": "placeholder"}) as response:
                error = (await response.json())["error"]
                assert response.status == 400 and error["status"] == "INVALID_ARGUMENT", body
                assert field in error["message"], (field, error["message"])
        async with session.post(running.url + "/v1beta/models/gemini/gemini-2.0-flash:embedText", json={}) as response:
            assert response.status == 404
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


# --- faults ------------------------------------------------------------------------------------

async def test_a_gemini_stream_dropped_midway_ends_with_an_error_and_is_charged_what_came(gateway, mock) -> None:
    running = gateway(config(mock, governance={"virtual_keys": [vk(budget={"max_limit": 10, "reset_duration": "1d"})]}))
    await mock_control(mock, "POST", "/_mock/faults", {"path": "/v1beta/models/", "drop": "mid_stream",
                                                       "after_chunks": 3, "count": 1})
    got: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        stream = await openai_sdk(running, KEY).chat.completions.create(
            model="gemini/gemini-2.0-flash", messages=HELLO, max_tokens=50, stream=True)
        async for chunk in stream:
            got.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(got) == "tok0 tok1 tok2" and "stream" in str(caught.value.message)
    limits = running.runtime.snapshot.keys_by_hash[hash_key(KEY)].limits
    used = running.counters()[budget_counter(limits.budget.id)].used
    assert 0 < used < 50 * 2_000  # what the three chunks reported, not the 50 reserved
    assert running.runtime.enforcer.reservations_in_flight == 0


async def test_a_gemini_outage_falls_back_to_another_provider(gateway, mock) -> None:
    running = gateway({**config(mock), "fallbacks": {"gemini/gemini-2.0-flash": ["openai/gpt-4o-mini"]}})
    await mock_control(mock, "POST", "/_mock/faults", {"path": "/v1beta/models/", "status": 503, "count": 1})
    reply = await openai_sdk(running).chat.completions.create(model="gemini/gemini-2.0-flash", messages=HELLO)
    assert reply.choices[0].message.content
    paths = [r["path"] for r in await mock_control(mock, "GET", "/_mock/requests")]
    assert paths == ["/v1beta/models/gemini-2.0-flash:generateContent", "/v1/chat/completions"]
