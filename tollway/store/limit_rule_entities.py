"""Checks a limit rule's selector against the store: the virtual keys, teams and customers
it names must exist (a rule naming a mistyped id would silently bind nothing)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.store.entities import EntityError
from tollway.store.tables import Customer, Team, VirtualKey

_ENTITIES: dict[str, tuple[Any, str]] = {"virtual_key": (VirtualKey, "virtual key"), "team": (Team, "team"),
                                         "customer": (Customer, "customer")}
_IDS_PER_QUERY = 500


def check_rule_entities(session: Session, rule: Any, where: str = "limit rule") -> None:
    """`EntityError` (field ``match.<dimension>``) naming the first id of ``rule.match``'s
    keys, teams and customers that no row has."""
    named = rule.match.named()
    for dimension, (entity, noun) in _ENTITIES.items():
        ids = named.get(dimension)
        if not ids:
            continue
        found: set[str] = set()
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start:start + _IDS_PER_QUERY]
            found.update(session.scalars(select(entity.id).where(entity.id.in_(chunk))))
        missing = [ident for ident in ids if ident not in found]
        if missing:
            raise EntityError(f"{where}: match.{dimension} names {noun} {missing[0]!r}, which does not exist",
                              f"match.{dimension}")
