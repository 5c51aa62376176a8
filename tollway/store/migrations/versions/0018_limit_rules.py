"""Limit rules (``governance.limits``): a selector over the request's dimensions, an
optional template (``per``) and a budget, rate limit and concurrency limit owned 1:1.

Revision ID: 0018_limit_rules
Revises: 0017_entity_counts
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_limit_rules"
down_revision: str | Sequence[str] | None = "0017_entity_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
UUID_ID = sa.String(36)


def _limit(column: str, table: str) -> list[sa.schema.SchemaItem]:
    return [
        sa.Column(f"{column}_id", UUID_ID, nullable=True),
        sa.ForeignKeyConstraint([f"{column}_id"], [f"{table}.id"], name=f"fk_limit_rules_{column}_id_{table}",
                                ondelete="SET NULL"),
        sa.UniqueConstraint(f"{column}_id", name=f"uq_limit_rules_{column}_id"),
    ]


def upgrade() -> None:
    op.create_table(
        "limit_rules",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("match", sa.JSON(), nullable=False),
        sa.Column("per", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("when_missing", sa.String(16), server_default="skip", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        *_limit("budget", "budgets"),
        *_limit("rate_limit", "rate_limits"),
        *_limit("concurrency_limit", "concurrency_limits"),
        sa.Column("managed_by", sa.String(16), server_default="api", nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_limit_rules"),
    )


def downgrade() -> None:
    op.drop_table("limit_rules")
