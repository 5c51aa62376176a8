"""The counter store's Redis client: RESP in and out, pipelining, deadlines."""

from __future__ import annotations

import asyncio
import time

import pytest

from tollway.redis_wire import RespClient, RespConnectionError, RespError, encode, parse


def test_encode_writes_bulk_strings_with_byte_lengths() -> None:
    assert encode(("SET", "k", 12)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert encode(("GET", "clé")) == b"*2\r\n$3\r\nGET\r\n$4\r\ncl\xc3\xa9\r\n"


@pytest.mark.parametrize(("wire", "value"), [
    (b":42\r\n", 42),
    (b":-2\r\n", -2),
    (b"$3\r\nabc\r\n", b"abc"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"+OK\r\n", b"OK"),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*3\r\n:1\r\n:-1\r\n:1800000000000\r\n", [1, -1, 1800000000000]),
    (b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$-1\r\n", [b"0", [b"a", None]]),
    (b"*3\r\n:1\r\n$1\r\nx\r\n:2\r\n", [1, b"x", 2]),
])
def test_parse_reads_every_reply_type_the_store_gets(wire: bytes, value) -> None:
    assert parse(wire + b":7\r\n", 0) == (value, len(wire))


def test_parse_reports_an_incomplete_reply_at_every_cut() -> None:
    wire = b"*3\r\n:1\r\n$5\r\nhello\r\n*1\r\n:2\r\n"
    for cut in range(len(wire)):
        with pytest.raises(Exception) as caught:
            parse(wire[:cut], 0)
        assert type(caught.value).__name__ == "_Incomplete"
    assert parse(wire, 0) == ([1, b"hello", [2]], len(wire))


def test_parse_returns_an_error_reply_as_a_value() -> None:
    error, end = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(error, RespError) and str(error).startswith("NOSCRIPT") and end == 30


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(own_redis) -> None:
    client = RespClient(own_redis.url, 2.0)
    try:
        replies = await asyncio.gather(*(client.call("INCRBY", f"k{i % 7}", i) for i in range(500)))
        assert all(isinstance(reply, int) for reply in replies)
        totals = [int(value) for value in await asyncio.gather(*(client.call("GET", f"k{i}") for i in range(7)))]
        assert sum(totals) == sum(range(500))
        assert (await client.call("CLIENT", "LIST")).count(b"cmd=") == 1
        with pytest.raises(RespError, match="WRONGTYPE"):
            await client.call("HGET", "k0", "field")
        assert await client.call("PING") == b"PONG"  # still in step after an error reply
    finally:
        await client.close()


async def test_a_late_reply_is_dropped_and_the_next_call_gets_its_own(own_redis) -> None:
    client = RespClient(own_redis.url, 0.05)
    try:
        await client.call("SET", "late", "old")
        own_redis.pause()
        with pytest.raises(TimeoutError):
            await client.call("GET", "late")
        own_redis.resume()
        assert await client.call("SET", "late", "new") == b"OK"
        assert await client.call("GET", "late") == b"new"
    finally:
        own_redis.resume()
        await client.close()


async def test_a_busy_event_loop_does_not_read_as_a_silent_redis(own_redis) -> None:
    client = RespClient(own_redis.url, 0.05)
    try:
        await client.call("PING")
        call = asyncio.ensure_future(client.call("PING"))
        await asyncio.sleep(0)  # sent
        time.sleep(0.2)  # the loop is blocked long past the deadline; the answer is in the socket
        assert await call == b"PONG"
    finally:
        await client.close()


async def test_an_unreachable_redis_fails_at_once_and_a_restarted_one_is_reconnected(own_redis) -> None:
    client = RespClient(own_redis.url, 1.0)
    try:
        assert await client.call("PING") == b"PONG"
        own_redis.kill()
        started = time.monotonic()
        with pytest.raises(RespConnectionError):
            await client.call("PING")
        with pytest.raises(RespConnectionError):
            await client.call("PING")
        assert time.monotonic() - started < 0.5
        own_redis.start()
        assert await client.call("PING") == b"PONG"
    finally:
        await client.close()


async def test_the_url_selects_the_database(own_redis) -> None:
    first, other = RespClient(own_redis.url, 1.0), RespClient(f"redis://127.0.0.1:{own_redis.port}/3", 1.0)
    try:
        await other.call("SET", "where", "db3")
        assert await first.call("GET", "where") is None
        assert await other.call("GET", "where") == b"db3"
    finally:
        await first.close()
        await other.close()
