"""Config changes applied incrementally: after every kind of change (create, update,
delete of each entity), the policy a node brings up to date from the change log equals
a full load at the same version, without a full load; a gap in the log (missed,
pruned or unknown changes) or a database behind the node reloads everything."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from tests.store.example import SEARCH_VK, settings, sha256
from tollway.config.schema import BudgetConfig, ConcurrencyConfig, ProviderConfigEntry, RateLimitConfig
from tollway.governance.model import PolicySnapshot
from tollway.store import changes as change_log
from tollway.store.bootstrap import apply_config
from tollway.store.changes import Change, covers, record_changes
from tollway.store.database import Database
from tollway.store.entities import EntityWriter
from tollway.store.limit_rule_tables import LimitRuleRow
from tollway.store.policy_changes import apply_changes
from tollway.store.policy_sync import PolicyFollower
from tollway.store.snapshot import load_snapshot
from tollway.store.tables import ConfigChange, Customer, ModelConfig, Provider, Tag, Team, VirtualKey, new_id
from tollway.store.version import bump_version, lock_config

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
NEW_VALUE = "tw-new-value-0123456789abcdefghij"
ROTATED = "tw-rotated-value-0123456789abcdefgh"
ROTATED_AGAIN = "tw-rotated-again-0123456789abcdefg"
Write = Callable[[EntityWriter], None]


@asynccontextmanager
async def change_transaction(db: Database, write: Write, *, log: bool = True
                             ) -> AsyncIterator[tuple[AsyncSession, int, EntityWriter]]:
    """Run ``write`` as the management API does: locked, version bumped, changes recorded
    (unless ``log`` is off: a writer that does not know the log); (session, version, writer)
    inside the change's transaction, committed when the block ends."""
    def run(session: Session) -> EntityWriter:
        writer = EntityWriter(session, NOW, "test")
        write(writer)
        session.flush()
        return writer

    async with db.session() as session:
        await lock_config(session)
        writer = await session.run_sync(run)
        version = await bump_version(session)
        if log:
            await record_changes(session, version, writer.touched)
        yield session, version, writer


async def commit_change(db: Database, write: Write, *, log: bool = True) -> int:
    """`change_transaction`, committed; the change's version."""
    async with change_transaction(db, write, log=log) as (_, version, _):
        return version


def plain(snapshot: PolicySnapshot) -> dict[str, Any]:
    """The snapshot's content as plain dicts, to compare two snapshots."""
    return {name: dict(getattr(snapshot, name))
            for name in ("providers", "model_configs", "keys_by_hash", "teams", "customers", "tags", "limit_rules")} | {
        "version": snapshot.version}


async def full(db: Database) -> dict[str, Any]:
    return plain(await load_snapshot(db, enforce_virtual_keys=True))


# -- the changes, one of each kind ---------------------------------------------------------


def _key(writer: EntityWriter, key_id: str = "vk-search") -> VirtualKey:
    return writer.session.get(VirtualKey, key_id)  # type: ignore[return-value]


def create_customer(writer: EntityWriter) -> None:
    row, diff = writer.upsert(None, Customer, {"id": "globex"}, {"name": "Globex"})
    writer.sync_budget(row, BudgetConfig(max_limit=5, reset_duration="1d"), diff)
    writer.record(row, "customer", "globex", diff)


def create_team(writer: EntityWriter) -> None:
    row, diff = writer.upsert(None, Team, {"id": "ads"}, {"name": "Ads", "customer_id": "globex"})
    writer.sync_rate_limit(row, RateLimitConfig(request_max_limit=9, request_reset_duration="1m"), diff)
    writer.record(row, "team", "ads", diff)


def create_key(writer: EntityWriter) -> None:
    values = {"name": "ads key", "team_id": "ads", "allowed_models": [], "value_hash": sha256("tw-ads-key-value"),
              "value_prefix": "tw-ads-k"}
    row, diff = writer.upsert(None, VirtualKey, {"id": "vk-ads"}, values)
    writer.sync_provider_configs(row, [ProviderConfigEntry(provider="local", budget={"max_limit": 1,
                                                                                     "reset_duration": "1h"})], diff)
    writer.record(row, "virtual_key", "vk-ads", diff)


def block_key(writer: EntityWriter) -> None:
    row, diff = writer.upsert(_key(writer), VirtualKey, {}, {"is_active": False})
    writer.record(row, "virtual_key", "vk-search", diff)


