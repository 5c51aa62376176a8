"""Bedrock's own routes on the gateway (`/model/{modelId}/converse`, `/converse-stream`),
driven by boto3's real `bedrock-runtime` client with `endpoint_url` at the gateway and the
virtual key as a Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`: botocore sends it as
`Authorization: Bearer`); the gateway re-signs each request with SigV4 for the mock,
which verifies it as AWS does. Governed like every route: key, limits, budget, metering."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from sqlalchemy import select

from tests.integration.conftest import mock_control
from tests.integration.test_bedrock import CLAUDE, DOLLAR_A_TOKEN, KEY, MODEL, config, last_upstream, spent, vk
from tests.support.gateway import RunningGateway
from tollway.store.tables import RequestLog

boto3 = pytest.importorskip("boto3", reason="boto3 is a test extra")
trustme = pytest.importorskip("trustme", reason="trustme is a test extra")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402

NO_RETRIES = Config(retries={"total_max_attempts": 1})
STRICT = {"max_limit": 200, "reset_duration": "1d", "enforcement": "strict"}
HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[tuple[str, str], str]:
    """The gateway's certificate and key files, and the CA file that trusts them: boto3 sends
    a bearer token over HTTPS only (as any client should a key)."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("tls")
    cert, key, ca_file = folder / "gateway.pem", folder / "gateway.key", folder / "ca.pem"
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return (str(cert), str(key)), str(ca_file)


@pytest.fixture
def governed(gateway, mock, tls) -> Callable[..., RunningGateway]:
    """A gateway serving HTTPS with the Bedrock provider, virtual keys enforced; the key's
    limits as given."""
    def start(pricing: dict[str, Any] | None = None, **key_fields: Any) -> RunningGateway:
        settings = config(mock, governance={"virtual_keys": [vk(**key_fields)]})
        return gateway({**settings, "pricing": pricing or settings["pricing"], "enforce_virtual_keys": True},
                       tls=tls[0])

    return start


