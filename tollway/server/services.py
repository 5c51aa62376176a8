"""What the gateway takes from its surroundings: the clock, the counter store, the
database. Production builds them from the settings; tests hand in their own (a clock they
move, a store they inspect) instead of sleeping through windows or patching modules."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tollway.governance.counters.base import CounterStore
from tollway.store.database import Database


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Services:
    """Each part left as None is built from the settings at startup."""

    clock_ms: Callable[[], int] = wall_clock_ms
    counter_store: CounterStore | None = None
    database: Database | None = None


__all__ = ["Services", "wall_clock_ms"]