def replace_key_value(writer: EntityWriter) -> None:
    row, diff = writer.upsert(_key(writer), VirtualKey, {}, {"value_hash": sha256(NEW_VALUE), "value_prefix": "tw-new-"})
    writer.record(row, "virtual_key", "vk-search", diff)


def rotate_key(value: str, grace: timedelta | None) -> Write:
    """A rotation to ``value`` whose replaced value keeps working for ``grace`` (None: not at all)."""
    def rotate(writer: EntityWriter) -> None:
        row = _key(writer)
        values = {"value_hash": sha256(value), "value_prefix": value[:8],
                  "previous_value_hash": row.value_hash if grace else None,
                  "previous_value_expires_at": NOW + grace if grace else None}
        row, diff = writer.upsert(row, VirtualKey, {}, values)
        writer.record(row, "virtual_key", "vk-search", diff)

    rotate.__name__ = f"rotate_key_to_{value}"
    return rotate


def expire_key(writer: EntityWriter) -> None:
    row, diff = writer.upsert(_key(writer), VirtualKey, {}, {"expires_at": NOW + timedelta(days=1)})
    writer.record(row, "virtual_key", "vk-search", diff)


def move_key_to_customer_and_drop_its_provider_configs(writer: EntityWriter) -> None:
    row = _key(writer)
    row, diff = writer.upsert(row, VirtualKey, {}, {"team_id": None, "customer_id": "globex"})
    writer.sync_provider_configs(row, [], diff)
    writer.record(row, "virtual_key", "vk-search", diff)


def change_team_budget(writer: EntityWriter) -> None:
    row = writer.session.get(Team, "search")
    diff: dict[str, Any] = {}
    writer.sync_budget(row, BudgetConfig(max_limit=7, reset_duration="1w"), diff)
    writer.record(row, "team", "search", diff)


def shadow_the_team_budget_and_key_limits(writer: EntityWriter) -> None:
    team = writer.session.get(Team, "search")
    diff: dict[str, Any] = {}
    writer.sync_budget(team, BudgetConfig(max_limit=7, reset_duration="1w", mode="shadow"), diff)
    writer.record(team, "team", "search", diff)
    key, diff = _key(writer, "vk-ads"), {}
    writer.sync_rate_limit(key, RateLimitConfig(request_max_limit=5, request_reset_duration="1m", mode="shadow"), diff)
    writer.sync_concurrency(key, ConcurrencyConfig(max_in_flight=2, mode="shadow"), diff)
    writer.record(key, "virtual_key", "vk-ads", diff)


def drop_provider_limits(writer: EntityWriter) -> None:
    row = writer.session.get(Provider, "openai")
    diff: dict[str, Any] = {}
    writer.sync_budget(row, None, diff)
    writer.sync_rate_limit(row, None, diff)
    writer.record(row, "provider", "openai", diff)


def limit_a_provider(writer: EntityWriter) -> None:
    row = writer.session.get(Provider, "anthropic")
    diff: dict[str, Any] = {}
    writer.sync_budget(row, BudgetConfig(max_limit=3, reset_duration="1d"), diff)
    writer.record(row, "provider", "anthropic", diff)


def rename_model_config(writer: EntityWriter) -> None:
    row = writer.session.scalars(select(ModelConfig).where(ModelConfig.provider == "local")).one()
    row, diff = writer.upsert(row, ModelConfig, {}, {"model_name": "gpt-4o"})
    writer.record(row, "model_config", row.id, diff)


def create_model_config(writer: EntityWriter) -> None:
    ident = new_id()
    row, diff = writer.upsert(None, ModelConfig, {"id": ident, "model_name": "o3", "provider": "openai"}, {})
    writer.sync_budget(row, BudgetConfig(max_limit=2, reset_duration="1d"), diff)
    writer.record(row, "model_config", ident, diff)


def delete_model_configs(writer: EntityWriter) -> None:
    for row in writer.session.scalars(select(ModelConfig)):
        writer.delete(row, "model_config", row.id, {})


def reset_a_provider_config(writer: EntityWriter) -> None:
    writer.audit("reset", "provider_config", "vk-ads/local", {}, {})


def delete_keys_team_and_customer(writer: EntityWriter) -> None:
    for key_id in ("vk-ads", "vk-search"):
        writer.delete(_key(writer, key_id), "virtual_key", key_id, {})
    writer.session.flush()
    writer.delete(writer.session.get(Team, "ads"), "team", "ads", {})
    writer.session.flush()
    writer.delete(writer.session.get(Customer, "globex"), "customer", "globex", {})


