"""uvicorn's httptools protocol with the limits a server facing the internet needs.

uvicorn with httptools has none of these (measured with uvicorn 0.55, httptools 0.9):
it reads a request head of any size into memory, never closes a connection that sends
nothing, and accepts connections until ``accept()`` fails with EMFILE, after which no
request is served at all. This protocol adds, per connection:

- a request-head size limit: 431 once the head outgrows ``max_head_bytes``;
- a header-read timeout: a request whose head is not complete ``head_timeout_s``
  after the connection opened (or after its first byte, on a kept-alive connection) is
  answered 408 and closed; a connection that sent nothing is closed quietly;
- a body-read timeout: a request body that stops arriving for ``body_timeout_s``
  (while the server is not the one holding it back) gets 408 and the connection is
  closed; the application sees the client gone;
- a connection cap: at ``max_connections``, the connections with no request in
  progress are closed oldest first to make room (as nginx reuses keep-alive
  connections); with none idle, the new connection gets 503 and is closed.

uvicorn's own ``timeout_keep_alive`` still closes a connection idle between requests.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("tollway.server")

_EVICT_FRACTION = 16  # at the cap, close up to 1/16 of the cap at once: one scan per many accepts
_LINGER_S = 2.0  # after refusing a request mid-upload, read and drop for this long so the client sees the answer


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    max_head_bytes: int
    head_timeout_s: float
    body_timeout_s: float


class CapReport:
    """What the connection cap did, logged at most once a minute (an attack must not
    turn into a log line per connection)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self._interval_s = interval_s
        self._next_at = 0.0
        self._closed_idle = 0
        self._refused = 0

    def note(self, now: float, max_connections: int, *, closed_idle: int = 0, refused: int = 0) -> None:
        self._closed_idle += closed_idle
        self._refused += refused
        if now < self._next_at:
            return
        log.warning("at the connection limit (%d): closed %d idle connections and refused %d new ones "
                    "(server.max_connections)", max_connections, self._closed_idle, self._refused)
        self._next_at = now + self._interval_s
        self._closed_idle = self._refused = 0


def _refusal(status: int, reason: bytes, message: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": reason.decode().lower().replace(" ", "_")}})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%s\r\n" % (status, reason, len(body), extra)) + body


def _responses(limits: ConnectionLimits) -> dict[str, bytes]:
    return {
        "head_too_large": _refusal(431, b"Request Header Fields Too Large",
                                   f"the request head (request line and headers) is over {limits.max_head_bytes} bytes"),
        "head_timeout": _refusal(408, b"Request Timeout",
                                 f"the request head did not arrive within {limits.head_timeout_s:g} s"),
        "body_timeout": _refusal(408, b"Request Timeout",
                                 f"the request body stopped arriving for {limits.body_timeout_s:g} s"),
        "at_capacity": _refusal(503, b"Service Unavailable", "the server is at its connection limit; retry shortly",
                                b"retry-after: 1\r\n"),
    }


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with the limits of the module docstring. The limits come
    from ``config.connection_limits`` (see `tollway.server.serving.GatewayServerConfig`)."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits: ConnectionLimits = config.connection_limits
        self._responses: dict[str, bytes] = config.connection_responses
        self._report: CapReport = config.cap_report
        self._reading_head = True  # a new connection waits for its first request's head
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._data_at = 0.0  # when the last bytes arrived
        self._idle_since = 0.0
        self._refused = False  # at connection_made, for the connection cap
        self._dropping = False  # after a refusal, while the answer drains

    # -- connection lifetime ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self._limits.max_connections and not self._make_room():
            self._report.note(self.loop.time(), self._limits.max_connections, refused=1)
            self._refused = True
            transport.write(self._responses["at_capacity"])
            transport.close()
            return
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused and self.transport is None:
            return  # refused at connection_made: uvicorn's side never saw it
        self._cancel_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
        super().connection_lost(exc)

    def _make_room(self) -> bool:
        """Close the longest-idle connections; False when none is idle."""
        idle = [c for c in self.connections if isinstance(c, GuardedHttpToolsProtocol) and c.idle]
        if not idle:
            return False
        count = max(1, self._limits.max_connections // _EVICT_FRACTION)
        oldest = heapq.nsmallest(count, idle, key=lambda c: c._idle_since)
        for connection in oldest:
            connection.close_idle()
        self._report.note(self.loop.time(), self._limits.max_connections, closed_idle=len(oldest))
        return True

    @property
    def idle(self) -> bool:
        """No request in progress: waiting for a request's head, or between requests."""
        return (not self._refused and (self.cycle is None or self.cycle.response_complete)
                and not self.pipeline and not self.transport.is_closing())

    def close_idle(self) -> None:
        # Removed at once (not at connection_lost) so the count leaves room for the newcomer.
        self.connections.discard(self)
        self.transport.close()

    # -- the request head ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._dropping:
            return  # refused: what the client still sends is read and dropped
        super().data_received(data)
        if self._reading_head and not self.transport.is_closing():
            # Counted after parsing, and only while the head is still incomplete: then the
            # whole chunk was head (a chunk that also ended the previous request's body
            # counts a little too much, at most one read of 256 KiB).
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_head_bytes:
                self._refuse("head_too_large")
            elif self._head_timer is None:
                # Armed only for a head that spans reads: most arrive in one, and need no timer.
                self._arm_head_timer()
            return
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            self._data_at = self.loop.time()
            if self._body_timer is None:
                # Armed only for a body that spans reads, once; it re-arms itself while data flows.
                self._body_timer = self.loop.call_later(self._limits.body_timeout_s, self._body_check)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        super().on_response_complete()

    def _refuse(self, answer: str) -> None:
        """Send ``answer`` (a key of `_responses`) and end the connection. The client may
        still be sending: the write side is shut first and the rest read and dropped for a
        moment, because closing with unread data resets the connection and the client
        would lose the answer."""
        self._cancel_head_timer()
        self._reading_head = False
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined head behind a response in progress: no room to answer
            return
        self._dropping = True
        self.flow.resume_reading()
        self.transport.write(self._responses[answer])
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)
        self._idle_since = 0.0  # the first to go when room is needed

    # -- header-read timeout ------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._limits.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a pipelined head behind a response still in progress: wait for it
            return
        if self._head_bytes:
            self._refuse("head_timeout")
        else:
            self.transport.close()  # nothing sent: nobody to answer

    # -- body-read timeout ------------------------------------------------------------
    def _body_check(self) -> None:
        """The body of the request in progress is still incomplete: end the connection when
        nothing arrived for ``body_timeout_s``, unless the server paused reading it."""
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_complete or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            self._data_at = now  # the application is behind, not the client: its wait does not count
        quiet_s = now - self._data_at
        if quiet_s < self._limits.body_timeout_s:
            self._body_timer = self.loop.call_later(max(self._limits.body_timeout_s - quiet_s, 0.01), self._body_check)
            return
        if not cycle.response_started:
            self.transport.write(self._responses["body_timeout"])
        self.transport.close()  # the application's receive() reports the client gone


def connection_responses(limits: ConnectionLimits) -> dict[str, bytes]:
    """The refusals, rendered once per process."""
    return _responses(limits)
