"""The Responses API through the real gateway with the official openai SDK: passed through
to OpenAI and Azure OpenAI, translated for Anthropic and for a chat-only OpenAI-compatible
server (`responses_api: false`), JSON and typed event streams, function tools, structured
output, and the 400s for what a translated provider cannot honour."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.integration.conftest import mock_control
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import openai_client
from tollway.providers._chat_options_to_messages import EFFORT_BUDGET
from tollway.providers._translate_common import FORMAT_TOOL
from tollway.testing.mock_upstream import MockUpstream

PASSED_THROUGH = ["openai", "azure"]
TRANSLATED = ["anthropic", "local"]
EVERY_PROVIDER = PASSED_THROUGH + TRANSLATED
MODELS = {"openai": "openai/gpt-4o-mini", "azure": "azure/gpt-4o-mini", "anthropic": "anthropic/claude-sonnet-4-5",
          "local": "local/gpt-4o-mini"}
# What each provider is sent: the route the mock saw.
UPSTREAM_PATHS = {"openai": "/v1/responses", "azure": "/openai/responses", "anthropic": "/v1/messages",
                  "local": "/v1/chat/completions"}
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def responses_providers(mock_url: str) -> dict[str, Any]:
    """openai, azure and anthropic, plus `local`: an OpenAI-compatible server with chat completions only."""
    return mock_providers(mock_url, local={"type": "openai", "base_url": f"{mock_url}/v1", "keys": [{"value": "sk-local"}],
                                           "responses_api": False})


@pytest.fixture
def served(gateway, mock) -> RunningGateway:
    return gateway({"providers": responses_providers(mock.url)})


def sdk(gateway: RunningGateway, key: str = "sk-placeholder") -> openai.AsyncOpenAI:
    return openai_client(gateway.v1, key)


def last_request(mock: MockUpstream) -> dict[str, Any]:
    return mock.state.requests[-1]


@pytest.mark.parametrize("provider", EVERY_PROVIDER)
async def test_create_answers_on_every_provider_with_instructions_and_output_cap(served, mock, provider) -> None:
    reply = await sdk(served).responses.create(model=MODELS[provider], input="Hello there", instructions="Be brief.",
                                               max_output_tokens=5)
    assert reply.object == "response" and reply.id.startswith("resp_")
    assert reply.output_text == "tok0 tok1 tok2 tok3 tok4"
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage.output_tokens == 5 and reply.usage.input_tokens > 0
    sent = last_request(mock)
    assert sent["path"] == UPSTREAM_PATHS[provider]
    body = sent["body"]
    if provider == "openai":
        assert (body["model"], body["instructions"], body["max_output_tokens"]) == ("gpt-4o-mini", "Be brief.", 5)
    elif provider == "azure":  # the deployment goes in the body; the api-version in the query
        assert body["model"] == "mini-deploy" and sent["query"]["api-version"]
    elif provider == "anthropic":
        assert body["system"] == "Be brief." and body["max_tokens"] == 5
        assert body["messages"] == [{"role": "user", "content": "Hello there"}]
    else:
        assert body["messages"][0] == {"role": "system", "content": "Be brief."} and body["max_tokens"] == 5


@pytest.mark.parametrize("provider", EVERY_PROVIDER)
async def test_stream_sends_every_typed_event_in_order_even_when_split_anywhere(served, mock, provider) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"stream_split_max_bytes": 7})
    stream = await sdk(served).responses.create(model=MODELS[provider], input="Hello", max_output_tokens=6, stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.incomplete"]
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    final = events[-1].response
    assert deltas == final.output_text == "tok0 tok1 tok2 tok3 tok4 tok5"
    assert final.usage.output_tokens == 6
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers))  # strictly increasing


@pytest.mark.parametrize("provider", EVERY_PROVIDER)
async def test_function_tool_round_trip_streamed_then_answered(served, mock, provider) -> None:
    client = sdk(served)
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    async with client.responses.stream(model=MODELS[provider], input=question, tools=[WEATHER_TOOL],
                                       store=None if provider in TRANSLATED else True) as stream:
        kinds = [event.type async for event in stream]
        first = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(call.name, call.arguments) for call in calls] == [("get_weather", '{"city":"Paris"}')]
    follow_up = [*question, {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
                             "arguments": calls[0].arguments},
                 {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 24 C"}]
    answer = await client.responses.create(model=MODELS[provider], input=follow_up, tools=[WEATHER_TOOL])
    assert answer.output_text.startswith("tok0")
    body = last_request(mock)["body"]
    if provider == "anthropic":
        assert body["messages"][1]["content"][0]["type"] == "tool_use"
        assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": calls[0].call_id,
                                                     "content": "Sunny, 24 C"}
    elif provider == "local":
        assert body["messages"][1]["tool_calls"][0]["id"] == calls[0].call_id
        assert body["messages"][2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "Sunny, 24 C"}


class City(BaseModel):
    city: str
    population: int


@pytest.mark.parametrize("provider", EVERY_PROVIDER)
@pytest.mark.parametrize("streamed", [False, True])
async def test_structured_output_parses_into_the_schema(served, mock, provider, streamed) -> None:
    client = sdk(served)
    if streamed:
        async with client.responses.stream(model=MODELS[provider], input="Name a city", text_format=City) as stream:
            parsed = (await stream.get_final_response()).output_parsed
    else:
        parsed = (await client.responses.parse(model=MODELS[provider], input="Name a city", text_format=City)).output_parsed
    assert parsed == City(city="Paris", population=1)
    body = last_request(mock)["body"]
    if provider == "anthropic":  # carried as a forced tool whose call comes back as the text
        assert body["tool_choice"]["name"] == FORMAT_TOOL
    elif provider == "local":
        assert body["response_format"]["json_schema"]["name"] == "City"


async def test_reasoning_effort_reaches_each_provider_in_its_own_terms(served, mock) -> None:
    client = sdk(served)
    reply = await client.responses.create(model=MODELS["openai"], input="Think", reasoning={"effort": "low"})
    assert reply.usage.output_tokens_details.reasoning_tokens == 8  # the mock's reasoning item
    assert last_request(mock)["body"]["reasoning"] == {"effort": "low"}
    await client.responses.create(model=MODELS["local"], input="Think", reasoning={"effort": "high"})
    assert last_request(mock)["body"]["reasoning_effort"] == "high"
    await client.responses.create(model=MODELS["anthropic"], input="Think", reasoning={"effort": "medium"},
                                  max_output_tokens=30_000)
    body = last_request(mock)["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": EFFORT_BUDGET["medium"]}
    with pytest.raises(openai.BadRequestError) as caught:  # Claude thinks only at temperature 1
        await client.responses.create(model=MODELS["anthropic"], input="Think", reasoning={"effort": "low"},
                                      temperature=0.5)
    assert caught.value.body["param"] == "temperature"


@pytest.mark.parametrize("provider", TRANSLATED)
@pytest.mark.parametrize("tool", ["web_search", "file_search", "code_interpreter", "computer_use_preview"])
async def test_built_in_tools_are_refused_naming_them_where_the_provider_lacks_them(served, mock, provider, tool) -> None:
    before = len(mock.state.requests)
    extra = {"vector_store_ids": ["vs_1"]} if tool == "file_search" else {}
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(served).responses.create(model=MODELS[provider], input="Look it up",
                                           tools=[WEATHER_TOOL, {"type": tool, **extra}])
    assert tool in caught.value.message and provider in caught.value.message
    assert len(mock.state.requests) == before  # nothing reached the provider


async def test_built_in_tools_pass_through_to_openai(served, mock) -> None:
    await sdk(served).responses.create(model=MODELS["openai"], input="Look it up", tools=[{"type": "web_search"}])
    assert last_request(mock)["body"]["tools"] == [{"type": "web_search"}]


@pytest.mark.parametrize("provider", TRANSLATED)
@pytest.mark.parametrize(("field", "value"), [("previous_response_id", "resp_abc"), ("store", True),
                                              ("background", True), ("conversation", "conv_1")])
async def test_stored_state_is_refused_with_a_400_naming_the_field_on_translated_providers(served, mock, provider,
                                                                                          field, value) -> None:
    before = len(mock.state.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(served).responses.create(model=MODELS[provider], input="Again", max_output_tokens=50,
                                           **{field: value})
    assert field in caught.value.message and "does not store responses" in caught.value.message
    assert len(mock.state.requests) == before


async def test_previous_response_id_continues_a_conversation_on_a_provider_that_stores_it(served, mock) -> None:
    client = sdk(served)
    first = await client.responses.create(model=MODELS["openai"], input="My name is Ada.")
    second = await client.responses.create(model=MODELS["openai"], input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.total_tokens  # the earlier turn counted as input


async def test_invalid_input_is_a_400_naming_the_field(served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(served).responses.create(model=MODELS["openai"], input=42)  # type: ignore[arg-type]
    assert caught.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(served).responses.create(model=MODELS["local"], input=[{"type": "item_reference", "id": "msg_1"}])
    assert "input[0].type" in caught.value.message


async def test_langchain_chat_openai_on_the_responses_api(served, mock) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    for provider in ("openai", "anthropic"):
        model = langchain_openai.ChatOpenAI(model=MODELS[provider], base_url=served.v1, api_key="sk-placeholder",
                                            use_responses_api=True, max_retries=0, max_tokens=4)
        reply = await model.ainvoke("Hello")
        assert reply.text == "tok0 tok1 tok2 tok3"
        assert reply.usage_metadata["output_tokens"] == 4
        assert last_request(mock)["path"] == UPSTREAM_PATHS[provider]
        chunks = [chunk async for chunk in model.astream("Hello")]
        assert "".join(chunk.text for chunk in chunks) == "tok0 tok1 tok2 tok3"