def create_tags(writer: EntityWriter) -> None:
    row, diff = writer.upsert(None, Tag, {"id": "support"}, {})
    writer.sync_budget(row, BudgetConfig(max_limit=2, reset_duration="1d"), diff)
    writer.record(row, "tag", "support", diff)
    bare, diff = writer.upsert(None, Tag, {"id": "bare"}, {})  # no limits: left out of the snapshot
    writer.record(bare, "tag", "bare", diff)


def tag_a_key(writer: EntityWriter) -> None:
    row, diff = writer.upsert(_key(writer, "vk-ads"), VirtualKey, {}, {"allowed_tags": ["support"],
                                                                       "forced_tags": ["cc"]})
    writer.record(row, "virtual_key", "vk-ads", diff)


def change_then_drop_tag_limits(writer: EntityWriter) -> None:
    row = writer.session.get(Tag, "support")
    diff: dict[str, Any] = {}
    writer.sync_budget(row, None, diff)
    writer.sync_concurrency(row, ConcurrencyConfig(max_in_flight=3), diff)
    writer.record(row, "tag", "support", diff)
    writer.delete(writer.session.get(Tag, "bare"), "tag", "bare", {})


def create_limit_rules(writer: EntityWriter) -> None:
    row, diff = writer.upsert(None, LimitRuleRow, {"id": "ads-gpt"}, {"match": {"team": ["ads"], "model": ["GPT-4o"]}})
    writer.sync_budget(row, BudgetConfig(max_limit=3, reset_duration="1d"), diff)
    writer.record(row, "limit_rule", "ads-gpt", diff)
    row, diff = writer.upsert(None, LimitRuleRow, {"id": "ads-users"},
                              {"match": {"team": ["ads"]}, "per": ["end_user"], "when_missing": "deny"})
    writer.sync_rate_limit(row, RateLimitConfig(request_max_limit=9, request_reset_duration="1m"), diff)
    writer.record(row, "limit_rule", "ads-users", diff)


def change_then_drop_rule_limits(writer: EntityWriter) -> None:
    row = writer.session.get(LimitRuleRow, "ads-gpt")
    diff: dict[str, Any] = {}
    writer.upsert(row, LimitRuleRow, {}, {"match": {"model": ["gpt-4o-mini"]}})
    writer.sync_concurrency(row, ConcurrencyConfig(max_in_flight=3), diff)
    writer.record(row, "limit_rule", "ads-gpt", diff)
    users = writer.session.get(LimitRuleRow, "ads-users")
    writer.sync_rate_limit(users, None, diff)  # no limit left: out of the snapshot
    writer.record(users, "limit_rule", "ads-users", diff)


def delete_limit_rule(writer: EntityWriter) -> None:
    writer.delete(writer.session.get(LimitRuleRow, "ads-gpt"), "limit_rule", "ads-gpt", {})


def delete_tag(writer: EntityWriter) -> None:
    writer.delete(writer.session.get(Tag, "support"), "tag", "support", {})


STEPS: list[Write] = [
    create_customer, create_team, create_key, create_tags, tag_a_key, change_then_drop_tag_limits,
    create_limit_rules, change_then_drop_rule_limits, delete_limit_rule, block_key,
    replace_key_value,
    rotate_key(ROTATED, timedelta(hours=1)), expire_key, rotate_key(ROTATED_AGAIN, timedelta(minutes=5)),
    rotate_key(ROTATED_AGAIN + "-x", None), move_key_to_customer_and_drop_its_provider_configs, change_team_budget,
    shadow_the_team_budget_and_key_limits,
    drop_provider_limits, limit_a_provider,
    rename_model_config, create_model_config, reset_a_provider_config, delete_model_configs,
    delete_tag, delete_keys_team_and_customer,
]


async def following(db: Database) -> PolicyFollower:
    await apply_config(db, settings())
    follower = PolicyFollower(db, enforce_virtual_keys=True)
    await follower.reload()
    return follower


# -- tests -------------------------------------------------------------------------------------


