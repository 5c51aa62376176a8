"""The mock's Bedrock wire format, checked with boto3's own `bedrock-runtime` and `sts`
clients (botocore parses Converse JSON, decodes the event-stream framing and reads AWS's
error shape), and its SigV4 verification refusing what AWS refuses."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.integration.conftest import mock_control
from tollway.testing.mock_bedrock_auth import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY, SignedRequest, sign

boto3 = pytest.importorskip("boto3", reason="boto3 is a test extra")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402

NO_RETRIES = Config(retries={"total_max_attempts": 1})
CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
HELLO = [{"role": "user", "content": [{"text": "Hello"}]}]
WEATHER = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}]}


def runtime(mock, secret: str = MOCK_SECRET_ACCESS_KEY) -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=mock.url,
                        aws_access_key_id=MOCK_ACCESS_KEY_ID, aws_secret_access_key=secret,
                        config=NO_RETRIES)


async def test_boto3_converse_reads_the_mocks_answer(mock) -> None:
    reply = await asyncio.to_thread(runtime(mock).converse, modelId=CLAUDE, messages=HELLO,
                                    system=[{"text": "Be brief"}], inferenceConfig={"maxTokens": 3})
    assert reply["output"]["message"]["content"] == [{"text": "tok0 tok1 tok2"}]
    assert reply["stopReason"] == "max_tokens"
    assert reply["usage"] == {"inputTokens": 5 + 5, "outputTokens": 3, "totalTokens": 13}  # 2 tokens + 3 a turn


async def test_boto3_decodes_the_mocks_event_stream(mock) -> None:
    await mock_control(mock, "POST", "/_mock/settings", {"cached_tokens": 2})

    def events() -> list[dict[str, Any]]:
        return list(runtime(mock).converse_stream(modelId=CLAUDE, messages=HELLO, inferenceConfig={"maxTokens": 2})
                    ["stream"])

    received = await asyncio.to_thread(events)
    assert [next(iter(e)) for e in received] == ["messageStart", "contentBlockDelta", "contentBlockDelta",
                                                 "contentBlockStop", "messageStop", "metadata"]
    assert received[4]["messageStop"]["stopReason"] == "max_tokens"
    assert received[5]["metadata"]["usage"] == {"inputTokens": 3, "outputTokens": 2, "totalTokens": 7,
                                                "cacheReadInputTokens": 2, "cacheWriteInputTokens": 0}


async def test_boto3_streams_a_tool_use_in_pieces(mock) -> None:
    def events() -> list[dict[str, Any]]:
        return list(runtime(mock).converse_stream(modelId=CLAUDE, messages=[
            {"role": "user", "content": [{"text": "weather in Paris?"}]}], toolConfig=WEATHER)["stream"])

    received = await asyncio.to_thread(events)
    start = received[1]["contentBlockStart"]["start"]["toolUse"]
    pieces = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in received if "contentBlockDelta" in e]
    assert start["name"] == "get_weather" and json.loads("".join(pieces)) == {"city": "Paris"}


async def test_boto3_raises_the_mid_stream_exception(mock) -> None:
    await mock_control(mock, "POST", "/_mock/bedrock", {"stream_exception_after": 2})

    def events() -> None:
        list(runtime(mock).converse_stream(modelId=CLAUDE, messages=HELLO)["stream"])

    with pytest.raises(EventStreamError) as caught:
        await asyncio.to_thread(events)
    assert caught.value.response["Error"]["Code"] == "throttlingException"


async def test_boto3_invokes_titan_and_cohere_embeddings(mock) -> None:
    client = runtime(mock)
    titan = await asyncio.to_thread(client.invoke_model, modelId="amazon.titan-embed-text-v2:0",
                                    body=json.dumps({"inputText": "hello", "dimensions": 256}))
    body = json.loads(titan["body"].read())
    assert len(body["embedding"]) == 256 and body["inputTextTokenCount"] == 2
    cohere = await asyncio.to_thread(client.invoke_model, modelId="cohere.embed-english-v3",
                                     body=json.dumps({"texts": ["a", "b"], "input_type": "search_query"}))
    assert len(json.loads(cohere["body"].read())["embeddings"]) == 2


async def test_fault_injection_speaks_aws_errors(mock) -> None:
    await mock_control(mock, "POST", "/_mock/faults", {"path": "/model/", "status": 429, "count": 1})
    with pytest.raises(ClientError) as caught:
        await asyncio.to_thread(runtime(mock).converse, modelId=CLAUDE, messages=HELLO)
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


async def test_an_invalid_converse_body_is_a_validation_exception(mock) -> None:
    with pytest.raises(ClientError) as caught:  # two user turns in a row
        await asyncio.to_thread(runtime(mock).converse, modelId=CLAUDE, messages=HELLO + HELLO)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "alternate" in caught.value.response["Error"]["Message"]


# --- SigV4 as AWS checks it --------------------------------------------------------------------

async def test_a_wrong_secret_is_an_invalid_signature(mock) -> None:
    with pytest.raises(ClientError) as caught:
        await asyncio.to_thread(runtime(mock, "not-the-secret").converse, modelId=CLAUDE, messages=HELLO)
    error = caught.value.response["Error"]
    assert error["Code"] == "InvalidSignatureException" and "does not match" in error["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def post_signed(mock, body: bytes, *, at: float | None = None, tamper: bytes | None = None,
                      secret: str = MOCK_SECRET_ACCESS_KEY) -> tuple[int, dict[str, Any], str]:
    """POST a Converse body signed by the mock's own signer (at ``at``), optionally sending
    ``tamper`` instead of the signed body."""
    path = f"/model/{CLAUDE.replace(':', '%3A')}/converse"
    host = mock.url.removeprefix("http://")
    request = SignedRequest("POST", path, {"host": host, "content-type": "application/json"}, body)
    headers = sign(request, MOCK_ACCESS_KEY_ID, secret, "us-east-1", "bedrock", time.time() if at is None else at)
    headers.pop("host")
    async with aiohttp.ClientSession() as session, session.post(
            URL(mock.url + path, encoded=True), data=tamper if tamper is not None else body, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers.get("x-amzn-ErrorType", "")


async def test_signature_checks_accept_good_and_refuse_stale_tampered_and_unknown(mock) -> None:
    body = json.dumps({"messages": HELLO}).encode()
    status, _, _ = await post_signed(mock, body)
    assert status == 200
    status, error, kind = await post_signed(mock, body, at=time.time() - 600)
    assert status == 403 and kind.startswith("InvalidSignatureException") and "Signature expired" in error["message"]
    status, error, kind = await post_signed(mock, body, tamper=body.replace(b"Hello", b"Hellp"))
    assert status == 403 and kind.startswith("InvalidSignatureException")
    status, error, kind = await post_signed(mock, body, secret="wrong")
    assert status == 403 and "does not match" in error["message"]
    async with aiohttp.ClientSession() as session, session.post(mock.url + "/model/x.y/converse", data=body) as r:
        assert r.status == 403 and r.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationToken")


async def test_sts_issues_temporary_credentials_the_mock_then_accepts(mock) -> None:
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=mock.url, aws_access_key_id=MOCK_ACCESS_KEY_ID,
                       aws_secret_access_key=MOCK_SECRET_ACCESS_KEY)
    issued = (await asyncio.to_thread(sts.assume_role, RoleArn="arn:aws:iam::123456789012:role/r",
                                      RoleSessionName="tollway"))["Credentials"]
    temporary = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=mock.url,
                             aws_access_key_id=issued["AccessKeyId"], aws_secret_access_key=issued["SecretAccessKey"],
                             aws_session_token=issued["SessionToken"], config=NO_RETRIES)
    reply = await asyncio.to_thread(temporary.converse, modelId=CLAUDE, messages=HELLO)
    assert reply["output"]["message"]["content"]
    no_token = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=mock.url,
                            aws_access_key_id=issued["AccessKeyId"], aws_secret_access_key=issued["SecretAccessKey"],
                            config=NO_RETRIES)
    with pytest.raises(ClientError) as caught:
        await asyncio.to_thread(no_token.converse, modelId=CLAUDE, messages=HELLO)
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
