"""`HTTPClient`: the entry point of the native upstream client — one pool per origin,
timeouts, and the one retry that is always safe enough to make (a stale connection)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable

from tollway.providers.http.egress import EgressProxy
from tollway.providers.http.errors import PoolClosed, UpstreamDisconnected
from tollway.providers.http.origin import Origin
from tollway.providers.http.pool import Pool
from tollway.providers.http.response import Response

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_KEEPALIVE_EXPIRY_S = 4.0  # under common servers' keep-alive timeouts (uvicorn: 5 s), so stale reuse stays rare
DEFAULT_CONNECT_TIMEOUT_S = 5.0


class HTTPClient:
    """A lean HTTP/1.1 client for upstream providers, over asyncio Protocols and httptools.

    Requests arrive fully encoded (see `origin.encode_request`): the caller caches the
    request line and header block per (origin, key), so a request is one join and one
    write. Use it from one event loop; pools are made on first use inside that loop.
    """

    def __init__(self, *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY_S,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
                 ssl_context: ssl.SSLContext | None = None, retry_stale: bool = True,
                 proxy: EgressProxy | None = None) -> None:
        """``max_connections`` caps open connections per origin (requests beyond it queue);
        ``ssl_context`` defaults to `ssl.create_default_context()` (pass one with a custom
        CA bundle to trust a private upstream, or a client certificate); with ``proxy``
        every connection goes through that forward proxy (see `egress`), and requests to
        plain-HTTP origins must then use absolute-form targets (`uses_absolute_form`)."""
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._retry_stale = retry_stale
        self.proxy = proxy
        self._pools: dict[str, Pool] = {}
        self._closed = False

    async def request(self, origin: Origin, data: bytes, *, total: float | None = None,
                      idle: float | None = None) -> Response:
        """Send ``data`` (a whole encoded request) to ``origin``; the response once its
        headers are in. The caller must `release()` or `close()` it.

        ``total`` bounds everything (waiting for a connection, connecting, the body);
        ``idle`` instead bounds each wait for data (for streams: a slow but steady stream
        is fine, a silent one is not) and the wait for a free connection. Raises
        `UpstreamHTTPError` subclasses; timeouts are `UpstreamTimeout`, an
        `asyncio.TimeoutError`.
        """
        pool = self._pools.get(origin.key)
        if pool is None:
            pool = self._new_pool(origin)
        now = pool.time()
        deadline = now + total if total else None
        wait_until = deadline if deadline is not None else (now + idle if idle else None)
        conn = await pool.acquire(wait_until)
        try:
            return await conn.exchange(data, deadline, idle)
        except UpstreamDisconnected as exc:
            if not (self._retry_stale and exc.before_response and conn.reused):
                raise
        # A reused connection closed before one byte of the response came back: the
        # server dropped it while idle (its keep-alive timeout raced our request). Such a
        # server closes without reading what we sent, so nothing was processed and a
        # second try on a fresh connection is safe; a fresh connection is never retried.
        # (A server that did read the request and then hung up without a byte looks the
        # same on the wire: it gets the request twice, once per connection, at most.)
        conn = await pool.acquire(wait_until, fresh=True)
        return await conn.exchange(data, deadline, idle)

    async def request_streaming(self, origin: Origin, head: bytes, body: AsyncIterable[bytes], *,
                                total: float | None = None) -> Response:
        """Send ``head`` (the request up to its body) and then ``body`` as it comes; the
        response once its headers are in. Never retried: the body cannot be sent twice."""
        pool = self._pools.get(origin.key)
        if pool is None:
            pool = self._new_pool(origin)
        deadline = pool.time() + total if total else None
        # A fresh connection: a kept-alive one the server dropped while idle would fail the
        # upload, and a streamed body cannot be retried.
        conn = await pool.acquire(deadline, fresh=True)
        return await conn.exchange_streaming(head, body, deadline)

    def uses_absolute_form(self, origin: Origin) -> bool:
        """Whether requests to ``origin`` go to a proxy as such (``GET http://host/path``)
        rather than through a tunnel or straight to the origin."""
        return self.proxy is not None and not origin.tls

    def pool(self, origin: Origin) -> Pool:
        """The pool for ``origin`` (made on first use): for stats and tests."""
        return self._pools.get(origin.key) or self._new_pool(origin)

    async def close(self) -> None:
        """Close every pool and connection; later requests raise `PoolClosed`."""
        self._closed = True
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()

    def _new_pool(self, origin: Origin) -> Pool:
        if self._closed:
            raise PoolClosed("the HTTP client is closed")
        context = None
        if origin.tls:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
        pool = Pool(origin, asyncio.get_running_loop(), max_connections=self._max_connections,
                    keepalive_expiry=self._keepalive_expiry, connect_timeout=self._connect_timeout,
                    ssl_context=context, proxy=self.proxy)
        self._pools[origin.key] = pool
        return pool

