"""Row counts of the governed entities' tables, read from `EntityCount` (kept exact by
triggers, migration 0017_entity_counts) instead of counting: the unfiltered key list's
``count`` at a million keys costs one row.

Only an unfiltered count can be read this way; a filtered one is counted (through the
filter's index).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from tollway.store.tables import EntityCount

COUNTED = frozenset({"virtual_keys", "teams", "customers"})


def stored_count(session: Session, statement: Select[Any]) -> int | None:
    """The number of rows ``statement`` selects when it is a whole counted table with no
    filter (read from the stored count); None otherwise (the caller counts)."""
    narrowed = (statement.whereclause is not None or statement._group_by_clauses or statement._having_criteria
                or statement._distinct or statement._limit_clause is not None or statement._offset_clause is not None)
    if narrowed:
        return None
    froms = statement.get_final_froms()
    table = getattr(froms[0], "name", None) if len(froms) == 1 else None
    if table not in COUNTED:
        return None
    count: int | None = session.execute(select(EntityCount.row_count).where(EntityCount.table_name == table)).scalar()
    return count
