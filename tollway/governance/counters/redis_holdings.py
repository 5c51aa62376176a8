"""What one gateway process holds reserved in Redis, as it knows it from the answers.

Redis keeps the same figure per counter (the ``h:<process id>`` field) so that another
process can give a dead one's reservations back. The two agree as long as every call
gets its answer; a call that got none (a timeout, a cancelled caller) may still have
run, and then the process tells Redis what it really holds (``sync.lua``), with none of
its own changing calls in flight meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

from tollway.governance.counters.base import CounterOp, SettleOp


class Holdings:
    """Counter name -> amount reserved, mirrored from acquire.lua and settle.lua."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self.unsure = False  # a changing call got no answer: sync before trusting Redis's figure
        self.changed = asyncio.Event()  # set when it became unsure
        self._in_flight = 0
        self._drained: asyncio.Event | None = None
        self._syncing: asyncio.Event | None = None  # set when the sync is over

    def items(self) -> list[tuple[str, int]]:
        return list(self._held.items())

    def reserved(self, ops: Sequence[CounterOp]) -> None:
        """A granted acquire."""
        held = self._held
        for op in ops:
            if op.amount:
                held[op.counter] = held.get(op.counter, 0) + op.amount

    def settled(self, ops: Sequence[SettleOp]) -> None:
        """As settle.lua does: give back at most what is held."""
        held = self._held
        for op in ops:
            have = held.get(op.counter, 0)
            if op.reserved and have:
                if have > op.reserved:
                    held[op.counter] = have - op.reserved
                else:
                    del held[op.counter]

    async def wait_for_sync(self, bounded: Callable[[Awaitable[bool]], Awaitable[bool]]) -> None:
        """Before a changing call: wait while a sync runs (``bounded`` adds the timeout)."""
        if self._syncing is not None:
            await bounded(self._syncing.wait())

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Around a changing call: counted in flight; no answer makes the holdings unsure."""
        self._in_flight += 1
        try:
            yield
        except BaseException:  # a timeout, a lost connection, a cancelled caller: it may run all the same
            self.unsure = True
            self.changed.set()
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._drained is not None:
                self._drained.set()

    async def sync(self, bounded: Callable[[Awaitable[bool]], Awaitable[bool]],
                   tell: Callable[[list[tuple[str, int]]], Awaitable[bool]]) -> None:
        """Hold changing calls back, wait for those in flight, then ``tell`` Redis what is
        held (it returns False when that could not be done yet)."""
        syncing = self._syncing = asyncio.Event()
        try:
            while self._in_flight:  # each is bounded by its timeout
                self._drained = asyncio.Event()
                await bounded(self._drained.wait())
            if await tell(self.items()):
                self.unsure = False
        finally:
            self._syncing = self._drained = None
            syncing.set()
