"""Durations, rolling and calendar windows, and next resets (SPEC §2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import at
from tollway.governance.durations import (
    Alignment,
    Duration,
    check_alignment,
    next_reset_ms,
    parse_duration,
    window_at,
)

SECOND, MINUTE, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000


@pytest.mark.parametrize(
    ("text", "count", "unit", "fixed_ms"),
    [
        ("30s", 30, "s", 30 * SECOND),
        ("5m", 5, "m", 5 * MINUTE),
        ("15m", 15, "m", 15 * MINUTE),
        ("1h", 1, "h", HOUR),
        ("1d", 1, "d", DAY),
        ("1w", 1, "w", 7 * DAY),
        ("1M", 1, "M", None),
        ("3M", 3, "M", None),
        ("1Y", 1, "Y", None),
        (" 2h ", 2, "h", 2 * HOUR),
        ("999999s", 999_999, "s", 999_999 * SECOND),
    ],
)
def test_parse_accepts_whole_units(text: str, count: int, unit: str, fixed_ms: int | None) -> None:
    duration = parse_duration(text)
    assert duration == Duration(count, unit)
    assert duration.fixed_ms == fixed_ms
    assert str(duration) == f"{count}{unit}"


@pytest.mark.parametrize(
    "text", ["", "h", "1", "0s", "-1h", "1.5h", "1mo", "1D", "1y", "1H", "1 h x", "1000000s", "01h", "1h30m"]
)
def test_parse_rejects_anything_else_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="e.g. '30s'"):
        parse_duration(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_duration(60)  # type: ignore[arg-type]


def _current(duration: str, last_reset: int, now: int, alignment: Alignment | None = None) -> bool:
    return last_reset >= window_at(parse_duration(duration), now, alignment).floor_ms


T0 = at(2026, 3, 10, 12)


@pytest.mark.parametrize(
    ("duration", "elapsed", "current"),
    [
        ("30s", 0, True),
        ("30s", 30 * SECOND - 1, True),
        ("30s", 30 * SECOND, False),  # now - last_reset == duration resets
        ("1m", MINUTE - 1, True),
        ("1m", MINUTE, False),
        ("1h", HOUR, False),
        ("1d", DAY - 1, True),
        ("1d", DAY, False),
        ("1w", 7 * DAY, False),
    ],
)
def test_rolling_window_resets_exactly_when_the_duration_has_passed(duration: str, elapsed: int, current: bool) -> None:
    assert _current(duration, T0, T0 + elapsed) is current


def test_rolling_window_rolls_to_now() -> None:
    assert window_at(parse_duration("1h"), T0).reset_to_ms == T0


@pytest.mark.parametrize(
    ("last_reset", "duration", "resets_at"),
    [
        (at(2026, 1, 15, 10), "1M", at(2026, 2, 15, 10)),
        (at(2026, 1, 28, 10), "1M", at(2026, 2, 28, 10)),
        # Days February lacks are clamped to the end of February.
        (at(2026, 1, 29, 10), "1M", at(2026, 3, 1)),
        (at(2026, 1, 31, 23, 59), "1M", at(2026, 3, 1)),
        (at(2024, 1, 31), "1M", at(2024, 3, 1)),  # leap year: through Feb 29
        (at(2024, 1, 29, 6), "1M", at(2024, 2, 29, 6)),
        (at(2026, 3, 31), "1M", at(2026, 5, 1)),  # April has 30 days
        (at(2026, 11, 30), "3M", at(2027, 3, 1)),  # Feb 30 does not exist
        (at(2026, 12, 15), "1M", at(2027, 1, 15)),
        (at(2024, 2, 29, 8), "1Y", at(2025, 3, 1)),
        (at(2025, 6, 1), "2Y", at(2027, 6, 1)),
    ],
)
def test_rolling_months_reset_on_the_same_day_or_at_the_end_of_a_shorter_month(
    last_reset: int, duration: str, resets_at: int
) -> None:
    parsed = parse_duration(duration)
    assert next_reset_ms(parsed, last_reset) == resets_at
    assert _current(duration, last_reset, resets_at - 1)
    assert not _current(duration, last_reset, resets_at)


def test_a_stale_monthly_counter_never_becomes_current_again() -> None:
    # Reset on Feb 28 06:00: stale from Mar 28 06:00 on, also on Mar 29 (a shorter source month).
    last_reset = at(2026, 2, 28, 6)
    for now in (at(2026, 3, 28, 12), at(2026, 3, 29), at(2026, 3, 31, 23)):
        assert not _current("1M", last_reset, now)


@pytest.mark.parametrize(
    ("duration", "alignment", "now", "period_start", "period_end"),
    [
        ("1d", Alignment(), at(2026, 3, 10, 15, 30), at(2026, 3, 10), at(2026, 3, 11)),
        ("2d", Alignment(), at(1970, 1, 4, 5), at(1970, 1, 3), at(1970, 1, 5)),
        # 2026-03-11 is a Wednesday.
        ("1w", Alignment(week_start=0), at(2026, 3, 11, 9), at(2026, 3, 9), at(2026, 3, 16)),
        ("1w", Alignment(week_start=6), at(2026, 3, 11, 9), at(2026, 3, 8), at(2026, 3, 15)),
        ("1w", Alignment(week_start=2), at(2026, 3, 11), at(2026, 3, 11), at(2026, 3, 18)),
        ("1M", Alignment(), at(2026, 2, 28, 23, 59), at(2026, 2, 1), at(2026, 3, 1)),
        ("1M", Alignment(), at(2026, 12, 31, 23), at(2026, 12, 1), at(2027, 1, 1)),
        ("3M", Alignment(), at(2026, 5, 20), at(2026, 4, 1), at(2026, 7, 1)),
        ("3M", Alignment(), at(2026, 12, 20), at(2026, 10, 1), at(2027, 1, 1)),
        ("1Y", Alignment(), at(2026, 7, 4), at(2026, 1, 1), at(2027, 1, 1)),
        (
            "1M",
            Alignment("Europe/Paris"),
            at(2026, 3, 31, 23, 30, tz="Europe/Paris"),
            at(2026, 3, 1, tz="Europe/Paris"),
            at(2026, 4, 1, tz="Europe/Paris"),
        ),
        # The night of 2026-03-29 in Paris has 23 hours; the day still ends at local midnight.
        (
            "1d",
            Alignment("Europe/Paris"),
            at(2026, 3, 29, 12, tz="Europe/Paris"),
            at(2026, 3, 29, tz="Europe/Paris"),
            at(2026, 3, 30, tz="Europe/Paris"),
        ),
        (
            "1d",
            Alignment("America/New_York"),
            at(2026, 11, 1, 23, tz="America/New_York"),
            at(2026, 11, 1, tz="America/New_York"),
            at(2026, 11, 2, tz="America/New_York"),
        ),
        (
            "1w",
            Alignment("America/New_York", week_start=6),
            at(2026, 3, 10, tz="America/New_York"),
            at(2026, 3, 8, tz="America/New_York"),
            at(2026, 3, 15, tz="America/New_York"),
        ),
    ],
)
def test_calendar_windows_start_on_calendar_boundaries(
    duration: str, alignment: Alignment, now: int, period_start: int, period_end: int
) -> None:
    parsed = parse_duration(duration)
    window = window_at(parsed, now, alignment)
    assert (window.floor_ms, window.reset_to_ms) == (period_start, period_start)
    assert next_reset_ms(parsed, now, alignment) == period_end
    assert next_reset_ms(parsed, period_start, alignment) == period_end
    assert not _current(duration, period_start - 1, now, alignment)


def test_dst_days_are_23_and_25_hours_long_in_local_time() -> None:
    day, paris = parse_duration("1d"), Alignment("Europe/Paris")
    spring = at(2026, 3, 29, tz="Europe/Paris")
    autumn = at(2026, 10, 25, tz="Europe/Paris")
    assert next_reset_ms(day, spring, paris) - spring == 23 * HOUR
    assert next_reset_ms(day, autumn, paris) - autumn == 25 * HOUR


@pytest.mark.parametrize(
    ("duration", "alignment", "message"),
    [
        ("1h", Alignment(), "calendar_aligned needs"),
        ("1d", Alignment("Mars/Olympus"), "unknown timezone"),
        ("1d", Alignment(week_start=7), "week_start"),
    ],
)
def test_bad_alignments_are_refused(duration: str, alignment: Alignment, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_alignment(parse_duration(duration), alignment)


def test_no_alignment_is_always_fine() -> None:
    check_alignment(parse_duration("5m"), None)


_DURATIONS = ["30s", "5m", "1h", "1d", "2d", "1w", "1M", "3M", "1Y"]
_ALIGNMENTS = [None, Alignment(), Alignment("Europe/Paris", 6), Alignment("America/New_York", 2), Alignment("Asia/Kolkata")]
_RANGE = (at(2020, 1, 1), at(2030, 12, 31))


@settings(max_examples=400, deadline=None)
@given(
    duration=st.sampled_from(_DURATIONS),
    alignment=st.sampled_from(_ALIGNMENTS),
    last_reset=st.integers(*_RANGE),
    elapsed=st.integers(0, 800 * DAY),
)
def test_a_window_is_current_exactly_until_its_next_reset(
    duration: str, alignment: Alignment | None, last_reset: int, elapsed: int
) -> None:
    parsed = parse_duration(duration)
    if alignment is not None and parsed.unit not in "dwMY":
        alignment = None
    now = last_reset + elapsed
    assert _current(duration, last_reset, now, alignment) == (now < next_reset_ms(parsed, last_reset, alignment))


@settings(max_examples=300, deadline=None)
@given(duration=st.sampled_from(_DURATIONS), last_reset=st.integers(*_RANGE),
       a=st.integers(0, 400 * DAY), b=st.integers(0, 400 * DAY))
def test_a_stale_rolling_window_stays_stale(duration: str, last_reset: int, a: int, b: int) -> None:
    earlier, later = sorted((last_reset + a, last_reset + b))
    if not _current(duration, last_reset, earlier):
        assert not _current(duration, last_reset, later)


@pytest.mark.parametrize("text", ["999999Y", "101Y", "1300M", "999999d", "6000w"])
def test_durations_longer_than_a_century_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="100 years"):
        parse_duration(text)
