"""What can go wrong talking to an upstream, as one small hierarchy.

Callers catch `UpstreamHTTPError` (and `asyncio.TimeoutError`, which `UpstreamTimeout`
also is) and never see a socket's or a parser's own exceptions: the client raises these
directly.
"""

from __future__ import annotations

import asyncio


class UpstreamHTTPError(Exception):
    """Base of every failure to get a complete response from an upstream."""


class UpstreamConnectError(UpstreamHTTPError):
    """No connection could be opened (refused, unreachable, DNS, TLS handshake)."""

    def __init__(self, host: str, port: int, reason: str = "") -> None:
        super().__init__(f"cannot connect to {host}:{port}" + (f": {reason}" if reason else ""))
        self.host = host
        self.port = port
        self.reason = reason


class UpstreamDisconnected(UpstreamHTTPError):
    """The server closed the connection before the response was complete."""

    def __init__(self, message: str = "the server closed the connection", *, before_response: bool = False) -> None:
        super().__init__(message)
        # True when not one byte of the response had arrived: the only case in which a
        # request on a reused keep-alive connection may be retried (see client.py).
        self.before_response = before_response


class UpstreamProtocolError(UpstreamHTTPError):
    """The server answered something that is not valid HTTP/1.1."""


class UpstreamTimeout(UpstreamHTTPError, asyncio.TimeoutError):
    """A connect, total or idle-read timeout; also an `asyncio.TimeoutError`, so code
    that only knows asyncio's timeouts treats it as one."""


class PoolClosed(UpstreamHTTPError):
    """The client was closed while a request waited for or used a connection."""
