"""Strict enforcement's clamp: the largest output cap whose reservation still fits.

A request's amounts depend on its output cap (``Demand``: cap → estimated tokens and
cost, worst-case tokens and cost). When its worst case does not fit and every limit it
does not fit is strict with ``on_insufficient: clamp``, the cap is lowered to the largest
one that fits what the counters say is left. Pure: the enforcer brings the readings and
re-acquires with the amounts found here (atomically, so a race only means another try).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tollway.governance.counters.base import CounterReading
from tollway.governance.engine import LimitCheck, strict_amounts

# cap -> (estimated tokens, estimated cost in nano-dollars, worst-case tokens, worst-case cost)
Demand = Callable[[int], tuple[int, int, int, int]]


def amounts_at(checks: tuple[LimitCheck, ...], demand: Demand, cap: int) -> tuple[int, ...]:
    """What each check reserves when the request's output cap is ``cap``."""
    tokens, cost, worst_tokens, worst_cost = demand(cap)
    return strict_amounts(checks, (1, tokens, cost, 1), (1, worst_tokens, worst_cost, 1))


def clamped_cap(checks: tuple[LimitCheck, ...], readings: Sequence[CounterReading], demand: Demand,
                cap: int) -> int | None:
    """The largest cap below ``cap`` at which every check fits ``readings``; None when a
    check that does not fit at ``cap`` refuses rather than clamps, or when not even a cap
    of one token fits."""
    # A shadow check never clamps: its room is unbounded here, whatever its enforcement.
    rooms = [check.store_limit - reading.used - reading.reserved
             for check, reading in zip(checks, readings, strict=True)]
    for check, room, amount in zip(checks, rooms, amounts_at(checks, demand, cap), strict=True):
        if amount > room and not (check.enforcement.strict and check.enforcement.clamp):
            return None

    def fits(candidate: int) -> bool:
        return all(amount <= room for amount, room in zip(amounts_at(checks, demand, candidate), rooms, strict=True))

    if cap <= 1 or not fits(1):
        return None
    low, high = 1, cap - 1  # fits(low) holds throughout; amounts grow with the cap
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
