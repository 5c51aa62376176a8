"""Naming entities in the admin UI: filters that accept an id or a name, and the names
of the entities a page lists (with those since deleted marked, not linked)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from tollway.ui.client import ApiProblem, ManagementClient, path


@dataclass(frozen=True, slots=True)
class Named:
    """One kind of entity as the lookups address it."""

    noun: str  # "virtual key"
    api: str  # its management API collection
    envelope: str  # one entity's key in the API's answers
    plural: str  # the list's key in the API's answers
    name_filter: str = "search"  # the list's query parameter that finds a name (keys: the indexed prefix)


KEY = Named("virtual key", "/api/governance/virtual-keys", "virtual_key", "virtual_keys", "name_prefix")
TEAM = Named("team", "/api/governance/teams", "team", "teams")
CUSTOMER = Named("customer", "/api/governance/customers", "customer", "customers")
MODEL = Named("model config", "/api/governance/model-configs", "model_config", "model_configs")
BY_LEVEL = {"virtual_key": KEY, "team": TEAM, "customer": CUSTOMER}


class Unknown(ApiProblem):
    """No entity has that id or name (it may have had: deleted entities keep their log rows)."""


async def resolve(api: ManagementClient, kind: Named, value: str, field: str) -> str:
    """The id of the entity whose id, or else whose name, is ``value``; a 422 naming
    ``field`` when none is, or when several share that name."""
    try:
        return str((await api.get(path(kind.api, value)))[kind.envelope]["id"])
    except ApiProblem as problem:
        if problem.status != 404:
            raise
    found = (await api.get(kind.api, {kind.name_filter: value, "limit": 1000}))[kind.plural]
    named = sorted(entity["id"] for entity in found if entity["name"] == value)
    if len(named) == 1:
        return str(named[0])
    if not named:
        raise Unknown(422, f"no {kind.noun} has the id or name {value!r}", field=field)
    raise ApiProblem(422, f"{len(named)} {kind.noun}s are named {value!r} ({', '.join(named)}): give the id",
                     field=field)


ONE_BY_ONE = 20  # more unnamed ids than this: read the entity list a page at a time instead
_LIST_PAGE = 1000  # the management API's largest page
_LIST_PAGES = 50  # at most this many pages (50,000 entities) before the rest are looked up one by one


async def names_of(api: ManagementClient, kind: Named, ids: Iterable[str], known: dict[str, str]) -> dict[str, str | None]:
    """The name of each id (None: deleted), from ``known`` or else looked up: one by one
    when few are missing (a page names few entities that a full list did not already hold),
    from the entity list a page at a time when many are (a spend report over thousands of
    keys, most of them deleted, must not cost a request each)."""
    wanted = sorted(set(ids))
    missing = [ident for ident in wanted if ident not in known]
    looked_up: dict[str, str | None] = {}
    if len(missing) > ONE_BY_ONE:
        looked_up = await _names_from_list(api, kind, set(missing))
        missing = [ident for ident in missing if ident not in looked_up]

    async def one(ident: str) -> str | None:
        try:
            entity = (await api.get(path(kind.api, ident)))[kind.envelope]
            return _name(entity, ident)
        except ApiProblem as problem:
            if problem.status == 404:
                return None
            raise

    looked_up.update(zip(missing, await asyncio.gather(*(one(ident) for ident in missing)), strict=True))
    return {ident: known[ident] if ident in known else looked_up[ident] for ident in wanted}


def _name(entity: dict[str, object], ident: str) -> str:
    return str(entity.get("name") or entity.get("model_name") or ident)


async def _names_from_list(api: ManagementClient, kind: Named, wanted: set[str]) -> dict[str, str | None]:
    """Names of ``wanted`` ids found by reading the list; every id gets an answer (None:
    no such entity) when the whole list was read, else only those found."""
    found: dict[str, str | None] = {}
    for page in range(_LIST_PAGES):
        answer = await api.get(kind.api, {"limit": _LIST_PAGE, "offset": page * _LIST_PAGE})
        entities = answer[kind.plural]
        for entity in entities:
            ident = str(entity["id"])
            if ident in wanted:
                found[ident] = _name(entity, ident)
        if len(found) == len(wanted) or len(entities) < _LIST_PAGE:
            return found | {ident: None for ident in wanted if ident not in found}
    return found
