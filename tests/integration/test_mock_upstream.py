"""The mock upstream, driven by the official OpenAI and Anthropic SDKs and by raw HTTP.

Every number asserted here follows the rules in `tollway.testing.mock_content`: a text is
ceil(len/4) tokens, a chat message adds 3, answers are `tok0 tok1 ...`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.support.sdk_clients import anthropic_client, azure_client
from tollway.testing.mock_upstream import MockSettings, MockUpstream, start_mock_upstream

AUTH = {"Authorization": "Bearer sk-test"}
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
WEATHER_TOOL_OPENAI = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                                          "required": ["location"]}}}
WEATHER_TOOL_ANTHROPIC = {"name": "get_weather", "input_schema": WEATHER_TOOL_OPENAI["function"]["parameters"]}


@pytest.fixture
async def mock() -> AsyncIterator[MockUpstream]:
    upstream = await start_mock_upstream(settings=MockSettings())
    yield upstream
    await upstream.close()


@pytest.fixture
async def ant(mock: MockUpstream) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic_client(mock.url, "sk-ant-test") as client:
        yield client


async def add_fault(http: aiohttp.ClientSession, mock: MockUpstream, **fault: Any) -> None:
    async with http.post(mock.url + "/_mock/faults", json=fault) as response:
        assert response.status == 200, await response.text()


async def stats(http: aiohttp.ClientSession, mock: MockUpstream) -> dict[str, Any]:
    async with http.get(mock.url + "/_mock/stats") as response:
        return await response.json()


async def wait_for_stats(http: aiohttp.ClientSession, mock: MockUpstream,
                         ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the stats until `ready` (the server notices a disconnect a moment after the client)."""
    deadline = time.monotonic() + 2.0
    while True:
        current = await stats(http, mock)
        if ready(current) or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.01)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


# -- OpenAI ------------------------------------------------------------------------------------

async def test_chat_completion_reports_exact_usage_and_echoes_the_model(oai: openai.AsyncOpenAI) -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("Hello there, mock!")]  # 3+3, 5+3
    result = await oai.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=5)

    assert result.model == "gpt-4o-mini"
    assert result.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert result.choices[0].finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (14, 5, 19)


async def test_chat_completion_uses_the_configured_token_count_when_max_tokens_is_higher(
        oai: openai.AsyncOpenAI, mock: MockUpstream) -> None:
    mock.settings.completion_tokens = 3
    mock.settings.cached_tokens = 2
    result = await oai.chat.completions.create(model="m", messages=[user("hi")], max_completion_tokens=100)

    assert result.choices[0].message.content == "tok0 tok1 tok2"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.completion_tokens == 3
    assert result.usage.prompt_tokens_details.cached_tokens == 2


async def test_chat_stream_without_include_usage_has_no_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="gpt-4o", messages=[user("hi")], stream=True, max_tokens=4)
    chunks = [chunk async for chunk in stream]

    assert all(chunk.usage is None and chunk.choices for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "tok0 tok1 tok2 tok3"
    assert len(chunks) == 1 + 4 + 1  # role, one per word, finish
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="gpt-4o", messages=[user("What is up?")], stream=True,
                                               stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]

    *content, last = chunks
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (6, 16, 22)
    assert all(chunk.usage is None for chunk in content)
    assert content[-1].choices[0].finish_reason == "stop"


async def test_chat_with_tools_and_weather_answers_with_a_tool_call(oai: openai.AsyncOpenAI) -> None:
    result = await oai.chat.completions.create(model="m", messages=[user("What's the weather in Paris?")],
                                               tools=[WEATHER_TOOL_OPENAI])
    call = result.choices[0].message.tool_calls[0]
    assert result.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"location":"Paris"}')

    stream = await oai.chat.completions.create(model="m", messages=[user("weather?")], tools=[WEATHER_TOOL_OPENAI],
                                               stream=True)
    arguments = "".join([c.choices[0].delta.tool_calls[0].function.arguments async for c in stream
                         if c.choices[0].delta.tool_calls])
    assert arguments == '{"location":"Paris"}'


async def test_legacy_completions_plain_and_streamed(oai: openai.AsyncOpenAI) -> None:
    result = await oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say something", max_tokens=3)
    assert result.choices[0].text == "tok0 tok1 tok2"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 3)

    stream = await oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say", max_tokens=2, stream=True,
                                          stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "tok0 tok1"
    assert (chunks[-1].choices, chunks[-1].usage.completion_tokens) == ([], 2)


