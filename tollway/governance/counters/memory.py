"""The in-process counter store: exact counters for one gateway process.

Atomicity comes from asyncio itself: the event loop runs one coroutine at a time, and
no method here awaits between its first read and its last write, so each call is atomic
with respect to every other task without a lock. Keep it that way: an ``await`` inside
``acquire`` would let two requests take the same last slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence

from tollway.governance.counters.base import (
    AcquireResult,
    CounterOp,
    CounterReading,
    CounterState,
    SettleOp,
    new_tuple,
)

log = logging.getLogger(__name__)
EXPORT_BATCH = 2000  # counters exported per turn of the event loop (about a millisecond)


class _Cell:
    """One counter's mutable state; private to the store, never handed out."""

    __slots__ = ("last_reset_ms", "reserved", "used")

    def __init__(self, used: int, reserved: int, last_reset_ms: int) -> None:
        self.used = used
        self.reserved = reserved
        self.last_reset_ms = last_reset_ms


class MemoryCounterStore:
    """`CounterStore` over a dict, for a single process (the default backend)."""

    def __init__(self) -> None:
        self._cells: dict[str, _Cell] = {}
        # What `export_touched` hands the usage flush: the counters whose usage or window
        # may have changed since it last ran, and those taken out of the store meanwhile.
        # A flush then costs what changed, not what is held (200,000 counters compared
        # every interval cost the loop about a second of CPU at 100,000 keys).
        self._touched: set[str] = set()
        self._dropped: set[str] = set()

    async def acquire(self, ops: Sequence[CounterOp]) -> AcquireResult:
        """Reserve every op's amount, or none of them; no await inside (see module doc)."""
        cells, current = self._cells, self._current
        taken: list[_Cell] = []
        for counter, limit, amount, floor_ms, reset_to_ms, _ in ops:  # unpacked: cheaper than six attribute reads
            cell = cells.get(counter)
            if cell is None or cell.last_reset_ms < floor_ms:
                cell = current(counter, floor_ms, reset_to_ms)
            reserved = cell.reserved + amount
            if cell.used + reserved > limit:
                for earlier, earlier_cell in zip(ops, taken):  # all or nothing: take back this call's reservations
                    earlier_cell.reserved -= earlier.amount
                index = len(taken)
                rest = [current(later.counter, later.floor_ms, later.reset_to_ms) for later in ops[index:]]
                return AcquireResult(index, _readings(taken + rest))
            cell.reserved = reserved
            taken.append(cell)
        # Read after the loop: an op list may name one counter twice, and each reading is
        # the state after the whole call.
        return AcquireResult(-1, _readings(taken))

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        cells, current, touched = self._cells, self._current, self._touched
        for counter, held, actual, floor_ms, reset_to_ms, _ in ops:
            touched.add(counter)
            cell = cells.get(counter)
            if cell is None or cell.last_reset_ms < floor_ms:
                cell = current(counter, floor_ms, reset_to_ms)
            reserved = cell.reserved - held
            if reserved < 0:
                # Only a double settle or a counter forgotten mid-request gets here.
                log.debug("counter %s: settling %d more than reserved; clamped to 0", counter, -reserved)
                reserved = 0
            cell.reserved = reserved
            cell.used += actual

    async def read(self, ops: Sequence[CounterOp]) -> tuple[CounterReading, ...]:
        readings = []
        for op in ops:
            cell = self._cells.get(op.counter)
            if cell is None:
                readings.append(CounterReading(0, 0, op.reset_to_ms))
            elif cell.last_reset_ms < op.floor_ms:
                readings.append(CounterReading(0, cell.reserved, op.reset_to_ms))
            else:
                readings.append(CounterReading(cell.used, cell.reserved, cell.last_reset_ms))
        return tuple(readings)

    async def reset(self, counters: Sequence[str], now_ms: int) -> None:
        """Zero the usage; reservations in flight stay (their requests will settle)."""
        self._touched.update(counters)
        for name in counters:
            cell = self._cells.get(name)
            if cell is None:
                self._cells[name] = _Cell(0, 0, now_ms)
            else:
                cell.used, cell.last_reset_ms = 0, now_ms

    async def export(self) -> Mapping[str, CounterState]:
        """Every counter's state, `EXPORT_BATCH` counters per turn of the event loop: a
        hundred thousand keys hold 200,000 counters, whose export in one go held up the
        requests for hundreds of milliseconds. Reading only, it may await: each counter's
        state is read whole, as of the turn that reads it."""
        cells = self._cells
        names = list(cells)  # the names only: a list of pairs would be 200,000 more objects
        pairs: dict[str, tuple[int, int]] = {}
        for start in range(0, len(names), EXPORT_BATCH):
            if start:
                await asyncio.sleep(0)
            for name in names[start:start + EXPORT_BATCH]:
                cell = cells.get(name)
                if cell is not None:  # forgotten meanwhile: not exported
                    pairs[name] = (cell.used, cell.last_reset_ms)
        return _Exported(pairs)

    async def export_touched(self) -> tuple[Mapping[str, CounterState], frozenset[str]]:
        """The states of the counters whose usage or window may have changed since the
        last call (a superset: a counter settled with nothing to add is among them), and
        the names taken out of the store since (forgotten or evicted). No await: the
        states are read, and the marks cleared, in one turn of the loop; it costs what
        changed, not what is held."""
        touched, self._touched = self._touched, set()
        dropped, self._dropped = frozenset(self._dropped), set()
        cells = self._cells
        pairs = {}
        for name in touched:
            cell = cells.get(name)
            if cell is not None:
                pairs[name] = (cell.used, cell.last_reset_ms)
        return _Exported(pairs), dropped

    async def load(self, states: Mapping[str, CounterState]) -> None:
        for name, state in states.items():
            if name not in self._cells:
                self._cells[name] = _Cell(state.used, 0, state.last_reset_ms)

    async def forget(self, counters: Sequence[str]) -> None:
        for name in counters:
            if self._cells.pop(name, None) is not None:
                self._touched.discard(name)
                self._dropped.add(name)

    async def evict(self, counters: Sequence[str]) -> dict[str, CounterState]:
        """Take ``counters`` out of memory and return their states, except those holding
        a reservation (a request in flight still needs them); no await (see module doc)."""
        evicted = {}
        for name in counters:
            cell = self._cells.get(name)
            if cell is not None and cell.reserved == 0:
                del self._cells[name]
                self._touched.discard(name)
                self._dropped.add(name)
                evicted[name] = CounterState(cell.used, cell.last_reset_ms)
        return evicted

    async def close(self) -> None:
        return None

    def _current(self, name: str, floor_ms: int, reset_to_ms: int) -> _Cell:
        """The counter's cell, created or rolled into the current window."""
        cell = self._cells.get(name)
        if cell is None:
            cell = self._cells[name] = _Cell(0, 0, reset_to_ms)
            self._touched.add(name)
        elif cell.last_reset_ms < floor_ms:
            cell.used, cell.last_reset_ms = 0, reset_to_ms
            self._touched.add(name)
        return cell


def _readings(cells: list[_Cell]) -> tuple[CounterReading, ...]:
    return tuple([new_tuple(CounterReading, (cell.used, cell.reserved, cell.last_reset_ms)) for cell in cells])


class _Exported(Mapping[str, CounterState]):
    """Exported states, held as plain ``(used, last_reset_ms)`` pairs and read as
    `CounterState`: the collector stops tracking a tuple of ints at its first look, while
    200,000 `CounterState` objects alive across a sliced export reached the oldest
    generation and made each of its collections scan them all (tens of milliseconds)."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: dict[str, tuple[int, int]]) -> None:
        self._pairs = pairs

    def __getitem__(self, name: str) -> CounterState:
        used, last_reset_ms = self._pairs[name]
        return CounterState(used, last_reset_ms)

    def __iter__(self) -> Iterator[str]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.items())!r})"
