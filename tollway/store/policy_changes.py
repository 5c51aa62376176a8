"""Applying logged config changes to a policy snapshot: only the changed entities are
read and rebuilt.

The snapshot's mappings are persistent maps (`immutables.Map`): a change makes a new
map sharing everything it did not touch, in O(log n) per entity, so a node holding a
million keys applies a change in microseconds and readers of the old snapshot keep an
unchanged view. What each kind of change touches:

- ``virtual_key`` (and ``provider_config`` "key/provider", a usage reset): the key's
  policy under its value hash — the old hash is dropped, so a replaced value stops
  working at once, unless a rotation gave it a grace period (then it stays, as a
  retired value, until the key's next change); a key that no longer exists is removed.
- ``team``, ``customer``: their own policy. Keys refer to them by id and the engine
  looks them up per request, so keys need no rebuild.
- ``provider`` (by name), ``model_config`` (by id; its (model, provider) may change).
- ``tag`` (by name): its limits; a tag without limits is left out.
- ``limit_rule`` (by name): the rule; one without limits is left out.

An unknown kind (written by a newer release) is `UnknownChange`: the caller reloads all.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from immutables import Map
from sqlalchemy.ext.asyncio import AsyncSession

from tollway.governance.model import ESTIMATE, Enforcement, PolicySnapshot
from tollway.governance.names import model_key
from tollway.store.changes import Change
from tollway.store.limit_rule_tables import LimitRuleRow
from tollway.store.snapshot import PolicyReader
from tollway.store.tables import Customer, ModelConfig, Provider, Tag, Team, VirtualKey, VKProviderConfig

ModelKey = tuple[str, str | None]
_INDEX_BATCH = 20_000
_APPLY_BATCH = 200  # changed keys rebuilt per turn of the event loop (under a millisecond)


class UnknownChange(Exception):
    """A change of a kind this node cannot apply by itself."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A snapshot with the indexes by entity id that applying changes needs."""

    snapshot: PolicySnapshot
    key_hashes: Map[str, str]  # virtual key id -> its value hash (the snapshot's key)
    model_config_keys: Map[str, ModelKey]  # model config id -> (model_name, provider)


async def indexed(snapshot: PolicySnapshot) -> Policy:
    """``snapshot`` with its indexes, built in batches (the loop runs between them)."""
    key_hashes = Map[str, str]().mutate()
    for count, (digest, key) in enumerate(snapshot.keys_by_hash.items(), 1):
        if not key.retired_value:  # the index holds current values; a retired one goes with its key
            key_hashes[key.id] = digest
        if count % _INDEX_BATCH == 0:
            await asyncio.sleep(0)
    model_keys = Map({governed.scope.id: key for key, governed in snapshot.model_configs.items()})
    return Policy(_persistent(snapshot), key_hashes.finish(), model_keys)


async def apply_changes(session: AsyncSession, policy: Policy, changes: Sequence[Change], version: int,
                        defaults: Enforcement = ESTIMATE, *, held_only: bool = False,
                        key_hashes_seen: set[str] | None = None) -> Policy:
    """``policy`` with ``changes`` applied, at ``version``; entities are read through
    ``session`` as they are now (applying a change twice does no harm).

    ``held_only`` (keys loaded on demand): a changed key the policy does not hold is not
    added (its next request loads it). ``key_hashes_seen`` receives the current value
    hash of every changed key that exists, so a cache of unknown hashes can drop them."""
    ids = _ids_by_kind(changes)
    reader = PolicyReader(session, defaults)
    keys = await reader.rows(VirtualKey, ids["virtual_key"])
    configs = await reader.rows(VKProviderConfig, ids["virtual_key"], "virtual_key_id")
    teams = await reader.rows(Team, ids["team"])
    customers = await reader.rows(Customer, ids["customer"])
    providers = await reader.rows(Provider, ids["provider"], "name")
    models = await reader.rows(ModelConfig, ids["model_config"])
    tags = await reader.rows(Tag, ids["tag"])
    rules = await reader.rows(LimitRuleRow, ids["limit_rule"])
    await reader.load_limits([*keys, *configs, *teams, *customers, *providers, *models, *tags, *rules])
    snapshot = _persistent(policy.snapshot)
    keys_by_hash, key_hashes = await _apply_keys(reader, snapshot, policy.key_hashes, ids["virtual_key"], keys,
                                                 configs, held_only, key_hashes_seen)
    model_configs, model_keys = _apply_models(reader, snapshot, policy.model_config_keys, ids["model_config"], models)
    snapshot = dataclasses.replace(
        snapshot,
        keys_by_hash=keys_by_hash,
        model_configs=model_configs,
        teams=_replaced(snapshot.teams, ids["team"], {row.id: reader.team(row) for row in teams}),
        customers=_replaced(snapshot.customers, ids["customer"], {row.id: reader.customer(row) for row in customers}),
        providers=_replaced(snapshot.providers, ids["provider"], {row.name: reader.provider(row) for row in providers}),
        tags=_replaced(snapshot.tags, ids["tag"], {row.id: reader.tag(row) for row in tags}),
        limit_rules=_replaced(snapshot.limit_rules, ids["limit_rule"], {row.id: reader.limit_rule(row) for row in rules}),
        version=version,
    )
    return Policy(snapshot, key_hashes, model_keys)


