"""The counter store: where usage and reservations live (memory or Redis).

It is deliberately small and knows nothing about budgets or hierarchies: the engine
computes every window (`floor_ms`, `reset_to_ms`) and every amount; the store only
applies them atomically. A counter's state is current iff ``last_reset_ms >= floor_ms``;
otherwise its usage counts as zero and its last reset becomes ``reset_to_ms``.
Reservations are not part of a window: they stay until settled or released.

Ops and readings are NamedTuples: a request builds one per limit, and tuples cost a
fraction of frozen dataclasses to create (measured 66 → 51 µs for 21 counters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class CounterOp(NamedTuple):
    """Reserve ``amount`` on ``counter`` if ``used + reserved + amount <= limit``.

    ``window_ms`` is the longest the counter's window can last (0: unknown); a shared
    store uses it to expire counters nobody has touched for two windows.
    """

    counter: str
    limit: int
    amount: int
    floor_ms: int
    reset_to_ms: int
    window_ms: int = 0


class SettleOp(NamedTuple):
    """Drop a reservation of ``reserved`` and add ``actual`` to the current window."""

    counter: str
    reserved: int
    actual: int
    floor_ms: int
    reset_to_ms: int
    window_ms: int = 0  # as in CounterOp


# `new_tuple(CounterOp, values)` builds a named tuple without the Python-level __new__
# that NamedTuple generates: half the cost, and the hot path builds several per request.
new_tuple = tuple.__new__


class CounterReading(NamedTuple):
    used: int
    reserved: int
    last_reset_ms: int


@dataclass(frozen=True, slots=True)
class CounterState:
    """What is persisted: usage in the current window and when that window began."""

    used: int
    last_reset_ms: int


@dataclass(slots=True)  # one per request: not frozen, which would cost 4× to construct
class AcquireResult:
    """``failed`` is the index of the first op that did not fit, or -1 when all were
    reserved. ``readings`` hold every counter's state after the call (after the
    reservation when granted, untouched when denied), in op order."""

    failed: int
    readings: tuple[CounterReading, ...]


class CounterUnavailable(Exception):
    """The backend cannot be reached (Redis down, timeout)."""


class CounterStore(Protocol):
    async def acquire(self, ops: Sequence[CounterOp]) -> AcquireResult:
        """All or nothing, atomically over every op."""
        ...

    async def settle(self, ops: Sequence[SettleOp]) -> None: ...

    async def read(self, ops: Sequence[CounterOp]) -> tuple[CounterReading, ...]:
        """Readings under the given windows, changing nothing (amount and limit unused)."""
        ...

    async def reset(self, counters: Sequence[str], now_ms: int) -> None:
        """Set usage to zero and the last reset to ``now_ms`` (an operator's reset)."""
        ...

    async def export(self) -> dict[str, CounterState]:
        """Every counter's persisted state, for flushing to the config store."""
        ...

    async def load(self, states: Mapping[str, CounterState]) -> None:
        """Seed counters the store does not know yet (known ones are kept)."""
        ...

    async def forget(self, counters: Sequence[str]) -> None:
        """Drop counters whose budget or rate limit was deleted."""
        ...

    async def close(self) -> None: ...
