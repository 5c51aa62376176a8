"""Tiny purpose-built HTTP servers for the native client's tests: each test scripts, in
raw bytes, exactly what the mock upstream cannot do (chunked bodies, close-delimited
bodies, silent closes, slow headers, junk), and counts what it accepted."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tollway.providers.http import HTTPClient, Origin, Response, encode_bodyless, encode_request, header_block, request_prefix


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer

    async def read_request(self) -> tuple[bytes, bytes] | None:
        """The next request's head and body, or None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await self.reader.readexactly(length) if length else b""
        self.server.requests.append(head)
        return head, body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def closed_by_client(self, timeout_s: float = 2.0) -> bool:
        """Whether the client closes this connection within ``timeout_s``."""
        try:
            return await asyncio.wait_for(self.reader.read(), timeout_s) == b""
        except (asyncio.TimeoutError, ConnectionError):
            return False


Handler = Callable[[Peer], Awaitable[None]]


@dataclass
class Server:
    """A running test server; `origin` is where to send requests."""

    origin: Origin
    accepts: int = 0
    requests: list[bytes] = field(default_factory=list)  # request heads, in arrival order
    open_now: int = 0
    max_open: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def serve(handler: Handler, *, tls: ssl.SSLContext | None = None) -> Server:
    """Serve ``handler`` (one call per accepted connection) on a free loopback port."""
    server = Server(Origin("https" if tls else "http", "127.0.0.1", 0))

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        server._tasks.add(task)
        server.accepts += 1
        server.open_now += 1
        server.max_open = max(server.max_open, server.open_now)
        try:
            await handler(Peer(server, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            server.open_now -= 1
            server._tasks.discard(task)
            writer.transport.abort()

    server._server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server._server.sockets[0].getsockname()[1]
    server.origin = Origin("https" if tls else "http", "127.0.0.1", port)
    return server


def keep_alive(respond: Callable[[int, bytes], bytes | Awaitable[bytes]]) -> Handler:
    """A handler answering every request on a connection with ``respond(n, body)``, where n
    counts requests across all connections (from 0)."""
    counter = [0]

    async def handle(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            n = counter[0]
            counter[0] += 1
            answer = respond(n, request[1])
            if not isinstance(answer, bytes):
                answer = await answer
            await peer.send(answer)

    return handle


def ok(body: bytes = b"ok", *extra: str) -> bytes:
    """A complete 200 response with Content-Length and optional extra header lines."""
    headers = "".join(line + "\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


def chunked_head(status: int = 200) -> bytes:
    return f"HTTP/1.1 {status} OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n".encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def post_bytes(origin: Origin, body: bytes = b"{}", path: str = "/v1/chat/completions") -> bytes:
    """An encoded POST as the provider client builds it."""
    prefix = request_prefix("POST", path, header_block(origin, {"Content-Type": "application/json"}))
    return encode_request(prefix, body)


def get_bytes(origin: Origin, path: str = "/") -> bytes:
    return encode_bodyless("GET", path, header_block(origin, {}))


async def fetch(client: HTTPClient, origin: Origin, body: bytes = b"{}", **timeouts: float) -> tuple[Response, bytes]:
    """POST, read the whole body, release; the response (for status and headers) and body."""
    response = await client.request(origin, post_bytes(origin, body), **timeouts)
    try:
        return response, await response.read()
    finally:
        response.release()
