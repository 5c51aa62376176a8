"""Bedrock's own API, served by the gateway for clients of the AWS SDKs (boto3's
``bedrock-runtime`` client with ``endpoint_url`` set to the gateway):
`POST /model/{modelId}/converse` and `/model/{modelId}/converse-stream`.

The path names the model and whether to stream; the pipeline takes them as body fields
(`route_fields`), so the request is governed like every other. The virtual key comes as a
Bedrock API key: ``Authorization: Bearer tw-…``, which botocore sends for the environment
variable ``AWS_BEARER_TOKEN_BEDROCK`` (a SigV4 signature cannot be checked without the
client's secret, so the gateway does not take one). Streams answer in AWS's event-stream
framing, errors in AWS's JSON shape (`tollway.providers.adapters.bedrock_errors`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

from tollway.asgi import Scope

PREFIX = "/model/"
_OPERATIONS = MappingProxyType({"converse": False, "converse-stream": True})


def route_fields(scope: Scope) -> dict[str, Any] | None:
    """``{"model", "stream"}`` of a request under `PREFIX`; None when its path names no
    operation served. The model id is read from the raw path: the SDKs quote it whole, and
    an ARN's ``/`` (``%2F``) must not end its segment."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else scope["path"]
    path = path.partition("?")[0]
    if not path.startswith(PREFIX):
        return None
    model, slash, operation = path[len(PREFIX):].rpartition("/")
    stream = _OPERATIONS.get(operation)
    if not slash or not model or stream is None or "/" in model:
        return None
    return {"model": unquote(model), "stream": stream}
