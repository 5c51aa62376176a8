"""The Lua scripts of the Redis counter store and the small helpers it calls them with."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import struct
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Generic, TypeVar

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an item of a batch
R = TypeVar("R")

BATCH = 500  # keys per script call or pipeline in bulk operations (load, export, forget)
MAX_PIECES = 100_000


class Script:
    """A Lua script of ``lua/``, read once; run by its SHA1, sent whole when Redis lacks it."""

    __slots__ = ("body", "by_sha", "name", "sha", "whole")

    def __init__(self, name: str) -> None:
        self.name = name
        self.body = resources.files("tollway.governance.counters").joinpath(f"lua/{name}.lua").read_text("ascii")
        self.sha = hashlib.sha1(self.body.encode()).hexdigest()
        # The first arguments of EVALSHA / EVAL in RESP, for commands built by hand.
        self.by_sha = f"$7\r\nEVALSHA\r\n$40\r\n{self.sha}\r\n"
        self.whole = f"$4\r\nEVAL\r\n${len(self.body)}\r\n{self.body}\r\n"


ACQUIRE, SETTLE, READ, RESET, LOAD, REAP, SYNC, TAKE_TOUCHED = (
    Script(name) for name in ("acquire", "settle", "read", "reset", "load", "reap", "sync", "take_touched"))


class ScriptCommands:
    """EVALSHA commands of acquire.lua and settle.lua, built by hand: they run for every
    request. KEYS: the counters, then ``tail_keys``; ARGV: the packed ops, ``field`` and,
    for acquire, the request sizes."""

    def __init__(self, counter_prefix: str, tail_keys: tuple[str, ...], field: str) -> None:
        self._prefix = counter_prefix
        self._pieces: dict[str, str] = {}  # counter -> its key as a RESP bulk string
        self._tail = "".join(_bulk(key) for key in tail_keys)
        self._extra_keys = len(tail_keys)
        self._field = ("\r\n" + _bulk(field)).encode()  # the CRLF ends the packed ops before it

    def build(self, script: Script, counters: list[str], packed: bytes, sizes: bytes = b"", *,
              whole: bool = False) -> bytes:
        pieces = self._pieces
        keys = "".join([pieces.get(name) or self._piece(name) for name in counters])
        count = len(counters) + self._extra_keys
        # EVALSHA (or EVAL), sha (or body), numkeys, the keys; then packed, field, sizes
        head = f"*{count + (6 if sizes else 5)}\r\n{script.whole if whole else script.by_sha}"
        command = (f"{head}{_bulk(str(count))}{keys}{self._tail}${len(packed)}\r\n").encode() + packed + self._field
        return command + (b"$%d\r\n%b\r\n" % (len(sizes), sizes) if sizes else b"")

    def _piece(self, counter: str) -> str:
        if len(self._pieces) >= MAX_PIECES:  # counters are few and reused; this is a bound, not a cache policy
            self._pieces.clear()
        piece = self._pieces[counter] = _bulk(self._prefix + counter)
        return piece


def _bulk(text: str) -> str:
    return f"${len(text.encode())}\r\n{text}\r\n"


class NoScript(Exception):
    """Redis does not have the script (restarted, or its script cache was flushed)."""


@functools.cache
def packer(ops: int) -> struct.Struct:
    """Five big-endian doubles per op: exact for the integers counters hold below 2^53."""
    return struct.Struct(f">{5 * ops}d")


def batches(items: list[T]) -> list[list[T]]:
    return [items[start:start + BATCH] for start in range(0, len(items), BATCH)]


def glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


async def within(awaitable: Awaitable[T], timeout_s: float) -> T:
    async with asyncio.timeout(timeout_s):
        return await awaitable


async def cancel(task: asyncio.Task[None]) -> None:
    while not task.done():  # again if a library swallowed the first cancellation
        task.cancel()
        await asyncio.wait([task], timeout=0.1)


class Batcher(Generic[I, R]):
    """Gathers the calls made during one turn of the event loop and runs them as one.

    Under load many requests reach the store in the same turn; one script call for all
    of them costs Redis one read and one write per counter instead of one per request.
    While traffic is sparse (the last batch held one call) a call made when nothing is
    gathering or in flight runs at once, in its caller's task: a lone request waits for
    no one. ``run`` gets the batch (at most ``max_items``) and must resolve every future.
    """

    def __init__(self, run: Callable[[list[tuple[I, asyncio.Future[R]]]], Awaitable[None]], max_items: int) -> None:
        self._run = run
        self._max_items = max_items
        self._queue: list[tuple[I, asyncio.Future[R]]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._alone = 0  # calls running in their caller's task
        self._last_size = 1

    async def call(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        if self._last_size == 1 and self._queue is None and not self._tasks and not self._alone:
            self._alone += 1
            try:
                await self._run([(item, future)])
            finally:
                self._alone -= 1
            return future.result()
        if self._queue is None:  # the first call of this turn: its task starts next turn,
            self._queue = []     # when the calls of this turn have all joined
            task = asyncio.ensure_future(self._drain())
            self._tasks.add(task)  # a reference, so that the task is not collected mid-flight
            task.add_done_callback(self._tasks.discard)
        self._queue.append((item, future))
        return await future

    async def _drain(self) -> None:
        queue, self._queue = self._queue or [], None
        self._last_size = len(queue)
        for start in range(self._max_items, len(queue), self._max_items):  # the rest, in parallel
            task = asyncio.ensure_future(self._run(queue[start:start + self._max_items]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await self._run(queue[:self._max_items])


def fail(batch: list[tuple[Any, asyncio.Future[Any]]], exc: BaseException) -> None:
    """Every waiting call of ``batch`` raises ``exc``."""
    for _, future in batch:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
