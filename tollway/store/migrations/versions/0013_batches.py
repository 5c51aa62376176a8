"""Batches: the input files uploaded through the gateway (who uploaded them, what they
hold) and the batches submitted, each with what was charged at submission, so that a
gateway node, after any restart, settles it when the provider ends it.

Revision ID: 0013_batches
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_batches"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batch_files",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("provider", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("provider_key_id", sa.String(256), nullable=False),
        sa.Column("virtual_key_id", sa.String(256), nullable=True),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("worst_tokens", sa.BigInteger(), nullable=False),
        sa.Column("worst_cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batch_files"),
    )
    op.create_index("ix_batch_files_virtual_key_id", "batch_files", ["virtual_key_id"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("api", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("provider_key_id", sa.String(256), nullable=False),
        sa.Column("virtual_key_id", sa.String(256), nullable=True),
        sa.Column("team_id", sa.String(256), nullable=True),
        sa.Column("customer_id", sa.String(256), nullable=True),
        sa.Column("input_file_id", sa.String(256), nullable=True),
        sa.Column("output_file_id", sa.String(256), nullable=True),
        sa.Column("error_file_id", sa.String(256), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("charged_tokens", sa.BigInteger(), nullable=False),
        sa.Column("charged_cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("charges", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("provider_status", sa.String(32), nullable=True),
        sa.Column("actual_tokens", sa.BigInteger(), nullable=False),
        sa.Column("actual_cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("settled_at", TIMESTAMP, nullable=True),
        sa.Column("next_poll_at", TIMESTAMP, nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_index("ix_batches_virtual_key_id", "batches", ["virtual_key_id"])
    op.create_index("ix_batches_state_next_poll_at", "batches", ["state", "next_poll_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_state_next_poll_at", table_name="batches")
    op.drop_index("ix_batches_virtual_key_id", table_name="batches")
    op.drop_table("batches")
    op.drop_index("ix_batch_files_virtual_key_id", table_name="batch_files")
    op.drop_table("batch_files")