async def test_every_kind_of_change_is_applied_incrementally_and_equals_a_full_load(db: Database) -> None:
    follower = await following(db)
    for step in STEPS:
        version = await commit_change(db, step)
        snapshot = await follower.refresh()
        assert snapshot.version == version, step.__name__
        assert plain(snapshot) == await full(db), step.__name__
    assert follower.full_loads == 1  # the start; everything after it incrementally
    assert follower.changes_applied >= len(STEPS)


async def test_a_mode_switched_to_shadow_reaches_a_following_node_incrementally(db: Database) -> None:
    follower = await following(db)
    for step in STEPS[:STEPS.index(shadow_the_team_budget_and_key_limits) + 1]:
        await commit_change(db, step)
    snapshot = await follower.refresh()
    key = next(key for key in snapshot.keys_by_hash.values() if key.id == "vk-ads")
    assert snapshot.teams["search"].limits.budget.shadow
    assert key.limits.rate_limit.shadow and key.limits.concurrency.shadow
    assert follower.full_loads == 1


async def test_several_versions_behind_are_applied_in_one_go(db: Database) -> None:
    follower = await following(db)
    for step in STEPS[:8]:
        await commit_change(db, step)
    await follower.refresh()
    assert plain(follower.snapshot) == await full(db)
    assert follower.full_loads == 1


async def test_a_replaced_or_deleted_key_value_stops_working_at_once(db: Database) -> None:
    follower = await following(db)
    held = follower.snapshot
    await commit_change(db, replace_key_value)
    snapshot = await follower.refresh()
    assert sha256(SEARCH_VK) not in snapshot.keys_by_hash
    assert snapshot.keys_by_hash[sha256(NEW_VALUE)].id == "vk-search"
    assert held.keys_by_hash[sha256(SEARCH_VK)].id == "vk-search"  # a reader's snapshot never changes


async def test_a_rotation_keeps_the_replaced_value_for_its_grace_and_a_second_one_drops_the_oldest(db: Database) -> None:
    follower = await following(db)
    await commit_change(db, rotate_key(ROTATED, timedelta(hours=1)))
    snapshot = await follower.refresh()
    current, retired = snapshot.keys_by_hash[sha256(ROTATED)], snapshot.keys_by_hash[sha256(SEARCH_VK)]
    assert (current.id, current.retired_value, current.previous_hash) == ("vk-search", False, sha256(SEARCH_VK))
    assert (retired.id, retired.retired_value) == ("vk-search", True)
    assert retired.expires_at_ms == int((NOW + timedelta(hours=1)).timestamp() * 1000)
    assert retired.limits == current.limits  # one key: the same counters whichever value is presented
    await commit_change(db, expire_key)  # the key's expiry bounds its replaced value too
    snapshot = await follower.refresh()
    assert snapshot.keys_by_hash[sha256(SEARCH_VK)].expires_at_ms == int((NOW + timedelta(hours=1)).timestamp() * 1000)
    assert snapshot.keys_by_hash[sha256(ROTATED)].expires_at_ms == int((NOW + timedelta(days=1)).timestamp() * 1000)
    await commit_change(db, rotate_key(ROTATED_AGAIN, timedelta(minutes=5)))
    snapshot = await follower.refresh()
    assert sha256(SEARCH_VK) not in snapshot.keys_by_hash  # the oldest value stops at once
    assert snapshot.keys_by_hash[sha256(ROTATED)].retired_value
    assert not snapshot.keys_by_hash[sha256(ROTATED_AGAIN)].retired_value
    await commit_change(db, rotate_key(NEW_VALUE, None))
    snapshot = await follower.refresh()
    assert {key.id for key in snapshot.keys_by_hash.values()} == {"vk-search"}
    assert [digest for digest, key in snapshot.keys_by_hash.items() if key.id == "vk-search"] == [sha256(NEW_VALUE)]
    assert plain(snapshot) == await full(db)
    assert follower.full_loads == 1


async def test_a_version_missing_from_the_log_reloads_everything(db: Database) -> None:
    follower = await following(db)
    await commit_change(db, create_customer, log=False)  # e.g. written by a release without the log
    await commit_change(db, create_team)
    snapshot = await follower.refresh()
    assert follower.full_loads == 2
    assert "ads" in snapshot.teams and "globex" in snapshot.customers
    assert plain(snapshot) == await full(db)


