"""One keep-alive HTTP/1.1 connection: an asyncio Protocol that feeds httptools.

A connection carries one exchange at a time (no pipelining). The protocol callbacks
write straight into the current `Response`; the pool decides when it is reused.
Every way out of a broken exchange goes through `abort()`, which also tells the pool,
so the pool's count of open connections never drifts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Protocol

import httptools

from tollway.providers.http.errors import UpstreamDisconnected, UpstreamProtocolError
from tollway.providers.http.response import BODY, DONE, FAILED, HEADERS, HIGH_WATER, Response

if TYPE_CHECKING:
    from asyncio import Transport


class Owner(Protocol):
    """What a connection needs from its pool."""

    def put(self, conn: Connection) -> None: ...

    def discard(self, conn: Connection) -> None: ...


class _SecondResponse(Exception):
    """Raised inside the parser when bytes follow a complete response: stops parsing."""


class Connection(asyncio.Protocol):
    """A connection to one origin, owned by a pool; see the module docstring."""

    __slots__ = (
        "_drained",
        "_informational",
        "_loop",
        "_owner",
        "_parser",
        "_response",
        "closed",
        "idle_since",
        "paused",
        "pooled",
        "requests",
        "transport",
    )

    def __init__(self, owner: Owner, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._loop = loop
        self.transport: Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self.requests = 0  # exchanges completed on this connection
        self.idle_since = 0.0
        self.pooled = False  # in the pool's idle list
        self.closed = False
        self._drained: asyncio.Future[None] | None = None  # set while the transport's write buffer is full
        self.paused = False
        self._informational = False  # inside a 1xx interim response

    @property
    def reused(self) -> bool:
        return self.requests > 0

    async def exchange(self, data: bytes, deadline: float | None, idle: float | None) -> Response:
        """Write one request and wait for its status line and headers.

        ``deadline`` (loop time) bounds the whole exchange, body included; ``idle`` instead
        bounds each wait for data (streams)."""
        if self.closed or self.transport is None:
            raise UpstreamDisconnected("the connection closed before the request was sent", before_response=True)
        response = Response(self)
        self._response = response
        response._arm(self._loop, deadline, idle)
        self.transport.write(data)
        while response._state == HEADERS:
            await response._wait()  # a cancelled wait closes the connection
        if response._state == FAILED:
            response.close()
            raise response._error  # type: ignore[misc]
        return response

    async def exchange_streaming(self, head: bytes, body: AsyncIterable[bytes], deadline: float | None) -> Response:
        """Like `exchange`, with the body written as it comes from ``body`` (an upload relayed
        without holding it whole): each chunk waits for the socket to take the last one
        (flow control), so at most a write buffer of it is held. A server that answers
        before reading all of it (an early 4xx) ends the writing; the connection is then
        never reused. A failure of ``body`` (the client gone) drops the connection."""
        if self.closed or self.transport is None:
            raise UpstreamDisconnected("the connection closed before the request was sent", before_response=True)
        response = Response(self)
        self._response = response
        response._arm(self._loop, deadline, None)
        self.transport.write(head)
        try:
            async for chunk in body:
                if response._state != HEADERS or self.closed:
                    response._whole_request_sent = False
                    break
                self.transport.write(chunk)
                drained = self._drained
                if drained is not None:
                    await drained
        except BaseException:
            self.abort()
            raise
        while response._state == HEADERS:
            await response._wait()  # a cancelled wait closes the connection
        if response._state == FAILED:
            response.close()
            raise response._error  # type: ignore[misc]
        return response

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    def _wake_writer(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def finish_exchange(self) -> None:
        """The response was read to the end and the server keeps the connection: pool it."""
        if self.closed:
            return
        self._response = None
        self.requests += 1
        if self.paused:
            self.resume_reading()
        self._owner.put(self)

    def abort(self) -> None:
        """Close at once, dropping anything unsent or unread."""
        if self.transport is not None:
            self.transport.abort()
        self._mark_closed()

    def resume_reading(self) -> None:
        if self.paused and not self.closed and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None or response._state >= DONE:
            # Bytes no request asked for: the server is broken; never reuse this connection.
            self.abort()
            return
        response._received = True
        if response._idle:
            response._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if response._state < DONE:
                self._fail(response, UpstreamProtocolError(f"invalid HTTP response: {exc}"))
            else:  # a complete response followed by junk: keep the response, drop the connection
                self.abort()

    def eof_received(self) -> bool:
        response = self._response
        if response is not None and response._state == BODY and _close_delimited(response):
            # No Content-Length, not chunked: the body ends where the connection does.
            response._keep_alive = False
            self.on_message_complete()
        return False  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        response = self._response
        if response is not None and response._state < DONE:
            detail = f" ({exc})" if exc else ""
            response._state = FAILED
            response._error = UpstreamDisconnected(f"the server closed the connection{detail}",
                                                   before_response=not response._received)
            response._cancel_timer()
            response._wake()
        self._wake_writer()
        self._mark_closed()

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        response = self._response
        if response is not None and response._state != HEADERS:
            raise _SecondResponse  # the parser reports it as an error; see data_received

    def on_header(self, name: bytes, value: bytes) -> None:
        self._response._raw.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        response = self._response
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:  # 1xx interim response: the real one follows on the same connection
            self._informational = True
            response._raw.clear()  # type: ignore[union-attr]
            return
        response.status = status  # type: ignore[union-attr]
        response._keep_alive = parser.should_keep_alive()  # type: ignore[union-attr]
        response._state = BODY  # type: ignore[union-attr]
        response._wake()  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        response = self._response
        response._chunks.append(body)  # type: ignore[union-attr]
        response._buffered += len(body)  # type: ignore[union-attr]
        if response._buffered > HIGH_WATER and not response._unbounded and not self.paused:  # type: ignore[union-attr]
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        response._wake()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        response = self._response
        response._state = DONE  # type: ignore[union-attr]
        response._cancel_timer()  # type: ignore[union-attr]
        response._wake()  # type: ignore[union-attr]

    # -- internals ---------------------------------------------------------------------

    def _fail(self, response: Response, error: BaseException) -> None:
        response._state, response._error = FAILED, error
        response._cancel_timer()
        self.abort()
        response._wake()

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self._owner.discard(self)


def _close_delimited(response: Response) -> bool:
    for name, _ in response._raw:
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            return False
    return True
