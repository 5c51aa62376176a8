"""Google's own API, served by the gateway for clients of Google's SDKs:
`POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`.

The path names the model and whether to stream; the pipeline takes them as body fields
(`route_fields`), so the request is governed like every other (the virtual key comes as
``x-goog-api-key`` or ``?key=``, see `tollway.proxy.auth.presented_google_key`). Streams
are always answered as SSE, as with ``alt=sse`` (what Google's SDKs ask for).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

PREFIX = "/v1beta/models/"
_METHODS = MappingProxyType({"generateContent": False, "streamGenerateContent": True})


def route_fields(path: str) -> dict[str, Any] | None:
    """``{"model", "stream"}`` of a path under `PREFIX`; None when it names no method served."""
    model, colon, method = path[len(PREFIX):].rpartition(":")
    stream = _METHODS.get(method)
    if not colon or not model or stream is None:
        return None
    return {"model": model, "stream": stream}
