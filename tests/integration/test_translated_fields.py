"""Request fields across APIs, through the real gateway with the official SDKs against the
mock provider: faithful translations reach the provider and come back in the client's
shape, refused fields are a 400 the SDK raises as BadRequestError naming the field (and
nothing reaches the provider), and a translated answer names the same model streamed or
not."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pydantic
import pytest

from tests.integration.conftest import mock_control
from tests.integration.test_governance import KEY_A, config, key, sdk
from tests.integration.test_proxy_anthropic import anthropic_client, openai_client

CLAUDE = "anthropic/claude-3-5-haiku-latest"
GPT = "openai/gpt-4o-mini"
HI = [{"role": "user", "content": "Hi"}]
FORECAST = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"], "additionalProperties": False}
FORECAST_FORMAT = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": FORECAST, "strict": True}}
EXPECTED = {"city": "Paris", "days": 1}  # the mock fills a schema deterministically


async def upstream_requests(mock) -> list[dict[str, Any]]:
    return await mock_control(mock, "GET", "/_mock/requests")


# ---- OpenAI client, Anthropic model ------------------------------------------------------

async def test_json_schema_answer_is_json_content_from_an_anthropic_model(proxied, mock) -> None:
    reply = await openai_client(proxied).chat.completions.create(
        model=CLAUDE, max_tokens=50, messages=HI, response_format=FORECAST_FORMAT)
    choice = reply.choices[0]
    assert orjson.loads(choice.message.content or "") == EXPECTED
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    seen = (await upstream_requests(mock))[-1]["body"]
    assert seen["tool_choice"]["type"] == "tool" and seen["tools"][0]["input_schema"] == FORECAST


async def test_json_schema_answer_streams_as_json_content(proxied) -> None:
    stream = await openai_client(proxied).chat.completions.create(
        model=CLAUDE, max_tokens=50, messages=HI, response_format=FORECAST_FORMAT, stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert orjson.loads(text) == EXPECTED
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


class Forecast(pydantic.BaseModel):
    city: str
    days: int


async def test_json_schema_parses_with_the_sdks_structured_output_helper(proxied) -> None:
    completion = await openai_client(proxied).chat.completions.parse(
        model=CLAUDE, max_tokens=50, messages=HI, response_format=Forecast)
    assert completion.choices[0].message.parsed == Forecast(city="Paris", days=1)


async def test_json_object_answer_is_a_json_object(proxied) -> None:
    reply = await openai_client(proxied).chat.completions.create(
        model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "Reply in JSON"}],
        response_format={"type": "json_object"})
    assert isinstance(orjson.loads(reply.choices[0].message.content or ""), dict)


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_effort_thinks_with_a_budget_below_max_tokens(proxied, mock, stream: bool) -> None:
    """The mock refuses a budget at or above max_tokens, as Anthropic does."""
    client = openai_client(proxied)
    kwargs: dict[str, Any] = {"model": CLAUDE, "max_completion_tokens": 5, "messages": HI, "reasoning_effort": "low"}
    if stream:
        chunks = [c async for c in await client.chat.completions.create(**kwargs, stream=True)]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = (await client.chat.completions.create(**kwargs)).choices[0].message.content or ""
    assert text.startswith("tok0 tok1") and "think" not in text  # the answer alone: reasoning stays hidden
    seen = (await upstream_requests(mock))[-1]["body"]
    assert seen["thinking"] == {"type": "enabled", "budget_tokens": 2048} and seen["max_tokens"] == 2048 + 5


@pytest.mark.parametrize(("fields", "field"), [
    ({"logprobs": True}, "logprobs"),
    ({"seed": 7}, "seed"),
    ({"n": 2}, "n"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"temperature": 1.5}, "temperature"),
    ({"reasoning_effort": "low", "temperature": 0.2}, "temperature"),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
])
async def test_fields_an_anthropic_model_cannot_honour_are_refused_by_name(proxied, mock, fields: dict[str, Any],
                                                                           field: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client(proxied).chat.completions.create(model=CLAUDE, max_tokens=5, messages=HI, **fields)
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == field
    assert f"'{field}'" in error["message"] or f"{field}=" in error["message"] or field in error["message"]
    assert "Anthropic" in error["message"] and "provider 'anthropic'" in error["message"]
    assert await upstream_requests(mock) == []  # refused before anything was sent


async def test_reasoning_effort_on_a_tool_loop_is_refused_with_a_reason_not_an_upstream_error(proxied, mock) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": FORECAST}}]
    client = openai_client(proxied)
    first = await client.chat.completions.create(
        model=CLAUDE, max_tokens=50, tools=tools, messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]
    loop = [{"role": "user", "content": "Weather in Paris?"}, first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=CLAUDE, max_tokens=50, tools=tools, messages=loop,
                                             reasoning_effort="low")
    assert caught.value.body["param"] == "reasoning_effort" and "thinking blocks" in caught.value.body["message"]
    assert len(await upstream_requests(mock)) == 1  # only the first turn reached the provider


async def test_the_thinking_budget_is_reserved_before_the_call(gateway, mock) -> None:
    """reasoning_effort lets Claude spend the budget beyond the client's limit, so the
    reservation holds it: a token limit that cannot hold it refuses up front."""
    running = gateway(config(mock, keys=[key(KEY_A, rate_limit={"token_max_limit": 2000,
                                                                 "token_reset_duration": "1h"})]))
    client = sdk(running, KEY_A)
    await client.chat.completions.create(model=CLAUDE, messages=HI, max_completion_tokens=5)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=CLAUDE, messages=HI, max_completion_tokens=5, reasoning_effort="low")
    assert caught.value.body["type"] == "token_limited"
    assert len(await upstream_requests(mock)) == 1


# ---- Anthropic client, OpenAI model ------------------------------------------------------

async def test_thinking_reaches_an_openai_model_as_reasoning_effort(proxied, mock) -> None:
    message = await anthropic_client(proxied).messages.create(
        model=GPT, max_tokens=300, messages=HI, thinking={"type": "enabled", "budget_tokens": 16384})
    assert message.content[0].type == "text"
    seen = (await upstream_requests(mock))[-1]["body"]
    assert seen["reasoning_effort"] == "high" and seen["max_completion_tokens"] == 300 and "max_tokens" not in seen


@pytest.mark.parametrize("stream", [False, True])
async def test_output_format_answer_comes_back_as_json_text(proxied, mock, stream: bool) -> None:
    client = anthropic_client(proxied)
    kwargs: dict[str, Any] = {"model": GPT, "max_tokens": 300, "messages": HI,
                              "output_config": {"format": {"type": "json_schema", "schema": FORECAST}}}
    if stream:
        async with client.messages.stream(**kwargs) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**kwargs)
    assert orjson.loads(message.content[0].text) == EXPECTED  # type: ignore[union-attr]
    seen = (await upstream_requests(mock))[-1]["body"]
    assert seen["response_format"]["json_schema"]["schema"] == FORECAST


async def test_metadata_user_and_stop_sequences_reach_an_openai_model(proxied, mock) -> None:
    await anthropic_client(proxied).messages.create(model=GPT, max_tokens=5, messages=HI, metadata={"user_id": "u-9"},
                                                    stop_sequences=["END"])
    seen = (await upstream_requests(mock))[-1]["body"]
    assert seen["user"] == "u-9" and seen["stop"] == ["END"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"extra_body": {"top_k": 5}}, "top_k"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
    ({"inference_geo": "eu"}, "inference_geo"),
    ({"extra_body": {"mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "m"}]}}, "mcp_servers"),
])
async def test_fields_an_openai_model_cannot_honour_are_refused_by_name(proxied, mock, fields: dict[str, Any],
                                                                        field: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_client(proxied).messages.create(model=GPT, max_tokens=5, messages=HI, **fields)
    assert field in caught.value.message and "OpenAI" in caught.value.message
    assert "provider 'openai'" in caught.value.message
    assert await upstream_requests(mock) == []


# ---- the model a translated answer names, streamed or not --------------------------------

async def test_openai_client_sees_the_providers_model_streamed_or_not(proxied) -> None:
    client = openai_client(proxied)
    whole = await client.chat.completions.create(model=CLAUDE, max_tokens=3, messages=HI)
    chunks = [c async for c in await client.chat.completions.create(
        model=CLAUDE, max_tokens=3, messages=HI, stream=True, stream_options={"include_usage": True})]
    assert whole.model == "claude-3-5-haiku-latest"
    assert {chunk.model for chunk in chunks} == {whole.model}


@pytest.mark.parametrize(("model", "answering"), [
    (GPT, "gpt-4o-mini"),
    ("fast", "gpt-4o-mini"),  # an alias of openai/gpt-4o-mini
    ("azure/gpt-4o-mini", "mini-deploy"),  # Azure names the deployment, and streams a model-less first chunk
])
async def test_anthropic_client_sees_the_providers_model_streamed_or_not(proxied, model: str, answering: str) -> None:
    client = anthropic_client(proxied)
    whole = await client.messages.create(model=model, max_tokens=3, messages=HI)
    async with client.messages.stream(model=model, max_tokens=3, messages=HI) as stream:
        streamed = await stream.get_final_message()
    assert whole.model == answering and streamed.model == whole.model
