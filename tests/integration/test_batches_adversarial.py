"""Ways a batch could run ungoverned work, each refused before the provider sees it: another
key's file or batch, a model the key may not use, several models or endpoints in one file, a
batch declaring another endpoint than its lines, endpoints and fields the gateway cannot
bound, a bad line deep in the file, files for other purposes, and providers without a batch
API. Also: a line without an output cap is charged the model's context window, and Azure
OpenAI's batches go to its deployment."""

from __future__ import annotations

import io
import math
from typing import Any

import openai
import pytest

from tests.integration.conftest import mock_control
from tests.integration.test_batches import (
    KEY,
    LIMITS,
    NANO_IN,
    NANO_OUT,
    OTHER,
    PRICING,
    batch_gateway,
    chat_line,
    counters,
    follow_up,
    jsonl,
    sdk,
    upload,
    worst,
)
from tests.integration.test_governance import key
from tests.support.gateway import mock_providers
from tests.support.sdk_clients import openai_client
from tollway.providers.client import Api
from tollway.proxy.worst_case import analyse

CREATE = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}


async def provider_files(mock) -> list[dict[str, Any]]:
    """The uploads the provider received."""
    return [r for r in await mock_control(mock, "GET", "/_mock/requests?path=/files") if r["method"] == "POST"]


async def refused_upload(client: openai.AsyncOpenAI, lines: list[Any] | bytes, purpose: str = "batch") -> Any:
    data = lines if isinstance(lines, bytes) else jsonl(lines)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.files.create(file=("batch.jsonl", io.BytesIO(data)), purpose=purpose)  # type: ignore[arg-type]
    return caught.value


async def test_a_key_may_not_batch_or_read_another_keys_file(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS), key(OTHER, id="other", **LIMITS)])
    file_id = await upload(sdk(running), [chat_line(0)])
    thief = sdk(running, OTHER)
    with pytest.raises(openai.NotFoundError):
        await thief.batches.create(input_file_id=file_id, **CREATE)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        await thief.files.content(file_id)
    with pytest.raises(openai.NotFoundError):
        await thief.files.delete(file_id)
    assert counters(running, OTHER)[1:] == (0, 0)  # nothing charged to either
    assert counters(running)[1:] == (0, 0)
    batch = await sdk(running).batches.create(input_file_id=file_id, **CREATE)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        await thief.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        await thief.batches.cancel(batch.id)
    assert (await thief.batches.list()).data == []
    assert [item.id for item in (await sdk(running).batches.list()).data] == [batch.id]
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    output = (await sdk(running).batches.retrieve(batch.id)).output_file_id
    assert output is not None
    with pytest.raises(openai.NotFoundError):  # the results belong to the batch's key too
        await thief.files.content(output)


async def test_a_file_uploaded_to_the_provider_directly_cannot_be_batched(gateway, mock, oai) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    direct = await oai.files.create(file=("b.jsonl", io.BytesIO(jsonl([chat_line(0)]))), purpose="batch")
    with pytest.raises(openai.NotFoundError):  # the gateway never read it: it cannot bound it
        await sdk(running).batches.create(input_file_id=direct.id, **CREATE)  # type: ignore[arg-type]


async def test_a_line_for_a_model_the_key_may_not_use_refuses_the_upload(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, allowed_models=["gpt-4.1"], **LIMITS)])
    error = await refused_upload(sdk(running), [chat_line(0)])
    assert error.status_code == 403 and error.body["type"] == "model_blocked"
    assert await provider_files(mock) == []


@pytest.mark.parametrize(("lines", "named"), [
    ([chat_line(0), {**chat_line(1), "body": {**chat_line(1)["body"], "model": "openai/gpt-4.1"}}], "a batch runs one model"),
    ([chat_line(0), {**chat_line(1), "url": "/v1/embeddings",
                     "body": {"model": "openai/gpt-4o-mini", "input": "x"}}], "a batch runs one endpoint"),
    ([{**chat_line(0), "url": "/v1/moderations"}], "not a batch endpoint this gateway governs"),
    ([chat_line(0, stream=True)], "'body.stream' is not allowed"),
    ([chat_line(0, tools=[{"type": "web_search"}])], "built-in tool 'web_search'"),
    ([chat_line(0, web_search_options={})], "'body.web_search_options' is not allowed"),
    ([chat_line(0), chat_line(0)], "used twice"),
    ([chat_line(0), {**chat_line(1), "method": "GET"}], "'method' must be"),
    ([chat_line(0, max_tokens=10, max_completion_tokens=20)], "both set"),
], ids=["two-models", "two-endpoints", "ungoverned-endpoint", "stream", "built-in-tool", "web-search", "duplicate-id",
        "method", "two-caps"])