async def test_embeddings_are_deterministic_in_float_and_default_base64(oai: openai.AsyncOpenAI) -> None:
    as_float = await oai.embeddings.create(model="text-embedding-3-small", input=["abcd", "hello world"],
                                           encoding_format="float")
    by_default = await oai.embeddings.create(model="text-embedding-3-small", input=["abcd", "hello world"])
    tokens = await oai.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3]], dimensions=4)

    assert [e.embedding for e in as_float.data] == [e.embedding for e in by_default.data]
    assert [len(e.embedding) for e in as_float.data] == [8, 8]
    assert as_float.data[0].embedding != as_float.data[1].embedding
    assert abs(sum(v * v for v in as_float.data[0].embedding) - 1.0) < 1e-5
    assert as_float.usage.prompt_tokens == 1 + 3
    assert (len(tokens.data[0].embedding), tokens.usage.prompt_tokens) == (4, 3)


async def test_models_are_listed_in_each_apis_shape(oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic) -> None:
    openai_ids = [model.id async for model in oai.models.list()]
    anthropic_ids = [model.id async for model in ant.models.list()]

    assert "gpt-4o-mini" in openai_ids
    assert anthropic_ids and all(model_id.startswith("claude") for model_id in anthropic_ids)


async def test_azure_routes_answer_with_the_deployment_and_need_api_version(
        mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    async with azure_client(mock.url, "az-key", "2024-10-21") as azure:
        result = await azure.chat.completions.create(model="my-deployment", messages=[user("hi")], max_tokens=2)
        embedded = await azure.embeddings.create(model="emb-deployment", input="hi")

    assert (result.model, result.usage.completion_tokens) == ("my-deployment", 2)
    assert embedded.model == "emb-deployment"
    async with http.get(mock.url + "/_mock/requests") as response:
        recorded = (await response.json())[0]
    assert recorded["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert (recorded["query"]["api-version"], recorded["headers"]["api-key"]) == ("2024-10-21", "az-key")

    url = mock.url + "/openai/deployments/d/chat/completions"
    async with http.post(url, json={"messages": [user("hi")]}, headers={"api-key": "k"}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "MissingApiVersionParameter"


# -- Anthropic ---------------------------------------------------------------------------------

async def test_messages_report_input_output_and_cache_read_tokens(
        ant: anthropic.AsyncAnthropic, mock: MockUpstream) -> None:
    mock.settings.cached_tokens = 4
    message = await ant.messages.create(model="claude-mock-1", max_tokens=3, system="You are terse.",
                                        messages=[user("Hello, Claude. How are you?")])  # 4+3, 7+3

    assert message.model == "claude-mock-1"
    assert message.content[0].text == "tok0 tok1 tok2"
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (17 - 4, 4)
    assert message.usage.output_tokens == 3


async def test_messages_stream_sends_the_real_event_sequence(ant: anthropic.AsyncAnthropic) -> None:
    async with ant.messages.stream(model="claude-x", max_tokens=100, messages=[user("Hi!")]) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()

    raw_kinds = [k for k in kinds if k not in ("text",)]
    assert raw_kinds[:2] == ["message_start", "content_block_start"]
    assert raw_kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert raw_kinds.count("content_block_delta") == 16
    assert final.content[0].text == " ".join(f"tok{i}" for i in range(16))
    assert (final.usage.input_tokens, final.usage.output_tokens, final.stop_reason) == (4, 16, "end_turn")


async def test_messages_with_tools_and_weather_answer_with_tool_use(ant: anthropic.AsyncAnthropic) -> None:
    message = await ant.messages.create(model="claude-x", max_tokens=50, tools=[WEATHER_TOOL_ANTHROPIC],
                                        messages=[user("What is the weather like?")])
    async with ant.messages.stream(model="claude-x", max_tokens=50, tools=[WEATHER_TOOL_ANTHROPIC],
                                   messages=[user("weather please")]) as stream:
        streamed = await stream.get_final_message()

    for answer in (message, streamed):
        assert answer.stop_reason == "tool_use"
        assert (answer.content[0].type, answer.content[0].name) == ("tool_use", "get_weather")
        assert answer.content[0].input == {"location": "Paris"}


async def test_messages_without_anthropic_version_is_an_anthropic_shaped_400(
        mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    body = {"model": "claude-x", "max_tokens": 5, "messages": [user("hi")]}
    async with http.post(mock.url + "/v1/messages", json=body, headers={"x-api-key": "k"}) as response:
        assert response.status == 400
        error = await response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"


# -- errors and auth ---------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "headers", "shape"), [
    ("/v1/chat/completions", {}, "openai"),
    ("/v1/embeddings", {"x-api-key": "k"}, "openai"),
    ("/v1/messages", {"anthropic-version": "2023-06-01"}, "anthropic"),
    ("/openai/deployments/d/chat/completions?api-version=2024-10-21", {}, "openai"),
])
async def test_missing_auth_is_a_401_in_the_apis_shape(mock: MockUpstream, http: aiohttp.ClientSession,
                                                       path: str, headers: dict[str, str], shape: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [user("hi")], "input": "x"}
    async with http.post(mock.url + path, json=body, headers=headers) as response:
        assert response.status == 401
        error = await response.json()
    assert error["error"]["type"] == ("authentication_error" if shape == "anthropic" else "invalid_request_error")


async def test_invalid_json_and_missing_model_are_400s(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    async with http.post(mock.url + "/v1/chat/completions", data=b"{nope", headers=AUTH) as response:
        assert (response.status, set((await response.json())["error"])) == (400, {"message", "type", "param", "code"})
    async with http.post(mock.url + "/v1/chat/completions", json={"messages": [user("x")]}, headers=AUTH) as response:
        assert (response.status, (await response.json())["error"]["param"]) == (400, "model")
    async with http.post(mock.url + "/v1/messages", data=b"[", headers=ANTHROPIC_HEADERS) as response:
        assert (response.status, (await response.json())["type"]) == (400, "error")


# -- faults ------------------------------------------------------------------------------------

async def test_status_fault_uses_the_api_error_shape_and_retry_after(
        mock: MockUpstream, http: aiohttp.ClientSession, oai: openai.AsyncOpenAI,
        ant: anthropic.AsyncAnthropic) -> None:
    await add_fault(http, mock, status=429, retry_after=7, path="/chat/completions")
    await add_fault(http, mock, status=529, path="/v1/messages")

    with pytest.raises(openai.RateLimitError) as limited:
        await oai.chat.completions.create(model="m", messages=[user("hi")])
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        await ant.messages.create(model="c", max_tokens=5, messages=[user("hi")])
    ok = await oai.chat.completions.create(model="m", messages=[user("hi")])

    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body["code"] == "rate_limit_exceeded"
    assert (overloaded.value.status_code, overloaded.value.body["error"]["type"]) == (529, "overloaded_error")
    assert ok.choices[0].message.content


async def test_fault_count_and_path_filter_decide_which_requests_fail(
        mock: MockUpstream, http: aiohttp.ClientSession, oai: openai.AsyncOpenAI) -> None:
    await add_fault(http, mock, status=500, count=2, path="/embeddings", body={"error": {"message": "boom"}})

    ok = await oai.chat.completions.create(model="m", messages=[user("hi")])
    for _ in range(2):
        with pytest.raises(openai.InternalServerError, match="boom"):
            await oai.embeddings.create(model="e", input="x")
    embedded = await oai.embeddings.create(model="e", input="x")

    assert ok.choices and embedded.data
    async with http.get(mock.url + "/_mock/faults") as response:
        assert await response.json() == []


async def test_drop_before_response_closes_the_connection(
        mock: MockUpstream, http: aiohttp.ClientSession, oai: openai.AsyncOpenAI) -> None:
    await add_fault(http, mock, drop="before_response")
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="m", messages=[user("hi")])


async def test_mid_stream_drop_sends_n_chunks_then_aborts(
        mock: MockUpstream, http: aiohttp.ClientSession, oai: openai.AsyncOpenAI,
        ant: anthropic.AsyncAnthropic) -> None:
    await add_fault(http, mock, drop="mid_stream", after_chunks=3, count=2)
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        stream = await oai.chat.completions.create(model="m", messages=[user("hi")], stream=True)
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 3

    events: list[str] = []
    with pytest.raises(Exception) as aborted:
        async with ant.messages.stream(model="c", max_tokens=10, messages=[user("hi")]) as stream:
            async for event in stream:
                events.append(event.type)
    assert type(aborted.value).__name__ in ("APIConnectionError", "RemoteProtocolError")
    assert events == ["message_start", "content_block_start"]  # the third event, ping, is not surfaced


async def test_hanging_upstream_times_out_and_counts_the_cancelled_request(
        mock: MockUpstream, http: aiohttp.ClientSession, oai: openai.AsyncOpenAI) -> None:
    await add_fault(http, mock, delay_ms=10_000)
    with pytest.raises(openai.APITimeoutError):
        await oai.with_options(timeout=0.2).chat.completions.create(model="m", messages=[user("hi")])

    current = await wait_for_stats(http, mock, lambda s: s["requests_cancelled"] == 1)
    assert (current["requests_cancelled"], current["in_flight"]) == (1, 0)


async def test_client_disconnect_mid_stream_is_counted(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    mock.settings.chunk_delay_ms = 20
    body = {"model": "m", "messages": [user("hi")], "stream": True}
    async with aiohttp.ClientSession() as client:
        async with client.post(mock.url + "/v1/chat/completions", json=body, headers=AUTH) as response:
            await response.content.readline()
            assert (await stats(http, mock))["in_flight"] == 1
    # leaving the session closes the connection while the mock is still streaming

    current = await wait_for_stats(http, mock, lambda s: s["streams_cancelled"] == 1)
    assert (current["streams_cancelled"], current["streams_completed"], current["in_flight"]) == (1, 0, 0)


async def test_latency_and_chunk_delay_slow_the_answer_down(mock: MockUpstream, oai: openai.AsyncOpenAI) -> None:
    mock.settings.latency_ms = 50
    mock.settings.chunk_delay_ms = 10
    started = time.monotonic()
    stream = await oai.chat.completions.create(model="m", messages=[user("hi")], stream=True, max_tokens=3)
    chunks = [chunk async for chunk in stream]

    assert len(chunks) == 5
    assert time.monotonic() - started >= 0.050 + 4 * 0.010


# -- control API -------------------------------------------------------------------------------

async def test_requests_are_recorded_with_headers_and_bodies(
        mock: MockUpstream, http: aiohttp.ClientSession, ant: anthropic.AsyncAnthropic) -> None:
    await ant.messages.create(model="claude-x", max_tokens=5, messages=[user("record me")])
    async with http.post(mock.url + "/v1/chat/completions", data=b"not json", headers=AUTH):
        pass

    async with http.get(mock.url + "/_mock/requests") as response:
        first, second = await response.json()
    assert (first["method"], first["path"]) == ("POST", "/v1/messages")
    # This anthropic SDK sends its key as `Authorization: Bearer`; older ones used x-api-key.
    assert "sk-ant-test" in (first["headers"].get("x-api-key") or first["headers"]["authorization"])
    assert first["headers"]["anthropic-version"]
    assert first["body"]["messages"] == [user("record me")]
    assert (second["body"], second["headers"]["authorization"]) == (None, "Bearer sk-test")


async def test_settings_merge_and_reset_restores_them(mock: MockUpstream, http: aiohttp.ClientSession,
                                                      oai: openai.AsyncOpenAI) -> None:
    async with http.post(mock.url + "/_mock/settings", json={"completion_tokens": 2}) as response:
        assert (await response.json())["completion_tokens"] == 2
    async with http.post(mock.url + "/_mock/settings", json={"nope": 1}) as response:
        assert response.status == 400
    short = await oai.chat.completions.create(model="m", messages=[user("hi")])
    await add_fault(http, mock, status=500)

    async with http.post(mock.url + "/_mock/reset") as response:
        assert response.status == 200
    default = await oai.chat.completions.create(model="m", messages=[user("hi")])

    assert (short.usage.completion_tokens, default.usage.completion_tokens) == (2, 16)
    current = await stats(http, mock)
    assert (current["requests"], current["faults_applied"]) == (1, 0)
    async with http.get(mock.url + "/_mock/requests") as response:
        assert len(await response.json()) == 1


async def test_split_streams_arrive_in_small_pieces_and_are_recorded_exactly(
        mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    async with http.post(mock.url + "/_mock/settings", json={"stream_split_max_bytes": 7, "stream_jitter_ms": 0.05,
                                                                 "record_streams": True}) as r:
        assert r.status == 200
    body = {"model": "gpt-4o-mini", "stream": True, "max_tokens": 40, "messages": [{"role": "user", "content": "Hi"}]}
    async with http.post(mock.url + "/v1/chat/completions", json=body, headers=AUTH) as response:
        pieces = [piece async for piece in response.content.iter_any()]
    received = b"".join(pieces)
    assert received == mock.state.requests[-1]["stream"].encode()
    assert received.endswith(b"data: [DONE]\n\n")
    assert len(pieces) > 2 * received.count(b"\n\n")  # far more reads than events: cut inside events


async def test_stream_split_settings_are_checked(mock: MockUpstream, http: aiohttp.ClientSession) -> None:
    for bad in ({"record_streams": 1}, {"stream_split_max_bytes": True}, {"stream_jitter_ms": -1}):
        async with http.post(mock.url + "/_mock/settings", json=bad) as response:
            assert response.status == 400, bad
