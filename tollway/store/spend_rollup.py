"""Spend rollups: what a batch of the request log adds to the totals that spend reports
read, written in the same transaction as the log rows.

- `spend_totals`: per UTC hour and per UTC day, overall and per value of one dimension
  (key, team, customer, provider, model, route). An unfiltered report — the UI's overview, a
  spend ranking — reads a handful of rows per bucket however many requests there were.
- `spend_rollups`: per UTC day and per (key, team, customer, provider, model), for
  reports filtered by some of those (a key's or a team's page).

`tollway.api.spend` takes whole days and hours from these and only the partial hours at the
ends of a range from the log itself, so answers stay exact to the request.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from tollway.governance.model import NANO_PER_USD
from tollway.store.tables import SpendRollup, SpendTotal

DIMENSIONS = ("virtual_key_id", "team_id", "customer_id", "provider", "model")
ALL = "all"  # the `dimension` of the overall totals
ROUTE = "route"  # a totals dimension only (the day rollups do not keep it)
SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how UtcDateTime's values sit in SQLite (naive UTC text)

Sums = list[int]


def hour_of(moment: datetime) -> datetime:
    """The UTC hour that ``moment`` falls in."""
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """The UTC day that ``moment`` falls in."""
    return hour_of(moment).replace(hour=0)


class Rollup:
    """One batch's additions: totals keyed (span, start, dimension, value), day rollups
    keyed (day, key, team, customer, provider, model)."""

    def __init__(self, records: Iterable[Any]) -> None:
        self.totals: dict[tuple[str, datetime, str, str], Sums] = {}
        self.days: dict[tuple[datetime, str, str, str, str, str], Sums] = {}
        for r in records:
            amounts = (int(r.cost * NANO_PER_USD), r.prompt_tokens, r.completion_tokens, r.cached_tokens, 1,
                       int(r.decision != "allow"))
            hour = hour_of(r.at)
            day = hour.replace(hour=0)
            group = (r.virtual_key_id or "", r.team_id or "", r.customer_id or "", r.provider or "", r.model or "")
            _add(self.days, (day, *group), amounts)
            for span, start in (("hour", hour), ("day", day)):
                _add(self.totals, (span, start, ALL, ""), amounts)
                for dimension, value in zip(DIMENSIONS, group, strict=True):
                    _add(self.totals, (span, start, dimension, value), amounts)
                _add(self.totals, (span, start, ROUTE, getattr(r, "route", None) or ""), amounts)


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

    def __init__(self, dialect: Any) -> None:
        self.totals_sql, self._totals_order = _upsert(dialect, SpendTotal, ("span", "bucket_start", "dimension", "value"))
        self.days_sql, self._days_order = _upsert(dialect, SpendRollup, ("day", *DIMENSIONS))
        self._text_time = dialect.name == "sqlite"

    def rows(self, rollup: Rollup) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """(totals rows, day rows), each sorted: one lock order, so that gateways sharing a
        PostgreSQL database never deadlock on each other's upserts."""
        totals = [self._bind(self._totals_order, ("span", "bucket_start", "dimension", "value"), key, sums)
                  for key, sums in sorted(rollup.totals.items())]
        days = [self._bind(self._days_order, ("day", *DIMENSIONS), key, sums) for key, sums in sorted(rollup.days.items())]
        return totals, days

    def _bind(self, order: tuple[str, ...], names: tuple[str, ...], key: tuple[Any, ...], sums: Sums) -> tuple[Any, ...]:
        values = dict(zip(names, key, strict=True))
        values.update(zip(SUMS, sums, strict=True))
        for name in ("bucket_start", "day"):
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
