"""Anthropic's Messages API through the gateway, and translation both ways, with the
official SDKs as clients."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.integration.conftest import mock_control
from tests.support import sdk_clients


def anthropic_client(gateway) -> anthropic.AsyncAnthropic:
    return sdk_clients.anthropic_client(gateway.url, "placeholder")


def openai_client(gateway) -> openai.AsyncOpenAI:
    return sdk_clients.openai_client(gateway.v1, "sk-placeholder")


async def test_messages_to_anthropic_pass_through(proxied, mock) -> None:
    message = await anthropic_client(proxied).messages.create(
        model="anthropic/claude-3-5-haiku-latest", max_tokens=6, messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].text and message.usage.output_tokens == 6
    seen = (await mock_control(mock, "GET", "/_mock/requests"))[-1]
    assert seen["body"]["model"] == "claude-3-5-haiku-latest"
    assert seen["headers"]["x-api-key"] == "sk-ant-test"
    assert seen["headers"]["anthropic-version"]


async def test_messages_stream_to_anthropic(proxied) -> None:
    async with anthropic_client(proxied).messages.stream(
            model="anthropic/claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert len(text.split()) == 5
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0


async def test_openai_chat_to_anthropic_model_is_translated(proxied, mock) -> None:
    reply = await openai_client(proxied).chat.completions.create(
        model="anthropic/claude-3-5-haiku-latest", max_tokens=4,
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 4
    seen = (await mock_control(mock, "GET", "/_mock/requests"))[-1]
    assert seen["path"] == "/v1/messages"
    assert seen["body"]["system"] == "Be brief" or seen["body"]["system"][0]["text"] == "Be brief"


async def test_openai_stream_to_anthropic_model_is_translated(proxied) -> None:
    stream = await openai_client(proxied).chat.completions.create(
        model="anthropic/claude-3-5-haiku-latest", max_tokens=6, stream=True,
        stream_options={"include_usage": True}, messages=[{"role": "user", "content": "Hi"}])
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [6]


async def test_anthropic_client_to_openai_model_is_translated(proxied, mock) -> None:
    message = await anthropic_client(proxied).messages.create(
        model="openai/gpt-4o-mini", max_tokens=3, system="Be brief", messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].type == "text" and message.usage.output_tokens == 3
    assert message.stop_reason == "max_tokens"
    seen = (await mock_control(mock, "GET", "/_mock/requests"))[-1]
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["messages"][0] == {"role": "system", "content": "Be brief"}


async def test_anthropic_stream_to_openai_model_is_translated(proxied) -> None:
    async with anthropic_client(proxied).messages.stream(
            model="openai/gpt-4o-mini", max_tokens=7, messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert len(text.split()) == 7 and final.usage.output_tokens == 7


async def test_tool_calls_translate_to_anthropic_and_back(proxied) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    reply = await openai_client(proxied).chat.completions.create(
        model="anthropic/claude-3-5-haiku-latest", max_tokens=50, tools=tools,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and reply.choices[0].finish_reason == "tool_calls"


async def test_anthropic_errors_keep_anthropic_shape(proxied, mock) -> None:
    await mock_control(mock, "POST", "/_mock/faults", {"status": 429, "count": 1})
    with pytest.raises(anthropic.RateLimitError):
        await anthropic_client(proxied).messages.create(
            model="anthropic/claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError) as caught:
        await anthropic_client(proxied).messages.create(
            model="nowhere/claude", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "not_found_error"
