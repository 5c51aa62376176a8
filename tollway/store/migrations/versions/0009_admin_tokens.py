"""Scoped admin tokens, and the token that made each audited change.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
# The coordinator re-links the chain at merge (the brief's id is 0009; 0007 is this branch's head).
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(256)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", ID, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("scope_type", sa.String(16), nullable=True),
        sa.Column("scope_id", ID, nullable=True),
        sa.Column("value_hash", sa.String(64), nullable=False),
        sa.Column("value_prefix", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_admin_tokens"),
        sa.UniqueConstraint("value_hash", name="uq_admin_tokens_value_hash"),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("token_id", ID, nullable=True))
        batch.add_column(sa.Column("token_name", ID, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("token_name")
        batch.drop_column("token_id")
    op.drop_table("admin_tokens")
