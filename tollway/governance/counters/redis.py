"""The Redis counter store: exact counters shared by every gateway process and machine.

Each call is one Lua script (``lua/*.lua``, loaded once, run with EVALSHA), so an acquire
over every level of the hierarchy is atomic and costs one round trip; a settle or
release costs one more. The scripts are the twins of `MemoryCounterStore`'s methods: the
same contract suite runs against both. Calls go through `RespClient` (one pipelined
connection; see resp.py for why not redis-py).

Keys, under ``key_prefix`` (default ``tollway:``):

- ``c:<counter>``: a hash {used, reserved, last_reset}. Whenever a counter starts a
  window its expiry is set to two windows plus an hour (``CounterOp.window_ms``): a
  counter in use starts a window at least once a window, so it never expires in use;
  one nobody touches expires holding only usage of a window that has ended, so dropping
  it changes no answer, and Redis does not grow with limits that are no longer used.
- ``held:<process id>``: what one gateway process holds reserved, per counter.
- ``owners``: a sorted set of process ids and their lease deadlines (Redis clock). A
  process takes its lease before its first acquire and renews it every third of it;
  when a process dies mid-request
  (SIGKILL, OOM, power), its lease runs out and any other process gives its
  reservations back (``reap.lua``). A process gives back on settle only what it still
  holds, so a reservation is never given back twice.
- ``seeded``: set once the counters were loaded from the database. When Redis loses
  its data (restarted without persistence, flushed), the marker is gone: acquire and
  settle refuse to write (`CounterUnavailable`) and the store reloads the database's
  last flush in the background (``seed``) before anything is counted again.
- ``flush-lock``: which process writes usage to the database this flush interval.

It needs one Redis primary (optionally with replicas / Sentinel): an acquire spans many
keys, which Redis Cluster would spread over shards.

Every call is bounded by ``timeout_ms``; an unreachable, slow or failing Redis raises
`CounterUnavailable`, never hangs (the proxy then fails closed, or the fail-open wrapper
takes over).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any, TypeVar

from tollway.governance.counters.base import (
    AcquireResult,
    CounterOp,
    CounterReading,
    CounterState,
    CounterUnavailable,
    SettleOp,
)
from tollway.governance.counters.resp import RespClient, RespConnectionError, RespError

log = logging.getLogger(__name__)

T = TypeVar("T")
Seed = Callable[[], Awaitable[Mapping[str, CounterState]]]

_TTL_MARGIN_MS = 3_600_000  # beyond two windows: requests in flight settle long before
_BATCH = 500  # keys per script call or pipeline in bulk operations (load, export, forget)
_UNSEEDED = -2
_RESEED_RETRY_S = 1.0
_UNSURE_RETRY_S = 0.25


class _Script:
    """A Lua script of ``lua/``, read once; run by its SHA1, sent whole when Redis lacks it."""

    __slots__ = ("name", "body", "sha")

    def __init__(self, name: str) -> None:
        self.name = name
        self.body = resources.files("tollway.governance.counters").joinpath(f"lua/{name}.lua").read_text("utf-8")
        self.sha = hashlib.sha1(self.body.encode()).hexdigest()


_ACQUIRE, _SETTLE, _READ, _RESET, _LOAD, _REAP, _SYNC = (
    _Script(name) for name in ("acquire", "settle", "read", "reset", "load", "reap", "sync"))


class RedisCounterStore:
    """`CounterStore` in Redis, shared by every gateway process that points at it.

    ``seed`` reads the counters from the database; it is called when Redis turns out to
    have lost its data. ``lease_ms`` is how long a silent process keeps its reservations.
    """

    def __init__(self, url: str, timeout_ms: int = 50, key_prefix: str = "tollway:", *,
                 seed: Seed | None = None, lease_ms: int = 30_000) -> None:
        self._timeout_s = timeout_ms / 1000
        self._client = RespClient(url, connect_timeout_s=self._timeout_s)
        self._prefix = key_prefix
        self._counters = key_prefix + "c:"
        self.owner = uuid.uuid4().hex
        self._holdings_prefix = key_prefix + "held:"
        self._holdings = self._holdings_prefix + self.owner
        self._owners = key_prefix + "owners"
        self._seeded = key_prefix + "seeded"
        self._flush_lock = key_prefix + "flush-lock"
        self._lease_ms = lease_ms
        self._seed = seed
        self._unloaded: dict[str, CounterState] = {}  # loads that could not reach Redis yet
        # What this process holds reserved per counter key, from the answers it got. A
        # call that got none (timeout) may still have run: then holdings are synced.
        self._mine: dict[str, int] = {}
        self._unsure = False
        self._in_flight = 0
        self._drained: asyncio.Event | None = None
        self._syncing: asyncio.Event | None = None  # set when the sync is over
        self._wake = asyncio.Event()  # wakes the maintenance task early
        self._failing = False  # logged once per outage
        self._maintenance: asyncio.Task[None] | None = None  # started with the lease, before the first acquire
        self._reseeding: asyncio.Task[None] | None = None

    async def acquire(self, ops: Sequence[CounterOp]) -> AcquireResult:
        if self._maintenance is None:
            await self._take_lease()
        keys = [self._counters + op.counter for op in ops]
        keys += (self._holdings, self._seeded)
        args: list[Any] = []
        for op in ops:
            args += (op.limit, op.amount, op.floor_ms, op.reset_to_ms, _ttl(op.window_ms))
        reply = await self._changing(_ACQUIRE, keys, args)
        if reply[0] == _UNSEEDED:
            await self._lost_data()
            return await self.acquire(ops)
        if reply[0] == -1:
            mine = self._mine
            for key, op in zip(keys, ops):
                if op.amount:
                    mine[key] = mine.get(key, 0) + op.amount
        return AcquireResult(reply[0], tuple(
            CounterReading(reply[i], reply[i + 1], reply[i + 2]) for i in range(1, len(reply), 3)
        ))

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        keys = [self._counters + op.counter for op in ops]
        keys += (self._holdings, self._seeded)
        args: list[Any] = []
        for op in ops:
            args += (op.reserved, op.actual, op.floor_ms, op.reset_to_ms, _ttl(op.window_ms))
        if await self._changing(_SETTLE, keys, args) == _UNSEEDED:
            await self._lost_data()
            await self.settle(ops)
            return
        mine = self._mine
        for key, op in zip(keys, ops):  # as settle.lua: give back at most what is held
            held = mine.get(key, 0)
            if op.reserved and held:
                if held > op.reserved:
                    mine[key] = held - op.reserved
                else:
                    del mine[key]

    async def read(self, ops: Sequence[CounterOp]) -> tuple[CounterReading, ...]:
        args: list[Any] = []
        for op in ops:
            args += (op.floor_ms, op.reset_to_ms)
        values = await self._script(_READ, [self._counters + op.counter for op in ops], args)
        return tuple(CounterReading(int(values[i]), int(values[i + 1]), int(values[i + 2]))
                     for i in range(0, len(values), 3))

    async def reset(self, counters: Sequence[str], now_ms: int) -> None:
        if counters:
            await self._script(_RESET, [self._counters + name for name in counters], [now_ms])

    async def export(self) -> dict[str, CounterState]:
        """Every counter in Redis: SCAN, then HMGETs pipelined, each call bounded."""
        names: set[str] = set()
        cursor = "0"
        pattern = _glob_escape(self._counters) + "*"
        while True:
            next_cursor, found = await self._call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            names.update(key.decode()[len(self._counters):] for key in found)
            cursor = next_cursor.decode()
            if cursor == "0":
                break
        states: dict[str, CounterState] = {}
        for batch in _batches(sorted(names)):
            replies = await asyncio.gather(*(self._call("HMGET", self._counters + name, "used", "last_reset")
                                             for name in batch))
            for name, (used, last_reset) in zip(batch, replies):
                if used is not None and last_reset is not None:  # expired between SCAN and HMGET
                    states[name] = CounterState(int(used), int(last_reset))
        return states

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
        for batch in _batches(list(counters)):
            await self._call("DEL", *(self._counters + name for name in batch))

    async def close(self) -> None:
        for task in (self._maintenance, self._reseeding):
            if task is not None:
                await _cancel(task)
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
        return int(await self._script(_REAP, [self._owners], [self.owner, lease, self._holdings_prefix]))

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
                async with asyncio.timeout(_UNSURE_RETRY_S if self._unsure else self._lease_ms / 3000):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if self._unsure:
                    await self._sync_holdings()
                released = await self.reap_leaked()
                if released:
                    log.warning("gave back the reservations of a gateway process that stopped renewing "
                                "its lease on %d counters", released)
            except CounterUnavailable:
                pass  # the requests report it; the next beat tries again

    async def _changing(self, script: _Script, keys: list[str], args: list[Any]) -> Any:
        """A call that changes what this process holds: counted in flight, held back
        while holdings are synced, and marking them unsure when it gets no answer."""
        if self._syncing is not None:
            await self._call(self._syncing.wait())
        self._in_flight += 1
        try:
            return await self._script(script, keys, args)
        except CounterUnavailable:
            self._unsure = True
            self._wake.set()
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._drained is not None:
                self._drained.set()

    async def _sync_holdings(self) -> None:
        """Tell Redis what this process holds, with none of its changing calls in flight."""
        syncing = self._syncing = asyncio.Event()
        try:
            while self._in_flight:  # each is bounded by the timeout
                self._drained = asyncio.Event()
                await self._bounded(self._drained.wait())
            args: list[Any] = []
            for key, amount in self._mine.items():
                args += (key, amount)
            corrected = await self._script(_SYNC, [self._holdings, self._seeded], args)
            if corrected == _UNSEEDED:
                return  # reseeding first; the next beat syncs
            self._unsure = False
            if corrected:
                log.warning("corrected this process's reservations on %d counters after calls that "
                            "timed out had run after all", corrected)
        finally:
            self._syncing = self._drained = None
            syncing.set()

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
            except Exception as exc:  # noqa: BLE001 - Redis or the database still down: try again
                log.debug("reloading counters into Redis failed (%s); retrying", exc)
                await asyncio.sleep(_RESEED_RETRY_S)
                continue
            self._unloaded = {}
            log.info("loaded %d counters into Redis", len(states))
            return

    async def _load_all(self, states: Mapping[str, CounterState]) -> None:
        """Seed ``states`` in batches; the last batch sets the seeded marker."""
        batches = _batches(list(states.items())) or [[]]
        for index, batch in enumerate(batches):
            args: list[Any] = ["1" if index == len(batches) - 1 else "0"]
            for _, state in batch:
                args += (state.used, state.last_reset_ms)
            await self._script(_LOAD, [self._counters + name for name, _ in batch] + [self._seeded], args)

    async def _script(self, script: _Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._call("EVALSHA", script.sha, len(keys), *keys, *args)
        except _NoScript:  # Redis restarted or flushed its script cache: send it whole once
            return await self._call("EVAL", script.body, len(keys), *keys, *args)

    async def _call(self, *command: Any) -> Any:
        """One Redis round trip, bounded by the timeout; any failure is `CounterUnavailable`."""
        return await self._bounded(self._client.call(*command))

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await awaitable
        except TimeoutError:
            raise self._failed(f"Redis did not answer within {self._timeout_s * 1000:.0f} ms") from None
        except RespConnectionError as exc:
            raise self._failed(str(exc)) from None
        except RespError as exc:
            if str(exc).startswith("NOSCRIPT"):
                raise _NoScript from None
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


class _NoScript(Exception):
    pass


async def _cancel(task: asyncio.Task[None]) -> None:
    while not task.done():  # again if a library swallowed the first cancellation
        task.cancel()
        await asyncio.wait([task], timeout=0.1)


def _ttl(window_ms: int) -> int:
    return 2 * window_ms + _TTL_MARGIN_MS if window_ms > 0 else 0


def _batches(items: list[T]) -> list[list[T]]:
    return [items[start:start + _BATCH] for start in range(0, len(items), _BATCH)]


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
