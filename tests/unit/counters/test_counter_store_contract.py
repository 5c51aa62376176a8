"""The `CounterStore` contract, run against every backend (see conftest's ``BACKENDS``).

Written against the protocol only: windows and amounts are given as the engine would
give them; names are unique per test (``counter_name``) so shared backends need no flush.
"""

from __future__ import annotations

import asyncio

from tollway.governance.counters.base import CounterOp, CounterReading, CounterState, CounterStore, SettleOp

NOW = 1_800_000_000_000
HOUR = 3_600_000


def op(counter: str, amount: int = 1, limit: int = 10, *, floor: int = NOW - HOUR + 1, reset_to: int = NOW) -> CounterOp:
    """An op under a rolling one-hour window at ``NOW`` unless told otherwise."""
    return CounterOp(counter, limit, amount, floor, reset_to)


def settle(counter: str, reserved: int, actual: int, *, floor: int = NOW - HOUR + 1, reset_to: int = NOW) -> SettleOp:
    return SettleOp(counter, reserved, actual, floor, reset_to)


async def reading(store: CounterStore, counter: str, *, floor: int = NOW - HOUR + 1, reset_to: int = NOW) -> CounterReading:
    (result,) = await store.read([op(counter, floor=floor, reset_to=reset_to)])
    return result


async def test_a_counter_never_seen_reads_as_zero_reset_at_the_window_start(counter_store, counter_name) -> None:
    assert await reading(counter_store, counter_name(), reset_to=NOW - 5) == CounterReading(0, 0, NOW - 5)


async def test_acquire_reserves_on_every_counter_and_reports_the_state_after(counter_store, counter_name) -> None:
    a, b = counter_name("a"), counter_name("b")
    result = await counter_store.acquire([op(a, 1, 5), op(b, 300, 1000)])
    assert result.failed == -1
    assert result.readings == (CounterReading(0, 1, NOW), CounterReading(0, 300, NOW))
    assert await reading(counter_store, b) == CounterReading(0, 300, NOW)


async def test_acquire_fits_exactly_up_to_the_limit_and_not_one_more(counter_store, counter_name) -> None:
    c = counter_name()
    assert (await counter_store.acquire([op(c, 7, 10)])).failed == -1
    assert (await counter_store.acquire([op(c, 3, 10)])).failed == -1
    assert (await counter_store.acquire([op(c, 1, 10)])).failed == 0
    assert await reading(counter_store, c) == CounterReading(0, 10, NOW)


async def test_a_denied_acquire_reserves_nothing_anywhere(counter_store, counter_name) -> None:
    a, b, c = counter_name("a"), counter_name("b"), counter_name("c")
    await counter_store.acquire([op(b, 9, 10)])
    result = await counter_store.acquire([op(a, 1, 10), op(b, 2, 10), op(c, 1, 10)])
    assert result.failed == 1
    assert result.readings == (CounterReading(0, 0, NOW), CounterReading(0, 9, NOW), CounterReading(0, 0, NOW))
    assert await counter_store.read([op(a), op(b), op(c)]) == result.readings


async def test_acquire_names_the_first_op_that_does_not_fit(counter_store, counter_name) -> None:
    a, b, c = counter_name("a"), counter_name("b"), counter_name("c")
    result = await counter_store.acquire([op(a, 1, 10), op(b, 11, 10), op(c, 99, 10)])
    assert result.failed == 1


