"""The config change log (what each config version changed, so nodes apply changes
incrementally) and the indexes that list and search a million virtual keys.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "config_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("entity_id", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_config_changes"),
    )
    op.create_index("ix_config_changes_version", "config_changes", ["version"])
    op.create_index("ix_virtual_keys_name", "virtual_keys", ["name"], postgresql_ops={"name": "text_pattern_ops"})
    op.create_index("ix_virtual_keys_is_active_id", "virtual_keys", ["is_active", "id"])


def downgrade() -> None:
    op.drop_index("ix_virtual_keys_is_active_id", "virtual_keys")
    op.drop_index("ix_virtual_keys_name", "virtual_keys")
    op.drop_table("config_changes")
