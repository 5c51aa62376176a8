"""The engine tells the store how long a counter's window can last (``window_ms``), which
a shared store uses to expire counters: it must never be shorter than the real window."""

from __future__ import annotations

import pytest

from tollway.governance.durations import Alignment, next_reset_ms, parse_duration, window_at
from tollway.governance.engine import LimitCheck, Plan, acquire_ops, release_ops, settle_ops
from tollway.governance.model import Kind, Level, Scope

NOW = 1_800_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR


def check(duration: str, alignment: Alignment | None = None) -> LimitCheck:
    return LimitCheck(Scope(Level.VIRTUAL_KEY, "k", "key"), Kind.BUDGET, "b:x", 10, parse_duration(duration), alignment)


@pytest.mark.parametrize(("duration", "alignment", "expected"), [
    ("30s", None, 30_000),
    ("1h", None, HOUR),
    ("1d", Alignment("Europe/Paris"), DAY + HOUR),  # a day may last 25 h across a DST change
    ("1w", Alignment("UTC"), 7 * DAY + HOUR),
    ("1M", None, 31 * DAY + HOUR),
    ("1M", Alignment("UTC"), 31 * DAY + HOUR),
    ("3M", None, 93 * DAY + HOUR),
    ("1Y", Alignment("UTC"), 372 * DAY + HOUR),
])
def test_every_op_carries_an_upper_bound_of_its_window(duration, alignment, expected) -> None:
    plan = Plan((check(duration, alignment),), (5,))
    for ops in (acquire_ops(plan, NOW), settle_ops(plan, NOW, 1, 1), release_ops(plan, NOW)):
        assert ops[0].window_ms == expected


@pytest.mark.parametrize("duration", ["1d", "1w", "1M", "1Y"])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"])
def test_the_bound_covers_every_calendar_window_of_a_decade(duration, tz) -> None:
    parsed, alignment = parse_duration(duration), Alignment(tz)
    bound = check(duration, alignment).window_ms
    at = NOW
    for _ in range(40 if duration in ("1d", "1w") else 120 if duration == "1M" else 10):
        start = window_at(parsed, at, alignment).floor_ms
        end = next_reset_ms(parsed, start, alignment)
        assert end - start <= bound
        at = end + 1 if duration != "1d" else end + 60 * DAY  # days: sample across the years
