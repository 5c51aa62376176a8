"""The initial config store: governance entities, their budgets and rate limits, the
request log, the audit log and the config version.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand to match tollway/store/tables.py; it uses plain SQLAlchemy types so it
keeps working when the package's column types change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(20, 9)
TIMESTAMP = sa.DateTime(timezone=True)
ID = sa.String(256)
UUID_ID = sa.String(36)
LOG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def _governed(table: str) -> list[sa.schema.SchemaItem]:
    """Columns and constraints of an owner of one budget and one rate limit."""
    return [
        sa.Column("budget_id", UUID_ID, nullable=True),
        sa.Column("rate_limit_id", UUID_ID, nullable=True),
        sa.ForeignKeyConstraint(["budget_id"], ["budgets.id"], name=f"fk_{table}_budget_id_budgets", ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["rate_limit_id"], ["rate_limits.id"], name=f"fk_{table}_rate_limit_id_rate_limits", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("budget_id", name=f"uq_{table}_budget_id"),
        sa.UniqueConstraint("rate_limit_id", name=f"uq_{table}_rate_limit_id"),
    ]


def _timestamps() -> list[sa.Column[Any]]:
    return [sa.Column("created_at", TIMESTAMP, nullable=False), sa.Column("updated_at", TIMESTAMP, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", UUID_ID, nullable=False),
        sa.Column("max_limit", MONEY, nullable=False),
        sa.Column("reset_duration", sa.String(16), nullable=False),
        sa.Column("calendar_aligned", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("timezone", sa.String(64), server_default="UTC", nullable=False),
        sa.Column("week_start", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("current_usage", MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("last_reset", TIMESTAMP, nullable=False),
        sa.CheckConstraint("max_limit > 0", name="ck_budgets_max_limit_positive"),
        sa.CheckConstraint("week_start >= 0 AND week_start <= 6", name="ck_budgets_week_start_range"),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
    )
    op.create_table(
        "rate_limits",
        sa.Column("id", UUID_ID, nullable=False),
        sa.Column("token_max_limit", sa.BigInteger(), nullable=True),
        sa.Column("token_reset_duration", sa.String(16), nullable=True),
        sa.Column("request_max_limit", sa.BigInteger(), nullable=True),
        sa.Column("request_reset_duration", sa.String(16), nullable=True),
        sa.Column("token_current_usage", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("request_current_usage", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("token_last_reset", TIMESTAMP, nullable=False),
        sa.Column("request_last_reset", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rate_limits"),
    )
    op.create_table(
        "customers",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", ID, nullable=False),
        *_governed("customers"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
    )
    op.create_table(
        "teams",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        *_governed("teams"),
        *_timestamps(),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name="fk_teams_customer_id_customers"),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
    )
    op.create_index("ix_teams_customer_id", "teams", ["customer_id"])
    op.create_table(
        "virtual_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", ID, nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("value_hash", sa.String(64), nullable=False),
        sa.Column("value_prefix", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("team_id", ID, nullable=True),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("allowed_models", sa.JSON(), nullable=False),
        *_governed("virtual_keys"),
        *_timestamps(),
        sa.CheckConstraint("team_id IS NULL OR customer_id IS NULL", name="ck_virtual_keys_one_owner"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_virtual_keys_team_id_teams"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name="fk_virtual_keys_customer_id_customers"),
        sa.PrimaryKeyConstraint("id", name="pk_virtual_keys"),
        sa.UniqueConstraint("value_hash", name="uq_virtual_keys_value_hash"),
    )
    op.create_index("ix_virtual_keys_team_id", "virtual_keys", ["team_id"])
    op.create_index("ix_virtual_keys_customer_id", "virtual_keys", ["customer_id"])
    op.create_table(
        "vk_provider_configs",
        sa.Column("id", UUID_ID, nullable=False),
        sa.Column("virtual_key_id", ID, nullable=False),
        sa.Column("provider", ID, nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("allowed_models", sa.JSON(), nullable=False),
        sa.Column("allowed_keys", sa.JSON(), nullable=False),
        *_governed("vk_provider_configs"),
        sa.ForeignKeyConstraint(
            ["virtual_key_id"],
            ["virtual_keys.id"],
            name="fk_vk_provider_configs_virtual_key_id_virtual_keys",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_vk_provider_configs"),
        sa.UniqueConstraint("virtual_key_id", "provider", name="uq_vk_provider_configs_virtual_key_id_provider"),
    )
    op.create_table(
        "providers",
        sa.Column("name", ID, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("base_url", sa.String(2048), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        *_governed("providers"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("name", name="pk_providers"),
    )
    op.create_table(
        "model_configs",
        sa.Column("id", UUID_ID, nullable=False),
        sa.Column("model_name", ID, nullable=False),
        sa.Column("provider", ID, nullable=True),
        *_governed("model_configs"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_model_configs"),
        sa.UniqueConstraint("model_name", "provider", name="uq_model_configs_model_name_provider"),
    )
    # A unique constraint treats NULLs as distinct; this covers "any provider" configs.
    op.create_index(
        "uq_model_configs_model_name_any_provider",
        "model_configs",
        ["model_name"],
        unique=True,
        sqlite_where=sa.text("provider IS NULL"),
        postgresql_where=sa.text("provider IS NULL"),
    )
    op.create_table(
        "request_logs",
        sa.Column("id", LOG_ID, autoincrement=True, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("virtual_key_id", sa.String(), nullable=True),
        sa.Column("team_id", sa.String(), nullable=True),
        sa.Column("customer_id", sa.String(), nullable=True),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("denied_level", sa.String(), nullable=True),
        sa.Column("denied_id", sa.String(), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", MONEY, nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_request_logs"),
    )
    op.create_index("ix_request_logs_at", "request_logs", ["at"])
    op.create_index("ix_request_logs_virtual_key_id_at", "request_logs", ["virtual_key_id", "at"])
    op.create_table(
        "audit_log",
        sa.Column("id", LOG_ID, autoincrement=True, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity_type", sa.String(64), nullable=False),
        sa.Column("entity_id", ID, nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_entity_type_entity_id", "audit_log", ["entity_type", "entity_id"])
    config_version = op.create_table(
        "config_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_config_version_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_config_version"),
    )
    op.bulk_insert(config_version, [{"id": 1, "version": 0}])


def downgrade() -> None:
    for table in (
        "config_version",
        "audit_log",
        "request_logs",
        "model_configs",
        "providers",
        "vk_provider_configs",
        "virtual_keys",
        "teams",
        "customers",
        "rate_limits",
        "budgets",
    ):
        op.drop_table(table)
