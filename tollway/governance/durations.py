"""Reset durations ("30s", "5m", "1h", "1d", "1w", "1M", "1Y") and counter windows.

All times are integer milliseconds since the Unix epoch (UTC). A counter keeps the
instant of its last reset; a `Window` says, for one instant, whether that state is
still current and what the last reset becomes when it is not. Rolling windows are
anchored at the last reset (reset when ``now - last_reset >= duration``); calendar
aligned ones start on calendar boundaries ("monthly" means "from the 1st").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_PATTERN = re.compile(r"^\s*([1-9][0-9]{0,5})\s*(s|m|h|d|w|M|Y)\s*$")
_FIXED_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_CALENDAR_UNITS = frozenset("dwMY")
# About a century at most, so calendar arithmetic stays far inside datetime's range.
_MAX_COUNT = {"s": 999_999, "m": 999_999, "h": 876_600, "d": 36_525, "w": 5_218, "M": 1_200, "Y": 100}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Duration:
    """A whole number of one unit; ``M`` and ``Y`` are calendar months and years."""

    count: int
    unit: str

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"

    @property
    def fixed_ms(self) -> int | None:
        """Length in milliseconds, or None for calendar months and years."""
        unit_ms = _FIXED_MS.get(self.unit)
        return None if unit_ms is None else unit_ms * self.count


@dataclass(frozen=True, slots=True)
class Alignment:
    """Calendar alignment: windows start on boundaries in ``tz`` (weeks on ``week_start``, 0 = Monday)."""

    tz: str = "UTC"
    week_start: int = 0


@dataclass(frozen=True, slots=True)
class Window:
    """How a counter's state is judged at one instant.

    The state is current iff ``last_reset_ms >= floor_ms``; otherwise it counts as zero
    and its last reset becomes ``reset_to_ms``.
    """

    floor_ms: int
    reset_to_ms: int


def parse_duration(text: str) -> Duration:
    """Parse "15m", "1h", "3M" …; raise ValueError with the accepted forms otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string like '1h', got {type(text).__name__}")
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a positive whole number followed by one of "
            "s, m, h, d, w, M (calendar month), Y (calendar year), e.g. '30s', '15m', '1M'"
        )
    duration = Duration(int(match.group(1)), match.group(2))
    if duration.count > _MAX_COUNT[duration.unit]:
        raise ValueError(f"duration {text!r} is longer than the longest allowed, 100 years")
    return duration


def check_alignment(duration: Duration, alignment: Alignment | None) -> None:
    """Raise ValueError when a calendar alignment cannot apply to ``duration``."""
    if alignment is None:
        return
    if duration.unit not in _CALENDAR_UNITS:
        raise ValueError(f"calendar_aligned needs a d, w, M or Y duration, not {duration}")
    _zone(alignment.tz)
    if not 0 <= alignment.week_start <= 6:
        raise ValueError("week_start must be 0 (Monday) to 6 (Sunday)")


def window_at(duration: Duration, now_ms: int, alignment: Alignment | None = None) -> Window:
    """The window that is current at ``now_ms``."""
    if alignment is not None:
        start = _period_start_ms(duration, now_ms, alignment)
        return Window(floor_ms=start, reset_to_ms=start)
    fixed = duration.fixed_ms
    # Current iff now < next_reset_ms(last_reset): the floor is the earliest such last reset.
    floor = now_ms - fixed + 1 if fixed is not None else _month_floor_ms(_months(duration), now_ms)
    return Window(floor_ms=floor, reset_to_ms=now_ms)


def next_reset_ms(duration: Duration, last_reset_ms: int, alignment: Alignment | None = None) -> int:
    """When a counter last reset at ``last_reset_ms`` resets next."""
    if alignment is not None:
        start = _period_start_ms(duration, last_reset_ms, alignment)
        return _advance(duration, start, _zone(alignment.tz))
    return _advance(duration, last_reset_ms, timezone.utc)


