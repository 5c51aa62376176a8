"""The keep-alive pool: the cap and its queue, idle expiry, stale connections, and
cancellation never leaving a half-used connection in the pool."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.http.servers import Peer, fetch, keep_alive, ok, post_bytes, serve
from tollway.providers.http import HTTPClient, PoolClosed, UpstreamDisconnected, UpstreamTimeout


async def _slow_ok(n: int, body: bytes) -> bytes:
    await asyncio.sleep(0.05)
    return ok(b"slow %d" % n)


async def test_requests_beyond_the_cap_wait_for_a_connection() -> None:
    client = HTTPClient(max_connections=2)
    server = await serve(keep_alive(_slow_ok))
    try:
        results = await asyncio.gather(*(fetch(client, server.origin, total=5) for _ in range(7)))
        assert sorted(body for _, body in results) == sorted(b"slow %d" % n for n in range(7))
        assert server.max_open == 2
        assert server.accepts == 2  # the waiters were handed the released connections
        assert client.pool(server.origin).open_connections == 2
    finally:
        await client.close()
        await server.close()


async def test_waiting_for_a_connection_counts_against_the_total_timeout() -> None:
    release = asyncio.Event()

    async def held(n: int, body: bytes) -> bytes:
        await release.wait()
        return ok()

    client = HTTPClient(max_connections=1)
    server = await serve(keep_alive(held))
    try:
        first = asyncio.ensure_future(fetch(client, server.origin, total=5))
        await asyncio.sleep(0.05)
        with pytest.raises(UpstreamTimeout, match="became free"):
            await fetch(client, server.origin, total=0.2)
        release.set()
        assert (await first)[1] == b"ok"
        assert (await fetch(client, server.origin, total=5))[1] == b"ok"  # the queue is clean
        assert server.accepts == 1
    finally:
        await client.close()
        await server.close()


async def test_idle_connections_expire() -> None:
    closed = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await keep_alive(lambda n, body: ok())(peer)
        closed.set()

    client = HTTPClient(keepalive_expiry=0.1)
    server = await serve(handler)
    try:
        await fetch(client, server.origin)
        assert client.pool(server.origin).idle_connections == 1
        await asyncio.wait_for(closed.wait(), 2)  # the client closed it, unasked
        assert client.pool(server.origin).open_connections == 0
        await fetch(client, server.origin)
        assert server.accepts == 2
    finally:
        await client.close()
        await server.close()


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def one_and_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok(b"once"))
        peer.writer.close()  # an idle timeout on the server's side, without a Connection header

    client = HTTPClient()
    server = await serve(one_and_close)
    try:
        for _ in range(3):
            assert (await fetch(client, server.origin))[1] == b"once"
            await asyncio.sleep(0.05)  # the close reaches us while the connection is idle
        assert server.accepts == 3
        assert client.pool(server.origin).open_connections == 0
    finally:
        await client.close()
        await server.close()


def _drops_second_request() -> tuple[list[int], object]:
    """A server that answers the first request on a connection and closes the connection
    without a byte on the second: the keep-alive race, as the client sees it."""
    per_connection: list[int] = []

    async def handler(peer: Peer) -> None:
        per_connection.append(0)
        while await peer.read_request() is not None:
            per_connection[-1] += 1
            if per_connection[-1] == 2:
                peer.abort()
                return
            await peer.send(ok(b"answer"))

    return per_connection, handler


async def test_a_stale_reused_connection_is_retried_once_on_a_fresh_one(client: HTTPClient) -> None:
    per_connection, handler = _drops_second_request()
    server = await serve(handler)  # type: ignore[arg-type]
    try:
        assert (await fetch(client, server.origin))[1] == b"answer"
        assert (await fetch(client, server.origin))[1] == b"answer"  # retried on connection 2
        assert server.accepts == 2
        assert per_connection[:2] == [2, 1]
    finally:
        await server.close()


async def test_stale_retry_can_be_turned_off() -> None:
    per_connection, handler = _drops_second_request()
    client = HTTPClient(retry_stale=False)
    server = await serve(handler)  # type: ignore[arg-type]
    try:
        await fetch(client, server.origin)
        with pytest.raises(UpstreamDisconnected) as caught:
            await fetch(client, server.origin)
        assert caught.value.before_response
        assert server.accepts == 1
    finally:
        await client.close()
        await server.close()


async def test_a_fresh_connection_closed_before_the_response_is_not_retried(client: HTTPClient) -> None:
    async def drop(peer: Peer) -> None:
        await peer.read_request()
        peer.abort()

    server = await serve(drop)
    try:
        with pytest.raises(UpstreamDisconnected) as caught:
            await fetch(client, server.origin)
        assert caught.value.before_response
        assert server.accepts == 1
    finally:
        await server.close()


async def test_a_reused_connection_that_breaks_mid_response_is_not_retried(client: HTTPClient) -> None:
    async def handler(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(ok(b"first"))
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\npartial")
        peer.abort()

    server = await serve(handler)
    try:
        await fetch(client, server.origin)
        with pytest.raises(UpstreamDisconnected) as caught:
            await fetch(client, server.origin)
        assert not caught.value.before_response
        assert server.accepts == 1
    finally:
        await server.close()


async def test_cancelled_while_waiting_for_headers_the_connection_is_dropped(client: HTTPClient) -> None:
    peers: list[Peer] = []

    async def silent_then_ok(peer: Peer) -> None:
        peers.append(peer)
        await peer.read_request()
        if len(peers) == 1:
            await peer.closed_by_client(5)
            return
        await peer.send(ok(b"second"))

    server = await serve(silent_then_ok)
    try:
        task = asyncio.ensure_future(client.request(server.origin, post_bytes(server.origin), total=5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.pool(server.origin).open_connections == 0
        assert (await fetch(client, server.origin))[1] == b"second"
        assert server.accepts == 2  # the cancelled exchange's connection was never reused
    finally:
        await server.close()


async def test_cancelled_mid_body_the_connection_is_dropped(client: HTTPClient) -> None:
    async def half_then_wait(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await peer.closed_by_client(5)

    server = await serve(half_then_wait)
    try:
        response = await client.request(server.origin, post_bytes(server.origin), total=5)
        reading = asyncio.ensure_future(response.read())
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        response.release()  # a release after the cancellation changes nothing
        assert client.pool(server.origin).open_connections == 0
    finally:
        await server.close()


async def test_cancelled_while_queued_frees_its_place() -> None:
    release = asyncio.Event()

    async def held(n: int, body: bytes) -> bytes:
        if n == 0:
            await release.wait()
        return ok(b"%d" % n)

    client = HTTPClient(max_connections=1)
    server = await serve(keep_alive(held))
    try:
        first = asyncio.ensure_future(fetch(client, server.origin, total=5))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(fetch(client, server.origin, total=5))
        await asyncio.sleep(0.05)
        queued.cancel()
        release.set()
        assert (await first)[1] == b"0"
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert (await fetch(client, server.origin, total=5))[1] == b"1"
        assert client.pool(server.origin).open_connections == 1
    finally:
        await client.close()
        await server.close()


async def test_a_closed_client_refuses_requests() -> None:
    client = HTTPClient()
    server = await serve(keep_alive(lambda n, body: ok()))
    try:
        await fetch(client, server.origin)
        await client.close()
        with pytest.raises(PoolClosed):
            await fetch(client, server.origin)
    finally:
        await server.close()
