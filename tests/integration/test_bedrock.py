"""Bedrock through the gateway: the OpenAI and Anthropic SDKs on a `type: bedrock` provider
(translated through chat to Converse / ConverseStream, embeddings to InvokeModel), every
request signed with SigV4 and verified by the mock as AWS verifies it; credentials from
explicit values, the environment, a profile, or an assumed role (the mock's STS)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.integration.conftest import mock_control
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import anthropic_client, openai_client
from tollway.governance.engine import hash_key
from tollway.governance.model import budget_counter
from tollway.testing.mock_bedrock_auth import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY

pytest.importorskip("botocore", reason="botocore is the bedrock extra (also a test extra)")

KEY = "tw-bedrock-0123456789abcdefghijklmno"
CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
MODEL = "bedrock/" + CLAUDE
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# 1 USD per million input tokens, 2 per million output, 0.25 cached: every request's cost is known.
PRICING = {MODEL: {"input": 1, "output": 2, "cached_input": 0.25}}
EXPLICIT = {"aws_access_key_id": MOCK_ACCESS_KEY_ID, "aws_secret_access_key": MOCK_SECRET_ACCESS_KEY}


def config(mock, credentials: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    bedrock = {"type": "bedrock", "base_url": mock.url, "region": "us-east-1",
               **(EXPLICIT if credentials is None else credentials)}
    providers = mock_providers(mock.url, bedrock=bedrock)
    for name, overrides in extra.pop("provider_limits", {}).items():
        providers[name].update(overrides)
    return {"providers": providers, "pricing": PRICING, "governance": extra.pop("governance", {}), **extra}


def vk(**fields: Any) -> dict[str, Any]:
    return {"id": "bed", "name": "bedrock key", "value": KEY, **fields}


def openai_sdk(gateway: RunningGateway, key: str = "sk-placeholder") -> openai.AsyncOpenAI:
    return openai_client(gateway.v1, key)


def anthropic_sdk(gateway: RunningGateway) -> anthropic.AsyncAnthropic:
    return anthropic_client(gateway.url, "placeholder")


async def last_upstream(mock) -> dict[str, Any]:
    return (await mock_control(mock, "GET", "/_mock/requests"))[-1]


# --- OpenAI chat clients ------------------------------------------------------------------------

async def test_openai_chat_reaches_converse_signed_and_translated_both_ways(gateway, mock) -> None:
    running = gateway(config(mock))
    reply = await openai_sdk(running).chat.completions.create(
        model=MODEL, max_tokens=5, temperature=0.5, stop=["END"],
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5
    seen = await last_upstream(mock)
    assert seen["path"] == f"/model/{CLAUDE}/converse"
    assert seen["headers"]["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={MOCK_ACCESS_KEY_ID}/") and "/us-east-1/bedrock/aws4_request" in \
        seen["headers"]["authorization"]
    assert seen["body"] == {"messages": [{"role": "user", "content": [{"text": "Hi"}]}],
                            "system": [{"text": "Be brief"}],
                            "inferenceConfig": {"maxTokens": 5, "temperature": 0.5, "stopSequences": ["END"]}}


async def test_a_stream_cut_anywhere_is_decoded_with_its_usage(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"stream_split_max_bytes": 7})  # frames cut mid-prelude too
    running = gateway(config(mock))
    stream = await openai_sdk(running).chat.completions.create(
        model=MODEL, max_tokens=6, stream=True, stream_options={"include_usage": True}, messages=HELLO)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 tok4 tok5"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [6]
    assert (await last_upstream(mock))["path"] == f"/model/{CLAUDE}/converse-stream"


async def test_function_tools_round_trip_through_converse(gateway, mock) -> None:
    running = gateway(config(mock))
    client = openai_sdk(running)
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = await client.chat.completions.create(model=MODEL, messages=[question], tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"Paris"}'
    assert (await last_upstream(mock))["body"]["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "The weather in a city",
        "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]}}}]}
    second = await client.chat.completions.create(model=MODEL, tools=[WEATHER_TOOL], messages=[
        question, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}])
    assert second.choices[0].message.content
    messages = (await last_upstream(mock))["body"]["messages"]
    assert messages[1] == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": call.id, "name": "get_weather", "input": {"city": "Paris"}}}]}
    assert messages[2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": call.id, "content": [{"json": {"temperature": 21}}]}}]}


async def test_a_streamed_tool_call_arrives_in_pieces(gateway, mock) -> None:
    running = gateway(config(mock))
    stream = await openai_sdk(running).chat.completions.create(
        model=MODEL, stream=True, tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {
            "name": "get_weather"}}, messages=HELLO)
    calls = [call for chunk in [c async for c in stream] if chunk.choices
             for call in chunk.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "get_weather" and calls[0].id.startswith("tooluse_")
    assert "".join(c.function.arguments or "" for c in calls) == '{"city":"Paris"}' and len(calls) == 3
    assert (await last_upstream(mock))["body"]["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


async def test_a_field_converse_cannot_take_is_a_400_naming_it(gateway, mock) -> None:
    running = gateway(config(mock))
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO, logit_bias={"1": 5})
    assert caught.value.body["param"] == "logit_bias" and "Bedrock" in caught.value.body["message"]
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


# --- errors -------------------------------------------------------------------------------------

async def test_bedrock_errors_reach_each_client_in_its_shape(gateway, mock) -> None:
    running = gateway(config(mock))
    await mock_control(mock, "POST", "/_mock/faults", {"path": "/model/", "status": 429, "count": 2})
    with pytest.raises(openai.RateLimitError) as caught:
        await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.body["type"] == "rate_limit_error" and "mock fault" in caught.value.body["message"]
    with pytest.raises(anthropic.RateLimitError) as refused:
        await anthropic_sdk(running).messages.create(model=MODEL, max_tokens=5, messages=HELLO)
    assert refused.value.body["error"]["type"] == "rate_limit_error"


async def test_an_answer_that_is_not_converse_is_a_502_naming_the_provider(gateway, mock) -> None:
    running = gateway(config(mock))
    await mock_control(mock, "POST", "/_mock/faults", {"path": "/model/", "status": 200, "body": {"unexpected": 1}})
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 502 and "'bedrock'" in caught.value.message


async def test_a_wrong_secret_is_refused_by_the_signature_check(gateway, mock) -> None:
    running = gateway(config(mock, {"aws_access_key_id": MOCK_ACCESS_KEY_ID, "aws_secret_access_key": "wrong"}))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO)
    assert "signature we calculated does not match" in caught.value.body["message"]


async def test_an_exception_mid_stream_ends_the_stream_with_an_error(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/bedrock", {"stream_exception_after": 3})
    running = gateway(config(mock))
    stream = await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    text = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(text) == "tok0 tok1" and "ThrottlingException" in str(caught.value.message)


async def test_a_connection_dropped_mid_stream_ends_the_stream_with_an_error(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/faults", {"path": "/model/", "drop": "mid_stream", "after_chunks": 3})
    running = gateway(config(mock))
    stream = await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    text = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(text) == "tok0 tok1" and "interrupted" in str(caught.value.message)


# --- Anthropic and Responses clients ------------------------------------------------------------

async def test_anthropic_messages_reach_converse_through_chat(gateway, mock) -> None:
    running = gateway(config(mock))
    client = anthropic_sdk(running)
    message = await client.messages.create(model=MODEL, max_tokens=4, system="Be brief",
                                           messages=[{"role": "user", "content": "Hi"}])
    assert message.content[0].text == "tok0 tok1 tok2 tok3" and message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4
    assert (await last_upstream(mock))["body"]["system"] == [{"text": "Be brief"}]
    async with client.messages.stream(model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "tok0 tok1 tok2" and final.usage.output_tokens == 3


async def test_anthropic_tool_use_reaches_converse(gateway, mock) -> None:
    running = gateway(config(mock))
    tool = {"name": "get_weather", "description": "The weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    message = await anthropic_sdk(running).messages.create(
        model=MODEL, max_tokens=50, tools=[tool], messages=[{"role": "user", "content": "weather in Paris?"}])
    use = next(block for block in message.content if block.type == "tool_use")
    assert message.stop_reason == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    async with anthropic_sdk(running).messages.stream(model=MODEL, max_tokens=50, tools=[tool], messages=[
            {"role": "user", "content": "weather in Paris?"}]) as stream:
        final = await stream.get_final_message()
    streamed = next(block for block in final.content if block.type == "tool_use")
    assert final.stop_reason == "tool_use" and streamed.input == {"city": "Paris"} and streamed.id.startswith("tooluse_")


async def test_anthropic_thinking_reaches_claude_on_bedrock(gateway, mock) -> None:
    running = gateway(config(mock))
    message = await anthropic_sdk(running).messages.create(
        model=MODEL, max_tokens=3000, thinking={"type": "enabled", "budget_tokens": 2048}, messages=HELLO)
    assert message.content[0].text
    sent = (await last_upstream(mock))["body"]
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert sent["inferenceConfig"]["maxTokens"] == 3000


async def test_responses_api_reaches_converse_through_chat(gateway, mock) -> None:
    running = gateway(config(mock))
    response = await openai_sdk(running).responses.create(model=MODEL, input="Hi", max_output_tokens=3)
    assert response.output_text == "tok0 tok1 tok2" and response.usage.output_tokens == 3
    stream = await openai_sdk(running).responses.create(model=MODEL, input="Hi", max_output_tokens=2, stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.incomplete" and events[-1].response.usage.output_tokens == 2  # capped


# --- embeddings ---------------------------------------------------------------------------------

async def test_embeddings_reach_titan_and_cohere_through_invoke_model(gateway, mock) -> None:
    running = gateway(config(mock))
    client = openai_sdk(running)
    titan = await client.embeddings.create(model="bedrock/amazon.titan-embed-text-v2:0", input="hello", dimensions=256)
    assert len(titan.data[0].embedding) == 256 and titan.usage.prompt_tokens == 2
    seen = await last_upstream(mock)
    assert seen["path"] == "/model/amazon.titan-embed-text-v2:0/invoke"
    assert seen["body"] == {"inputText": "hello", "dimensions": 256}
    cohere = await client.embeddings.create(model="bedrock/cohere.embed-english-v3", input=["a", "b"])
    assert [item.index for item in cohere.data] == [0, 1]
    assert (await last_upstream(mock))["body"] == {"texts": ["a", "b"], "input_type": "search_document",
                                                   "embedding_types": ["float"]}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="bedrock/amazon.titan-embed-text-v2:0", input=["a", "b"])
    assert caught.value.body["param"] == "input"


# --- usage, cost and governance ----------------------------------------------------------------

async def test_cached_tokens_are_charged_at_their_rate(gateway, mock) -> None:
    running = gateway(config(mock, governance={"virtual_keys": [vk(budget={"max_limit": 10, "reset_duration": "1d"})]}))
    await mock_control(mock, "POST", "/_mock/settings", {"cached_tokens": 2})
    reply = await openai_sdk(running, KEY).chat.completions.create(model=MODEL, max_tokens=4, messages=HELLO)
    usage = reply.usage
    assert usage.prompt_tokens_details.cached_tokens == 2 and usage.prompt_tokens == 5  # 3 uncached + 2 read
    limits = running.runtime.snapshot.keys_by_hash[hash_key(KEY)].limits
    used = running.counters()[budget_counter(limits.budget.id)].used
    assert used == (usage.prompt_tokens - 2) * 1_000 + 2 * 250 + usage.completion_tokens * 2_000  # nano-dollars


async def test_provider_and_model_limits_govern_bedrock(gateway, mock) -> None:
    running = gateway(config(mock, provider_limits={"bedrock": {"rate_limit": {
        "request_max_limit": 2, "request_reset_duration": "1h"}}}, governance={"model_configs": [
            {"model_name": CLAUDE, "provider": "bedrock",
             "rate_limit": {"request_max_limit": 1, "request_reset_duration": "1h"}}]}))
    client = openai_sdk(running)
    await client.chat.completions.create(model=MODEL, messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.body["scope"]["level"] == "model"
    await client.chat.completions.create(model="bedrock/amazon.nova-lite-v1:0", messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as refused:  # the provider's limit spans its models and routes
        await anthropic_sdk(running).messages.create(model="bedrock/amazon.nova-pro-v1:0", max_tokens=5,
                                                     messages=HELLO)
    assert refused.value.body["error"]["scope"]["level"] == "provider"
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 2


DOLLAR_A_TOKEN = {MODEL: {"input": 1_000_000, "output": 1_000_000}}


def strict(mock, gateway, **budget: Any) -> RunningGateway:
    return gateway({**config(mock, governance={"virtual_keys": [vk(budget={
        "max_limit": 200, "reset_duration": "1d", "enforcement": "strict", **budget})]}), "pricing": DOLLAR_A_TOKEN})


async def test_strict_budget_refuses_a_cap_that_does_not_fit(gateway, mock) -> None:
    running = strict(mock, gateway)
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_sdk(running, KEY).chat.completions.create(model=MODEL, max_tokens=5000, messages=HELLO)
    assert caught.value.status_code == 402 and "worst case" in caught.value.message
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


async def test_strict_clamp_lowers_converse_max_tokens(gateway, mock) -> None:
    running = strict(mock, gateway, on_insufficient="clamp")
    raw = await openai_sdk(running, KEY).chat.completions.with_raw_response.create(model=MODEL, max_tokens=5000,
                                                                                   messages=HELLO)
    sent = (await last_upstream(mock))["body"]["inferenceConfig"]["maxTokens"]
    assert 0 < sent < 200 and raw.headers["x-tollway-clamped-max-tokens"] == str(sent)
    # No cap at all: strict injects one, in Converse's field.
    await openai_sdk(running, KEY).chat.completions.create(model=MODEL, messages=HELLO)
    assert 0 < (await last_upstream(mock))["body"]["inferenceConfig"]["maxTokens"] < 200


async def test_a_stream_that_ignores_its_cap_is_cut_off_at_the_budget(gateway, mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"completion_tokens": 2000, "ignore_max_tokens": True})
    running = strict(mock, gateway)
    stream = await openai_sdk(running, KEY).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=20,
                                                                    stream=True)
    text, finish = [], None
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    assert finish == "length" and "cut off" in str(caught.value.message)
    used, limit = spent(running)
    assert len("".join(text)) > 20 and len("".join(text)) <= used <= limit


def spent(running: RunningGateway) -> tuple[int, int]:
    budget = running.runtime.snapshot.keys_by_hash[hash_key(KEY)].limits.budget
    state = running.counters().get(budget_counter(budget.id))
    return (state.used if state else 0), budget.max_limit_nano


# --- credentials --------------------------------------------------------------------------------

async def test_credentials_from_the_environment(gateway, mock, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", MOCK_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MOCK_SECRET_ACCESS_KEY)
    running = gateway(config(mock, {}))
    reply = await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO)
    assert reply.choices[0].message.content


async def test_credentials_from_a_named_profile(gateway, mock, monkeypatch, tmp_path) -> None:
    shared = tmp_path / "credentials"
    shared.write_text(f"[gateway]\naws_access_key_id = {MOCK_ACCESS_KEY_ID}\n"
                      f"aws_secret_access_key = {MOCK_SECRET_ACCESS_KEY}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    running = gateway(config(mock, {"profile": "gateway"}))
    reply = await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO)
    assert reply.choices[0].message.content


async def test_an_assumed_role_signs_with_temporary_credentials_refreshed_before_expiry(gateway, mock,
                                                                                         monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", mock.url)
    role = {**EXPLICIT, "role_arn": "arn:aws:iam::123456789012:role/gateway"}
    running = gateway(config(mock, role))
    client = openai_sdk(running)
    await client.chat.completions.create(model=MODEL, messages=HELLO)
    await client.chat.completions.create(model=MODEL, messages=HELLO)
    issued = (await mock_control(mock, "GET", "/_mock/bedrock"))["issued"]
    assert len(issued) == 1  # an hour left: the same temporary credentials serve both
    seen = await last_upstream(mock)
    assert f"Credential={issued[0]}/" in seen["headers"]["authorization"]
    assert seen["headers"]["x-amz-security-token"].startswith("mock-session-")
    # Credentials that expire within botocore's refresh window are replaced before use.
    await mock_control(mock, "POST", "/_mock/bedrock", {"sts_duration_s": 600})
    second = gateway(config(mock, role))
    await openai_sdk(second).chat.completions.create(model=MODEL, messages=HELLO)
    await openai_sdk(second).chat.completions.create(model=MODEL, messages=HELLO)
    issued = (await mock_control(mock, "GET", "/_mock/bedrock"))["issued"]
    assert len(issued) == 3 and f"Credential={issued[-1]}/" in (await last_upstream(mock))["headers"]["authorization"]


async def test_missing_credentials_fail_the_request_not_the_gateway(gateway, mock, monkeypatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    running = gateway(config(mock, {}))
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_sdk(running).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 502 and "no AWS credentials" in caught.value.body["message"]
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0
