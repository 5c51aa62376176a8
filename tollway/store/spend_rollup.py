"""Spend rollups: what a batch of the request log adds to the totals that spend reports
read, written in the same transaction as the log rows.

- `spend_totals`: per UTC hour, day and calendar month, overall and per value of one
  dimension (`TOTAL_DIMENSIONS`). An unfiltered report — the UI's overview, a spend
  ranking — reads one row per group and bucket however many requests there were; the
  request log's count filtered by one of them (the decision: its "denied" filter) too.
- `spend_rollups` (per UTC day) and `spend_rollup_hours` (per UTC hour): per combination
  of `COMBO_DIMENSIONS`, for reports filtered by one of those and grouped by another (a
  team's keys, a model's keys hour by hour).

`tollway.store.spend_report` picks the cheapest of these for each piece of a range and
reads the request log itself only for partial hours, so answers stay exact to the request.

A new grouping dimension (a request-log column) is one entry in `TOTAL_DIMENSIONS` (its
API name and column): the totals store dimensions as (name, value) rows, so no schema
change is needed beyond the log's column, and a migration that backfills its totals.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from tollway.governance.model import NANO_PER_USD
from tollway.store.tables import SpendRollup, SpendRollupHour, SpendTotal

# API group name → request-log column, for every dimension the totals keep.
TOTAL_DIMENSIONS = {"key": "virtual_key_id", "team": "team_id", "customer": "customer_id", "provider": "provider",
                    "model": "model", "route": "route", "decision": "decision"}
# The columns of the combination rollups (a key belongs to one team and customer, a model to
# a provider: these combinations stay few). The route is a totals dimension only.
COMBO_DIMENSIONS = ("virtual_key_id", "team_id", "customer_id", "provider", "model")
DIMENSIONS = COMBO_DIMENSIONS  # kept for callers of the first rollups
ALL = "all"  # the `dimension` of the overall totals
ROUTE = "route"
TOTAL_SPANS = ("hour", "day", "month")
SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how UtcDateTime's values sit in SQLite (naive UTC text)
_TOTAL_COLUMNS = tuple(TOTAL_DIMENSIONS.values())

Sums = list[int]


def hour_of(moment: datetime) -> datetime:
    """The UTC hour that ``moment`` falls in."""
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """The UTC day that ``moment`` falls in."""
    return hour_of(moment).replace(hour=0)


def month_of(moment: datetime) -> datetime:
    """The UTC calendar month that ``moment`` falls in."""
    return day_of(moment).replace(day=1)


def amounts_of(record: Any) -> tuple[int, ...]:
    """What one request-log record adds to every rollup row it belongs to (in `SUMS` order)."""
    return (int(record.cost * NANO_PER_USD), record.prompt_tokens, record.completion_tokens, record.cached_tokens,
            1, int(record.decision != "allow"))


class Rollup:
    """One batch's additions: totals keyed (span, start, dimension, value), combination
    rollups keyed (day or hour, key, team, customer, provider, model)."""

    def __init__(self, records: Iterable[Any]) -> None:
        self.totals: dict[tuple[str, datetime, str, str], Sums] = {}
        self.days: dict[tuple[datetime, str, str, str, str, str], Sums] = {}
        self.hours: dict[tuple[datetime, str, str, str, str, str], Sums] = {}
        for r in records:
            amounts = amounts_of(r)
            hour = hour_of(r.at)
            day = hour.replace(hour=0)
            combo = tuple(getattr(r, name) or "" for name in COMBO_DIMENSIONS)
            _add(self.days, (day, *combo), amounts)
            _add(self.hours, (hour, *combo), amounts)
            values = [(ALL, "")] + [(column, getattr(r, column, None) or "") for column in _TOTAL_COLUMNS]
            for span, start in (("hour", hour), ("day", day), ("month", day.replace(day=1))):
                for dimension, value in values:
                    _add(self.totals, (span, start, dimension, value), amounts)


def _add(table: dict[Any, Sums], key: Any, amounts: tuple[int, ...]) -> None:
    row = table.get(key)
    if row is None:
        table[key] = list(amounts)
    else:
        for index, amount in enumerate(amounts):
            row[index] += amount


class RollupUpserts:
    """The driver-level INSERT … ON CONFLICT DO UPDATE statements (adding to the stored
    sums), compiled once for the database's dialect; rows are bound as plain tuples."""

    _TOTAL_KEYS = ("span", "bucket_start", "dimension", "value")
    _DAY_KEYS = ("day", *COMBO_DIMENSIONS)
    _HOUR_KEYS = ("hour", *COMBO_DIMENSIONS)

    def __init__(self, dialect: Any) -> None:
        self.totals_sql, self._totals_order = _upsert(dialect, SpendTotal, self._TOTAL_KEYS)
        self.days_sql, self._days_order = _upsert(dialect, SpendRollup, self._DAY_KEYS)
        self.hours_sql, self._hours_order = _upsert(dialect, SpendRollupHour, self._HOUR_KEYS)
        self._text_time = dialect.name == "sqlite"

    def statements(self, rollup: Rollup) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """(SQL, rows) for each rollup table, rows sorted: one lock order, so that gateways
        sharing a PostgreSQL database never deadlock on each other's upserts."""
        return [
            (self.totals_sql, self._bind_all(self._totals_order, self._TOTAL_KEYS, rollup.totals)),
            (self.days_sql, self._bind_all(self._days_order, self._DAY_KEYS, rollup.days)),
            (self.hours_sql, self._bind_all(self._hours_order, self._HOUR_KEYS, rollup.hours)),
        ]

    def _bind_all(self, order: tuple[str, ...], names: tuple[str, ...], table: dict[Any, Sums]) -> list[tuple[Any, ...]]:
        return [self._bind(order, names, key, sums) for key, sums in sorted(table.items())]

    def _bind(self, order: tuple[str, ...], names: tuple[str, ...], key: tuple[Any, ...], sums: Sums) -> tuple[Any, ...]:
        values = dict(zip(names, key, strict=True))
        values.update(zip(SUMS, sums, strict=True))
        for name in ("bucket_start", "day", "hour"):
            if self._text_time and name in values:
                values[name] = values[name].replace(tzinfo=None).strftime(_SQLITE_TIME)
        return tuple(values[name] for name in order)


def _upsert(dialect: Any, model: Any, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    table = cast(Table, model.__table__)
    module = sqlite if dialect.name == "sqlite" else postgresql
    statement = module.insert(table).values({name: None for name in (*keys, *SUMS)})
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={name: table.c[name] + statement.excluded[name] for name in SUMS})
    compiled = statement.compile(dialect=dialect)
    return str(compiled), tuple(compiled.positiontup or ())
