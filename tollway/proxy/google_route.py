"""Google's own API, served by the gateway for clients of Google's SDKs:
`POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (and the same
under `/v1/models/`, the stable version some SDK releases use by default).

The path names the model and whether to stream; the pipeline takes them as body fields
(`route_fields`), so the request is governed like every other (the virtual key comes as
``x-goog-api-key`` or ``?key=``, see `tollway.proxy.auth.presented_google_key`). Streams
are always answered as SSE, as with ``alt=sse`` (what Google's SDKs ask for).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

PREFIX = "/v1beta/models/"
V1_PREFIX = "/v1/models/"  # Google's stable version: google-genai's default since 2.x
PREFIXES = (PREFIX, V1_PREFIX)
_METHODS = MappingProxyType({"generateContent": False, "streamGenerateContent": True})


def route_fields(path: str) -> dict[str, Any] | None:
    """``{"model", "stream"}`` of a path under `PREFIX` (or `V1_PREFIX`); None when it
    names no method served."""
    start = len(PREFIX) if path.startswith(PREFIX) else len(V1_PREFIX) if path.startswith(V1_PREFIX) else None
    if start is None:
        return None
    model, colon, method = path[start:].rpartition(":")
    stream = _METHODS.get(method)
    if not colon or not model or stream is None:
        return None
    return {"model": model, "stream": stream}
