"""Ownership at start (`apply_config`), on SQLite and PostgreSQL: the file manages what it
declares, takes over what the API made when it declares it (with a warning), deletes
what it stopped declaring without erasing its usage, and hands to the API what others
still refer to."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from tests.store.example import SEARCH_VK, example_raw, settings, sha256
from tollway.governance.counters.base import CounterState
from tollway.store import migrate
from tollway.store.bootstrap import apply_config
from tollway.store.database import Database
from tollway.store.tables import (
    Budget,
    Customer,
    ModelConfig,
    Provider,
    RateLimit,
    Team,
    VirtualKey,
)
from tollway.store.usage import load_counters, save_counters

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1, T2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)


async def _get(db: Database, entity: type, ident: object) -> object:
    async with db.session() as session:
        return await session.get(entity, ident)


async def _managed_by(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = {}
        for entity, kind in ((Customer, "customer"), (Team, "team"), (VirtualKey, "virtual_key")):
            for row in await session.scalars(select(entity)):
                rows[f"{kind}/{row.id}"] = row.managed_by
        for row in await session.scalars(select(ModelConfig)):
            rows[f"model_config/{row.provider or '*'}/{row.model_name}"] = row.managed_by
        for row in await session.scalars(select(Provider)):
            rows[f"provider/{row.name}"] = row.managed_by
        return rows


async def test_what_the_file_declares_is_managed_by_the_file(db: Database) -> None:
    await apply_config(db, settings(), now=T0)

    assert await _managed_by(db) == {
        "customer/acme": "config", "team/search": "config", "virtual_key/vk-search": "config",
        "model_config/local/gpt-4o-mini": "config", "model_config/*/gpt-4o-mini": "config",
        "provider/openai": "config",  # states a budget and a rate limit
        "provider/anthropic": "api", "provider/local": "api"}  # state neither: their limits are the API's


async def test_the_file_takes_over_what_the_api_made_and_says_so(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    async with db.session() as session:
        session.add(Team(id="search", name="made through the API",
                         budget=Budget(max_limit=Decimal(3), reset_duration="1d", current_usage=Decimal("1.5"))))
    caplog.set_level(logging.WARNING, logger="tollway.store.ownership")

    await apply_config(db, settings(), now=T0)

    team = await _get(db, Team, "search")
    assert (team.name, team.managed_by, team.customer_id) == ("Search", "config", "acme")
    budget = await _get(db, Budget, team.budget_id)
    assert (budget.max_limit, budget.current_usage) == (Decimal(100), Decimal("1.5"))  # the file's limit, same usage
    [warning] = [r.getMessage() for r in caplog.records if "governance.teams 'search'" in r.getMessage()]
    assert "was managed through the management API" in warning and "the file manages it from now on" in warning


async def test_fields_the_file_leaves_out_take_their_defaults(db: Database) -> None:
    raw = example_raw()
    raw["governance"]["virtual_keys"][0] |= {"is_active": False, "description": "blocked for now"}
    await apply_config(db, settings(raw), now=T0)

    await apply_config(db, settings(), now=T1)  # the file no longer says so

    key = await _get(db, VirtualKey, "vk-search")
    assert (key.is_active, key.description) == (True, "")


async def test_what_the_file_stops_declaring_is_deleted_and_its_usage_comes_back_with_it(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    await apply_config(db, settings(), now=T0)
    key = await _get(db, VirtualKey, "vk-search")
    spent = {f"b:{key.budget_id}": CounterState(2_500_000_000, 1_740_830_400_000),
             f"rr:{key.rate_limit_id}": CounterState(42, 1_740_830_400_000)}
    await save_counters(db, spent)
    raw = example_raw()
    raw["governance"] = {"customers": [], "teams": [], "virtual_keys": [], "model_configs": []}
    caplog.set_level(logging.WARNING, logger="tollway.store.ownership")

    await apply_config(db, settings(raw), now=T0 + timedelta(seconds=10))  # inside every window

    assert await _managed_by(db) == {"provider/openai": "config", "provider/anthropic": "api", "provider/local": "api"}
    warnings = " ".join(r.getMessage() for r in caplog.records)
    for gone in ("virtual key 'vk-search'", "team 'search'", "customer 'acme'"):
        assert f"{gone} is no longer in the config file: deleted" in warnings
    assert (await _get(db, Budget, key.budget_id)).retained_for == "virtual_key/vk-search"
    assert (await load_counters(db)).items() >= spent.items()  # the usage rows stay, with their usage

    await apply_config(db, settings(), now=T0 + timedelta(seconds=20))  # declared again

    back = await _get(db, VirtualKey, "vk-search")
    assert (back.budget_id, back.rate_limit_id, back.managed_by) == (key.budget_id, key.rate_limit_id, "config")
    assert (await _get(db, Budget, key.budget_id)).current_usage == Decimal("2.5")
    assert (await _get(db, RateLimit, key.rate_limit_id)).request_current_usage == 42


async def test_a_key_declared_again_under_another_id_with_the_same_value_keeps_its_usage(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    key = await _get(db, VirtualKey, "vk-search")
    await save_counters(db, {f"b:{key.budget_id}": CounterState(2_500_000_000, 1_740_830_400_000)})
    raw = example_raw()
    raw["governance"]["virtual_keys"][0]["id"] = "vk-renamed"

    await apply_config(db, settings(raw), now=T1)

    assert await _get(db, VirtualKey, "vk-search") is None
    renamed = await _get(db, VirtualKey, "vk-renamed")
    assert (renamed.value_hash, renamed.budget_id) == (sha256(SEARCH_VK), key.budget_id)
    assert (await _get(db, Budget, key.budget_id)).current_usage == Decimal("2.5")


async def test_a_team_the_api_still_uses_is_handed_to_the_api_not_deleted(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    await apply_config(db, settings(), now=T0)
    async with db.session() as session:
        session.add(VirtualKey(id="vk-api", name="made through the API", value_hash="0" * 64, value_prefix="tw-00000",
                               team_id="search"))
    raw = example_raw()
    raw["governance"]["teams"] = []
    raw["governance"]["virtual_keys"] = []
    caplog.set_level(logging.WARNING, logger="tollway.store.ownership")

    await apply_config(db, settings(raw), now=T1)

    team = await _get(db, Team, "search")
    assert (team.managed_by, team.budget_id is not None) == ("api", True)  # kept as it was, now the API's
    assert (await _get(db, Customer, "acme")).managed_by == "config"  # still declared
    assert "team 'search' is no longer in the config file, but virtual key 'vk-api'" in caplog.text


async def test_provider_limits_the_file_stops_stating_are_removed_and_left_to_the_api(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    openai = await _get(db, Provider, "openai")
    raw = example_raw()
    del raw["providers"]["openai"]["budget"], raw["providers"]["openai"]["rate_limit"]

    await apply_config(db, settings(raw), now=T1)
    released = await _get(db, Provider, "openai")
    assert (released.managed_by, released.budget_id, released.rate_limit_id) == ("api", None, None)
    assert (await _get(db, Budget, openai.budget_id)).retained_for == "provider/openai"

    await apply_config(db, settings(), now=T2)
    assert (await _get(db, Provider, "openai")).budget_id == openai.budget_id  # stated again: its usage back


async def test_a_provider_gone_from_the_file_keeps_its_limits_and_is_left_to_the_api(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    openai = await _get(db, Provider, "openai")
    raw = example_raw()
    del raw["providers"]["openai"]

    await apply_config(db, settings(raw), now=T1)

    gone = await _get(db, Provider, "openai")
    assert (gone.managed_by, gone.budget_id, gone.rate_limit_id) == ("api", openai.budget_id, openai.rate_limit_id)


async def test_retained_limits_whose_windows_have_passed_are_purged_at_start(db: Database) -> None:
    await apply_config(db, settings(), now=T0)
    team = await _get(db, Team, "search")  # budget: 100 per 1M
    key = await _get(db, VirtualKey, "vk-search")  # rate limit: 60 requests per 1m, 100000 tokens per 1h
    raw = example_raw()
    raw["governance"]["teams"][0]["budget"] = None
    raw["governance"]["virtual_keys"][0]["rate_limit"] = None
    await apply_config(db, settings(raw), now=T1)

    await apply_config(db, settings(raw), now=T0 + timedelta(hours=1, minutes=1))  # the hour has passed, not the month
    assert await _get(db, RateLimit, key.rate_limit_id) is None
    assert (await _get(db, Budget, team.budget_id)).retained_for == "team/search"

    await apply_config(db, settings(raw), now=T0 + timedelta(days=31))
    assert await _get(db, Budget, team.budget_id) is None


async def test_the_migration_makes_existing_entities_api_managed_and_downgrades_cleanly(database_url: str) -> None:
    await migrate.upgrade(database_url, "0001")
    db = Database(database_url)
    async with db.engine.begin() as connection:
        await connection.execute(sa.text(
            "INSERT INTO customers (id, name, created_at, updated_at) VALUES ('old', 'Old', :t, :t)"), {"t": T0})
    await migrate.upgrade(database_url)
    assert (await _get(db, Customer, "old")).managed_by == "api"
    await apply_config(db, settings(), now=T0)
    raw = example_raw()
    raw["governance"]["teams"][0]["budget"] = None  # a retained budget, which 0001 cannot hold
    await apply_config(db, settings(raw), now=T1)

    await migrate.downgrade(database_url, "0001")
    async with db.engine.connect() as connection:
        budgets = await connection.scalar(sa.text("SELECT count(*) FROM budgets"))
    await db.close()
    assert budgets == 4
