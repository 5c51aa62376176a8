"""Response framing: Content-Length, chunked, close-delimited, interim 1xx, broken
responses, large bodies and flow control — and when a connection may be reused."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.http.servers import LAST_CHUNK, Peer, chunk, chunked_head, fetch, keep_alive, ok, post_bytes, serve
from tollway.providers.http import HTTPClient, UpstreamDisconnected, UpstreamProtocolError
from tollway.providers.http.response import HIGH_WATER


async def test_content_length_body_is_read_and_the_connection_reused(client: HTTPClient) -> None:
    server = await serve(keep_alive(lambda n, body: ok(b"answer %d" % n, "X-Custom: Yes")))
    try:
        bodies = [await fetch(client, server.origin) for _ in range(3)]
        assert [body for _, body in bodies] == [b"answer 0", b"answer 1", b"answer 2"]
        response = bodies[0][0]
        assert response.status == 200
        assert response.headers["x-custom"] == "Yes"  # names are lower-cased
        assert server.accepts == 1
        assert client.pool(server.origin).idle_connections == 1
    finally:
        await server.close()


async def test_repeated_headers_are_joined(client: HTTPClient) -> None:
    server = await serve(keep_alive(lambda n, body: ok(b"", "Vary: a", "vary: b")))
    try:
        response, _ = await fetch(client, server.origin)
        assert response.headers["vary"] == "a, b"
    finally:
        await server.close()


async def test_chunked_body_is_decoded_and_streamed_as_it_arrives(client: HTTPClient) -> None:
    step = asyncio.Event()

    async def handler(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(chunked_head() + chunk(b"data: one\n\n"))
            await step.wait()
            await peer.send(chunk(b"data: two\n\n") + chunk(b"data: three\n\n") + LAST_CHUNK)

    server = await serve(handler)
    try:
        response = await client.request(server.origin, post_bytes(server.origin), idle=5)
        chunks = response.iter_chunks()
        assert await chunks.__anext__() == b"data: one\n\n"  # before the rest was even sent
        step.set()
        rest = [c async for c in chunks]
        assert b"".join(rest) == b"data: two\n\ndata: three\n\n"
        response.release()
        assert client.pool(server.origin).idle_connections == 1
    finally:
        await server.close()


async def test_close_delimited_body_ends_at_eof_and_is_not_pooled(client: HTTPClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await peer.send(b"part two")
        peer.writer.close()

    server = await serve(handler)
    try:
        _, body = await fetch(client, server.origin)
        assert body == b"part one, part two"
        await asyncio.sleep(0)
        assert client.pool(server.origin).open_connections == 0
    finally:
        await server.close()


@pytest.mark.parametrize("answer", [ok(b"bye", "Connection: close"), b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye"],
                         ids=["connection-close", "http-1.0"])
async def test_a_connection_the_server_will_close_is_not_reused(client: HTTPClient, answer: bytes) -> None:
    server = await serve(keep_alive(lambda n, body: answer))
    try:
        for _ in range(2):
            _, body = await fetch(client, server.origin)
            assert body == b"bye"
        assert server.accepts == 2
    finally:
        await server.close()


async def test_interim_1xx_response_is_skipped(client: HTTPClient) -> None:
    server = await serve(keep_alive(lambda n, body: b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"final")))
    try:
        response, body = await fetch(client, server.origin)
        assert (response.status, body) == (200, b"final")
        assert "link" not in response.headers
    finally:
        await server.close()


async def test_garbage_is_a_protocol_error_and_the_connection_is_dropped(client: HTTPClient) -> None:
    server = await serve(keep_alive(lambda n, body: b"SMTP ready\r\n\r\n"))
    try:
        with pytest.raises(UpstreamProtocolError):
            await fetch(client, server.origin)
        assert client.pool(server.origin).open_connections == 0
    finally:
        await server.close()


async def test_junk_after_a_complete_response_keeps_the_response_but_not_the_connection(client: HTTPClient) -> None:
    server = await serve(keep_alive(lambda n, body: ok(b"fine") + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"))
    try:
        _, body = await fetch(client, server.origin)
        assert body == b"fine"
        _, body = await fetch(client, server.origin)
        assert body == b"fine"
        assert server.accepts == 2
    finally:
        await server.close()


async def test_body_cut_short_raises_disconnected(client: HTTPClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        peer.abort()

    server = await serve(handler)
    try:
        with pytest.raises(UpstreamDisconnected) as caught:
            await fetch(client, server.origin)
        assert not caught.value.before_response
        assert client.pool(server.origin).open_connections == 0
    finally:
        await server.close()


async def test_large_request_and_response_bodies(client: HTTPClient) -> None:
    payload = bytes(range(256)) * 16 * 1024  # 4 MiB

    server = await serve(keep_alive(lambda n, body: ok(body[::-1])))
    try:
        response, body = await fetch(client, server.origin, payload)
        assert body == payload[::-1]
        assert server.accepts == 1
    finally:
        await server.close()


async def test_a_slow_consumer_makes_the_client_stop_reading(client: HTTPClient) -> None:
    piece = b"x" * 65536
    total = 128  # 8 MiB, far more than the high-water mark
    stalled = asyncio.Event()  # the server could not hand its last piece to the socket

    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(chunked_head())
        for _ in range(total):
            peer.writer.write(chunk(piece))
            if peer.writer.transport.get_write_buffer_size():  # the socket is full: nobody reads
                stalled.set()
            await peer.writer.drain()  # blocks until the client reads again
        await peer.send(LAST_CHUNK)
        # A keep-alive server keeps the connection (returning would abort it, dropping
        # whatever the socket has not taken yet): wait for the client to close it.
        await peer.read_request()

    server = await serve(handler)
    try:
        response = await client.request(server.origin, post_bytes(server.origin), idle=5)
        # Nobody consumes until the server is stuck: the client stopped reading the socket.
        await asyncio.wait_for(stalled.wait(), 10)
        largest, received = 0, 0
        async for data in response.iter_chunks():
            largest = max(largest, len(data))
            received += len(data)
        response.release()
        assert received == total * len(piece)
        # Everything buffered at once stays near the high-water mark (plus one socket read).
        assert largest <= HIGH_WATER + 2 * 256 * 1024
        assert client.pool(server.origin).idle_connections == 1
    finally:
        await server.close()


async def test_release_before_the_body_is_read_closes_an_unfinished_exchange(client: HTTPClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 429 Too Many\r\nRetry-After: 1\r\nContent-Length: 10\r\n\r\nhalf")
        await peer.closed_by_client()

    server = await serve(handler)
    try:
        response = await client.request(server.origin, post_bytes(server.origin), total=5)
        assert response.headers["retry-after"] == "1"
        response.release()
        assert client.pool(server.origin).open_connections == 0
    finally:
        await server.close()
