"""Alert detection (pure): thresholds, the burn-rate forecast, the bounded usage history,
the wording, and the signature format."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tollway.alerts.detect import (
    HOUR_MS,
    MAX_SAMPLES,
    UsageHistory,
    crossed_thresholds,
    describe_span,
    forecast_exhaustion,
)
from tollway.alerts.payload import signature

MINUTE = 60_000


@pytest.mark.parametrize(("used", "reserved", "crossed"), [
    (0, 0, []), (49, 0, []), (50, 0, [0.5]), (40, 10, [0.5]), (79, 0, [0.5]), (80, 0, [0.5, 0.8]),
    (99, 1, [0.5, 0.8, 1.0]), (150, 0, [0.5, 0.8, 1.0]),
])
def test_thresholds_count_used_plus_reserved(used: int, reserved: int, crossed: list[float]) -> None:
    assert crossed_thresholds([0.5, 0.8, 1.0], 100, used, reserved) == crossed


def test_forecast_at_the_last_hours_rate_says_when_the_limit_runs_out() -> None:
    # 60 used over the last hour, 130 left: at 60 an hour it runs out in 2 h 10 min.
    samples = [(0, 10), (30 * MINUTE, 40), (HOUR_MS, 70)]
    forecast = forecast_exhaustion(samples, HOUR_MS, 200, 70, 0, reset_at_ms=10 * HOUR_MS, min_span_ms=5 * MINUTE)
    assert forecast is not None
    assert forecast.exhausted_at_ms == HOUR_MS + 130 * MINUTE
    assert forecast.rate_per_hour == pytest.approx(60)
    assert describe_span(forecast.exhausted_at_ms - HOUR_MS) == "2 h 10 min"


@pytest.mark.parametrize(("samples", "reserved", "reset_at", "why"), [
    ([(0, 10), (HOUR_MS, 70)], 0, 3 * HOUR_MS, "the window resets first"),
    ([(0, 10), (HOUR_MS, 10)], 0, 10 * HOUR_MS, "no use, no rate"),
    ([(0, 10), (2 * MINUTE, 70)], 0, 10 * HOUR_MS, "too little history"),
    ([(HOUR_MS, 70)], 0, 10 * HOUR_MS, "one sample"),
    ([(0, 10), (HOUR_MS, 70)], 130, 10 * HOUR_MS, "already out: the 100 % threshold says so"),
])
def test_no_forecast(samples: list[tuple[int, int]], reserved: int, reset_at: int, why: str) -> None:
    assert forecast_exhaustion(samples, HOUR_MS, 200, samples[-1][1], reserved, reset_at, 5 * MINUTE) is None, why


def test_forecast_counts_reservations_in_what_is_left() -> None:
    samples = [(0, 0), (HOUR_MS, 60)]
    forecast = forecast_exhaustion(samples, HOUR_MS, 200, 60, 20, reset_at_ms=10 * HOUR_MS, min_span_ms=0)
    assert forecast is not None and forecast.exhausted_at_ms == HOUR_MS + 120 * MINUTE


def test_history_keeps_the_last_hour_of_the_current_window_only() -> None:
    history = UsageHistory()
    assert history.add("c", 0, 0, 5) == [(0, 5)]
    history.add("c", 0, 30 * MINUTE, 10)
    assert history.add("c", 0, 90 * MINUTE, 20) == [(30 * MINUTE, 10), (90 * MINUTE, 20)]
    assert history.add("c", 100 * MINUTE, 100 * MINUTE, 1) == [(100 * MINUTE, 1)]  # a new window
    assert history.add("c", 100 * MINUTE, 101 * MINUTE, 0) == [(101 * MINUTE, 0)]  # an operator's reset
    history.add("gone", 0, 0, 1)
    history.keep_only(["c"])
    assert len(history) == 1


def test_history_is_bounded_per_counter() -> None:
    history = UsageHistory()
    for ms in range(MAX_SAMPLES * 3):
        samples = history.add("c", 0, ms, ms)
    assert len(samples) == MAX_SAMPLES and samples[-1] == (MAX_SAMPLES * 3 - 1, MAX_SAMPLES * 3 - 1)


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0 s"), (30_000, "30 s"), (45 * MINUTE, "45 min"), (2 * HOUR_MS, "2 h"), (130 * MINUTE, "2 h 10 min"),
    (76 * HOUR_MS, "3 d 4 h"), (48 * HOUR_MS, "2 d"),
])
def test_spans_read_like_a_person_wrote_them(ms: int, text: str) -> None:
    assert describe_span(ms) == text


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"s3cret-s3cret-s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert signature("s3cret-s3cret-s3cret", 1_700_000_000, b"{}") == f"t=1700000000,v1={expected}"
