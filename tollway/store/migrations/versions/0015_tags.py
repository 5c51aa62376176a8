"""Request tags: each tag's limits (``tags``, governed like a customer), a key's
``allowed_tags`` and ``forced_tags``, and the tags of each logged request (the
``request_logs.tags`` column, and ``request_log_tags`` indexed by tag and time for the
log filter and spend by tag).

Revision ID: 0015_tags
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_tags"
down_revision: str | Sequence[str] | None = "0014_end_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
ID = sa.String(256)
UUID_ID = sa.String(36)
LOG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _limit(column: str, table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column(f"{column}_id", UUID_ID, nullable=True),
        sa.ForeignKeyConstraint([f"{column}_id"], [f"{table}.id"], name=f"fk_tags_{column}_id_{table}",
                                ondelete="SET NULL"),
        sa.UniqueConstraint(f"{column}_id", name=f"uq_tags_{column}_id"),
    ]


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", ID, nullable=False),
        *_limit("budget", "budgets"),
        *_limit("rate_limit", "rate_limits"),
        *_limit("concurrency_limit", "concurrency_limits"),
        sa.Column("managed_by", sa.String(16), server_default="api", nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
    )
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("allowed_tags", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("forced_tags", sa.JSON(), server_default="[]", nullable=False))
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("tags", sa.String(), nullable=True))
    op.create_table(
        "request_log_tags",
        sa.Column("id", LOG_ID, autoincrement=True, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_request_log_tags"),
    )
    op.create_index("ix_request_log_tags_at", "request_log_tags", ["at"])
    op.create_index("ix_request_log_tags_tag_at_request_id", "request_log_tags", ["tag", "at", "request_id"])


def downgrade() -> None:
    op.drop_index("ix_request_log_tags_tag_at_request_id", table_name="request_log_tags")
    op.drop_index("ix_request_log_tags_at", table_name="request_log_tags")
    op.drop_table("request_log_tags")
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_column("tags")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("forced_tags")
        batch.drop_column("allowed_tags")
    op.drop_table("tags")
