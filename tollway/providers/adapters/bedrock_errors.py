"""Errors in the shape a Bedrock client (boto3, the AWS SDKs) reads: a JSON body with the
error type in ``__type`` and the text in ``message`` (bedrock-runtime puts the type in an
``x-amzn-ErrorType`` header; the SDKs read either, and a body carries through the gateway
where a header would not). Used for the gateway's own Converse routes.

Pure: bytes and strings in, bytes out.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson

from tollway.providers.adapters.bedrock_eventstream import encode_event, encode_exception

# HTTP status → the AWS error type the SDKs raise for it (botocore names the exception
# class after it: `client.exceptions.ThrottlingException` ...).
AWS_ERROR_TYPE = MappingProxyType({
    400: "ValidationException", 401: "AccessDeniedException", 402: "ServiceQuotaExceededException",
    403: "AccessDeniedException", 404: "ResourceNotFoundException", 408: "ModelTimeoutException", 413: "ValidationException",
    424: "ModelErrorException", 429: "ThrottlingException", 503: "ServiceUnavailableException",
})


# The exceptions a ConverseStream may carry (the members of its event stream).
_STREAM_EXCEPTIONS = frozenset({"InternalServerException", "ModelStreamErrorException", "ValidationException",
                                "ThrottlingException", "ServiceUnavailableException"})


def aws_error_type(status: int) -> str:
    return AWS_ERROR_TYPE.get(status, "InternalServerException" if status >= 500 else "ValidationException")


def aws_error_body(status: int, message: str, code: str | None = None, **fields: Any) -> bytes:
    """An error of the gateway's own (a denial, a bad request) in AWS's shape; ``code``:
    the gateway's error code (`budget_exceeded` ...) as ``reason`` (the SDKs would take a
    ``code`` for the AWS type), ``fields`` beside it (a denial's scope and figures)."""
    body: dict[str, Any] = {"__type": aws_error_type(status), "message": message, **fields}
    if code:
        body["reason"] = code
    return orjson.dumps(body)


def aws_error_from(status: int, data: bytes) -> bytes:
    """Any error body (AWS's, OpenAI's or Anthropic's shape, or text) in AWS's shape."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("__type"), str):
            return data
        error = body.get("error")
        if isinstance(error, dict):  # OpenAI's or Anthropic's shape
            return aws_error_body(status, str(error.get("message") or ""), error.get("code") or error.get("type"))
        message = body.get("message", body.get("Message"))
        if isinstance(message, str):
            return aws_error_body(status, message)
    return aws_error_body(status, data[:500].decode("utf-8", "replace") or f"upstream answered {status}")


def converse_stream_cut(output_tokens: int, status: int, message: str) -> bytes:
    """The end of a ConverseStream cut off at a limit, as a Bedrock client reads it:
    ``messageStop`` with ``max_tokens``, the output so far, then an exception message naming
    the limit (the SDKs raise it after handing out the events before it)."""
    return b"".join((
        encode_event("messageStop", orjson.dumps({"stopReason": "max_tokens"})),
        encode_event("metadata", orjson.dumps({"usage": {"outputTokens": output_tokens}, "metrics": {"latencyMs": 0}})),
        converse_stream_error(status, message)))


def converse_stream_error(status: int, message: str) -> bytes:
    """An exception message that ends a ConverseStream (one its SDKs read: a stream's own)."""
    exception = aws_error_type(status)
    if exception not in _STREAM_EXCEPTIONS:
        exception = "ThrottlingException" if status in (402, 429) else (
            "InternalServerException" if status >= 500 else "ValidationException")
    return encode_exception(exception[:1].lower() + exception[1:], orjson.dumps({"message": message}))
