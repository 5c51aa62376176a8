"""The Redis counter store: exact counters shared by every gateway process and machine.

Each call is one Lua script (``lua/*.lua``, loaded once, run with EVALSHA), so an acquire
over every level of the hierarchy is atomic and costs one round trip; a settle or
release costs one more. The scripts are the twins of `MemoryCounterStore`'s methods: the
same contract suite runs against both. The acquires (and the settles) that reach the
store in the same event-loop turn go in one script call, each request still all or
nothing, in order: under load Redis then reads and writes each counter once per batch,
not once per request. Calls go through `RespClient` (one pipelined connection; see
resp.py for why not redis-py).

Keys, under ``key_prefix`` (default ``tollway:``):

- ``c:<counter>``: a hash {used, reserved, last_reset}. Whenever a counter starts a
  window its expiry is set to two windows plus an hour (``CounterOp.window_ms``): a
  counter in use starts a window at least once a window, so it never expires in use;
  one nobody touches expires holding only usage of a window that has ended, so dropping
  it changes no answer, and Redis does not grow with limits that are no longer used.
- ``h:<process id>``, a field of each counter hash: what that gateway process holds
  reserved on it; ``held:<process id>``: the set of counters it has such a field on.
- ``owners``: a sorted set of process ids and their lease deadlines (Redis clock). A
  process takes its lease before its first acquire and renews it every third of it;
  when a process dies mid-request (SIGKILL, OOM, power), its lease runs out and any
  other process gives its reservations back (``reap.lua``). A process gives back on settle only what it still
  holds, so a reservation is never given back twice.
- ``seeded``: set once the counters were loaded from the database. When Redis loses
  its data (restarted without persistence, flushed), the marker is gone: acquire and
  settle refuse to write (`CounterUnavailable`) and the store reloads the database's
  last flush in the background (``seed``) before anything is counted again.
- ``flush-lock``: which process writes usage to the database this flush interval.

It needs one Redis primary at one address: an acquire spans many keys, which Redis
Cluster would spread over shards.

Every call is bounded by ``timeout_ms``; an unreachable, slow or failing Redis raises
`CounterUnavailable`, never hangs (the proxy then fails closed, or the fail-open wrapper
takes over).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, TypeVar

from tollway.governance.counters.base import (
    AcquireResult,
    CounterOp,
    CounterReading,
    CounterState,
    CounterUnavailable,
    SettleOp,
)
from tollway.governance.counters.redis_holdings import Holdings
from tollway.governance.counters.redis_scripts import (
    ACQUIRE,
    LOAD,
    READ,
    REAP,
    RESET,
    SETTLE,
    SYNC,
    TAKE_TOUCHED,
    Batcher,
    NoScript,
    Script,
    ScriptCommands,
    batches,
    cancel,
    fail,
    glob_escape,
    packer,
    within,
)
from tollway.redis_wire import RespClient, RespConnectionError, RespError

log = logging.getLogger(__name__)

T = TypeVar("T")
Seed = Callable[[], Awaitable[Mapping[str, CounterState]]]

_UNSEEDED = -2
_RESEED_RETRY_S = 1.0
_UNSURE_RETRY_S = 0.25
_BATCH_REQUESTS = 64  # requests per script call at most
# What the scripts get of an op: CounterOp (limit, amount, floor_ms, reset_to_ms,
# window_ms) and SettleOp (reserved, actual, floor_ms, reset_to_ms, window_ms) alike.
_COUNTER, _NUMBERS = itemgetter(0), itemgetter(1, 2, 3, 4, 5)


def _reading(values: tuple[int, int, int]) -> CounterReading:
    return tuple.__new__(CounterReading, values)  # a NamedTuple without its Python-level __new__


class RedisCounterStore:
    """`CounterStore` in Redis, shared by every gateway process that points at it.

    ``seed`` reads the counters from the database; it is called when Redis turns out to
    have lost its data. ``lease_ms`` is how long a silent process keeps its reservations.
    """

    def __init__(self, url: str, timeout_ms: int = 50, key_prefix: str = "tollway:", *,
                 seed: Seed | None = None, lease_ms: int = 30_000) -> None:
        self._timeout_s = timeout_ms / 1000
        self._client = RespClient(url, self._timeout_s)
        self._counters = key_prefix + "c:"
        self.owner = uuid.uuid4().hex
        self._holdings_prefix = key_prefix + "held:"
        self._holdings = self._holdings_prefix + self.owner  # the counters this process holds a field on
        self._field = "h:" + self.owner  # its field in each counter: what it holds reserved there
        self._owners = key_prefix + "owners"
        self._seeded = key_prefix + "seeded"
        self._flush_lock = key_prefix + "flush-lock"
        # Counters settled or reset since the last usage flush, kept in Redis by the scripts
        # (every process adds to it; whichever process flushes takes it whole).
        self._touched = key_prefix + "touched"
        self._flushing = key_prefix + "touched:flushing"
        self._lease_ms = lease_ms
        self._seed = seed
        self._unloaded: dict[str, CounterState] = {}  # loads that could not reach Redis yet
        self._holding = Holdings()
        self._failing = False  # logged once per outage
        self._commands = ScriptCommands(self._counters, (self._holdings, self._seeded, self._touched), self._field)
        self._acquires: Batcher[Sequence[CounterOp], AcquireResult] = Batcher(self._acquire_batch, _BATCH_REQUESTS)
        self._settles: Batcher[Sequence[SettleOp], None] = Batcher(self._settle_batch, _BATCH_REQUESTS)
        self._maintenance: asyncio.Task[None] | None = None  # started with the lease, before the first acquire
        self._reseeding: asyncio.Task[None] | None = None

    async def acquire(self, ops: Sequence[CounterOp]) -> AcquireResult:
        if self._maintenance is None:
            await self._take_lease()
        return await self._acquires.call(ops)

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        await self._settles.call(ops)

    async def read(self, ops: Sequence[CounterOp]) -> tuple[CounterReading, ...]:
        args: list[Any] = []
        for op in ops:
            args += (op.floor_ms, op.reset_to_ms)
        values = await self._script(READ, [self._counters + op.counter for op in ops], args)
        return tuple(CounterReading(int(values[i]), int(values[i + 1]), int(values[i + 2]))
                     for i in range(0, len(values), 3))

    async def reset(self, counters: Sequence[str], now_ms: int) -> None:
        if counters:
            await self._script(RESET, [*(self._counters + name for name in counters), self._touched], [now_ms])

    async def export(self) -> dict[str, CounterState]:
        """Every counter in Redis: SCAN, then HMGETs pipelined, each call bounded."""
        names: set[str] = set()
        cursor = "0"
        pattern = glob_escape(self._counters) + "*"
        while True:
            next_cursor, found = await self._call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            names.update(key.decode()[len(self._counters):] for key in found)
            cursor = next_cursor.decode()
            if cursor == "0":
                break
        states, _ = await self._states(names)
        return states

    async def export_touched(self) -> tuple[dict[str, CounterState], frozenset[str]]:
        """The states of the counters settled or reset since the last call (by any process
        on this Redis), and those of them that are gone (expired or forgotten): a usage
        flush then costs what changed, not every counter Redis holds (a million end users
        leave millions of counters). The names are taken atomically (take_touched.lua) and
        deleted only once read; a call that fails before that leaves them for the next."""
        await self._script(TAKE_TOUCHED, [self._touched, self._flushing], [])
        names: set[str] = set()
        cursor = "0"
        while True:
            next_cursor, found = await self._call("SSCAN", self._flushing, cursor, "COUNT", 1000)
            names.update(key.decode()[len(self._counters):] for key in found)
            cursor = next_cursor.decode()
            if cursor == "0":
                break
        states, gone = await self._states(names)
        await self._call("DEL", self._flushing)
        return states, frozenset(gone)

    async def _states(self, names: set[str]) -> tuple[dict[str, CounterState], list[str]]:
        """The states of ``names`` (HMGETs pipelined, each call bounded), and the names
        that no longer exist."""
        states: dict[str, CounterState] = {}
        gone: list[str] = []
        for batch in batches(sorted(names)):
            replies = await asyncio.gather(*(self._call("HMGET", self._counters + name, "used", "last_reset")
                                             for name in batch))
            for name, (used, last_reset) in zip(batch, replies):
                if used is not None and last_reset is not None:
                    states[name] = CounterState(int(used), int(last_reset))
                else:  # expired or forgotten since it was listed
                    gone.append(name)
        return states, gone

    async def load(self, states: Mapping[str, CounterState]) -> None:
        """Seed counters Redis does not know. When Redis cannot be reached they are kept
        and loaded (with the database's state, when a ``seed`` is given) once it can."""
        try:
            await self._load_all(states)
        except CounterUnavailable as exc:
            log.warning("counters not loaded into Redis yet (%s); retrying in the background", exc)
            self._unloaded.update(states)
            self._start_reseed()

    async def forget(self, counters: Sequence[str]) -> None:
        for batch in batches(list(counters)):
            await self._call("DEL", *(self._counters + name for name in batch))

    async def close(self) -> None:
        for task in (self._maintenance, self._reseeding):
            if task is not None:
                await cancel(task)
        if self._maintenance is not None:
            try:  # give this process's lease up now: anything it still holds is released
                await self.reap_leaked(lease_ms=-1)
            except CounterUnavailable:
                pass
        await self._client.close()

    async def ping(self) -> None:
        """Raise `CounterUnavailable` unless Redis answers and holds the seeded counters."""
        if not await self._call("EXISTS", self._seeded):
            await self._lost_data()

    async def claim_flush(self, interval_ms: int) -> bool:
        """True for the one process that writes usage to the database this interval."""
        try:
            return await self._call("SET", self._flush_lock, self.owner, "NX", "PX", interval_ms) is not None
        except CounterUnavailable:
            return False

    async def reap_leaked(self, lease_ms: int | None = None) -> int:
        """Renew this process's lease and give back the reservations of processes whose
        lease ran out; returns how many counters had reservations given back."""
        lease = self._lease_ms if lease_ms is None else lease_ms
        return int(await self._script(REAP, [self._owners], [self.owner, lease, self._holdings_prefix]))

    async def _take_lease(self) -> None:
        """Register this process in the owners set before it holds anything (a process
        killed before registering would leave holdings no reaper looks for)."""
        await self.reap_leaked()
        if self._maintenance is None:
            self._maintenance = asyncio.create_task(self._maintain(), name="redis-counters-lease")

    async def _maintain(self) -> None:
        """Renew the lease and reap dead processes' reservations every third of a
        lease; after a call that got no answer, sync holdings as soon as Redis answers."""
        while True:
            try:  # until the next beat, or sooner when a call got no answer
                async with asyncio.timeout(_UNSURE_RETRY_S if self._holding.unsure else self._lease_ms / 3000):
                    await self._holding.changed.wait()
            except TimeoutError:
                pass
            self._holding.changed.clear()
            try:
                if self._holding.unsure:
                    await self._holding.sync(self._bounded, self._tell_holdings)
                released = await self.reap_leaked()
                if released:
                    log.warning("gave back the reservations of a gateway process that stopped renewing "
                                "its lease on %d counters", released)
            except CounterUnavailable:
                pass  # the requests report it; the next beat tries again
            except Exception:
                log.exception("renewing the counter store's lease failed")

    async def _acquire_batch(self, batch: list[tuple[Sequence[CounterOp], asyncio.Future[AcquireResult]]]) -> None:
        """One acquire.lua call for the requests of one loop turn; a request whose caller
        went away meanwhile (a client that disconnected) has its reservations released."""
        try:
            values = await self._acquire_all([ops for ops, _ in batch])
        except BaseException as exc:
            fail(batch, exc)
            if not isinstance(exc, CounterUnavailable):
                raise
            return
        releases: list[SettleOp] = []
        at = 0
        for ops, future in batch:
            failed, end = values[at], at + 1 + 3 * len(ops)
            readings = iter(values[at + 1:end])
            at = end
            if failed == -1:
                self._holding.reserved(ops)
                if future.done():
                    releases += [SettleOp(op.counter, op.amount, 0, op.floor_ms, op.reset_to_ms, op.window_ms)
                                 for op in ops]
                    continue
            if not future.done():
                future.set_result(AcquireResult(failed, tuple(map(_reading, zip(readings, readings, readings)))))
        if releases:
            try:
                await self.settle(releases)
            except CounterUnavailable:
                log.warning("the reservations of requests cancelled while waiting were not released; "
                            "they are when this process's lease ends")

    async def _acquire_all(self, requests: list[Sequence[CounterOp]]) -> list[int]:
        ops = [op for request in requests for op in request]
        packed = packer(len(ops)).pack(*chain.from_iterable(map(_NUMBERS, ops)))
        sizes = struct.pack(f">{len(requests)}d", *map(len, requests))
        reply = await self._changing(ACQUIRE, list(map(_COUNTER, ops)), packed, sizes)
        values = list(map(int, struct.unpack(f">{len(reply) // 8}d", reply)))
        if values[0] == _UNSEEDED:
            await self._lost_data()
            return await self._acquire_all(requests)
        return values

    async def _settle_batch(self, batch: list[tuple[Sequence[SettleOp], asyncio.Future[None]]]) -> None:
        """One settle.lua call for the settlements of one loop turn."""
        try:
            await self._settle_all([op for ops, _ in batch for op in ops])
        except BaseException as exc:
            fail(batch, exc)
            if not isinstance(exc, CounterUnavailable):
                raise
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _settle_all(self, ops: list[SettleOp]) -> None:
        packed = packer(len(ops)).pack(*chain.from_iterable(map(_NUMBERS, ops)))
        if await self._changing(SETTLE, list(map(_COUNTER, ops)), packed) == _UNSEEDED:
            await self._lost_data()
            await self._settle_all(ops)
            return
        self._holding.settled(ops)

    async def _changing(self, script: Script, counters: list[str], packed: bytes, sizes: bytes = b"") -> Any:
        """acquire.lua or settle.lua on ``counters``: a call that changes what this process
        holds (see `Holdings`), held back while holdings are synced."""
        await self._holding.wait_for_sync(self._bounded)
        with self._holding.changing():
            try:
                return await self._guard(self._client.send(self._commands.build(script, counters, packed, sizes)))
            except NoScript:
                return await self._guard(self._client.send(
                    self._commands.build(script, counters, packed, sizes, whole=True)))

    async def _tell_holdings(self, held: list[tuple[str, int]]) -> bool:
        """sync.lua: Redis's figure of what this process holds becomes ``held``."""
        args: list[Any] = [self._field]
        for counter, amount in held:
            args += (self._counters + counter, amount)
        corrected = await self._script(SYNC, [self._holdings, self._seeded], args)
        if corrected == _UNSEEDED:
            return False  # reseeding first; the next beat syncs
        if corrected:
            log.warning("corrected this process's reservations on %d counters after calls that "
                        "got no answer had run after all", corrected)
        return True

    async def _lost_data(self) -> None:
        """Redis holds no seeded counters: reload them before counting anything again.

        With a ``seed`` (the database), reloading runs in the background and this call
        fails; without one there is nothing to reload, so the marker is set at once.
        """
        if self._seed is not None:
            self._start_reseed()
            raise CounterUnavailable("Redis lost its counters; reloading them from the database")
        await self._load_all(self._unloaded)
        self._unloaded = {}

    def _start_reseed(self) -> None:
        if self._reseeding is None or self._reseeding.done():
            self._reseeding = asyncio.create_task(self._reseed(), name="redis-counters-reseed")

    async def _reseed(self) -> None:
        while True:
            try:
                states = dict(await self._seed()) if self._seed is not None else {}
                states.update(self._unloaded)
                await self._load_all(states)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("reloading counters into Redis failed (%s); retrying", exc)
                await asyncio.sleep(_RESEED_RETRY_S)
                continue
            self._unloaded = {}
            log.info("loaded %d counters into Redis", len(states))
            return

    async def _load_all(self, states: Mapping[str, CounterState]) -> None:
        """Seed ``states`` in batches; the last batch sets the seeded marker."""
        parts = batches(list(states.items())) or [[]]
        for index, batch in enumerate(parts):
            args: list[Any] = ["1" if index == len(parts) - 1 else "0"]
            for _, state in batch:
                args += (state.used, state.last_reset_ms)
            await self._script(LOAD, [self._counters + name for name, _ in batch] + [self._seeded], args)

    async def _script(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScript:  # Redis restarted or flushed its script cache: send it whole once
            return await self._call("EVAL", script.body, len(keys), *keys, *args)

    async def _call(self, *command: Any) -> Any:
        """One Redis round trip, bounded by the timeout; any failure is `CounterUnavailable`."""
        return await self._guard(self._client.call(*command))

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        """``awaitable`` (not a Redis call: those bound themselves) within the timeout."""
        return await self._guard(within(awaitable, self._timeout_s))

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        """Any failure of a Redis call as `CounterUnavailable`, logged once per outage."""
        try:
            result = await awaitable
        except TimeoutError:
            raise self._failed(f"Redis did not answer within {self._timeout_s * 1000:.0f} ms") from None
        except RespConnectionError as exc:
            raise self._failed(str(exc)) from None
        except RespError as exc:
            if str(exc).startswith("NOSCRIPT"):
                raise NoScript from None
            raise self._failed(f"Redis answered an error: {exc}") from None
        if self._failing:
            self._failing = False
            log.warning("Redis answers again")
        return result

    def _failed(self, reason: str) -> CounterUnavailable:
        if not self._failing:  # once per outage, not once per request
            self._failing = True
            log.warning("counter store unavailable: %s", reason)
        return CounterUnavailable(reason)


