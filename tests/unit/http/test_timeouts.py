"""Connect, total and idle-read timeouts, and connection errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from tests.unit.http.servers import LAST_CHUNK, Peer, chunk, chunked_head, fetch, post_bytes, serve
from tollway.providers.http import HTTPClient, Origin, UpstreamConnectError, UpstreamHTTPError, UpstreamTimeout


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose accept queue is full: a new connect neither succeeds nor fails."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


async def test_connect_timeout(unaccepting_port: int) -> None:
    client = HTTPClient(connect_timeout=0.2)
    origin = Origin("http", "127.0.0.1", unaccepting_port)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(asyncio.TimeoutError) as caught:
            await client.request(origin, post_bytes(origin), total=10)
        assert isinstance(caught.value, UpstreamTimeout)
        assert asyncio.get_running_loop().time() - started < 2
        assert client.pool(origin).open_connections == 0
    finally:
        await client.close()


async def test_refused_connection_names_host_and_port(client: HTTPClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        origin = Origin("http", "127.0.0.1", port)
        with pytest.raises(UpstreamConnectError) as caught:
            await client.request(origin, post_bytes(origin), total=5)
    assert (caught.value.host, caught.value.port) == ("127.0.0.1", port)
    assert client.pool(origin).open_connections == 0


async def test_unknown_host_is_an_upstream_error(client: HTTPClient) -> None:
    origin = Origin("http", "no-such-host.invalid", 80)
    with pytest.raises(UpstreamHTTPError):  # a connect error, or a timeout where DNS hangs
        await client.request(origin, post_bytes(origin), total=5)


async def _never_answer(peer: Peer) -> None:
    await peer.read_request()
    await peer.closed_by_client(10)


async def test_total_timeout_while_waiting_for_headers(client: HTTPClient) -> None:
    server = await serve(_never_answer)
    try:
        with pytest.raises(UpstreamTimeout):
            await fetch(client, server.origin, total=0.2)
        assert client.pool(server.origin).open_connections == 0
    finally:
        await server.close()


async def test_total_timeout_covers_the_body(client: HTTPClient) -> None:
    async def headers_then_silence(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal")
        await peer.closed_by_client(10)

    server = await serve(headers_then_silence)
    try:
        response = await client.request(server.origin, post_bytes(server.origin), total=0.2)
        with pytest.raises(UpstreamTimeout):
            await response.read()
        response.release()
        assert client.pool(server.origin).open_connections == 0
    finally:
        await server.close()


def _stream(gaps: list[float]) -> object:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(chunked_head())
        for n, gap in enumerate(gaps):
            await asyncio.sleep(gap)
            await peer.send(chunk(b"event %d\n" % n))
        await peer.send(LAST_CHUNK)
        await peer.closed_by_client(10)

    return handler


async def test_a_steady_stream_longer_than_the_idle_timeout_is_fine(client: HTTPClient) -> None:
    server = await serve(_stream([0.05] * 8))  # type: ignore[arg-type]
    try:
        response = await client.request(server.origin, post_bytes(server.origin), idle=0.2)
        body = b"".join([c async for c in response.iter_chunks()])
        response.release()
        assert body.count(b"event") == 8
    finally:
        await server.close()


async def test_a_silent_stream_times_out(client: HTTPClient) -> None:
    server = await serve(_stream([0.0, 0.0, 1.0]))  # type: ignore[arg-type]
    try:
        response = await client.request(server.origin, post_bytes(server.origin), idle=0.2)
        received = b""
        with pytest.raises(UpstreamTimeout, match="no data"):
            async for data in response.iter_chunks():
                received += data
        assert received == b"event 0\nevent 1\n"
        response.close()
        assert client.pool(server.origin).open_connections == 0
    finally:
        await server.close()


async def test_the_idle_timeout_also_bounds_the_wait_for_headers(client: HTTPClient) -> None:
    server = await serve(_never_answer)
    try:
        with pytest.raises(UpstreamTimeout):
            await client.request(server.origin, post_bytes(server.origin), idle=0.2)
    finally:
        await server.close()


async def test_a_consumer_slower_than_the_idle_timeout_is_not_a_timeout(client: HTTPClient) -> None:
    server = await serve(_stream([0.0] * 3))  # type: ignore[arg-type]
    try:
        response = await client.request(server.origin, post_bytes(server.origin), idle=0.1)
        await asyncio.sleep(0.3)  # everything arrived long ago; we are the slow side
        body = b"".join([c async for c in response.iter_chunks()])
        response.release()
        assert body.count(b"event") == 3
    finally:
        await server.close()


def test_timeouts_are_both_asyncio_timeouts_and_upstream_errors() -> None:
    error = UpstreamTimeout("x")
    assert isinstance(error, asyncio.TimeoutError)
    assert isinstance(error, UpstreamHTTPError)