async def test_a_zero_amount_fits_a_full_counter_but_not_an_overdrawn_one(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.acquire([op(c, 10, 10)])
    assert (await counter_store.acquire([op(c, 0, 10)])).failed == -1
    await counter_store.settle([settle(c, 10, 12)])  # actual usage beyond the estimate
    assert (await counter_store.acquire([op(c, 0, 10)])).failed == 0


async def test_settle_turns_the_reservation_into_actual_usage(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.acquire([op(c, 100, 1000)])
    await counter_store.settle([settle(c, 100, 130)])
    assert await reading(counter_store, c) == CounterReading(130, 0, NOW)


async def test_release_gives_the_reservation_back_and_charges_nothing(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.acquire([op(c, 100, 1000)])
    await counter_store.settle([settle(c, 100, 0)])
    assert await reading(counter_store, c) == CounterReading(0, 0, NOW)


async def test_reserved_never_goes_below_zero(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.acquire([op(c, 5, 10)])
    await counter_store.settle([settle(c, 8, 1)])
    assert await reading(counter_store, c) == CounterReading(1, 0, NOW)


async def test_settle_on_an_unknown_counter_starts_it_in_the_given_window(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.settle([settle(c, 0, 4, reset_to=NOW - 7)])
    assert await reading(counter_store, c) == CounterReading(4, 0, NOW - 7)


async def test_an_expired_state_counts_as_zero(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.acquire([op(c, 10, 10)])
    await counter_store.settle([settle(c, 10, 10)])
    later = NOW + HOUR
    assert await reading(counter_store, c, floor=later - HOUR + 1, reset_to=later) == CounterReading(0, 0, later)
    result = await counter_store.acquire([op(c, 10, 10, floor=later - HOUR + 1, reset_to=later)])
    assert result.failed == -1
    assert result.readings == (CounterReading(0, 10, later),)


async def test_reading_an_expired_state_changes_nothing(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.settle([settle(c, 0, 6)])
    later = NOW + 2 * HOUR
    await counter_store.read([op(c, floor=later - HOUR + 1, reset_to=later)])
    assert await reading(counter_store, c) == CounterReading(6, 0, NOW)


async def test_a_touched_expired_state_is_rolled_into_the_new_window(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.settle([settle(c, 0, 6)])
    later = NOW + HOUR
    await counter_store.acquire([op(c, 1, 10, floor=later - HOUR + 1, reset_to=later)])
    # Read under the old window: the state now starts at ``later`` and holds only the new reservation.
    assert await reading(counter_store, c) == CounterReading(0, 1, later)
    assert (await counter_store.export())[c] == CounterState(0, later)


async def test_reservations_survive_a_window_roll(counter_store, counter_name) -> None:
    c = counter_name()
    await counter_store.acquire([op(c, 8, 10)])
    later = NOW + HOUR
    window = {"floor": later - HOUR + 1, "reset_to": later}
    assert (await counter_store.acquire([op(c, 3, 10, **window)])).failed == 0
    await counter_store.settle([settle(c, 8, 9, **window)])
    assert await reading(counter_store, c, **window) == CounterReading(9, 0, later)


async def test_reset_zeroes_usage_and_restarts_the_window_but_keeps_reservations(counter_store, counter_name) -> None:
    a, fresh = counter_name("a"), counter_name("fresh")
    await counter_store.acquire([op(a, 3, 10)])
    await counter_store.settle([settle(a, 1, 5)])
    await counter_store.reset([a, fresh], NOW + 10)
    window = {"floor": NOW + 10 - HOUR + 1, "reset_to": NOW + 20}
    assert await reading(counter_store, a, **window) == CounterReading(0, 2, NOW + 10)
    assert await reading(counter_store, fresh, **window) == CounterReading(0, 0, NOW + 10)


async def test_export_holds_usage_and_last_reset_of_every_counter(counter_store, counter_name) -> None:
    a, b = counter_name("a"), counter_name("b")
    await counter_store.acquire([op(a, 2, 10)])
    await counter_store.settle([settle(a, 2, 3), settle(b, 0, 40, reset_to=NOW - 9)])
    exported = await counter_store.export()
    assert exported[a] == CounterState(3, NOW)
    assert exported[b] == CounterState(40, NOW - 9)


async def test_export_touched_gives_what_was_settled_or_reset_since_the_last_call(counter_store, counter_name) -> None:
    """The usage flush's incremental read: the states changed since it last asked, once."""
    a, b, c, idle = counter_name("a"), counter_name("b"), counter_name("c"), counter_name("idle")
    await counter_store.settle([settle(idle, 0, 1)])
    await counter_store.export_touched()  # type: ignore[attr-defined]  # both backends have it
    await counter_store.acquire([op(a, 2, 10)])
    await counter_store.settle([settle(a, 2, 3), settle(b, 0, 40, reset_to=NOW - 9)])
    touched, _ = await counter_store.export_touched()  # type: ignore[attr-defined]
    mine = {name: state for name, state in touched.items() if name.startswith(counter_name(""))}
    assert mine == {a: CounterState(3, NOW), b: CounterState(40, NOW - 9)}
    assert not [name for name in (await counter_store.export_touched())[0] if name in (a, b, idle)]  # type: ignore[attr-defined]
    await counter_store.reset([c], NOW + 5)
    touched, _ = await counter_store.export_touched()  # type: ignore[attr-defined]
    assert touched[c] == CounterState(0, NOW + 5) and a not in touched


async def test_load_seeds_unknown_counters_and_keeps_known_ones(counter_store, counter_name) -> None:
    known, seeded = counter_name("known"), counter_name("seeded")
    await counter_store.settle([settle(known, 0, 1)])
    await counter_store.load({known: CounterState(500, NOW - 1), seeded: CounterState(7, NOW - 2)})
    assert await reading(counter_store, known) == CounterReading(1, 0, NOW)
    assert await reading(counter_store, seeded) == CounterReading(7, 0, NOW - 2)
    assert (await counter_store.acquire([op(seeded, 4, 10)])).failed == 0


async def test_forget_drops_counters(counter_store, counter_name) -> None:
    gone, kept = counter_name("gone"), counter_name("kept")
    await counter_store.settle([settle(gone, 0, 5), settle(kept, 0, 5)])
    await counter_store.forget([gone, counter_name("never-seen")])
    exported = await counter_store.export()
    assert gone not in exported and kept in exported
    assert await reading(counter_store, gone) == CounterReading(0, 0, NOW)


async def test_request_limit_is_exact_under_200_concurrent_acquires(counter_store, counter_name) -> None:
    shared, wide = counter_name("shared"), counter_name("wide")
    results = await asyncio.gather(
        *(counter_store.acquire([op(wide, 1, 1_000), op(shared, 1, 25)]) for _ in range(200))
    )
    assert sum(result.failed == -1 for result in results) == 25
    assert all(result.failed in (-1, 1) for result in results)
    assert await counter_store.read([op(wide), op(shared)]) == (CounterReading(0, 25, NOW), CounterReading(0, 25, NOW))


async def test_concurrent_settles_and_acquires_keep_the_books(counter_store, counter_name) -> None:
    c = counter_name()
    granted = await asyncio.gather(*(counter_store.acquire([op(c, 2, 100)]) for _ in range(50)))
    assert all(result.failed == -1 for result in granted)
    await asyncio.gather(
        *(counter_store.settle([settle(c, 2, 1)]) for _ in range(50)),
        *(counter_store.acquire([op(c, 1, 100)]) for _ in range(10)),
    )
    assert await reading(counter_store, c) == CounterReading(50, 10, NOW)


# -- in-flight counters (concurrency limits): no window (floor 0), no expiry (window 0) --------


def slot(counter: str, limit: int = 5) -> CounterOp:
    """One in-flight slot, as the engine asks for it: a windowless op of amount 1."""
    return CounterOp(counter, limit, 1, 0, 0, 0)


def free(counter: str) -> SettleOp:
    """The slot given back when its request ends, charging nothing."""
    return SettleOp(counter, 1, 0, 0, 0, 0)


async def in_flight(store: CounterStore, counter: str) -> CounterReading:
    (result,) = await store.read([slot(counter)])
    return result


async def test_in_flight_slots_are_exact_under_200_concurrent_acquires(counter_store, counter_name) -> None:
    c = counter_name()
    results = await asyncio.gather(*(counter_store.acquire([slot(c, 5)]) for _ in range(200)))
    assert [result.failed for result in results].count(-1) == 5
    assert await in_flight(counter_store, c) == CounterReading(0, 5, 0)
    await counter_store.settle([free(c), free(c)])
    again = await asyncio.gather(*(counter_store.acquire([slot(c, 5)]) for _ in range(50)))
    assert [result.failed for result in again].count(-1) == 2
    assert await in_flight(counter_store, c) == CounterReading(0, 5, 0)


async def test_an_in_flight_counter_never_rolls_nor_charges(counter_store, counter_name) -> None:
    c = counter_name()
    for _ in range(3):
        await counter_store.acquire([slot(c)])
    await counter_store.settle([free(c)])
    assert await in_flight(counter_store, c) == CounterReading(0, 2, 0)
    await counter_store.settle([free(c), free(c), free(c)])  # one more than held: clamped, never negative
    assert await in_flight(counter_store, c) == CounterReading(0, 0, 0)
    assert (await counter_store.export())[c] == CounterState(0, 0)


async def test_a_request_refused_by_another_limit_takes_no_slot(counter_store, counter_name) -> None:
    rate, c = counter_name("rate"), counter_name("slots")
    await counter_store.acquire([op(rate, 10, 10)])
    result = await counter_store.acquire([op(rate, 1, 10), slot(c, 5)])
    assert result.failed == 0
    assert await in_flight(counter_store, c) == CounterReading(0, 0, 0)


async def test_a_full_slot_counter_refuses_and_reserves_nothing_before_it(counter_store, counter_name) -> None:
    rate, c = counter_name("rate"), counter_name("slots")
    assert (await counter_store.acquire([op(rate, 1, 10), slot(c, 1)])).failed == -1
    result = await counter_store.acquire([op(rate, 1, 10), slot(c, 1)])
    assert result.failed == 1
    assert result.readings[1] == CounterReading(0, 1, 0)
    assert await reading(counter_store, rate) == CounterReading(0, 1, NOW)