async def test_a_node_further_behind_than_the_kept_log_reloads_and_the_log_stays_bounded(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(change_log, "KEPT_VERSIONS", 3)
    monkeypatch.setattr(change_log, "PRUNE_EVERY", 2)
    follower = await following(db)
    oldest_seen = []
    for step in STEPS[:6]:
        version = await commit_change(db, step)
        async with db.session() as session:
            oldest_seen.append((version, await session.scalar(select(func.min(ConfigChange.version)))))
    for version, oldest in oldest_seen:
        assert version - oldest < 3 + 2  # the last three versions, and at most two more
        if version % 2 == 0 and version > 3:
            assert oldest == version - 2  # pruned to the last three
    await follower.refresh()
    assert follower.full_loads == 2
    assert plain(follower.snapshot) == await full(db)
    await commit_change(db, STEPS[6])
    await follower.refresh()
    assert follower.full_loads == 2  # back within the log: incremental again


async def test_a_change_of_an_unknown_kind_reloads_everything(db: Database) -> None:
    follower = await following(db)
    await commit_change(db, lambda writer: writer.audit("create", "admin_token", "t1", None, {}))
    await follower.refresh()
    assert follower.full_loads == 2


async def test_a_database_behind_the_node_reloads_everything(db: Database) -> None:
    follower = await following(db)
    await commit_change(db, create_customer)
    await follower.refresh()
    follower.policy = type(follower.policy)(  # as if the node had seen a version the database no longer has
        PolicySnapshot(version=follower.snapshot.version + 5), follower.policy.key_hashes,  # type: ignore[union-attr]
        follower.policy.model_config_keys)  # type: ignore[union-attr]
    snapshot = await follower.refresh()
    assert follower.full_loads == 2
    assert plain(snapshot) == await full(db)


async def test_changes_applied_twice_or_out_of_order_converge_on_the_stored_state(db: Database) -> None:
    """Entities are read as they are now: replaying older changes, in any order, is harmless."""
    follower = await following(db)
    start = follower.snapshot.version
    for step in STEPS[:6]:
        await commit_change(db, step)
    await follower.refresh()
    async with db.session() as session:
        logged = await change_log.changes_since(session, start, follower.snapshot.version)
        assert logged is not None
        replayed = await apply_changes(session, follower.policy, list(reversed(logged)),  # type: ignore[arg-type]
                                       follower.snapshot.version)
    assert plain(replayed.snapshot) == await full(db)


def test_the_log_covers_a_range_only_when_every_version_has_a_change() -> None:
    def log(*versions: int) -> list[Change]:
        return [Change(v, "team", "t") for v in versions]

    assert covers(log(4, 5, 5, 6), 3, 6)
    assert covers([], 6, 6)
    assert not covers(log(4, 6), 3, 6)  # 5 missed
    assert not covers(log(5, 6), 3, 6)  # 4 pruned


async def test_tag_limits_and_key_tags_reach_a_following_node_incrementally(db: Database) -> None:
    follower = await following(db)
    for step in (create_customer, create_team, create_key, create_tags, tag_a_key):
        await commit_change(db, step)
    snapshot = await follower.refresh()
    assert set(snapshot.tags) == {"support"}  # "bare" has no limits
    assert snapshot.tags["support"].budget is not None
    key = next(key for key in snapshot.keys_by_hash.values() if key.id == "vk-ads")
    assert (key.allowed_tags, key.forced_tags) == (frozenset({"support"}), ("cc",))
    await commit_change(db, change_then_drop_tag_limits)
    snapshot = await follower.refresh()
    assert snapshot.tags["support"].budget is None and snapshot.tags["support"].concurrency.max_in_flight == 3
    await commit_change(db, delete_tag)
    assert dict((await follower.refresh()).tags) == {}
    assert follower.full_loads == 1


async def test_limit_rules_reach_a_following_node_normalised(db: Database) -> None:
    follower = await following(db)
    for step in (create_customer, create_team, create_limit_rules):
        await commit_change(db, step)
    rules = (await follower.refresh()).limit_rules
    assert set(rules) == {"ads-gpt", "ads-users"} and follower.full_loads == 1
    assert rules["ads-gpt"].match == {"team": frozenset({"ads"}), "model": frozenset({"gpt-4o"})}  # keyed as requests
    assert rules["ads-users"].per == ("end_user",) and rules["ads-users"].when_missing == "deny"
    await commit_change(db, change_then_drop_rule_limits)
    rules = (await follower.refresh()).limit_rules
    assert set(rules) == {"ads-gpt"} and rules["ads-gpt"].limits.concurrency.max_in_flight == 3
