"""Key lifecycle: a virtual key's expiry, the value a rotation replaced (with the end of
its grace period) and when the key was last used.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("expires_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("previous_value_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("previous_value_expires_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("last_used_at", TIMESTAMP, nullable=True))
        batch.create_index("ix_virtual_keys_previous_value_hash", ["previous_value_hash"])


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_index("ix_virtual_keys_previous_value_hash")
        batch.drop_column("last_used_at")
        batch.drop_column("previous_value_expires_at")
        batch.drop_column("previous_value_hash")
        batch.drop_column("expires_at")
