"""The aiohttp client behind the native client's interface (`http_client: aiohttp`).

Kept as a fallback for upstreams the native client cannot talk to (proxies, HTTP
features it leaves out). Its exceptions are translated into `errors.py`'s hierarchy so
callers handle one set of errors whichever client is configured.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import aiohttp

from tollway.providers.http.errors import (
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)


def translate(exc: BaseException) -> BaseException:
    """The `UpstreamHTTPError` for an aiohttp error or timeout; anything else unchanged."""
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout(str(exc) or "the upstream did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(exc.host, exc.port or 0, str(exc.os_error))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamDisconnected()
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamDisconnected("the response body was cut short")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(str(exc))
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamHTTPError(str(exc) or type(exc).__name__)
    return exc


class AiohttpResponse:
    """An `aiohttp.ClientResponse` seen through `UpstreamResponse`."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers  # a CIMultiDictProxy: case-insensitive already

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise translate(exc) from exc

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise translate(exc) from exc

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


class AiohttpClient:
    """One pooled aiohttp session; create inside the running loop."""

    def __init__(self, *, max_connections: int, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300,
                                         enable_cleanup_closed=True)
        # auto_decompress=False: bytes pass through as they came; we ask for identity anyway.
        # (No skip_auto_headers: aiohttp rebuilds that set on every request.)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], *, total: float | None = None,
                   idle: float | None = None) -> AiohttpResponse:
        """Like `HTTPClient.request`: ``total`` bounds the whole exchange, ``idle`` each read."""
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=self._connect_timeout, sock_read=idle)
        try:
            response = await self.session.post(url, data=body, headers=headers, timeout=timeout)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise translate(exc) from exc
        return AiohttpResponse(response)

    async def request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], *,
                      total: float | None = None) -> AiohttpResponse:
        """Any method, the whole exchange bounded by ``total`` (the stored-response routes)."""
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=self._connect_timeout)
        try:
            response = await self.session.request(method, url, data=body, headers=headers, timeout=timeout)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise translate(exc) from exc
        return AiohttpResponse(response)

    async def upload(self, url: str, body: AsyncIterable[bytes], headers: Mapping[str, str], *,
                     total: float | None = None, idle: float | None = None) -> AiohttpResponse:
        """POST a body written as it comes from ``body`` (headers carry its Content-Length)."""
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=self._connect_timeout, sock_read=idle)
        try:
            response = await self.session.post(url, data=body, headers=headers, timeout=timeout)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise translate(exc) from exc
        return AiohttpResponse(response)

    async def get_json(self, url: str, headers: Mapping[str, str], timeout_s: float) -> Any:
        """A small JSON document, for `ProviderClient.get_json`."""
        try:
            async with self.session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                resp.raise_for_status()
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        await self.session.close()
