"""Loading the config file into the store: creates, updates, keeps usage, never duplicates."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.store.example import SEARCH_VK, example_raw, settings, sha256
from tollway.governance.counters.base import CounterState
from tollway.governance.model import in_flight_counter
from tollway.store.bootstrap import BootstrapError, apply_config
from tollway.store.database import Database
from tollway.store.entities import EntityError, EntityWriter
from tollway.store.limit_rule_tables import LimitRuleRow
from tollway.store.snapshot import load_snapshot
from tollway.store.tables import (
    AuditEntry,
    Base,
    Budget,
    ConcurrencyLimit,
    Customer,
    ModelConfig,
    Provider,
    RateLimit,
    Tag,
    Team,
    VirtualKey,
    VKProviderConfig,
)
from tollway.store.usage import load_counters, save_counters
from tollway.store.version import config_version

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(hours=1)
CONFIG_TABLES = ("budgets", "rate_limits", "customers", "teams", "virtual_keys", "vk_provider_configs",
                 "providers", "model_configs", "audit_log", "config_version", "retired_key_values", "tags")


async def _dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every config table, sorted: equal dumps mean nothing was written."""
    async with db.session() as session:
        return {
            name: sorted(tuple(map(repr, row)) for row in await session.execute(select(Base.metadata.tables[name])))
            for name in CONFIG_TABLES
        }


async def _get(db: Database, entity: type, ident: Any) -> Any:
    async with db.session() as session:
        return await session.get(entity, ident)


async def _count(db: Database, entity: type) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(entity)) or 0)


async def test_spec_example_creates_every_entity(db: Database) -> None:
    generated = await apply_config(db, settings(), now=T0)

    assert generated == []
    assert await _count(db, Customer) == await _count(db, Team) == await _count(db, VirtualKey) == 1
    assert await _count(db, Provider) == 3
    assert await _count(db, ModelConfig) == 2
    assert await _count(db, VKProviderConfig) == 1
    # acme, search, vk-search, openai, the any-provider model config
    assert await _count(db, Budget) == 5
    # openai, vk-search, its local provider config, the local model config
    assert await _count(db, RateLimit) == 4
    key = await _get(db, VirtualKey, "vk-search")
    assert (key.value_hash, key.value_prefix) == (sha256(SEARCH_VK), SEARCH_VK[:8])
    assert (key.team_id, key.customer_id, key.allowed_models) == ("search", None, ["gpt-4o-mini"])
    assert (key.created_at, key.updated_at) == (T0, T0)
    team = await _get(db, Team, "search")
    assert team.customer_id == "acme"
    budget = await _get(db, Budget, team.budget_id)
    assert (budget.max_limit, budget.reset_duration, budget.current_usage, budget.last_reset) == (
        Decimal("100"), "1M", Decimal(0), T0)
    openai = await _get(db, Provider, "openai")
    assert openai.settings["keys"] == [{"id": "key-0", "weight": 1.0, "models": []}]
    assert "sk-openai-secret" not in repr(await _dump(db))  # no secret is stored anywhere
    assert await config_version(db) == 1
    assert await _count(db, AuditEntry) == 3 + 1 + 1 + 1 + 2


async def test_applying_the_same_file_twice_writes_nothing_and_keeps_usage(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    counters = await load_counters(db)
    used = {key: CounterState(used=1_234_567 + i, last_reset_ms=state.last_reset_ms + 1_000)
            for i, (key, state) in enumerate(sorted(counters.items()))}
    await save_counters(db, used)
    before = await _dump(db)

    assert await apply_config(db, settings(), now=T1) == []

    assert await _dump(db) == before
    assert await load_counters(db) == used
    assert await config_version(db) == 1


async def test_changed_limits_are_updated_and_usage_is_kept(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    key = await _get(db, VirtualKey, "vk-search")
    await save_counters(db, {f"b:{key.budget_id}": CounterState(2_500_000_000, 1_700_000_000_000),
                             f"rr:{key.rate_limit_id}": CounterState(42, 1_700_000_000_123)})
    raw = example_raw()
    vk = raw["governance"]["virtual_keys"][0]
    vk["budget"]["max_limit"] = "12.5"
    vk["rate_limit"]["request_max_limit"] = 90
    vk["name"] = "search service v2"

    await apply_config(db, settings(raw), now=T1)

    updated = await _get(db, VirtualKey, "vk-search")
    assert (updated.budget_id, updated.rate_limit_id) == (key.budget_id, key.rate_limit_id)
    assert (updated.name, updated.created_at, updated.updated_at) == ("search service v2", T0, T1)
    budget = await _get(db, Budget, key.budget_id)
    assert (budget.max_limit, budget.current_usage) == (Decimal("12.5"), Decimal("2.5"))
    assert budget.last_reset == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    rate_limit = await _get(db, RateLimit, key.rate_limit_id)
    assert (rate_limit.request_max_limit, rate_limit.request_current_usage, rate_limit.token_max_limit) == (90, 42, 100000)
    assert await config_version(db) == 2
    team = await _get(db, Team, "search")
    assert team.updated_at == T0  # untouched entities keep their timestamps
    async with db.session() as session:
        audit = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "update"))).one()
    assert (audit.entity_type, audit.entity_id, audit.actor) == ("virtual_key", "vk-search", "config-file")
    assert audit.before == {"name": "search service", "budget.max_limit": "10.000000000",
                            "rate_limit.request_max_limit": 60}
    assert audit.after == {"name": "search service v2", "budget.max_limit": "12.500000000",
                           "rate_limit.request_max_limit": 90}


