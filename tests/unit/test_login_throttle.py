"""Failed admin UI logins: free failures, then doubling waits per address, a global
bucket across addresses, and a bounded table."""

from __future__ import annotations

import pytest

from tollway.config.schema import LoginThrottleConfig
from tollway.ui.login_throttle import LoginThrottle, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock, **config: object) -> LoginThrottle:
    settings = {"free_failures": 3, "base_delay": "1s", "max_delay": "1m", "forget_after": "1h", **config}
    return LoginThrottle(LoginThrottleConfig(**settings), clock)


def test_waits_double_after_the_free_failures_up_to_the_maximum() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    waits = []
    for _ in range(12):
        assert throttle.wait_s("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
        waits.append(throttle.wait_s("10.0.0.1"))
        clock.now += waits[-1]
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert throttle.wait_s("10.0.0.2") == 0  # another address is not affected


def test_success_and_a_quiet_hour_start_over() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(3):
        throttle.failed("10.0.0.1")
    clock.now += 1
    throttle.succeeded("10.0.0.1")
    throttle.failed("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 0
    for _ in range(5):
        throttle.failed("10.0.0.2")
    clock.now += 3600
    assert throttle.wait_s("10.0.0.2") == 0
    throttle.failed("10.0.0.2")
    assert throttle.wait_s("10.0.0.2") == 0  # counted from one again


def test_many_addresses_draw_on_one_global_bucket() -> None:
    clock = Clock()
    throttle = _throttle(clock, global_free_failures=100, max_addresses=100)
    for i in range(100):
        throttle.failed(f"10.1.{i // 256}.{i % 256}")
    wait = throttle.wait_s("192.0.2.1")  # a new address: the bucket is empty
    assert wait == pytest.approx(36, rel=0.01)  # 100 an hour: one every 36 s
    clock.now += wait
    assert throttle.wait_s("192.0.2.1") == 0


def test_the_table_is_bounded_and_drops_the_least_recently_seen() -> None:
    clock = Clock()
    throttle = _throttle(clock, max_addresses=100, global_free_failures=1_000_000)
    for _ in range(3):
        throttle.failed("10.0.0.1")
    for i in range(99):
        throttle.failed(f"10.2.0.{i}")
    throttle.wait_s("10.0.0.1")  # seen again: kept
    for i in range(99):
        throttle.failed(f"10.3.0.{i}")
    assert len(throttle._addresses) == 100
    assert throttle.wait_s("10.0.0.1") > 0


def test_ipv6_addresses_are_throttled_by_their_64() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key(None) == "unknown"
    clock = Clock()
    throttle = _throttle(clock)
    for i in range(3):
        throttle.failed(f"2001:db8::{i}")
    assert throttle.wait_s("2001:db8::99") > 0
