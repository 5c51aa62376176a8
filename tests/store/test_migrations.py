"""Migrations: up, down, up again, and the migrated schema equals tables.py (`alembic check`)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from tollway.store import migrate
from tollway.store.database import Database
from tollway.store.tables import Base, ModelConfig, VirtualKey, utcnow
from tollway.store.version import config_version

TABLES = {
    "budgets", "rate_limits", "customers", "teams", "virtual_keys", "vk_provider_configs", "providers",
    "model_configs", "request_logs", "audit_log", "config_version", "retired_key_values", "spend_rollups",
    "spend_totals", "spend_rollup_hours", "concurrency_limits", "config_changes",
    "alert_webhooks", "alert_crossings", "alert_deliveries", "admin_tokens", "entity_counts",
    "batch_files", "batches", "tags", "request_log_tags",
    "end_user_overrides", "end_user_counters", "limit_rules",
}


async def _tables(url: str) -> set[str]:
    db = Database(url)
    async with db.engine.connect() as connection:
        names = await connection.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    await db.close()
    return names - {"alembic_version"}


async def _differences(url: str, metadata: sa.MetaData) -> list:
    db = Database(url)
    async with db.engine.connect() as connection:
        diff = await connection.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), metadata)
        )
    await db.close()
    return diff


async def test_upgrade_downgrade_upgrade_round_trip(database_url: str) -> None:
    assert await migrate.current(database_url) is None
    await migrate.upgrade(database_url)
    assert await migrate.current(database_url) == migrate.head() == "0019_decision_rollup"
    assert await _tables(database_url) == TABLES
    await migrate.downgrade(database_url, "base")
    assert await migrate.current(database_url) is None
    assert await _tables(database_url) == set()
    await migrate.upgrade(database_url)
    assert await _tables(database_url) == TABLES
    db = Database(database_url)
    assert await config_version(db) == 0  # the migration creates the single version row
    await db.close()


async def test_migrated_schema_matches_the_table_definitions(database_url: str) -> None:
    await migrate.upgrade(database_url)
    assert await _differences(database_url, Base.metadata) == []


async def test_schema_comparison_does_see_a_difference(database_url: str) -> None:
    await migrate.upgrade(database_url)
    changed = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["budgets"].append_column(sa.Column("extra", sa.Integer))
    diff = await _differences(database_url, changed)
    assert [d[0] for d in diff] == ["add_column"]


async def test_model_config_is_unique_for_a_null_provider_too(db: Database) -> None:
    async with db.session() as session:
        session.add_all([ModelConfig(model_name="m", provider=None), ModelConfig(model_name="m", provider="p")])
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            session.add(ModelConfig(model_name="m", provider=None))
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            session.add(ModelConfig(model_name="m", provider="p"))


async def test_a_virtual_key_cannot_belong_to_a_team_and_a_customer(db: Database) -> None:
    async with db.session() as session:
        await session.execute(sa.text("INSERT INTO customers (id, name, created_at, updated_at) "
                                      "VALUES ('c', 'C', :now, :now)"), {"now": utcnow()})
        await session.execute(sa.text("INSERT INTO teams (id, name, created_at, updated_at) "
                                      "VALUES ('t', 'T', :now, :now)"), {"now": utcnow()})
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            session.add(VirtualKey(id="k", name="k", value_hash="h" * 64, value_prefix="tw-x",
                                   team_id="t", customer_id="c"))


async def test_adding_concurrency_limits_keeps_rows_and_constraints(database_url: str) -> None:
    """0001 → 0003 rebuilds every governed table on SQLite: rows, checks and the partial
    unique index must come through."""
    await migrate.upgrade(database_url, "0001")
    db = Database(database_url)
    now = {"now": utcnow()}
    async with db.session() as session:
        await session.execute(sa.text("INSERT INTO customers (id, name, created_at, updated_at) "
                                      "VALUES ('c', 'C', :now, :now)"), now)
        await session.execute(sa.text("INSERT INTO teams (id, name, customer_id, created_at, updated_at) "
                                      "VALUES ('t', 'T', 'c', :now, :now)"), now)
        await session.execute(sa.text("INSERT INTO model_configs (id, model_name, provider, created_at, updated_at) "
                                      "VALUES ('m1', 'm', NULL, :now, :now)"), now)
    await db.close()
    await migrate.upgrade(database_url)
    db = Database(database_url)
    async with db.session() as session:
        team = (await session.execute(sa.text("SELECT customer_id, concurrency_limit_id FROM teams"))).one()
    assert tuple(team) == ("c", None)
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            session.add(ModelConfig(model_name="m", provider=None))
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            session.add(VirtualKey(id="k", name="k", value_hash="h" * 64, value_prefix="tw-x",
                                   team_id="t", customer_id="c"))
    await db.close()
    await migrate.downgrade(database_url, "0001")
    assert "concurrency_limits" not in await _tables(database_url)
