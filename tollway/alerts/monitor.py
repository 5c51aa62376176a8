"""The alert monitor: a background job that reads every limit's usage (as the usage API
does), finds the thresholds crossed and the forecasts of exhaustion, claims each once in
the database, and hands this node's claims to the dispatcher.

Nothing here runs on the request path; a tick costs one counter-store read of every
limit, and a database round trip only when something new was crossed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError

from tollway.alerts.config import FORECAST_EXHAUSTION, THRESHOLD_CROSSED, AlertsConfig
from tollway.alerts.delivery import Dispatcher
from tollway.alerts.detect import Alert, UsageHistory, crossed_thresholds, forecast_exhaustion
from tollway.alerts.payload import alert_body
from tollway.alerts.records import Target, api_targets, claim, config_targets
from tollway.governance.counters.base import CounterReading, CounterStore
from tollway.governance.durations import next_reset_ms, parse_duration
from tollway.governance.engine import LimitCheck, read_ops
from tollway.governance.inventory import snapshot_checks
from tollway.governance.model import Kind, PolicySnapshot
from tollway.store.database import Database, DatabaseUnavailable
from tollway.store.usage import ms_to_datetime

DEFAULT_MIN_SPAN_MS = 5 * 60_000  # a forecast from less than 5 minutes of history is noise


class AlertMonitor:
    """Detects and claims alerts on each `tick`; the runtime calls it every ``check_interval``."""

    def __init__(self, config: AlertsConfig, db: Database, store: CounterStore,
                 snapshot: Callable[[], PolicySnapshot], clock_ms: Callable[[], int], dispatcher: Dispatcher,
                 *, forecast_min_span_ms: int = DEFAULT_MIN_SPAN_MS) -> None:
        self.config = config
        self.db = db
        self.store = store
        self.snapshot = snapshot
        self.clock_ms = clock_ms
        self.dispatcher = dispatcher
        self.forecast_min_span_ms = forecast_min_span_ms
        self.history = UsageHistory()
        self._config_targets = config_targets(config)
        self._last_api_targets: list[Target] = []
        self._checks: tuple[int, list[tuple[LimitCheck, str | None]]] = (-1, [])
        # counter -> (window start, the (event, threshold) pairs known claimed in it): spares
        # the database a claim that is already decided, and forgets a window when it ends.
        self._known: dict[str, tuple[int, set[tuple[str, float]]]] = {}

    @property
    def interval_s(self) -> float:
        return (parse_duration(self.config.check_interval).fixed_ms or 5_000) / 1000

    async def start(self) -> None:
        await self.dispatcher.start()

    async def close(self) -> None:
        """Stop delivering: retries not yet due stay recorded as "retrying"."""
        await self.dispatcher.close()

    async def tick(self) -> int:
        """One look at every limit; returns how many deliveries this node queued."""
        targets = self._config_targets + await self._api_targets()
        if not targets:
            return 0  # nobody to tell: no reads, no claims (a webhook added later sees the state then)
        checks = self._current_checks()
        if not checks:
            return 0
        now = self.clock_ms()
        ops = read_ops(tuple(check for check, _ in checks), now)
        readings = await self.store.read(ops)
        found: list[Alert] = []
        for (check, parent), op, reading in zip(checks, ops, readings, strict=True):
            if check.rolling_ms is not None and reading.last_reset_ms == op.reset_to_ms and not reading.used:
                # Nothing counted in a current window yet (absent, or expired with requests of the
                # last one still in flight): the reading's window start is "now", new every tick.
                continue
            found += self._detect(check, parent, reading, now)
        self._forget_deleted(checks)
        if not found:
            return 0
        deliveries = await claim(self.db, self._bodies(found, now), targets, ms_to_datetime(now))
        for alert in found:
            self._known[alert.check.counter][1].add((alert.event, alert.threshold))
        for delivery in deliveries:
            self.dispatcher.submit(delivery)
        return len(deliveries)

    async def _api_targets(self) -> list[Target]:
        """The API's webhooks; while the database is unreachable, the last ones read. A
        gateway without webhooks so stays quiet through an outage; one with webhooks fails
        at the claim, once something was crossed (claims need the database)."""
        try:
            self._last_api_targets = await api_targets(self.db)
        except (DBAPIError, OSError, DatabaseUnavailable):
            pass
        return self._last_api_targets

    def _forget_deleted(self, checks: list[tuple[LimitCheck, str | None]]) -> None:
        if len(self._known) > len(checks):
            alive = {check.counter for check, _ in checks}
            for counter in [name for name in self._known if name not in alive]:
                del self._known[counter]
            self.history.keep_only(alive)

    def _current_checks(self) -> list[tuple[LimitCheck, str | None]]:
        snapshot = self.snapshot()
        if self._checks[0] != snapshot.version:
            # Budgets and rate limits; a concurrency limit has no window to run out in.
            self._checks = (snapshot.version, [item for item in snapshot_checks(snapshot)
                                               if item[0].kind is not Kind.IN_FLIGHT])
        return self._checks[1]

    def _detect(self, check: LimitCheck, parent: str | None, reading: CounterReading, now: int) -> list[Alert]:
        window = reading.last_reset_ms
        known = self._known.get(check.counter)
        if known is None or known[0] != window:
            known = self._known[check.counter] = (window, set())
        reset_at = next_reset_ms(check.duration, window, check.alignment)
        alerts = [Alert(THRESHOLD_CROSSED, check, parent, reading, reset_at, threshold)
                  for threshold in crossed_thresholds(self.config.thresholds, check.limit, reading.used,
                                                      reading.reserved)
                  if (THRESHOLD_CROSSED, threshold) not in known[1]]
        samples = self.history.add(check.counter, window, now, reading.used)
        if self.config.forecast and (FORECAST_EXHAUSTION, 1.0) not in known[1]:
            forecast = forecast_exhaustion(samples, now, check.limit, reading.used, reading.reserved, reset_at,
                                           self.forecast_min_span_ms)
            if forecast is not None:
                alerts.append(Alert(FORECAST_EXHAUSTION, check, parent, reading, reset_at, 1.0,
                                    forecast.exhausted_at_ms, forecast.rate_per_hour))
        return alerts

    def _bodies(self, alerts: list[Alert], now: int) -> list[tuple[Alert, dict[str, Any] | None]]:
        """Each alert with its body, except thresholds passed over: of several thresholds of
        one limit crossed at once, only the highest is delivered (the others are claimed)."""
        highest: dict[str, float] = {}
        for alert in alerts:
            if alert.event == THRESHOLD_CROSSED:
                highest[alert.check.counter] = max(highest.get(alert.check.counter, 0.0), alert.threshold)
        return [(alert, alert_body(alert, str(uuid.uuid4()), now)
                 if alert.event != THRESHOLD_CROSSED or alert.threshold == highest[alert.check.counter] else None)
                for alert in alerts]
