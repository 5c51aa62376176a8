"""`/v1/messages/count_tokens` on Bedrock: Anthropic models are counted by Bedrock's
CountTokens (the request as Converse takes it, signed like every call), other models by
the gateway's estimate; counting is governed by request limits and never charged."""

from __future__ import annotations

import anthropic
import pytest

from tests.integration.conftest import mock_control
from tests.integration.test_bedrock import CLAUDE, HELLO, KEY, MODEL, config, last_upstream, spent, vk
from tests.support.sdk_clients import anthropic_client, openai_client
from tollway.proxy.token_count import COUNTED_BY

pytest.importorskip("botocore", reason="botocore is the bedrock extra (also a test extra)")

TOOL = {"name": "get_weather", "description": "The weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def sdk(running, key: str = "placeholder") -> anthropic.AsyncAnthropic:
    return anthropic_client(running.url, key)


async def test_claude_on_bedrock_is_counted_by_count_tokens(gateway, mock) -> None:
    client = sdk(gateway(config(mock)))
    raw = await client.messages.with_raw_response.count_tokens(model=MODEL, system="Be brief", messages=HELLO)
    counted = (await raw.parse()).input_tokens
    assert COUNTED_BY.decode() not in raw.headers
    seen = await last_upstream(mock)
    assert seen["path"] == f"/model/{CLAUDE}/count-tokens" and seen["headers"]["authorization"].startswith("AWS4-HMAC")
    assert seen["body"] == {"input": {"converse": {"messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                                                   "system": [{"text": "Be brief"}]}}}
    answer = await client.messages.create(model=MODEL, max_tokens=3, system="Be brief", messages=HELLO)
    assert counted == answer.usage.input_tokens  # the count Converse charges for the same request


async def test_tools_are_counted_too(gateway, mock) -> None:
    client = sdk(gateway(config(mock)))
    bare = await client.messages.count_tokens(model=MODEL, messages=HELLO)
    with_tool = await client.messages.count_tokens(model=MODEL, messages=HELLO, tools=[TOOL])
    assert with_tool.input_tokens > bare.input_tokens
    assert "toolConfig" in (await last_upstream(mock))["body"]["input"]["converse"]


async def test_other_models_are_estimated_without_a_call(gateway, mock) -> None:
    client = sdk(gateway(config(mock)))
    raw = await client.messages.with_raw_response.count_tokens(model="bedrock/amazon.nova-lite-v1:0", messages=HELLO)
    assert raw.headers[COUNTED_BY.decode()] == "estimated" and (await raw.parse()).input_tokens > 0
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


async def test_counting_takes_a_request_slot_and_is_never_charged(gateway, mock) -> None:
    running = gateway(config(mock, governance={"virtual_keys": [vk(
        budget={"max_limit": 10, "reset_duration": "1d"},
        rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"})]}))
    client = sdk(running, KEY)
    await client.messages.count_tokens(model=MODEL, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.count_tokens(model=MODEL, messages=HELLO)
    assert spent(running)[0] == 0
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 1


async def test_bedrock_refusing_a_count_reaches_the_client_in_anthropics_shape(gateway, mock) -> None:
    client = sdk(gateway(config(mock)))
    with pytest.raises(anthropic.BadRequestError) as caught:  # the mock refuses an assistant turn first
        await client.messages.count_tokens(model=MODEL, messages=[{"role": "assistant", "content": "Hi"}])
    assert "alternate" in caught.value.message


async def test_responses_input_tokens_of_claude_on_bedrock_are_counted_by_count_tokens(gateway, mock) -> None:
    client = openai_client(gateway(config(mock)).v1, "placeholder")
    raw = await client.responses.input_tokens.with_raw_response.count(model=MODEL, input="Hello",
                                                                       instructions="Be brief")
    counted = raw.parse()
    assert COUNTED_BY.decode() not in raw.headers and counted.input_tokens > 0
    assert (await last_upstream(mock))["body"] == {"input": {"converse": {
        "messages": [{"role": "user", "content": [{"text": "Hello"}]}], "system": [{"text": "Be brief"}]}}}
    nova = await client.responses.input_tokens.with_raw_response.count(model="bedrock/amazon.nova-lite-v1:0",
                                                                       input="Hello")
    assert nova.headers[COUNTED_BY.decode()] == "estimated"
