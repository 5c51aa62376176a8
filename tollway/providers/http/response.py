"""One upstream response, as the caller sees it: status, headers, body, and the duty to
hand the connection back (`release`) or drop it (`close`).

The connection's protocol (connection.py) fills the private fields as bytes arrive; this
side only consumes. Both live on the event loop's thread, so no locking is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from tollway.providers.http.errors import UpstreamDisconnected, UpstreamTimeout

if TYPE_CHECKING:
    from tollway.providers.http.connection import Connection

# States of an exchange.
HEADERS = 0  # request sent, waiting for the status line and headers
BODY = 1  # headers in, body arriving
DONE = 2  # the whole response has arrived
FAILED = 3  # the exchange broke; _error says why

# Flow control for streamed bodies: stop reading the socket when this much is buffered
# and not yet consumed (a slow client must not make us buffer a whole stream), start
# again once the consumer has drained it.
HIGH_WATER = 256 * 1024


class Headers(dict[str, str]):
    """Response headers: lower-case names, looked up case-insensitively."""

    __slots__ = ()

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)


class UpstreamResponse(Protocol):
    """What the proxy needs of an upstream response, whichever client produced it."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...  # case-insensitive lookups of lower-case names

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class Response:
    """The response to one request on a pooled connection.

    Exactly one of `release()` (after reading) or `close()` must end its life; both are
    idempotent. `read()` and iterating (`async for chunk in response.iter_chunks()`)
    raise `UpstreamHTTPError` subclasses or `UpstreamTimeout`; a cancelled read closes
    the connection, so a half-read exchange is never pooled.
    """

    __slots__ = (
        "_body",
        "_buffered",
        "_chunks",
        "_conn",
        "_error",
        "_headers",
        "_idle",
        "_keep_alive",
        "_last_data",
        "_raw",
        "_received",
        "_state",
        "_timer",
        "_unbounded",
        "_waiter",
        "_whole_request_sent",
        "status",
    )

    def __init__(self, conn: Connection) -> None:
        self.status = 0
        self._raw: list[tuple[bytes, bytes]] = []
        self._headers: Headers | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._state = HEADERS
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._conn: Connection | None = conn
        self._keep_alive = False
        self._whole_request_sent = True  # False: an upload the server answered before it ended
        self._received = False  # any byte of this response arrived
        self._timer: asyncio.TimerHandle | None = None
        self._idle = 0.0  # > 0: streaming, the read timeout is per read, not total
        self._last_data = 0.0
        self._unbounded = False  # read() wants everything: no flow control
        self._body: bytes | None = None

    # -- the caller's side -------------------------------------------------------------

    @property
    def headers(self) -> Headers:
        """Response headers (case-insensitive); repeated headers joined by ", "."""
        headers = self._headers
        if headers is None:  # built on first use: most proxied responses never look
            headers = Headers()
            for raw_name, raw_value in self._raw:
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                headers[name] = dict.__getitem__(headers, name) + ", " + value if name in headers else value
            self._headers = headers
        return headers

    async def read(self) -> bytes:
        """The whole body (kept: a second call returns it again)."""
        if self._body is not None:
            return self._body
        if self._state == BODY and not self._unbounded:
            self._unbounded = True
            if self._conn is not None:
                self._conn.resume_reading()
        while self._state < DONE:
            await self._wait()
        if self._state == FAILED:
            raise self._error  # type: ignore[misc]
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks, self._buffered, self._body = [], 0, body
        return body

    def iter_chunks(self) -> Response:
        """An async iterator over the body as it arrives: each item is everything buffered."""
        return self

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._state == DONE:
                raise StopAsyncIteration
            if self._state == FAILED:
                raise self._error  # type: ignore[misc]
            await self._wait()
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks, self._buffered = [], 0
        conn = self._conn
        if conn is not None and conn.paused:
            conn.resume_reading()
        return data

    def release(self) -> None:
        """Done with the response: pool the connection when the exchange is complete and
        the server keeps it alive, else close it."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        self._cancel_timer()
        if self._state == DONE and self._keep_alive and self._whole_request_sent:
            conn.finish_exchange()
        else:
            conn.abort()

    def close(self) -> None:
        """Drop the connection now: the upstream sees the disconnect and stops sending."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        self._cancel_timer()
        if self._state < DONE:
            self._state, self._error = FAILED, UpstreamDisconnected("the response was closed before it was complete")
        conn.abort()

    # -- waiting -----------------------------------------------------------------------

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        except BaseException:
            # Cancelled halfway through an exchange: the connection is in an unknown
            # state, so it is closed rather than ever pooled.
            self._waiter = None
            self.close()
            raise

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- timers ------------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float | None, idle: float | None) -> None:
        """One timer per exchange. Total: fires at ``deadline``. Idle: fires after ``idle``
        seconds and re-arms itself while data keeps coming (cheaper than a timer per chunk)."""
        if idle:
            self._idle = idle
            self._last_data = loop.time()
            self._timer = loop.call_at(self._last_data + idle, self._on_idle_timer, loop)
        elif deadline is not None:
            self._timer = loop.call_at(deadline, self._on_timeout, "the response did not arrive in time")

    def _on_idle_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._state >= DONE:
            return
        now = loop.time()
        conn = self._conn
        if conn is not None and conn.paused:  # we are the slow side, not the server
            self._last_data = now
        due = self._last_data + self._idle
        if due > now:
            self._timer = loop.call_at(due, self._on_idle_timer, loop)
            return
        self._on_timeout(f"no data from the upstream for {self._idle:g} s")

    def _on_timeout(self, message: str) -> None:
        self._timer = None
        if self._state >= DONE:
            return
        self._state, self._error = FAILED, UpstreamTimeout(message)
        conn = self._conn
        if conn is not None:
            conn.abort()
        self._wake()

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

