"""Virtual keys loaded on demand (`tollway.store.key_cache`): a key loaded when first
presented is the policy a full load gives it, its counters start from the stored usage,
the change log keeps held keys current and makes new ones known at once, and a flood
of unknown keys reaches the database in a few batched queries, not once per request."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

import pytest
from sqlalchemy import update

from tests.store.example import SEARCH_VK, settings, sha256
from tests.store.test_policy_changes import (
    NEW_VALUE,
    STEPS,
    commit_change,
    create_customer,
    create_key,
    create_team,
    full,
    replace_key_value,
)
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.model import budget_counter
from tollway.store.bootstrap import apply_config
from tollway.store.database import Database
from tollway.store.key_cache import LOOKUP_BATCH, KeyCache, KeyLookupBusy, held_counters
from tollway.store.policy_sync import PolicyFollower
from tollway.store.tables import Budget, VirtualKey

SEARCH = sha256(SEARCH_VK)
ADS = sha256("tw-ads-key-value")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def on_demand(db: Database, clock: Clock | None = None, **limits: int) -> KeyCache:
    await apply_config(db, settings())
    follower = PolicyFollower(db, enforce_virtual_keys=True, keys_on_demand=True)
    await follower.reload()
    options = {"max_keys": 1000, "miss_ttl_s": 60.0} | limits
    return KeyCache(follower, MemoryCounterStore(), clock=clock or Clock(), **options)  # type: ignore[arg-type]


def unknown() -> str:
    return sha256(secrets.token_hex(16))


async def test_a_key_loaded_on_demand_is_the_policy_a_full_load_gives_it(db: Database) -> None:
    cache = await on_demand(db)
    everything = await full(db)
    start = cache.follower.snapshot
    assert len(start.keys_by_hash) == 0  # nothing loaded at start but the other entities
    assert dict(start.teams) == everything["teams"] and dict(start.customers) == everything["customers"]
    snapshot = await cache.snapshot_with(SEARCH)
    assert snapshot.keys_by_hash[SEARCH] == everything["keys_by_hash"][SEARCH]
    key = snapshot.keys_by_hash[SEARCH]
    assert snapshot.teams[key.team_id].customer_id == "acme"  # its team's and customer's limits bind as before
    assert await cache.snapshot_with(SEARCH) is cache.follower.snapshot and cache.queries == 1  # held now


async def test_its_counters_start_from_the_stored_usage_and_live_ones_are_kept(db: Database) -> None:
    cache = await on_demand(db)
    async with db.session() as session:
        key = await session.get(VirtualKey, "vk-search")
        await session.execute(update(Budget).where(Budget.id == key.budget_id).values(current_usage=Decimal("2.5")))
    assert budget_counter(key.budget_id) not in await cache.counters.export()  # not loaded at start
    await cache.snapshot_with(SEARCH)
    assert (await cache.counters.export())[budget_counter(key.budget_id)].used == 2_500_000_000
    # The team's and customer's counters come with the start (`held_counters`), not the keys'.
    at_start = await held_counters(db, cache.follower.snapshot)
    team = cache.follower.snapshot.teams["search"].limits.budget
    assert team is not None and budget_counter(team.id) in at_start


async def test_every_kind_of_change_keeps_held_keys_current_and_loads_the_rest_as_a_full_load_would(
        db: Database) -> None:
    cache = await on_demand(db)
    await cache.snapshot_with(SEARCH)
    for step in STEPS:
        await commit_change(db, step)
        snapshot = await cache.follower.refresh()
        everything = await full(db)
        for name in ("providers", "model_configs", "teams", "customers"):
            assert dict(getattr(snapshot, name)) == everything[name], (step.__name__, name)
        for key_hash, policy in snapshot.keys_by_hash.items():  # what is held is current
            assert everything["keys_by_hash"].get(key_hash) == policy, step.__name__
        for key_hash, policy in everything["keys_by_hash"].items():  # and the rest loads as stored
            assert (await cache.snapshot_with(key_hash)).keys_by_hash[key_hash] == policy, step.__name__
        for gone in {SEARCH, ADS, sha256(NEW_VALUE)} - set(everything["keys_by_hash"]):
            assert gone not in (await cache.snapshot_with(gone)).keys_by_hash, step.__name__
    assert cache.follower.full_loads == 1


async def test_an_unknown_hash_is_asked_once_until_its_time_is_up(db: Database) -> None:
    clock = Clock()
    cache = await on_demand(db, clock)
    missing = unknown()
    for _ in range(50):
        assert missing not in (await cache.snapshot_with(missing)).keys_by_hash
    assert cache.queries == 1
    clock.now += 59
    await cache.snapshot_with(missing)
    assert cache.queries == 1
    clock.now += 2
    await cache.snapshot_with(missing)
    assert cache.queries == 2


async def test_a_key_created_with_a_hash_remembered_as_unknown_works_at_the_next_change(db: Database) -> None:
    cache = await on_demand(db)
    assert ADS not in (await cache.snapshot_with(ADS)).keys_by_hash
    new = sha256(NEW_VALUE)
    assert new not in (await cache.snapshot_with(new)).keys_by_hash
    for step in (create_customer, create_team, create_key, replace_key_value):
        await commit_change(db, step)
    await cache.follower.refresh()
    assert (await cache.snapshot_with(ADS)).keys_by_hash[ADS].id == "vk-ads"  # not after the miss_ttl
    assert (await cache.snapshot_with(new)).keys_by_hash[new].id == "vk-search"


async def test_a_flood_of_unknown_keys_reaches_the_database_in_a_few_batched_queries(db: Database) -> None:
    cache = await on_demand(db)
    hashes = [unknown() for _ in range(1000)]
    requests = [cache.snapshot_with(key_hash) for key_hash in hashes * 3] + [cache.snapshot_with(SEARCH)] * 10
    snapshots = await asyncio.gather(*requests)
    assert all(SEARCH not in s.keys_by_hash or s.keys_by_hash[SEARCH].id == "vk-search" for s in snapshots)
    assert SEARCH in snapshots[-1].keys_by_hash
    assert cache.hashes_looked_up == 1001  # each distinct hash once, however often it was asked
    assert cache.queries <= -(-1001 // LOOKUP_BATCH) + 1
    await asyncio.gather(*(cache.snapshot_with(key_hash) for key_hash in hashes))
    assert cache.hashes_looked_up == 1001  # remembered as unknown


async def test_beyond_the_pending_bound_a_lookup_is_refused_not_queued(db: Database) -> None:
    cache = await on_demand(db, max_pending=10)
    results = await asyncio.gather(*(cache.snapshot_with(unknown()) for _ in range(50)), return_exceptions=True)
    refused = [result for result in results if isinstance(result, KeyLookupBusy)]
    assert len(refused) == 40
    assert cache.hashes_looked_up == 10


async def test_rows_read_while_a_key_changed_serve_the_request_but_are_not_kept(db: Database) -> None:
    cache = await on_demand(db)
    follower = cache.follower
    epoch = follower.key_epoch
    await commit_change(db, create_customer)
    await follower.refresh()
    assert follower.key_epoch == epoch  # a customer change leaves the keys alone
    await commit_change(db, replace_key_value)
    await follower.refresh()
    assert follower.key_epoch == epoch + 1
    snapshot = follower.snapshot
    assert not follower.hold_keys({SEARCH: object()}, epoch, 1000)  # type: ignore[dict-item]
    assert follower.snapshot is snapshot


async def test_the_cache_holds_at_most_max_keys_and_a_dropped_key_loads_again(db: Database) -> None:
    cache = await on_demand(db, max_keys=2)
    follower = cache.follower
    await cache.snapshot_with(SEARCH)
    for step in (create_customer, create_team, create_key):
        await commit_change(db, step)
    await follower.refresh()
    await cache.snapshot_with(ADS)
    assert set(follower.snapshot.keys_by_hash) == {SEARCH, ADS}
    assert set(follower.policy.key_hashes) == {"vk-search", "vk-ads"}  # type: ignore[union-attr]
    new = unknown()
    assert follower.hold_keys({new: follower.snapshot.keys_by_hash[ADS]}, follower.key_epoch, 2)
    held = set(follower.snapshot.keys_by_hash)
    assert new in held and len(held) <= 2  # the keys just loaded stay; older ones make room
    dropped = ({SEARCH, ADS} - held).pop()
    assert follower.snapshot.keys_by_hash.get(dropped) is None
    assert (await cache.snapshot_with(dropped)).keys_by_hash[dropped].id in {"vk-search", "vk-ads"}  # loads again


async def test_a_failed_lookup_fails_the_requests_waiting_and_caches_nothing(db: Database) -> None:
    cache = await on_demand(db)
    broken = Database("sqlite:////nonexistent/folder/x.db")
    cache.follower.db = broken
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await cache.snapshot_with(SEARCH)
    finally:
        await broken.close()
    cache.follower.db = db
    assert cache.misses_cached == 0
    assert SEARCH in (await cache.snapshot_with(SEARCH)).keys_by_hash  # asked again, not remembered
