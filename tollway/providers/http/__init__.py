"""A lean HTTP/1.1 client for upstream providers: keep-alive pools over asyncio
Protocols, responses parsed by httptools, requests written as one bytes object.

    client = HTTPClient(max_connections=1024)
    origin, target = split_url("https://api.openai.com/v1/chat/completions")
    prefix = request_prefix("POST", target, header_block(origin, headers))  # cache this
    response = await client.request(origin, encode_request(prefix, body), total=60)
    try:
        data = await response.read()
    finally:
        response.release()

It is the gateway's one upstream transport: against aiohttp, pyreqwest and httpx it
spends the least CPU per request (`bench/overhead.py --suites transports`, figures and
feature table in bench/README.md).
"""

from tollway.providers.http.client import HTTPClient
from tollway.providers.http.errors import (
    PoolClosed,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from tollway.providers.http.origin import (
    Origin,
    encode_bodyless,
    encode_request,
    header_block,
    request_prefix,
    split_url,
)
from tollway.providers.http.response import Response, UpstreamResponse

__all__ = [
    "HTTPClient",
    "Origin",
    "PoolClosed",
    "Response",
    "UpstreamConnectError",
    "UpstreamDisconnected",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamResponse",
    "UpstreamTimeout",
    "encode_bodyless",
    "encode_request",
    "header_block",
    "request_prefix",
    "split_url",
]
