"""The names of a spend report's groups (keys, teams, customers), read in the report's own
snapshot: a dashboard names its top spenders without one management call per entity."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from sqlalchemy import Connection, Table, select

from tollway.store.tables import Customer, Team, VirtualKey

_TABLES = {"key": cast(Table, VirtualKey.__table__), "team": cast(Table, Team.__table__),
           "customer": cast(Table, Customer.__table__)}
NAMED = frozenset(_TABLES)  # the groupings whose groups are entities with names
_CHUNK = 500  # ids per statement: well under every database's limit on bound parameters


def group_names(connection: Connection, group_by: str, ids: Iterable[str | None]) -> dict[str, str]:
    """The name of each id that names a ``group_by`` entity now (an id absent from the
    answer names none: deleted since, or never made — the log keeps what requests named)."""
    table = _TABLES[group_by]
    wanted = sorted({ident for ident in ids if ident})
    found: dict[str, str] = {}
    for first in range(0, len(wanted), _CHUNK):
        chunk = wanted[first:first + _CHUNK]
        found.update((str(ident), str(name)) for ident, name in
                     connection.execute(select(table.c.id, table.c.name).where(table.c.id.in_(chunk))).all())
    return found