@pytest.fixture
def runtime(monkeypatch, tls):
    """A boto3 bedrock-runtime client of a gateway, authenticated with ``key`` as a Bedrock
    API key (None: SigV4-signed with made-up credentials, and no key)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)

    def client(running: RunningGateway, key: str | None = KEY) -> Any:
        if key is None:
            monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
            credentials = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "a-secret"}
        else:
            monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", key)
            credentials = {}
        return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=running.url,
                            config=NO_RETRIES, verify=tls[1], **credentials)

    client.ca_file = tls[1]  # type: ignore[attr-defined]
    return client


async def test_boto3_converse_through_the_gateway_is_charged_and_logged(governed, mock, runtime) -> None:
    running = governed(budget={"max_limit": 10, "reset_duration": "1d"})
    reply = await asyncio.to_thread(runtime(running).converse, modelId=MODEL, messages=HELLO,
                                    system=[{"text": "Be brief"}], inferenceConfig={"maxTokens": 3})
    assert reply["output"]["message"]["content"] == [{"text": "tok0 tok1 tok2"}]
    assert reply["stopReason"] == "max_tokens" and reply["usage"]["outputTokens"] == 3
    seen = await last_upstream(mock)
    assert seen["path"] == f"/model/{CLAUDE}/converse" and seen["headers"]["authorization"].startswith("AWS4-HMAC")
    assert seen["body"] == {"messages": HELLO, "system": [{"text": "Be brief"}], "inferenceConfig": {"maxTokens": 3}}
    used, _ = spent(running)
    assert used == reply["usage"]["inputTokens"] * 1_000 + 3 * 2_000  # nano-dollars at 1 and 2 USD per million
    assert _logged(running) == ("bed", "converse", 200, "bedrock", CLAUDE)


async def test_boto3_converse_stream_is_relayed_as_event_stream_and_metered(governed, mock, runtime) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"stream_split_max_bytes": 7})  # frames cut anywhere
    running = governed(budget={"max_limit": 10, "reset_duration": "1d"})

    def events() -> list[dict[str, Any]]:
        answer = runtime(running).converse_stream(modelId=MODEL, messages=HELLO, inferenceConfig={"maxTokens": 2})
        return list(answer["stream"])

    received = await asyncio.to_thread(events)
    assert [next(iter(event)) for event in received] == ["messageStart", "contentBlockDelta", "contentBlockDelta",
                                                         "contentBlockStop", "messageStop", "metadata"]
    usage = received[-1]["metadata"]["usage"]
    assert spent(running)[0] == usage["inputTokens"] * 1_000 + usage["outputTokens"] * 2_000
    assert (await last_upstream(mock))["path"] == f"/model/{CLAUDE}/converse-stream"


async def test_no_key_is_refused_in_aws_shape_even_when_signed(governed, mock, runtime) -> None:
    running = governed()
    with pytest.raises(ClientError) as caught:  # a SigV4 signature proves nothing here: the secret is the client's
        await asyncio.to_thread(runtime(running, None).converse, modelId=MODEL, messages=HELLO)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 401 and error["Error"]["Code"] == "AccessDeniedException"
    status, body = await _raw(running, tls_ca(runtime), {"messages": HELLO}, key=None)
    assert status == 401 and body["__type"] == "AccessDeniedException" and body["reason"] == "virtual_key_required"
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


async def test_limits_refuse_with_throttling_that_names_the_limit(governed, mock, runtime) -> None:
    running = governed(rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"})
    client = runtime(running)
    await asyncio.to_thread(client.converse, modelId=MODEL, messages=HELLO)
    with pytest.raises(client.exceptions.ThrottlingException) as caught:
        await asyncio.to_thread(client.converse, modelId=MODEL, messages=HELLO)
    assert "allows 1 requests per 1h" in caught.value.response["Error"]["Message"]
    status, body = await _raw(running, tls_ca(runtime), {"messages": HELLO})
    assert status == 429 and body["reason"] == "request_limited" and body["scope"]["level"] == "virtual_key"
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 1


async def test_a_stream_that_ignores_its_cap_is_cut_off_at_the_budget(governed, mock, runtime) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"completion_tokens": 2000, "ignore_max_tokens": True})
    running = governed(DOLLAR_A_TOKEN, budget=STRICT)
    received: list[dict[str, Any]] = []

    def read() -> None:
        answer = runtime(running).converse_stream(modelId=MODEL, messages=HELLO, inferenceConfig={"maxTokens": 20})
        received.extend(answer["stream"])

    with pytest.raises(EventStreamError) as caught:
        await asyncio.to_thread(read)
    assert "cut off" in str(caught.value)
    assert received[-2]["messageStop"]["stopReason"] == "max_tokens"
    text = "".join(event["contentBlockDelta"]["delta"]["text"] for event in received if "contentBlockDelta" in event)
    used, limit = spent(running)
    assert len(text) > 20 and len(text) <= used <= limit


@pytest.mark.parametrize(("fault", "raised"), [
    (("/_mock/bedrock", {"stream_exception_after": 3}), "throttlingException"),  # relayed as Bedrock sent it
    (("/_mock/faults", {"path": "/model/", "drop": "mid_stream", "after_chunks": 3}), "interrupted"),
])
async def test_a_stream_broken_upstream_ends_with_an_exception_and_is_logged(
        governed, mock, runtime, fault: tuple[str, dict[str, Any]], raised: str) -> None:
    await mock_control(mock, "POST", *fault)
    running = governed()
    received: list[dict[str, Any]] = []

    def read() -> None:
        received.extend(runtime(running).converse_stream(modelId=MODEL, messages=HELLO)["stream"])

    with pytest.raises(EventStreamError) as caught:
        await asyncio.to_thread(read)
    assert raised in str(caught.value) or raised in str(caught.value.response)
    assert "".join(event["contentBlockDelta"]["delta"]["text"] for event in received
                   if "contentBlockDelta" in event) == "tok0 tok1"
    assert _logged(running)[2] == 502


async def test_a_strict_budget_refuses_a_cap_that_does_not_fit_before_the_call(governed, mock, runtime) -> None:
    running = governed(DOLLAR_A_TOKEN, budget=STRICT)
    with pytest.raises(ClientError) as caught:
        await asyncio.to_thread(runtime(running).converse, modelId=MODEL, messages=HELLO,
                                inferenceConfig={"maxTokens": 5000})
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 402
    assert caught.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert "worst case" in caught.value.response["Error"]["Message"]
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


async def test_bedrock_errors_reach_boto3_with_their_type(governed, mock, runtime) -> None:
    running = governed()
    client = runtime(running)
    with pytest.raises(client.exceptions.ValidationException) as caught:  # the mock refuses an empty text block
        await asyncio.to_thread(client.converse, modelId=MODEL, messages=[{"role": "user", "content": [{"text": ""}]}])
    assert "blank" in caught.value.response["Error"]["Message"]


async def test_a_provider_that_cannot_answer_converse_is_a_validation_error(governed, mock, runtime) -> None:
    running = governed()
    client = runtime(running)
    with pytest.raises(client.exceptions.ValidationException) as caught:  # Bedrock's API is passed through only
        await asyncio.to_thread(client.converse, modelId="openai/gpt-4o-mini", messages=HELLO)
    assert "does not serve the converse API" in caught.value.response["Error"]["Message"]
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


async def test_the_path_decides_model_and_stream_whatever_the_body_says(governed, mock, runtime) -> None:
    running = governed()
    status, answer = await _raw(running, tls_ca(runtime), {"messages": HELLO, "stream": True,
                                                            "model": "openai/gpt-4o-mini"})
    assert status == 200 and answer["output"]["message"]["role"] == "assistant"  # whole JSON, from Claude
    seen = await last_upstream(mock)
    assert seen["path"] == f"/model/{CLAUDE}/converse" and seen["body"] == {"messages": HELLO}


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": HELLO, "inferenceConfig": {"maxTokens": 0}}, "inferenceConfig.maxTokens"),
    ({"messages": []}, "messages"),
    ({"system": [{"text": "no turns"}]}, "messages"),
])
async def test_bad_input_is_a_400_naming_the_field(governed, mock, runtime, body: dict[str, Any], field: str) -> None:
    running = governed()  # sent as raw HTTP: boto3 checks these before sending
    status, answer = await _raw(running, tls_ca(runtime), body)
    assert status == 400 and answer["__type"] == "ValidationException" and field in answer["message"]
    assert (await mock_control(mock, "GET", "/_mock/stats"))["requests"] == 0


def tls_ca(runtime: Any) -> str:
    return runtime.ca_file


async def _raw(running: RunningGateway, ca_file: str, body: dict[str, Any], key: str | None = KEY,
               operation: str = "converse") -> tuple[int, Any]:
    """POST ``body`` to the model's Converse route as plain HTTPS, the key as a bearer token."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"{running.url}/model/{quote(MODEL, safe='')}/{operation}"
    async with aiohttp.ClientSession() as session, session.post(
            url, json=body, headers=headers, ssl=ssl.create_default_context(cafile=ca_file)) as response:
        return response.status, await response.json(content_type=None)


def _logged(running: RunningGateway) -> tuple[Any, ...]:
    """The last request-log row: key, route, status, provider, model."""
    async def rows() -> list[RequestLog]:
        await running.runtime.log_writer.flush()
        async with running.runtime.db.session() as session:
            return list(await session.scalars(select(RequestLog)))

    row = running.call(rows())[-1]
    return row.virtual_key_id, row.route, row.status, row.provider, row.model