async def test_lines_the_gateway_cannot_bound_refuse_the_upload(gateway, mock, lines, named) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    error = await refused_upload(sdk(running), lines)
    assert error.status_code == 400 and named in error.message, error.message
    assert error.body["param"] == "file"
    assert await provider_files(mock) == []


async def test_a_bad_line_deep_in_the_file_leaves_nothing_at_the_provider(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    data = jsonl([chat_line(i) for i in range(500)]) + b'{"custom_id": "bad", not json}\n'
    error = await refused_upload(sdk(running), data)
    assert error.status_code == 400 and "line 501 is not valid JSON" in error.message
    assert await provider_files(mock) == []


async def test_files_for_other_purposes_are_refused(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    error = await refused_upload(sdk(running), [chat_line(0)], purpose="assistants")
    assert error.status_code == 400 and error.body["param"] == "purpose"
    assert await provider_files(mock) == []


async def test_a_batch_must_declare_the_endpoint_its_lines_name(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    file_id = await upload(sdk(running), [chat_line(0)])
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(running).batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    assert caught.value.body["param"] == "endpoint"
    assert counters(running)[1:] == (0, 0)


async def test_a_provider_without_a_batch_api_is_refused_by_name(gateway, mock) -> None:
    providers = {"gemini": {"type": "gemini", "base_url": mock.url, "keys": [{"value": "AIza-test"}]}}
    running = gateway({"providers": providers, "enforce_virtual_keys": False})
    line = {**chat_line(0), "body": {**chat_line(0)["body"], "model": "gemini/gemini-2.0-flash"}}
    error = await refused_upload(openai_client(running.v1, "x"), [line])
    assert error.status_code == 400 and "'gemini'" in error.message and error.body["param"] == "model"


async def test_a_line_without_an_output_cap_is_charged_the_models_context_window(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, **LIMITS)])
    client = sdk(running)
    lines = [chat_line(0, max_tokens=None)]
    file_id = await upload(client, lines)
    await client.batches.create(input_file_id=file_id, **CREATE)  # type: ignore[arg-type]
    prompt = analyse(Api.CHAT, {**lines[0]["body"], "model": "gpt-4o-mini"}, "gpt-4o-mini").prompt_tokens
    assert counters(running)[1:] == (prompt + 128_000, math.ceil((prompt * NANO_IN + 128_000 * NANO_OUT) * 0.5))
    assert worst(lines) == counters(running)[1:]


async def test_azure_openai_batches_go_to_the_deployment(gateway, mock, oai) -> None:
    running = gateway({"providers": mock_providers(mock.url),
                       "enforce_virtual_keys": True, "pricing": {"azure/gpt-4o-mini": PRICING["openai/gpt-4o-mini"]},
                       "governance": {"virtual_keys": [key(KEY, **LIMITS)]}})
    client = sdk(running)
    line = {**chat_line(0), "body": {**chat_line(0)["body"], "model": "azure/gpt-4o-mini"}}
    file_id = await upload(client, [line])
    sent = (await provider_files(mock))[-1]
    assert sent["path"] == "/openai/files" and sent["query"]["api-version"] and sent["headers"]["api-key"]
    content = (await oai.files.content(file_id)).read()
    assert b'"model":"mini-deploy"' in content
    batch = await client.batches.create(input_file_id=file_id, **CREATE)  # type: ignore[arg-type]
    assert counters(running)[0] == 2
    await mock_control(mock, "POST", f"/_mock/batches/{batch.id}/complete")
    assert await follow_up(running) == 1
    assert counters(running)[1] == 15  # 10 prompt + 5 output tokens, as the results say


async def test_a_key_limited_to_some_models_lists_its_batches_before_it_has_any(gateway, mock) -> None:
    running = batch_gateway(gateway, mock, [key(KEY, allowed_models=["openai/gpt-4o-mini"], **LIMITS)])
    assert (await sdk(running).batches.list()).data == []
    assert counters(running)[0] == 1  # a request like any other