async def test_a_budget_the_file_drops_or_leaves_out_is_removed_and_retained_with_its_usage(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    team = await _get(db, Team, "search")
    key = await _get(db, VirtualKey, "vk-search")
    customer = await _get(db, Customer, "acme")
    raw = example_raw()
    raw["governance"]["teams"][0]["budget"] = None
    raw["governance"]["virtual_keys"][0]["rate_limit"] = None
    del raw["governance"]["customers"][0]["budget"]  # the file is the truth: not stated means none

    await apply_config(db, settings(raw), now=T1)

    assert (await _get(db, Team, "search")).budget_id is None
    assert (await _get(db, Budget, team.budget_id)).retained_for == "team/search"
    assert (await _get(db, VirtualKey, "vk-search")).rate_limit_id is None
    assert (await _get(db, RateLimit, key.rate_limit_id)).retained_for == "virtual_key/vk-search"
    assert (await _get(db, Customer, "acme")).budget_id is None
    assert (await _get(db, Budget, customer.budget_id)).retained_for == "customer/acme"
    assert await _count(db, Budget) == 5  # usage rows are never deleted


async def test_provider_configs_follow_the_file(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    async with db.session() as session:
        local = (await session.scalars(select(VKProviderConfig))).one()
    raw = example_raw()
    raw["governance"]["virtual_keys"][0]["provider_configs"] = [
        {"provider": "openai", "weight": 2, "allowed_models": ["gpt-4o"],
         "budget": {"max_limit": 1, "reset_duration": "1d"}}
    ]

    await apply_config(db, settings(raw), now=T1)

    async with db.session() as session:
        config = (await session.scalars(select(VKProviderConfig))).one()
    assert (config.provider, config.weight, config.allowed_models) == ("openai", 2.0, ["gpt-4o"])
    assert config.budget_id is not None and config.rate_limit_id is None
    assert (await _get(db, RateLimit, local.rate_limit_id)).retained_for == "virtual_key/vk-search/provider/local"


async def test_a_key_without_value_gets_one_generated_only_when_created(db: Database) -> None:
    raw = example_raw()
    del raw["governance"]["virtual_keys"][0]["value"]

    [generated] = await apply_config(db, settings(raw), now=T0)

    assert (generated.id, generated.name) == ("vk-search", "search service")
    assert generated.value.startswith("tw-") and len(generated.value) >= 3 + 32
    assert generated.value not in repr(generated)
    key = await _get(db, VirtualKey, "vk-search")
    assert (key.value_hash, key.value_prefix) == (sha256(generated.value), generated.value[:8])
    assert await apply_config(db, settings(raw), now=T1) == []
    assert (await _get(db, VirtualKey, "vk-search")).value_hash == key.value_hash


async def test_a_changed_value_in_the_file_replaces_the_stored_hash(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    raw = example_raw()
    raw["governance"]["virtual_keys"][0]["value"] = "tw-rotated-0123456789abcdef"

    await apply_config(db, settings(raw), now=T1)

    key = await _get(db, VirtualKey, "vk-search")
    assert (key.value_hash, key.value_prefix) == (sha256("tw-rotated-0123456789abcdef"), "tw-rotat")
    assert await config_version(db) == 2


async def test_api_managed_entities_are_kept_and_config_managed_ones_the_file_drops_are_deleted(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    async with db.session() as session:
        session.add(Customer(id="made-by-api", name="API", budget=Budget(max_limit=Decimal(5), reset_duration="1d")))
    raw = example_raw()
    dropped = raw["governance"]["model_configs"].pop()

    await apply_config(db, settings(raw), now=T1)

    assert (await _get(db, Customer, "made-by-api")).budget_id is not None
    assert await _count(db, ModelConfig) == 1
    async with db.session() as session:
        retained = (await session.scalars(select(Budget).where(Budget.retained_for.is_not(None)))).one()
    assert retained.retained_for == f"model_config/*/{dropped['model_name']}"


async def test_a_value_already_used_by_another_key_is_rejected_and_nothing_is_written(db: Database) -> None:
    async with db.session() as session:
        session.add(VirtualKey(id="other", name="other", value_hash=sha256(SEARCH_VK), value_prefix=SEARCH_VK[:8]))
    with pytest.raises(BootstrapError, match="'vk-search'.*already used by virtual key 'other'"):
        await apply_config(db, settings(), now=T0)
    assert await _count(db, Customer) == 0
    assert await config_version(db) == 0


async def test_deleting_an_owner_retains_its_budgets_and_rate_limits(db: Database) -> None:
    await apply_config(db, settings(), now=T0)

    def delete_key(session: Session) -> None:
        key = session.get(VirtualKey, "vk-search")
        EntityWriter(session, T1, "test").delete(key, "virtual_key", key.id, {})

    async with db.session() as session:
        await session.run_sync(delete_key)
    assert await _count(db, VKProviderConfig) == 0
    assert await _count(db, Budget) == 5 and await _count(db, RateLimit) == 4  # usage rows stay
    async with db.session() as session:
        retained = sorted(await session.scalars(sa.text(
            "SELECT retained_for FROM budgets WHERE retained_for IS NOT NULL UNION ALL "
            "SELECT retained_for FROM rate_limits WHERE retained_for IS NOT NULL")))
        unowned = await session.scalar(sa.text(
            "SELECT count(*) FROM budgets WHERE retained_for IS NULL AND id NOT IN ("
            "SELECT budget_id FROM customers WHERE budget_id IS NOT NULL "
            "UNION SELECT budget_id FROM teams WHERE budget_id IS NOT NULL "
            "UNION SELECT budget_id FROM providers WHERE budget_id IS NOT NULL "
            "UNION SELECT budget_id FROM model_configs WHERE budget_id IS NOT NULL)"))
    assert retained == ["virtual_key/vk-search", "virtual_key/vk-search", "virtual_key/vk-search/provider/local"]
    assert unowned == 0


async def test_nodes_bootstrapping_at_the_same_time_wait_for_each_other(db: Database) -> None:
    other = Database(db.url)
    raw = example_raw()
    del raw["governance"]["virtual_keys"][0]["value"]

    results = await asyncio.gather(apply_config(db, settings(raw), now=T0), apply_config(other, settings(raw), now=T0))

    await other.close()
    assert sorted(len(generated) for generated in results) == [0, 1]  # generated once, by the first
    assert await _count(db, Customer) == await _count(db, VirtualKey) == 1
    assert await config_version(db) == 1


async def test_concurrency_limits_from_the_file_reach_the_snapshot_and_follow_the_file(db: Database) -> None:
    raw = example_raw()
    raw["providers"]["openai"]["concurrency"] = {"max_in_flight": 100}
    gov = raw["governance"]
    gov["customers"][0]["concurrency"] = {"max_in_flight": 50}
    gov["teams"][0]["concurrency"] = {"max_in_flight": 20, "queue_timeout_ms": 500}
    gov["virtual_keys"][0]["concurrency"] = {"max_in_flight": 5, "queue_timeout_ms": 2000}
    gov["virtual_keys"][0]["provider_configs"][0]["concurrency"] = {"max_in_flight": 3}
    gov["model_configs"][0]["concurrency"] = {"max_in_flight": 8}
    await apply_config(db, settings(raw), now=T0)
    assert await apply_config(db, settings(raw), now=T1) == [] and await config_version(db) == 1  # idempotent

    snap = await load_snapshot(db, enforce_virtual_keys=False)
    key = snap.keys_by_hash[sha256(SEARCH_VK)]
    limits = {
        "provider": snap.providers["openai"].concurrency, "customer": snap.customers["acme"].concurrency,
        "team": snap.teams["search"].limits.concurrency, "key": key.limits.concurrency,
        "provider config": key.provider_configs["local"].limits.concurrency,
        "model": snap.model_configs[("gpt-4o-mini", "local")].concurrency,
    }
    assert {name: (c.max_in_flight, c.queue_timeout_ms) for name, c in limits.items()} == {
        "provider": (100, 0), "customer": (50, 0), "team": (20, 500), "key": (5, 2000),
        "provider config": (3, 0), "model": (8, 0)}
    assert snap.model_configs[("gpt-4o-mini", None)].concurrency is None
    stored = await load_counters(db)
    assert not any(in_flight_counter(c.id) in stored for c in limits.values())  # no usage to flush or load

    gov["virtual_keys"][0]["concurrency"] = {"max_in_flight": 6}
    gov["teams"][0]["concurrency"] = None
    await apply_config(db, settings(raw), now=T1)
    snap = await load_snapshot(db, enforce_virtual_keys=False)
    changed = snap.keys_by_hash[sha256(SEARCH_VK)].limits.concurrency
    assert (changed.id, changed.max_in_flight, changed.queue_timeout_ms) == (limits["key"].id, 6, 0)
    assert snap.teams["search"].limits.concurrency is None
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ConcurrencyLimit)) == 5  # the team's is gone


@pytest.mark.parametrize(("concurrency", "fragment"), [
    ({"max_in_flight": 0}, "greater than 0"),
    ({"max_in_flight": 5, "queue_timeout_ms": -1}, "greater than or equal to 0"),
    ({"queue_timeout_ms": 10}, "max_in_flight"),
])
def test_a_bad_concurrency_limit_in_the_file_is_refused_naming_it(concurrency: dict, fragment: str) -> None:
    raw = example_raw()
    raw["governance"]["teams"][0]["concurrency"] = concurrency
    with pytest.raises(Exception) as refused:
        settings(raw)
    assert "concurrency" in str(refused.value) and fragment in str(refused.value)


async def test_shadow_modes_from_the_file_reach_the_snapshot_and_follow_the_file(db: Database) -> None:
    raw = example_raw()
    gov = raw["governance"]
    gov["teams"][0]["budget"]["mode"] = "shadow"
    gov["virtual_keys"][0]["rate_limit"]["mode"] = "shadow"
    gov["virtual_keys"][0]["concurrency"] = {"max_in_flight": 2, "queue_timeout_ms": 100, "mode": "shadow"}
    raw["providers"]["openai"]["budget"]["mode"] = "shadow"
    await apply_config(db, settings(raw), now=T0)
    assert await apply_config(db, settings(raw), now=T1) == []  # idempotent

    snap = await load_snapshot(db, enforce_virtual_keys=False)
    key = snap.keys_by_hash[sha256(SEARCH_VK)]
    assert snap.teams["search"].limits.budget.shadow and snap.providers["openai"].budget.shadow
    assert key.limits.rate_limit.shadow and key.limits.concurrency.shadow
    assert not key.limits.budget.shadow and not snap.customers["acme"].budget.shadow  # enforce: the default

    gov["teams"][0]["budget"]["mode"] = "enforce"
    await apply_config(db, settings(raw), now=T1)
    snap = await load_snapshot(db, enforce_virtual_keys=False)
    assert not snap.teams["search"].limits.budget.shadow


def test_an_unknown_mode_in_the_file_is_refused_naming_it() -> None:
    raw = example_raw()
    raw["governance"]["teams"][0]["budget"]["mode"] = "dry-run"
    with pytest.raises(Exception) as refused:
        settings(raw)
    assert "budget.mode" in str(refused.value) and "'enforce' or 'shadow'" in str(refused.value)


async def test_tags_from_the_file_reach_the_snapshot_and_follow_the_file(db: Database) -> None:
    raw = example_raw()
    gov = raw["governance"]
    gov["tags"] = [{"name": "Support", "budget": {"max_limit": 3, "reset_duration": "1d"}},
                   {"name": "search", "rate_limit": {"request_max_limit": 9, "request_reset_duration": "1m"}}]
    gov["virtual_keys"][0] |= {"allowed_tags": ["Support", "search"], "forced_tags": ["search"]}
    await apply_config(db, settings(raw), now=T0)
    assert await apply_config(db, settings(raw), now=T1) == [] and await config_version(db) == 1  # idempotent

    snap = await load_snapshot(db, enforce_virtual_keys=False)
    assert set(snap.tags) == {"support", "search"}
    assert snap.tags["support"].scope.level.value == "tag" and snap.tags["support"].budget is not None
    key = snap.keys_by_hash[sha256(SEARCH_VK)]
    assert (key.allowed_tags, key.forced_tags) == (frozenset({"support", "search"}), ("search",))
    budget_id = snap.tags["support"].budget.id
    assert (await _get(db, Tag, "support")).managed_by == "config"

    gov["tags"] = [gov["tags"][0]]  # "search" leaves the file: deleted, its rate limit retained
    await apply_config(db, settings(raw), now=T1)
    snap = await load_snapshot(db, enforce_virtual_keys=False)
    assert set(snap.tags) == {"support"} and snap.tags["support"].budget.id == budget_id
    assert await _get(db, Tag, "search") is None
    async with db.session() as session:
        retained = await session.scalar(select(func.count()).select_from(RateLimit).where(
            RateLimit.retained_for == "tag/search"))
    assert retained == 1


@pytest.mark.parametrize(("tags", "fragment"), [
    ([{"name": "a b"}], "characters"),
    ([{"name": "dup"}, {"name": "DUP"}], "twice"),
    ([{"name": "ok", "budget": {"max_limit": 0, "reset_duration": "1d"}}], "greater than 0"),
])
def test_a_bad_tag_in_the_file_is_refused_naming_it(tags: list, fragment: str) -> None:
    raw = example_raw()
    raw["governance"]["tags"] = tags
    with pytest.raises(Exception) as refused:
        settings(raw)
    assert "tags" in str(refused.value) and fragment in str(refused.value)


async def test_limit_rules_from_the_file_reach_the_snapshot_and_follow_the_file(db: Database) -> None:
    raw = example_raw()
    team = raw["governance"]["teams"][0]["id"]
    raw["governance"]["limits"] = [
        {"name": "team-gpt", "match": {"team": team, "model": "GPT-4o"}, "budget": {"max_limit": 3, "reset_duration": "1d"}},
        {"name": "users", "match": {"team": team}, "per": "end_user", "when_missing": "deny",
         "rate_limit": {"request_max_limit": 9, "request_reset_duration": "1m"}}]
    await apply_config(db, settings(raw), now=T0)
    assert await apply_config(db, settings(raw), now=T1) == [] and await config_version(db) == 1  # idempotent
    snap = await load_snapshot(db, enforce_virtual_keys=False)
    assert set(snap.limit_rules) == {"team-gpt", "users"}
    assert snap.limit_rules["team-gpt"].match["model"] == frozenset({"gpt-4o"})
    assert (await _get(db, LimitRuleRow, "users")).managed_by == "config"

    raw["governance"]["limits"] = raw["governance"]["limits"][:1]  # "users" leaves the file: deleted, usage retained
    await apply_config(db, settings(raw), now=T1)
    snap = await load_snapshot(db, enforce_virtual_keys=False)
    assert set(snap.limit_rules) == {"team-gpt"} and await _get(db, LimitRuleRow, "users") is None
    async with db.session() as session:
        retained = await session.scalar(select(func.count()).select_from(RateLimit).where(
            RateLimit.retained_for == "limit/users"))
    assert retained == 1


async def test_a_file_rule_naming_a_team_that_does_not_exist_is_refused_naming_it(db: Database) -> None:
    raw = example_raw()
    raw["governance"]["limits"] = [{"name": "r", "match": {"team": "nobody"}, "budget": {"max_limit": 1,
                                                                                       "reset_duration": "1d"}}]
    with pytest.raises(EntityError, match=r"governance.limits 'r': match.team names team 'nobody'"):
        await apply_config(db, settings(raw), now=T0)
    assert await config_version(db) == 0  # nothing written


@pytest.mark.parametrize(("rules", "fragment"), [
    ([{"name": "r", "match": {}, "budget": {"max_limit": 1, "reset_duration": "1d"}}], "match"),
    ([{"name": "r", "match": {"provider": "openai"}}], "needs a budget"),
    ([{"name": "r", "match": {"provider": "openai"}, "budget": {"max_limit": 1, "reset_duration": "1d"}}] * 2, "twice"),
])
def test_a_bad_rule_in_the_file_is_refused_naming_it(rules: list, fragment: str) -> None:
    raw = example_raw()
    raw["governance"]["limits"] = rules
    with pytest.raises(Exception) as refused:
        settings(raw)
    assert "limits" in str(refused.value) and fragment in str(refused.value)
