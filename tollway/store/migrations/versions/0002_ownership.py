"""Ownership and retained usage: who manages each entity (``managed_by``: the config
file or the management API), budgets and rate limits kept with their usage when their
owner drops them (``retained_for``), and the values of deleted virtual keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05

Existing entities become API-managed; the next start hands those the config file
declares to the file (with a warning each), so nothing is taken over silently.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MANAGED = ("customers", "teams", "virtual_keys", "model_configs", "providers")
LIMITS = ("budgets", "rate_limits")
SLOT = sa.String(1024)


def upgrade() -> None:
    for table in MANAGED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("managed_by", sa.String(16), server_default="api", nullable=False))
    for table in LIMITS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("retained_for", SLOT, nullable=True))
            batch.create_index(f"ix_{table}_retained_for", ["retained_for"])
    op.create_table(
        "retired_key_values",
        sa.Column("value_hash", sa.String(64), nullable=False),
        sa.Column("virtual_key_id", sa.String(256), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("value_hash", name="pk_retired_key_values"),
    )


def downgrade() -> None:
    """Back to 0001: retained usage rows go with the columns that mark them."""
    op.drop_table("retired_key_values")
    for table in LIMITS:
        op.execute(sa.text(f"DELETE FROM {table} WHERE retained_for IS NOT NULL"))
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_retained_for")
            batch.drop_column("retained_for")
    for table in MANAGED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("managed_by")
