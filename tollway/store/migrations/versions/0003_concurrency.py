"""Concurrency limits: a ``concurrency_limits`` table and, on every governed entity, the
``concurrency_limit_id`` that owns one (1:1, like its budget and rate limit).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Written by hand to match tollway/store/tables.py. SQLite rebuilds each governed table
(batch mode; named CHECK constraints and the indexes are carried over).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID_ID = sa.String(36)
GOVERNED = ("customers", "teams", "virtual_keys", "vk_provider_configs", "providers", "model_configs")


def upgrade() -> None:
    op.create_table(
        "concurrency_limits",
        sa.Column("id", UUID_ID, nullable=False),
        sa.Column("max_in_flight", sa.Integer(), nullable=False),
        sa.Column("queue_timeout_ms", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("max_in_flight > 0", name="ck_concurrency_limits_max_in_flight_positive"),
        sa.CheckConstraint("queue_timeout_ms >= 0", name="ck_concurrency_limits_queue_timeout_ms_not_negative"),
        sa.PrimaryKeyConstraint("id", name="pk_concurrency_limits"),
    )
    for table in GOVERNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("concurrency_limit_id", UUID_ID, nullable=True))
            batch.create_foreign_key(f"fk_{table}_concurrency_limit_id_concurrency_limits", "concurrency_limits",
                                     ["concurrency_limit_id"], ["id"], ondelete="SET NULL")
            batch.create_unique_constraint(f"uq_{table}_concurrency_limit_id", ["concurrency_limit_id"])


def downgrade() -> None:
    for table in GOVERNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_concurrency_limit_id", type_="unique")
            batch.drop_constraint(f"fk_{table}_concurrency_limit_id_concurrency_limits", type_="foreignkey")
            batch.drop_column("concurrency_limit_id")
    op.drop_table("concurrency_limits")
