"""What to alert on, from one reading of a limit: pure, the clock passed in.

A threshold is crossed when used plus reserved reaches that share of the limit in the
current window. The forecast takes the rate of use over the last hour's samples (kept,
bounded, per counter) and alerts when, at that rate, the limit runs out before its window
resets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tollway.alerts.config import FORECAST_EXHAUSTION, THRESHOLD_CROSSED
from tollway.governance.counters.base import CounterReading
from tollway.governance.engine import LimitCheck

HOUR_MS = 3_600_000
MAX_SAMPLES = 2048  # per counter: an hour at one sample every 2 s; older ones go first


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert about one limit's window (the unit claimed once across nodes)."""

    event: str
    check: LimitCheck
    virtual_key_id: str | None  # for a key's provider config: the key it belongs to
    reading: CounterReading
    reset_at_ms: int
    threshold: float  # the share crossed; a forecast: 1.0, the whole limit
    exhausted_at_ms: int | None = None
    rate_per_hour: float | None = None  # the forecast's rate, in counts (nano-USD for budgets)

    @property
    def window_start_ms(self) -> int:
        return self.reading.last_reset_ms


def crossed_thresholds(thresholds: Sequence[float], limit: int, used: int, reserved: int) -> list[float]:
    """The thresholds that used plus reserved has reached, lowest first."""
    taken = used + reserved
    return [threshold for threshold in thresholds if taken >= threshold * limit]


@dataclass(frozen=True, slots=True)
class Forecast:
    exhausted_at_ms: int
    rate_per_hour: float


def forecast_exhaustion(samples: Sequence[tuple[int, int]], now_ms: int, limit: int, used: int, reserved: int,
                        reset_at_ms: int, min_span_ms: int) -> Forecast | None:
    """When the limit runs out at the rate of ``samples`` ((time, used) of this window,
    oldest first, spanning at least ``min_span_ms``), if that is before ``reset_at_ms``."""
    if len(samples) < 2:
        return None
    (first_ms, first_used), (last_ms, last_used) = samples[0], samples[-1]
    span = last_ms - first_ms
    if span < min_span_ms or span <= 0 or last_used <= first_used:
        return None
    remaining = limit - used - reserved
    if remaining <= 0:
        return None  # already out: the 100 % threshold says so
    rate_per_ms = (last_used - first_used) / span
    exhausted_at = now_ms + int(remaining / rate_per_ms)
    if exhausted_at >= reset_at_ms:
        return None
    return Forecast(exhausted_at, rate_per_ms * HOUR_MS)


class UsageHistory:
    """Recent samples of each counter's usage in its current window, at most an hour
    (``horizon_ms``) and ``MAX_SAMPLES`` per counter; a new window starts a new history."""

    def __init__(self, horizon_ms: int = HOUR_MS) -> None:
        self.horizon_ms = horizon_ms
        self._samples: dict[str, tuple[int, deque[tuple[int, int]]]] = {}  # counter -> (window start, samples)

    def add(self, counter: str, window_start_ms: int, now_ms: int, used: int) -> list[tuple[int, int]]:
        """Record a sample; returns the counter's samples of the last hour, oldest first."""
        entry = self._samples.get(counter)
        if entry is None or entry[0] != window_start_ms:
            entry = (window_start_ms, deque(maxlen=MAX_SAMPLES))
            self._samples[counter] = entry
        samples = entry[1]
        if samples and used < samples[-1][1]:
            samples.clear()  # usage went down within a window: an operator's reset
        samples.append((now_ms, used))
        while samples and samples[0][0] < now_ms - self.horizon_ms:
            samples.popleft()
        return list(samples)

    def keep_only(self, counters: Iterable[str]) -> None:
        """Forget counters no longer in the policy (deleted limits)."""
        alive = set(counters)
        for counter in [name for name in self._samples if name not in alive]:
            del self._samples[counter]

    def __len__(self) -> int:
        return len(self._samples)


def describe_span(ms: int) -> str:
    """"2 h 10 min", "45 min", "3 d 4 h", "30 s": how long until something, for people."""
    seconds = max(0, ms) // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"


__all__ = ["FORECAST_EXHAUSTION", "THRESHOLD_CROSSED", "Alert", "Forecast", "UsageHistory", "crossed_thresholds",
           "describe_span", "forecast_exhaustion"]
