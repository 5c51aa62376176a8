"""The model a Bedrock answer names, through the OpenAI and Anthropic SDKs: Converse and
InvokeModel do not name it, so the gateway names the model it asked for — the same in a
whole answer and a stream, and the provider's model behind an alias."""

from __future__ import annotations

import pytest

from tests.integration.test_bedrock import CLAUDE, HELLO, MODEL, anthropic_sdk, config, openai_sdk

pytest.importorskip("botocore", reason="botocore is the bedrock extra (also a test extra)")

ALIASED = {"model_aliases": {"haiku": MODEL}}


@pytest.mark.parametrize("asked", [MODEL, "haiku"])
async def test_openai_chat_answers_name_the_bedrock_model_streamed_or_not(gateway, mock, asked: str) -> None:
    client = openai_sdk(gateway(config(mock, **ALIASED)))
    whole = await client.chat.completions.create(model=asked, max_tokens=3, messages=HELLO)
    chunks = [chunk async for chunk in await client.chat.completions.create(
        model=asked, max_tokens=3, messages=HELLO, stream=True, stream_options={"include_usage": True})]
    assert whole.model == CLAUDE
    assert {chunk.model for chunk in chunks} == {CLAUDE}


@pytest.mark.parametrize("asked", [MODEL, "haiku"])
async def test_anthropic_answers_name_the_bedrock_model_streamed_or_not(gateway, mock, asked: str) -> None:
    client = anthropic_sdk(gateway(config(mock, **ALIASED)))
    whole = await client.messages.create(model=asked, max_tokens=3, messages=HELLO)
    async with client.messages.stream(model=asked, max_tokens=3, messages=HELLO) as stream:
        streamed = await stream.get_final_message()
    assert whole.model == CLAUDE and streamed.model == CLAUDE


async def test_responses_answers_name_the_bedrock_model_streamed_or_not(gateway, mock) -> None:
    client = openai_sdk(gateway(config(mock)))
    whole = await client.responses.create(model=MODEL, input="Hi", max_output_tokens=3)
    events = [event async for event in await client.responses.create(
        model=MODEL, input="Hi", max_output_tokens=3, stream=True)]
    assert whole.model == CLAUDE and events[-1].response.model == CLAUDE


async def test_embeddings_name_the_bedrock_model(gateway, mock) -> None:
    titan = "amazon.titan-embed-text-v2:0"
    answer = await openai_sdk(gateway(config(mock))).embeddings.create(model="bedrock/" + titan, input="hello")
    assert answer.model == titan
