"""What only the Redis store has: key expiry, leaked reservations, timeouts, data loss.

The behaviour it shares with the memory store is the contract suite's; here a property
test also checks that both give the same answers on random sequences of operations.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.support.redis_server import RedisServer
from tests.unit.counters.ops import MINUTE, NOW, op, settle
from tollway.governance.counters.base import CounterOp, CounterReading, CounterState, CounterUnavailable, SettleOp
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.counters.redis import RedisCounterStore
from tollway.governance.counters.redis_scripts import TAKE_TOUCHED

HOUR = 3_600_000


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisCounterStore]:
    opened = RedisCounterStore(redis_server.url, timeout_ms=2000)
    yield opened
    await opened.close()


async def test_a_counter_expires_two_windows_and_an_hour_after_it_starts_a_window(store, raw, counter_name) -> None:
    a, b = counter_name("a"), counter_name("b")
    horizon = 2 * MINUTE + HOUR
    await store.acquire([op(a, window=MINUTE)])
    await store.settle([settle(b, 0, 1, window=MINUTE)])
    for name in (a, b):
        assert horizon - 5_000 < await raw.pttl(f"tollway:c:{name}") <= horizon
    await raw.persist(f"tollway:c:{a}")
    await store.settle([settle(a, 1, 1, window=MINUTE)])  # the same window: no write of the expiry
    assert await raw.pttl(f"tollway:c:{a}") == -1
    later = NOW + MINUTE
    await store.acquire([CounterOp(a, 10, 1, later - MINUTE + 1, later, MINUTE)])  # a new window
    assert horizon - 5_000 < await raw.pttl(f"tollway:c:{a}") <= horizon


async def test_a_counter_of_unknown_window_does_not_expire(store, raw, counter_name) -> None:
    c = counter_name()
    await store.acquire([CounterOp(c, 10, 1, NOW - HOUR + 1, NOW)])
    assert await raw.pttl(f"tollway:c:{c}") == -1


async def test_an_expired_counter_reads_as_a_new_one(store, raw, counter_name) -> None:
    c = counter_name()
    await store.acquire([op(c, 3)])
    await store.settle([settle(c, 3, 3)])
    await raw.pexpire(f"tollway:c:{c}", 1)
    await asyncio.sleep(0.05)
    assert await store.read([op(c)]) == (CounterReading(0, 0, NOW),)
    assert c not in await store.export()


async def test_reservations_of_a_killed_process_are_given_back_when_its_lease_runs_out(
    redis_server: RedisServer, store, counter_name
) -> None:
    c = counter_name()
    script = (
        "import asyncio, os\n"
        "from tollway.governance.counters.base import CounterOp\n"
        "from tollway.governance.counters.redis import RedisCounterStore\n"
        "async def main():\n"
        f"    store = RedisCounterStore({redis_server.url!r}, timeout_ms=2000, lease_ms=500)\n"
        f"    result = await store.acquire([CounterOp({c!r}, 10, 4, {NOW - MINUTE + 1}, {NOW}, {MINUTE})])\n"
        "    assert result.failed == -1\n"
        "    os._exit(0)  # killed mid-request: nothing settles, nothing closes\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert await store.read([op(c)]) == (CounterReading(0, 4, NOW),)
    assert await store.reap_leaked() == 0  # the lease still runs: the process might be alive
    assert await store.read([op(c)]) == (CounterReading(0, 4, NOW),)
    await asyncio.sleep(0.6)
    assert await store.reap_leaked() == 1
    assert await store.read([op(c)]) == (CounterReading(0, 0, NOW),)


async def test_in_flight_slots_of_a_killed_process_come_back_when_its_lease_runs_out(
    redis_server: RedisServer, store, raw, counter_name
) -> None:
    c = counter_name()
    script = (
        "import asyncio, os\n"
        "from tollway.governance.counters.base import CounterOp\n"
        "from tollway.governance.counters.redis import RedisCounterStore\n"
        "async def main():\n"
        f"    store = RedisCounterStore({redis_server.url!r}, timeout_ms=2000, lease_ms=500)\n"
        "    for _ in range(3):\n"
        f"        assert (await store.acquire([CounterOp({c!r}, 3, 1, 0, 0, 0)])).failed == -1\n"
        "    os._exit(0)  # SIGKILLed with three requests in flight\n"
        "asyncio.run(main())\n"
    )
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], check=True, timeout=60)
    full = CounterOp(c, 3, 1, 0, 0, 0)
    assert (await store.acquire([full])).failed == 0
    assert await raw.pttl(f"tollway:c:{c}") == -1  # an in-flight counter never expires while slots are held
    await asyncio.sleep(0.6)
    assert await store.reap_leaked() == 1
    assert await store.read([full]) == (CounterReading(0, 0, 0),)
    assert (await store.acquire([full])).failed == -1


async def test_a_process_presumed_dead_does_not_give_back_what_others_hold(redis_server, store, counter_name) -> None:
    c = counter_name()
    slow = RedisCounterStore(redis_server.url, timeout_ms=2000)
    try:
        await slow.acquire([op(c, 5)])
        await slow.reap_leaked(lease_ms=-1)  # as if it had been cut off for longer than its lease
        assert await store.read([op(c)]) == (CounterReading(0, 0, NOW),)
        await store.acquire([op(c, 3)])
        await slow.settle([settle(c, 5, 5)])  # its request finishes after all
        assert await store.read([op(c)]) == (CounterReading(5, 3, NOW),)
    finally:
        await slow.close()


async def test_close_gives_back_what_the_process_still_holds(redis_server, store, counter_name) -> None:
    c = counter_name()
    leaving = RedisCounterStore(redis_server.url, timeout_ms=2000)
    await leaving.acquire([op(c, 2)])
    await leaving.close()
    assert await store.read([op(c)]) == (CounterReading(0, 0, NOW),)


async def test_an_unreachable_redis_raises_counter_unavailable_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    store = RedisCounterStore(f"redis://127.0.0.1:{port}/0", timeout_ms=50)
    try:
        started = time.monotonic()
        with pytest.raises(CounterUnavailable):
            await store.acquire([op("any")])
        with pytest.raises(CounterUnavailable):
            await store.settle([settle("any", 1, 1)])
        assert time.monotonic() - started < 0.5
        assert await store.claim_flush(1000) is False
    finally:
        await store.close()


async def test_a_redis_that_does_not_answer_raises_counter_unavailable_after_the_timeout(own_redis, counter_name) -> None:
    store = RedisCounterStore(own_redis.url, timeout_ms=50)
    try:
        await store.acquire([op(counter_name())])  # connected and working
        own_redis.pause()
        for call in (store.acquire([op(counter_name())]), store.read([op(counter_name())]), store.export()):
            started = time.monotonic()
            with pytest.raises(CounterUnavailable, match="within 50 ms"):
                await call
            assert time.monotonic() - started < 0.3
        own_redis.resume()
        assert (await store.acquire([op(counter_name())])).failed == -1  # recovers by itself
    finally:
        own_redis.resume()
        await store.close()


async def test_an_acquire_that_timed_out_but_ran_later_is_given_back(own_redis, counter_name) -> None:
    c = counter_name()
    store = RedisCounterStore(own_redis.url, timeout_ms=50)
    observer = RedisCounterStore(own_redis.url, timeout_ms=2000)
    try:
        await store.acquire([op(counter_name("warm"))])
        own_redis.pause()
        with pytest.raises(CounterUnavailable):
            await store.acquire([op(c, 4)])  # the client got a 503; Redis has the command queued
        own_redis.resume()
        for _ in range(100):
            if (readings := await observer.read([op(c)])) == (CounterReading(0, 0, NOW),):
                break
            await asyncio.sleep(0.02)
        assert readings == (CounterReading(0, 0, NOW),)
        assert (await store.acquire([op(c, 10)])).failed == -1  # the whole limit is there again
    finally:
        own_redis.resume()
        await store.close()
        await observer.close()


async def test_a_redis_that_lost_its_data_is_reseeded_from_the_database_before_counting(own_redis, counter_name) -> None:
    c = counter_name()
    database = {c: CounterState(7, NOW - 5)}

    async def seed() -> dict[str, CounterState]:
        return database

    store = RedisCounterStore(own_redis.url, timeout_ms=500, seed=seed)
    try:
        await store.load(database)
        assert (await store.acquire([op(c, 1)])).readings == (CounterReading(7, 1, NOW - 5),)
        await store.settle([settle(c, 1, 1)])
        database[c] = CounterState(8, NOW - 5)  # flushed
        own_redis.kill()
        own_redis.start()  # empty
        for _ in range(100):
            try:
                result = await store.acquire([op(c, 1)])
                break
            except CounterUnavailable:
                await asyncio.sleep(0.05)
        assert result.readings == (CounterReading(8, 1, NOW - 5),)
    finally:
        await store.close()


async def test_a_load_while_redis_is_down_is_applied_once_it_is_back(own_redis, counter_name) -> None:
    c = counter_name()
    store = RedisCounterStore(own_redis.url, timeout_ms=200)
    try:
        own_redis.kill()
        await store.load({c: CounterState(6, NOW - 1)})  # no raise: a gateway starts without Redis
        own_redis.start()
        for _ in range(100):
            try:
                readings = await store.read([op(c)])
            except CounterUnavailable:
                await asyncio.sleep(0.05)
                continue
            if readings[0].used:
                break
            await asyncio.sleep(0.05)
        assert readings == (CounterReading(6, 0, NOW - 1),)
    finally:
        await store.close()


async def test_one_process_per_interval_claims_the_flush(redis_server, own_redis) -> None:
    first = RedisCounterStore(own_redis.url, timeout_ms=2000)
    second = RedisCounterStore(own_redis.url, timeout_ms=2000)
    try:
        assert await first.claim_flush(300) is True
        assert await second.claim_flush(300) is False
        assert await first.claim_flush(300) is False
        await asyncio.sleep(0.35)
        assert await second.claim_flush(300) is True
    finally:
        await first.close()
        await second.close()


async def test_the_flush_sees_what_every_process_changed_and_a_failed_flush_loses_nothing(own_redis, counter_name) -> None:
    """Counters settled through any process are in the next flush's read (one process
    claims each flush); names taken by a flush that failed before reading them are read by
    the next; a counter forgotten since it was settled is reported gone."""
    flusher = RedisCounterStore(own_redis.url, timeout_ms=2000)
    other = RedisCounterStore(own_redis.url, timeout_ms=2000)
    a, b, gone = counter_name("a"), counter_name("b"), counter_name("gone")
    try:
        await other.load({})  # seeded marker set, as at a gateway's start
        await flusher.export_touched()
        await other.settle([settle(a, 0, 4), settle(gone, 0, 1)])
        await other.forget([gone])
        taken = await flusher._script(TAKE_TOUCHED, [flusher._touched, flusher._flushing], [])  # a flush that
        assert taken == 2  # took the names, then failed before reading them
        await flusher.settle([settle(b, 0, 6)])
        states, dropped = await flusher.export_touched()
        assert states == {a: CounterState(4, NOW), b: CounterState(6, NOW)} and dropped == {gone}
        assert await flusher.export_touched() == ({}, frozenset())
    finally:
        await flusher.close()
        await other.close()


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 6)), min_size=1, max_size=3),
                  st.integers(0, 3)),
        st.tuples(st.just("settle"), st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 6), st.integers(0, 6)),
                                              min_size=1, max_size=3), st.integers(0, 3)),
        st.tuples(st.just("reset"), st.lists(st.sampled_from("abc"), max_size=2), st.integers(0, 3)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_ops)
def test_redis_gives_the_memory_stores_answers_on_random_sequences(redis_server, steps) -> None:
    asyncio.run(_compare(redis_server.url, steps))


async def _compare(url: str, steps: list) -> None:
    """Windows of 10 ms stepping forward by 0–3 windows, so rolls happen often."""
    memory, redis = MemoryCounterStore(), RedisCounterStore(url, timeout_ms=2000)
    prefix = f"prop:{time.monotonic_ns()}:"
    now = NOW
    try:
        for kind, items, advance in steps:
            now += advance * 10
            if kind == "acquire":
                ops = [CounterOp(prefix + name, 8, amount, now - 9, now, 10) for name, amount in items]
                assert await redis.acquire(ops) == await memory.acquire(ops)
            elif kind == "settle":
                settles = [SettleOp(prefix + name, reserved, actual, now - 9, now, 10) for name, reserved, actual in items]
                await redis.settle(settles)
                await memory.settle(settles)
            else:
                await redis.reset([prefix + name for name in items], now)
                await memory.reset([prefix + name for name in items], now)
            reads = [CounterOp(prefix + name, 0, 0, now - 9, now, 10) for name in "abc"]
            assert await redis.read(reads) == await memory.read(reads)
        exported = {name: state for name, state in (await redis.export()).items() if name.startswith(prefix)}
        assert exported == await memory.export()
    finally:
        await redis.close()


async def test_the_requests_of_one_loop_turn_share_one_script_call(own_redis, counter_name) -> None:
    store = RedisCounterStore(own_redis.url, timeout_ms=2000)
    raw = Redis.from_url(own_redis.url)
    try:
        await store.acquire([op(counter_name("warm"))])
        before = (await raw.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
        results = await asyncio.gather(*(store.acquire([op(counter_name("c"), 1, limit=30)]) for _ in range(50)))
        calls = (await raw.info("commandstats"))["cmdstat_evalsha"]["calls"] - before
        assert [result.failed for result in results].count(-1) == 30
        assert calls <= 3  # the first alone, the others together
    finally:
        await store.close()
        await raw.aclose()


@pytest.mark.parametrize("which", [0, 2], ids=["sent-alone", "sent-in-a-batch"])
async def test_a_request_cancelled_while_waiting_keeps_no_reservation(own_redis, counter_name, which) -> None:
    c = counter_name()
    store = RedisCounterStore(own_redis.url, timeout_ms=2000)
    observer = RedisCounterStore(own_redis.url, timeout_ms=2000)
    try:
        await store.acquire([op(counter_name("warm"))])
        waiting = [asyncio.ensure_future(store.acquire([op(c, 1)])) for _ in range(3)]
        await asyncio.sleep(0)  # all three sent or queued
        waiting[which].cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        for _ in range(100):
            if (readings := await observer.read([op(c)])) == (CounterReading(0, 2, NOW),):
                break
            await asyncio.sleep(0.02)
        assert readings == (CounterReading(0, 2, NOW),)
    finally:
        await store.close()
        await observer.close()
