"""The Lua scripts of the Redis counter store and the small helpers it calls them with."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import struct
from collections.abc import Awaitable
from importlib import resources
from typing import TypeVar

T = TypeVar("T")

TTL_MARGIN_MS = 3_600_000  # beyond two windows: requests in flight settle long before
BATCH = 500  # keys per script call or pipeline in bulk operations (load, export, forget)


class Script:
    """A Lua script of ``lua/``, read once; run by its SHA1, sent whole when Redis lacks it."""

    __slots__ = ("name", "body", "sha", "by_sha", "whole")

    def __init__(self, name: str) -> None:
        self.name = name
        self.body = resources.files("tollway.governance.counters").joinpath(f"lua/{name}.lua").read_text("ascii")
        self.sha = hashlib.sha1(self.body.encode()).hexdigest()
        # The first arguments of EVALSHA / EVAL in RESP, for commands built by hand.
        self.by_sha = f"$7\r\nEVALSHA\r\n$40\r\n{self.sha}\r\n"
        self.whole = f"$4\r\nEVAL\r\n${len(self.body)}\r\n{self.body}\r\n"


ACQUIRE, SETTLE, READ, RESET, LOAD, REAP, SYNC = (
    Script(name) for name in ("acquire", "settle", "read", "reset", "load", "reap", "sync"))


class NoScript(Exception):
    """Redis does not have the script (restarted, or its script cache was flushed)."""


@functools.cache
def packer(ops: int) -> struct.Struct:
    """Five big-endian doubles per op: exact for the integers counters hold below 2^53."""
    return struct.Struct(f">{5 * ops}d")


def ttl(window_ms: int) -> int:
    """A counter's expiry when it starts a window (0: none, the window is unknown)."""
    return 2 * window_ms + TTL_MARGIN_MS if window_ms > 0 else 0


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
