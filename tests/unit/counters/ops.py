"""Counter ops on rolling windows at a fixed instant, for the store tests."""

from __future__ import annotations

from tollway.governance.counters.base import CounterOp, SettleOp

NOW = 1_800_000_000_000
MINUTE = 60_000


def op(counter: str, amount: int = 1, limit: int = 10, window: int = MINUTE) -> CounterOp:
    return CounterOp(counter, limit, amount, NOW - window + 1, NOW, window)


def settle(counter: str, reserved: int, actual: int, window: int = MINUTE) -> SettleOp:
    return SettleOp(counter, reserved, actual, NOW - window + 1, NOW, window)
