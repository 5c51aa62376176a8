"""Spend rollups: what the request log adds to each hour's and each day's totals, per
key, team, customer, provider and model, written in the same transaction as the log rows.

A spend report over a month then reads one row per day and group instead of every request
of the month (`tollway.api.spend` takes whole days from the daily rows, whole hours at the
edges from the hourly ones and the partial hours from the log itself, so answers stay
exact to the request).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from tollway.store.tables import SpendRollup
from tollway.governance.model import NANO_PER_USD

DIMENSIONS = ("virtual_key_id", "team_id", "customer_id", "provider", "model")
SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how UtcDateTime's values sit in SQLite (naive UTC text)

SPANS = ("hour", "day")
Key = tuple[str, datetime, str, str, str, str, str]


def hour_of(moment: datetime) -> datetime:
    """The UTC hour that ``moment`` falls in."""
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """The UTC day that ``moment`` falls in."""
    return hour_of(moment).replace(hour=0)


def aggregate(records: Iterable[Any]) -> dict[Key, list[int]]:
    """Request-log records (anything with the log's fields) summed per hour and group, and
    per day and group."""
    totals: dict[Key, list[int]] = {}
    for r in records:
        hour = hour_of(r.at)
        group = (r.virtual_key_id or "", r.team_id or "", r.customer_id or "", r.provider or "", r.model or "")
        for key in (("hour", hour, *group), ("day", hour.replace(hour=0), *group)):
            row = totals.get(key)
            if row is None:
                row = totals[key] = [0, 0, 0, 0, 0, 0]
            row[0] += int(r.cost * NANO_PER_USD)
            row[1] += r.prompt_tokens
            row[2] += r.completion_tokens
            row[3] += r.cached_tokens
            row[4] += 1
            row[5] += r.decision != "allow"
    return totals


class RollupUpsert:
    """The driver-level INSERT … ON CONFLICT DO UPDATE (adding to the hour's totals),
    compiled once for the database's dialect; rows are bound as plain tuples."""

    def __init__(self, dialect: Any) -> None:
        table = cast(Table, SpendRollup.__table__)
        module = sqlite if dialect.name == "sqlite" else postgresql
        statement = module.insert(table).values({name: None for name in ("span", "bucket_start", *DIMENSIONS, *SUMS)})
        statement = statement.on_conflict_do_update(
            index_elements=["span", "bucket_start", *DIMENSIONS],
            set_={name: table.c[name] + statement.excluded[name] for name in SUMS},
        )
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._order = tuple(compiled.positiontup or ())
        self._text_time = dialect.name == "sqlite"

    def rows(self, totals: dict[Key, list[int]]) -> list[tuple[Any, ...]]:
        bound = []
        for key, sums in sorted(totals.items()):  # one lock order: gateways sharing PostgreSQL never deadlock
            start = key[1].replace(tzinfo=None).strftime(_SQLITE_TIME) if self._text_time else key[1]
            values = dict(zip(("span", "bucket_start", *DIMENSIONS), (key[0], start, *key[2:]), strict=True))
            values.update(zip(SUMS, sums, strict=True))
            bound.append(tuple(values[name] for name in self._order))
        return bound