def _advance(duration: Duration, start_ms: int, tz: timezone | ZoneInfo) -> int:
    if duration.unit in "MY":
        return _to_ms(_add_months(_from_ms(start_ms, tz), _months(duration)))
    if duration.unit in "dw":  # calendar days keep wall-clock time across DST changes
        days = duration.count * (7 if duration.unit == "w" else 1)
        local = _from_ms(start_ms, tz).replace(tzinfo=None) + timedelta(days=days)
        return _to_ms(local.replace(tzinfo=tz))
    return start_ms + (duration.fixed_ms or 0)


def _period_start_ms(duration: Duration, at_ms: int, alignment: Alignment) -> int:
    tz = _zone(alignment.tz)
    local = _from_ms(at_ms, tz)
    n, unit = duration.count, duration.unit
    if unit == "Y":
        start = local.replace(year=local.year - local.year % n, month=1, day=1)
    elif unit == "M":
        index = local.year * 12 + local.month - 1
        index -= index % n
        start = local.replace(year=index // 12, month=index % 12 + 1, day=1)
    elif unit == "w":
        day = local.date() - timedelta(days=(local.weekday() - alignment.week_start) % 7)
        weeks = (day - _first_week_start(alignment.week_start)).days // 7
        day -= timedelta(weeks=weeks % n)
        start = datetime(day.year, day.month, day.day)
    elif unit == "d":
        ordinal = local.date().toordinal()
        day = datetime.fromordinal(ordinal - (ordinal - _EPOCH.date().toordinal()) % n)
        start = day
    else:
        raise ValueError(f"calendar alignment needs a d, w, M or Y duration, not {duration}")
    start = start.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    return _to_ms(start.replace(tzinfo=tz))


def _first_week_start(week_start: int) -> date:  # the first week boundary on or after 1970-01-01
    epoch_day = _EPOCH.date()
    return epoch_day + timedelta(days=(week_start - epoch_day.weekday()) % 7)


def _months(duration: Duration) -> int:
    return duration.count * (12 if duration.unit == "Y" else 1)


def _add_months(moment: datetime, months: int) -> datetime:
    """Calendar month arithmetic. A day the target month lacks is clamped to the end of
    that month (Jan 31 10:00 + 1M = Mar 1 00:00, the end of February): keeping the time on
    Feb 28 instead would make Jan 29 00:00 + 1M fall before Jan 28 12:00 + 1M, and windows
    need a reset time that never moves backwards when the last reset moves forwards."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    if moment.day > _days_in_month(year, month):
        year, month = divmod(index + 1, 12)
        naive = datetime(year, month + 1, 1)
    else:
        naive = moment.replace(tzinfo=None, year=year, month=month)
    return naive.replace(tzinfo=moment.tzinfo)


def _month_floor_ms(months: int, now_ms: int) -> int:
    """The earliest last reset (UTC) whose rolling ``months`` window is still current at ``now_ms``."""
    now = _from_ms(now_ms, timezone.utc).replace(tzinfo=None)
    index = now.year * 12 + now.month - 1 - months
    year, month = divmod(index, 12)
    if now.day <= _days_in_month(year, month + 1):
        # The same instant ``months`` earlier reaches exactly now: one millisecond later is current.
        return _to_ms(now.replace(year=year, month=month + 1).replace(tzinfo=timezone.utc)) + 1
    # Every last reset in that shorter month ends before now; the next month's first instant does not.
    year, month = divmod(index + 1, 12)
    return _to_ms(datetime(year, month + 1, 1, tzinfo=timezone.utc))


def _days_in_month(year: int, month: int) -> int:
    following = datetime(year + month // 12, month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


def _zone(name: str) -> timezone | ZoneInfo:
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}: use an IANA name like 'Europe/Paris'") from exc


def _from_ms(ms: int, tz: timezone | ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz)


def _to_ms(moment: datetime) -> int:
    # Exact integer arithmetic: float timestamps drift by a millisecond now and then.
    return (moment - _EPOCH) // timedelta(milliseconds=1)