def _ids_by_kind(changes: Iterable[Change]) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = defaultdict(set)
    for change in changes:
        if change.kind == "provider_config":  # "key/provider": a reset of the key's provider config
            ids["virtual_key"].add(change.entity_id.rpartition("/")[0])
        elif change.kind in _KINDS:
            ids[change.kind].add(change.entity_id)
        else:
            raise UnknownChange(change.kind)
    return ids


_KINDS = frozenset({"virtual_key", "team", "customer", "provider", "model_config", "tag", "limit_rule"})


async def _apply_keys(reader: PolicyReader, snapshot: PolicySnapshot, key_hashes: Map[str, str], changed: set[str],
                      rows: Sequence[Any], configs: Sequence[Any], held_only: bool,
                      key_hashes_seen: set[str] | None) -> tuple[Map[str, Any], Map[str, str]]:
    """The keys and the id index with ``changed`` rebuilt from ``rows``, `_APPLY_BATCH`
    keys per turn of the loop (a bulk call changes 10,000 keys in one version: built in
    one go, they held the requests up for a few hundred milliseconds). Nothing is
    visible before the end: the changes go into mutations of new maps, and the caller
    swaps the finished snapshot in whole."""
    if not changed:
        return snapshot.keys_by_hash, key_hashes  # type: ignore[return-value]
    configs_of: dict[str, list[Any]] = defaultdict(list)
    for config in configs:
        configs_of[config.virtual_key_id].append(config)
    keys = snapshot.keys_by_hash.mutate()  # type: ignore[attr-defined]
    hashes = key_hashes.mutate()
    # Every old hash goes first (with the value a rotation replaced, if any): two keys that
    # swapped values in one change keep both.
    held = set()
    for count, key_id in enumerate(changed, 1):
        if count % _APPLY_BATCH == 0:
            await asyncio.sleep(0)
        old = hashes.pop(key_id, None)
        if old is not None:
            policy = keys.pop(old, None)
            if policy is not None and policy.previous_hash is not None:
                keys.pop(policy.previous_hash, None)
            held.add(key_id)
    for count, row in enumerate(rows, 1):
        if count % _APPLY_BATCH == 0:
            await asyncio.sleep(0)
        if key_hashes_seen is not None:
            key_hashes_seen.add(row.value_hash)
        if held_only and row.id not in held:
            continue
        for digest, policy in reader.virtual_key_entries(row, configs_of.get(row.id, ())):
            keys[digest] = policy
        hashes[row.id] = row.value_hash
    return keys.finish(), hashes.finish()


def _apply_models(reader: PolicyReader, snapshot: PolicySnapshot, model_keys: Map[str, ModelKey], changed: set[str],
                  rows: Sequence[Any]) -> tuple[Map[ModelKey, Any], Map[str, ModelKey]]:
    if not changed:
        return snapshot.model_configs, model_keys  # type: ignore[return-value]
    configs = snapshot.model_configs.mutate()  # type: ignore[attr-defined]
    index = model_keys.mutate()
    for config_id in changed:
        old = index.pop(config_id, None)
        if old is not None:
            configs.pop(old, None)
    for row in rows:
        key = (model_key(row.model_name), row.provider)
        configs[key] = reader.model_config(row)
        index[row.id] = key
    return configs.finish(), index.finish()


def _replaced(mapping: Mapping[str, Any], changed: set[str], policies: Mapping[str, Any]) -> Map[str, Any]:
    """``mapping`` with the ``changed`` entries set to their new policy, or removed
    (gone, or a policy of None)."""
    if not changed:
        return mapping  # type: ignore[return-value]
    mutation = mapping.mutate()  # type: ignore[attr-defined]
    for ident in changed:
        policy = policies.get(ident)
        if policy is None:
            mutation.pop(ident, None)
        else:
            mutation[ident] = policy
    return mutation.finish()  # type: ignore[no-any-return]


def _persistent(snapshot: PolicySnapshot) -> PolicySnapshot:
    """``snapshot`` with persistent maps (an empty default snapshot has plain ones)."""
    fields = ("providers", "model_configs", "keys_by_hash", "teams", "customers", "tags", "limit_rules")
    plain: dict[str, Any] = {name: Map(getattr(snapshot, name)) for name in fields
                             if not isinstance(getattr(snapshot, name), Map)}
    return dataclasses.replace(snapshot, **plain) if plain else snapshot
