"""Bedrock's own routes: the model and operation read from the raw path, and errors in the
shape the AWS SDKs read (`__type` and `message`)."""

from __future__ import annotations

import orjson
import pytest

from tollway.providers.adapters.bedrock_errors import aws_error_body, aws_error_from, converse_stream_cut
from tollway.providers.adapters.bedrock_eventstream import EventStreamDecoder
from tollway.proxy.bedrock_route import route_fields


def scope(raw: str) -> dict[str, object]:
    return {"path": raw, "raw_path": raw.encode()}


@pytest.mark.parametrize(("path", "fields"), [
    ("/model/bedrock%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
     {"model": "bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0", "stream": False}),
    ("/model/haiku/converse-stream", {"model": "haiku", "stream": True}),
    ("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx/converse?x=1",
     {"model": "arn:aws:bedrock:us-east-1:1:inference-profile/x", "stream": False}),
])
def test_the_model_is_the_whole_quoted_segment(path: str, fields: dict[str, object]) -> None:
    assert route_fields(scope(path)) == fields


@pytest.mark.parametrize("path", ["/model/m/invoke", "/model//converse", "/model/a/b/converse", "/model/converse",
                                  "/models/m/converse"])
def test_other_paths_are_not_served(path: str) -> None:
    assert route_fields(scope(path)) is None


def test_the_decoded_path_is_read_when_the_server_gives_no_raw_one() -> None:
    assert route_fields({"path": "/model/m.x/converse"}) == {"model": "m.x", "stream": False}


@pytest.mark.parametrize(("data", "expected"), [
    (b'{"message": "Too many tokens"}', {"__type": "ThrottlingException", "message": "Too many tokens"}),
    (b'{"error": {"message": "slow down", "type": "rate_limit_error"}}',
     {"__type": "ThrottlingException", "message": "slow down", "reason": "rate_limit_error"}),
    (b"upstream exploded", {"__type": "ThrottlingException", "message": "upstream exploded"}),
    (b'{"__type": "ModelNotReadyException", "message": "warming"}',
     {"__type": "ModelNotReadyException", "message": "warming"}),
])
def test_any_error_body_reads_as_an_aws_error(data: bytes, expected: dict[str, str]) -> None:
    assert orjson.loads(aws_error_from(429, data)) == expected


@pytest.mark.parametrize(("status", "kind"), [(400, "ValidationException"), (401, "AccessDeniedException"),
                                              (402, "ServiceQuotaExceededException"), (404, "ResourceNotFoundException"),
                                              (429, "ThrottlingException"), (502, "InternalServerException"),
                                              (503, "ServiceUnavailableException")])
def test_each_status_has_the_aws_type_the_sdks_raise(status: int, kind: str) -> None:
    body = orjson.loads(aws_error_body(status, "no", "some_code"))
    assert body == {"__type": kind, "message": "no", "reason": "some_code"}  # never `code`: botocore takes it for the type


def test_a_cut_stream_ends_with_message_stop_and_an_exception() -> None:
    messages = list(EventStreamDecoder().feed(converse_stream_cut(7, 429, "budget used up")))
    assert [(m.message_type, m.event_type) for m in messages] == [
        ("event", "messageStop"), ("event", "metadata"), ("exception", "throttlingException")]
    assert orjson.loads(messages[0].payload) == {"stopReason": "max_tokens"}
    assert orjson.loads(messages[1].payload)["usage"] == {"outputTokens": 7}
    assert orjson.loads(messages[2].payload) == {"message": "budget used up"}


@pytest.mark.parametrize(("status", "exception"), [(402, "throttlingException"), (400, "validationException"),
                                                   (502, "internalServerException")])
def test_a_cut_stream_names_an_exception_the_stream_may_carry(status: int, exception: str) -> None:
    last = list(EventStreamDecoder().feed(converse_stream_cut(0, status, "cut")))[-1]
    assert last.event_type == exception
