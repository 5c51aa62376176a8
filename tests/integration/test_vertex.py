"""Vertex AI through the gateway: Gemini and Claude models of one `type: vertex` provider,
reached with the `openai`, `anthropic` and `google-genai` SDKs, authenticated with a service
account's tokens minted by google-auth at the mock's token endpoint (which checks the JWT's
signature against the test key generated here), governed like every other provider."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.integration.conftest import mock_control
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import anthropic_client, openai_client
from tollway.governance.engine import hash_key
from tollway.governance.model import budget_counter
from tollway.server.services import Services
from tollway.testing.mock_content import text_tokens
from tollway.testing.mock_vertex import VERTEX_ANTHROPIC_VERSION, new_service_account

pytest.importorskip("google.auth", reason="google-auth is the vertex extra (in the test extra)")
genai = pytest.importorskip("google.genai", reason="google-genai is a test extra")
from google.genai import types as genai_types  # noqa: E402

KEY = "tw-vertex-0123456789abcdefghijklmnop"
HELLO = [{"role": "user", "content": "Hello"}]
GEMINI, CLAUDE = "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4-5@20250929"
BASE = "/v1/projects/mock-project/locations/us-east5/publishers"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# USD per million tokens: every request's cost is known.
PRICING = {GEMINI: {"input": 1, "output": 2}, CLAUDE: {"input": 3, "output": 15}}
START_MS = 1_767_225_600_000


class MovableClock:
    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture(scope="module")
def service_account_key() -> tuple[dict[str, Any], str]:
    """One RSA key for the module (generating one takes a moment); its token_uri is set per mock."""
    return new_service_account("http://placeholder/token")


@pytest.fixture
async def account(mock, service_account_key) -> dict[str, Any]:
    """The service-account JSON, its key registered with this test's mock."""
    info, public = service_account_key
    await mock_control(mock, "POST", "/_mock/vertex/accounts", {"client_email": info["client_email"],
                                                                 "public_key": public})
    return {**info, "token_uri": mock.url + "/token"}


def config(mock, account: dict[str, Any], **extra: Any) -> dict[str, Any]:
    vertex = {"type": "vertex", "base_url": mock.url, "region": "us-east5", "credentials": json.dumps(account),
              **extra.pop("vertex", {})}
    providers = mock_providers(mock.url, vertex=vertex)
    return {"providers": providers, "pricing": PRICING, "governance": extra.pop("governance", {}), **extra}


def openai_sdk(gateway: RunningGateway, key: str = "sk-placeholder") -> openai.AsyncOpenAI:
    return openai_client(gateway.v1, key)


def anthropic_sdk(gateway: RunningGateway, key: str = "placeholder") -> anthropic.AsyncAnthropic:
    return anthropic_client(gateway.url, key)


async def upstream_calls(mock, path: str = BASE) -> list[dict[str, Any]]:
    return await mock_control(mock, "GET", f"/_mock/requests?path={path}")


async def vertex_counts(mock) -> dict[str, Any]:
    return await mock_control(mock, "GET", "/_mock/vertex")


def vk(**fields: Any) -> dict[str, Any]:
    return {"id": "vx", "name": "vertex key", "value": KEY, **fields}


BUDGET = {"virtual_keys": [vk(budget={"max_limit": 100, "reset_duration": "1d"})]}


def spent(running: RunningGateway) -> int:
    """Nano-USD charged to the virtual key's budget."""
    budget = running.runtime.snapshot.keys_by_hash[hash_key(KEY)].limits.budget
    state = running.counters().get(budget_counter(budget.id))
    return state.used if state else 0


# --- Gemini models on Vertex ---------------------------------------------------------------------

