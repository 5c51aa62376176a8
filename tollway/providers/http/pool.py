"""The keep-alive pool of one origin: reuse, a cap with a fair queue, idle expiry, connect.

Invariant: `_open` counts slots, i.e. connections that are open or being opened, plus
slots handed to a waiter that has not connected yet. A slot is given back exactly once,
when its connection is discarded or its connect fails, and then goes straight to the
longest waiter, if any, so waiting requests are served in order.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from tollway.providers.http.connection import Connection
from tollway.providers.http.egress import EgressProxy, open_tunnel
from tollway.providers.http.errors import PoolClosed, UpstreamConnectError, UpstreamTimeout
from tollway.providers.http.origin import Origin


class Pool:
    """Connections to one origin; create inside the running loop."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop, *, max_connections: int,
                 keepalive_expiry: float, connect_timeout: float, ssl_context: ssl.SSLContext | None,
                 proxy: EgressProxy | None = None) -> None:
        self.origin = origin
        self._proxy = proxy
        self._loop = loop
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context if origin.tls else None
        self._idle: deque[Connection] = deque()  # oldest on the left; reuse from the right
        self._all: set[Connection] = set()
        self._open = 0
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    def time(self) -> float:
        """The loop's clock, which deadlines are measured on."""
        return self._loop.time()

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def acquire(self, deadline: float | None, *, fresh: bool = False) -> Connection:
        """A connection ready for one exchange: an idle one (unless ``fresh``), a new one
        while under the cap, else the first one freed, waiting until ``deadline``."""
        if self._closed:
            raise PoolClosed("the HTTP client is closed")
        if not fresh:
            idle = self._idle
            if idle:
                expired_before = self._loop.time() - self._expiry
                while idle:
                    conn = idle.pop()
                    conn.pooled = False
                    if not conn.closed and conn.idle_since > expired_before:
                        return conn
                    conn.abort()  # expired: its slot goes back (and maybe to a waiter)
        if self._open < self._max and not self._waiters:
            self._open += 1
            return await self._connect(deadline)
        got = await self._wait_for_slot(deadline)
        if got is not None:
            return got
        return await self._connect(deadline)  # we were handed a free slot

    def put(self, conn: Connection) -> None:
        """Take back a connection whose exchange completed cleanly."""
        if self._closed:
            conn.abort()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = self._loop.time()
        conn.pooled = True
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = self._loop.call_at(conn.idle_since + self._expiry, self._expire_idle)

    def discard(self, conn: Connection) -> None:
        """A connection closed (by us or the server): forget it, give its slot back."""
        if conn in self._all:
            self._all.discard(conn)
            if conn.pooled:  # the server closed an idle connection, or it expired
                conn.pooled = False
                self._idle.remove(conn)
            self._free_slot()

    async def close(self) -> None:
        """Close every connection; waiters and later requests get `PoolClosed`."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosed("the HTTP client is closed"))
        self._waiters.clear()
        for conn in list(self._all):
            conn.abort()
        await asyncio.sleep(0)  # let the transports run connection_lost

    # -- internals ---------------------------------------------------------------------

    async def _wait_for_slot(self, deadline: float | None) -> Connection | None:
        """Queue until a connection (returned) or a free slot (None) is handed over."""
        waiter: asyncio.Future[Connection | None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            if deadline is None:
                return await waiter
            async with asyncio.timeout_at(deadline):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed something just as we were cancelled or timed out: pass it on.
                got = waiter.result()
                if got is None:
                    self._free_slot()
                else:
                    self.put(got)
            else:
                waiter.cancel()
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            if isinstance(exc, TimeoutError) and not isinstance(exc, UpstreamTimeout):
                raise UpstreamTimeout(f"no connection to {self.origin.key} became free in time "
                                      f"({self._max} open)") from None
            raise

    async def _connect(self, deadline: float | None) -> Connection:
        """Open a connection in a slot already counted in `_open`."""
        origin = self.origin
        timeout = self._connect_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - self._loop.time())
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                conn = await self._open_connection(timeout)
        except TimeoutError:
            self._free_slot()
            raise UpstreamTimeout(f"connecting to {origin.host}:{origin.port} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror), TLS (ssl.SSLError)
            self._free_slot()
            raise UpstreamConnectError(origin.host, origin.port, str(exc) or type(exc).__name__) from None
        except BaseException:
            self._free_slot()
            raise
        # Until it is in _all, the slot is this method's to give back (discard ignores it).
        if conn.closed:
            self._free_slot()
            raise UpstreamConnectError(origin.host, origin.port, "closed right after connecting")
        if self._closed:
            conn.abort()
            self._free_slot()
            raise PoolClosed("the HTTP client is closed")
        self._all.add(conn)
        return conn

    async def _open_connection(self, timeout: float) -> Connection:
        """Straight to the origin; through the proxy's CONNECT tunnel for HTTPS; or to the
        proxy itself for plain HTTP (requests then carry absolute-form targets)."""
        origin, proxy, tls = self.origin, self._proxy, self._ssl
        handshake = max(timeout, 0.001) if tls is not None else None
        if proxy is None:
            _, conn = await self._loop.create_connection(
                lambda: Connection(self, self._loop), origin.host, origin.port, ssl=tls,
                server_hostname=origin.host if tls is not None else None, ssl_handshake_timeout=handshake)
        elif tls is not None:
            sock = await open_tunnel(self._loop, proxy, origin.host, origin.port)
            try:
                _, conn = await self._loop.create_connection(
                    lambda: Connection(self, self._loop), sock=sock, ssl=tls, server_hostname=origin.host,
                    ssl_handshake_timeout=handshake)
            except BaseException:
                sock.close()
                raise
        else:
            _, conn = await self._loop.create_connection(lambda: Connection(self, self._loop), proxy.host, proxy.port)
        return conn

    def _free_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter; _open is unchanged
                return
        self._open -= 1

    def _expire_idle(self) -> None:
        """Close connections idle for longer than the expiry, oldest first."""
        self._sweep = None
        idle = self._idle
        now = self._loop.time()
        while idle and idle[0].idle_since + self._expiry <= now:
            conn = idle.popleft()
            conn.pooled = False
            conn.abort()
        if idle:
            self._sweep = self._loop.call_at(idle[0].idle_since + self._expiry, self._expire_idle)