async def test_openai_chat_reaches_a_gemini_model_with_a_minted_token(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    reply = await openai_sdk(running).chat.completions.create(
        model=GEMINI, max_tokens=5, messages=[{"role": "system", "content": "Be brief"}, *HELLO])
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4" and reply.usage.completion_tokens == 5
    [seen] = await upstream_calls(mock)
    assert seen["path"] == f"{BASE}/google/models/gemini-2.5-flash:generateContent"
    assert seen["headers"]["authorization"].startswith("Bearer ya29.mock-")
    assert "x-goog-api-key" not in seen["headers"]
    assert seen["body"] == {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
                            "systemInstruction": {"parts": [{"text": "Be brief"}]},
                            "generationConfig": {"maxOutputTokens": 5}}
    assert (await vertex_counts(mock))["grants"] == 1


async def test_a_gemini_stream_carries_usage_and_is_charged(gateway, mock, account) -> None:
    running = gateway(config(mock, account, governance=BUDGET))
    stream = await openai_sdk(running, KEY).chat.completions.create(
        model=GEMINI, max_tokens=6, stream=True, stream_options={"include_usage": True}, messages=HELLO)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 tok4 tok5"
    [usage] = [c.usage for c in chunks if c.usage]
    [seen] = await upstream_calls(mock)
    assert seen["path"].endswith(":streamGenerateContent") and seen["query"] == {"alt": "sse"}
    assert spent(running) == (usage.prompt_tokens * 1 + 6 * 2) * 1000  # nano-USD


async def test_tools_round_trip_through_a_gemini_model(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    first = await openai_sdk(running).chat.completions.create(
        model=GEMINI, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.arguments == '{"city":"Paris"}'
    [seen] = await upstream_calls(mock)
    assert seen["body"]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"


async def test_google_sdk_reaches_vertex_through_the_gateways_google_route(gateway, mock, account) -> None:
    running = gateway(config(mock, account, governance=BUDGET))
    client = genai.Client(api_key=KEY, http_options=genai_types.HttpOptions(base_url=running.url, retry_options=None))
    reply = await client.aio.models.generate_content(model=GEMINI, contents="Hello",
                                                     config=genai_types.GenerateContentConfig(max_output_tokens=3))
    assert reply.text == "tok0 tok1 tok2" and reply.usage_metadata.candidates_token_count == 3
    pieces = [chunk.text async for chunk in await client.aio.models.generate_content_stream(
        model=GEMINI, contents="Hello", config=genai_types.GenerateContentConfig(max_output_tokens=2))]
    assert "".join(p or "" for p in pieces) == "tok0 tok1"
    paths = [call["path"] for call in await upstream_calls(mock)]
    assert paths == [f"{BASE}/google/models/gemini-2.5-flash:generateContent",
                     f"{BASE}/google/models/gemini-2.5-flash:streamGenerateContent"]
    assert spent(running) > 0


async def test_embeddings_use_predict_for_text_embedding_models_and_embed_content_for_gemini(
        gateway, mock, account) -> None:
    running = gateway(config(mock, account, governance=BUDGET,
                             pricing={"vertex/text-embedding-005": {"input": 1000, "output": 0}}))
    client = openai_sdk(running, KEY)
    result = await client.embeddings.create(model="vertex/text-embedding-005", input=["hello", "hello world"],
                                            dimensions=4)
    counted = text_tokens("hello") + text_tokens("hello world")  # what the mock's statistics say
    assert [len(item.embedding) for item in result.data] == [4, 4] and result.usage.prompt_tokens == counted
    [predicted] = await upstream_calls(mock, ":predict")
    assert predicted["path"] == f"{BASE}/google/models/text-embedding-005:predict"
    assert predicted["body"] == {"instances": [{"content": "hello"}, {"content": "hello world"}],
                                 "parameters": {"outputDimensionality": 4}}
    assert spent(running) == counted * 1000 * 1000  # charged what Vertex counted, at 1000 USD per million
    await client.embeddings.create(model="vertex/gemini-embedding-001", input="hello")
    [embedded] = await upstream_calls(mock, ":embedContent")
    assert embedded["body"] == {"content": {"parts": [{"text": "hello"}]}}


async def test_token_ids_cannot_be_embedded_on_vertex(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_sdk(running).embeddings.create(model="vertex/text-embedding-005", input=[[1, 2, 3]])
    assert caught.value.body["param"] == "input"
    assert await upstream_calls(mock) == []


async def test_anthropic_count_tokens_on_a_gemini_model_sends_vertexs_shape(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    counted = await anthropic_sdk(running).messages.count_tokens(
        model=GEMINI, system="Be brief", messages=[{"role": "user", "content": "Hello there"}])
    assert counted.input_tokens == 3 + 3 + 2 + 3
    [seen] = await upstream_calls(mock)
    assert seen["path"] == f"{BASE}/google/models/gemini-2.5-flash:countTokens"
    assert set(seen["body"]) == {"contents", "systemInstruction"}  # no generateContentRequest wrapper


# --- Claude models on Vertex ----------------------------------------------------------------------

async def test_anthropic_messages_pass_to_claude_without_a_model_and_with_vertexs_version(
        gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    reply = await anthropic_sdk(running).messages.create(model=CLAUDE, max_tokens=4, messages=HELLO)
    assert reply.content[0].text == "tok0 tok1 tok2 tok3" and reply.usage.output_tokens == 4
    [seen] = await upstream_calls(mock)
    assert seen["path"] == f"{BASE}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    assert seen["body"] == {"anthropic_version": VERTEX_ANTHROPIC_VERSION, "max_tokens": 4, "messages": HELLO}
    assert seen["headers"]["authorization"].startswith("Bearer ya29.mock-")


async def test_an_anthropic_stream_from_claude_on_vertex_is_relayed_and_charged(gateway, mock, account) -> None:
    running = gateway(config(mock, account, governance=BUDGET))
    async with anthropic_sdk(running, KEY).messages.stream(model=CLAUDE, max_tokens=5, messages=HELLO) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "tok0 tok1 tok2 tok3 tok4" and final.usage.output_tokens == 5
    [seen] = await upstream_calls(mock)
    assert seen["path"].endswith(":streamRawPredict") and seen["body"]["stream"] is True
    assert "model" not in seen["body"]
    assert spent(running) == (final.usage.input_tokens * 3 + 5 * 15) * 1000


async def test_openai_chat_reaches_claude_on_vertex_streaming_with_tools(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    stream = await openai_sdk(running).chat.completions.create(
        model=CLAUDE, stream=True, stream_options={"include_usage": True}, tools=[WEATHER_TOOL],
        tool_choice="required", messages=HELLO)
    chunks = [chunk async for chunk in stream]
    calls = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "get_weather"
    assert "".join(c.function.arguments or "" for c in calls) == '{"city":"Paris"}'
    assert [c.usage.completion_tokens for c in chunks if c.usage]
    [seen] = await upstream_calls(mock)
    assert seen["path"].endswith("claude-sonnet-4-5@20250929:streamRawPredict")
    assert seen["body"]["tools"][0]["name"] == "get_weather" and "model" not in seen["body"]


async def test_responses_api_reaches_claude_and_gemini_on_one_provider(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    client = openai_sdk(running)
    claude = await client.responses.create(model=CLAUDE, input="Hello", max_output_tokens=3)
    gemini = await client.responses.create(model=GEMINI, input="Hello", max_output_tokens=3)
    assert claude.output_text == gemini.output_text == "tok0 tok1 tok2"
    paths = [call["path"] for call in await upstream_calls(mock)]
    assert paths == [f"{BASE}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
                     f"{BASE}/google/models/gemini-2.5-flash:generateContent"]


async def test_claude_count_tokens_goes_to_vertexs_counter_naming_the_model(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    counted = await anthropic_sdk(running).messages.count_tokens(model=CLAUDE, messages=HELLO)
    assert counted.input_tokens > 0
    [seen] = await upstream_calls(mock)
    assert seen["path"] == f"{BASE}/anthropic/models/count-tokens:rawPredict"
    assert seen["body"]["model"] == "claude-sonnet-4-5@20250929"
    assert seen["body"]["anthropic_version"] == VERTEX_ANTHROPIC_VERSION


async def test_a_model_config_names_the_publisher_of_a_model_its_name_does_not_tell(gateway, mock, account) -> None:
    running = gateway(config(mock, account, vertex={"publishers": {"house-model": "anthropic"}}))
    await anthropic_sdk(running).messages.create(model="vertex/house-model", max_tokens=2, messages=HELLO)
    [seen] = await upstream_calls(mock)
    assert seen["path"] == f"{BASE}/anthropic/models/house-model:rawPredict"


async def test_errors_reach_each_client_in_its_own_shape(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    await mock_control(mock, "POST", "/_mock/faults", {"path": f"{BASE}/google/", "status": 429, "count": 1})
    with pytest.raises(openai.RateLimitError) as openai_caught:
        await openai_sdk(running).chat.completions.create(model=GEMINI, messages=HELLO)
    assert openai_caught.value.body["code"] == "RESOURCE_EXHAUSTED"
    await mock_control(mock, "POST", "/_mock/faults", {"path": f"{BASE}/anthropic/", "status": 529, "count": 1})
    with pytest.raises(anthropic.APIStatusError) as anthropic_caught:
        await anthropic_sdk(running).messages.create(model=CLAUDE, max_tokens=2, messages=HELLO)
    assert anthropic_caught.value.status_code == 529
    assert anthropic_caught.value.body["error"]["type"] == "overloaded_error"


async def test_the_model_list_names_the_configured_vertex_models(gateway, mock, account) -> None:
    governance = {"model_configs": [{"model_name": "gemini-2.5-flash", "provider": "vertex"},
                                    {"model_name": "claude-sonnet-4-5@20250929", "provider": "vertex"}]}
    running = gateway(config(mock, account, governance=governance))
    listed = [model.id async for model in openai_sdk(running).models.list()]
    assert GEMINI in listed and CLAUDE in listed


# --- Tokens ---------------------------------------------------------------------------------------

async def test_concurrent_first_requests_mint_one_token(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    client = openai_sdk(running)
    await asyncio.gather(*(client.chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
                           for _ in range(20)))
    counts = await vertex_counts(mock)
    assert counts["grants"] == 1 and counts["refused_grants"] == 0
    assert len({call["headers"]["authorization"] for call in await upstream_calls(mock)}) == 1


async def test_the_token_is_refreshed_before_it_expires_while_serving(gateway, mock, account) -> None:
    await mock_control(mock, "POST", "/_mock/vertex/settings", {"token_lifetime_s": 600})
    clock = MovableClock()
    running = gateway(config(mock, account), Services(clock_ms=clock))
    client = openai_sdk(running)
    await client.chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
    clock.advance(250)  # well within the token's life: no refresh
    await client.chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
    assert (await vertex_counts(mock))["grants"] == 1
    clock.advance(100)  # past the refresh point (half of a 10-minute life), not past expiry
    await asyncio.gather(*(client.chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
                           for _ in range(10)))  # the old token serves while one refresh runs
    await client.chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
    assert (await vertex_counts(mock))["grants"] == 2
    tokens = [call["headers"]["authorization"] for call in await upstream_calls(mock)]
    assert tokens[0] == tokens[1] and tokens[-1] != tokens[0]


async def test_a_revoked_token_is_replaced_and_the_request_served(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    client = anthropic_sdk(running)
    await client.messages.create(model=CLAUDE, max_tokens=1, messages=HELLO)
    await mock_control(mock, "DELETE", "/_mock/vertex/tokens")
    reply = await client.messages.create(model=CLAUDE, max_tokens=1, messages=HELLO)
    assert reply.content[0].text == "tok0"
    counts = await vertex_counts(mock)
    assert counts["grants"] == 2 and counts["refused_tokens"] == 1


async def test_a_failing_token_endpoint_is_a_502_naming_the_provider(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    await mock_control(mock, "POST", "/_mock/faults", {"path": "/token", "status": 401, "count": 1,
                                                       "body": {"error": "invalid_client", "error_description": "no"}})
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_sdk(running).chat.completions.create(model=GEMINI, messages=HELLO)
    assert caught.value.status_code == 502
    message = caught.value.body["message"]
    assert "vertex" in message and "access token" in message
    assert await upstream_calls(mock) == []  # nothing sent without a token
    with pytest.raises(anthropic.APIStatusError) as anthropic_caught:  # still failing: answered, not hung
        await anthropic_sdk(running).messages.create(model=CLAUDE, max_tokens=1, messages=HELLO)
    assert anthropic_caught.value.status_code == 502


async def test_a_key_the_token_endpoint_does_not_know_is_refused_there(gateway, mock, account) -> None:
    stranger, _ = new_service_account(mock.url + "/token", email="stranger@mock-project.iam.gserviceaccount.com")
    running = gateway(config(mock, stranger))
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_sdk(running).chat.completions.create(model=GEMINI, messages=HELLO)
    assert caught.value.status_code == 502 and "no such service account" in caught.value.body["message"]
    assert (await vertex_counts(mock))["refused_grants"] == 1


async def test_credentials_from_a_file_and_from_the_environment(gateway, mock, account, tmp_path: Path,
                                                                monkeypatch) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(account))
    from_file = gateway(config(mock, account, vertex={"credentials": str(path)}))
    await openai_sdk(from_file).chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
    monkeypatch.setenv("VERTEX_SA_JSON", json.dumps(account))
    from_env = gateway(config(mock, account, vertex={"credentials": "env.VERTEX_SA_JSON"}))
    await openai_sdk(from_env).chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
    assert (await vertex_counts(mock))["grants"] == 2


# --- Governance -----------------------------------------------------------------------------------

async def test_provider_and_model_limits_govern_vertex(gateway, mock, account) -> None:
    governance = {"model_configs": [{"model_name": "claude-sonnet-4-5@20250929", "provider": "vertex",
                                     "rate_limit": {"request_max_limit": 1, "request_reset_duration": "1h"}}]}
    running = gateway(config(mock, account, governance=governance,
                             vertex={"rate_limit": {"request_max_limit": 3, "request_reset_duration": "1h"}}))
    client = anthropic_sdk(running)
    await client.messages.create(model=CLAUDE, max_tokens=1, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as model_caught:  # the Claude model's own limit
        await client.messages.create(model=CLAUDE, max_tokens=1, messages=HELLO)
    assert "model config" in model_caught.value.message.lower()
    gemini = openai_sdk(running)
    for _ in range(2):
        await gemini.chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:  # the provider's limit, across both publishers
        await gemini.chat.completions.create(model=GEMINI, max_tokens=1, messages=HELLO)
    assert caught.value.body["scope"] == {**caught.value.body["scope"], "level": "provider", "id": "vertex"}
    assert len(await upstream_calls(mock)) == 3


async def test_a_strict_budget_reserves_claudes_worst_case_and_refuses_what_it_cannot_cover(
        gateway, mock, account) -> None:
    # 1 USD at 15 USD per million output tokens: about 66,000 output tokens fit
    governance = {"virtual_keys": [vk(budget={"max_limit": 1, "reset_duration": "1d", "enforcement": "strict"})]}
    running = gateway(config(mock, account, governance=governance))
    client = openai_sdk(running, KEY)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=CLAUDE, max_tokens=100_000, messages=HELLO)
    assert caught.value.status_code in (402, 429)
    assert await upstream_calls(mock) == []
    await client.chat.completions.create(model=CLAUDE, max_tokens=1000, messages=HELLO)
    assert len(await upstream_calls(mock)) == 1


async def test_the_google_route_governs_a_vertex_provider_with_its_denials_in_googles_shape(
        gateway, mock, account) -> None:
    governance = {"virtual_keys": [vk(rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"})]}
    running = gateway(config(mock, account, governance=governance))
    url = f"{running.url}/v1beta/models/{GEMINI}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with aiohttp.ClientSession(headers={"x-goog-api-key": KEY}) as session:
        async with session.post(url, json=body) as first:
            assert first.status == 200
        async with session.post(url, json=body) as second:
            assert second.status == 429
            assert (await second.json())["error"]["status"] == "RESOURCE_EXHAUSTED"
    [seen] = await upstream_calls(mock)
    assert KEY not in json.dumps(seen["headers"])  # the virtual key is the gateway's, never sent upstream


async def test_the_google_route_refuses_a_claude_model_on_vertex(gateway, mock, account) -> None:
    running = gateway(config(mock, account))
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    async with aiohttp.ClientSession() as session, session.post(
            f"{running.url}/v1beta/models/{CLAUDE}:generateContent", json=body,
            headers={"x-goog-api-key": "placeholder"}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["status"] == "INVALID_ARGUMENT"
    assert await upstream_calls(mock) == []


async def test_a_vertex_outage_falls_back_to_anthropic_with_the_clients_body_intact(gateway, mock, account) -> None:
    running = gateway(config(mock, account, fallbacks={CLAUDE: ["anthropic/claude-sonnet-4-5"]}))
    await mock_control(mock, "POST", "/_mock/faults", {"path": f"{BASE}/anthropic/", "status": 503, "count": 1})
    reply = await anthropic_sdk(running).messages.create(model=CLAUDE, max_tokens=2, messages=HELLO)
    assert reply.content[0].text == "tok0 tok1"
    vertex_call, anthropic_call = await mock_control(mock, "GET", "/_mock/requests?path=/v1/")
    assert vertex_call["path"].endswith(":rawPredict") and "model" not in vertex_call["body"]
    assert anthropic_call["path"] == "/v1/messages"
    assert anthropic_call["body"]["model"] == "claude-sonnet-4-5" and "anthropic_version" not in anthropic_call["body"]
