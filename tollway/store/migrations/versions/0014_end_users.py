"""End users (SPEC §8 "end user"): the templates of end-user limits on customers, teams
and virtual keys (``end_user_limits``), a key's ``end_user`` settings, per-user
overrides (``end_user_overrides``), idle end users' counters (``end_user_counters``) and the request log's ``end_user`` (indexed, for
grouping and filtering by end user).

Revision ID: 0014_end_users
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_end_users"
down_revision: str | Sequence[str] | None = "0013_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_request_logs_end_user_at"
TIMESTAMP = sa.DateTime(timezone=True)
_OWNERS = ("customers", "teams", "virtual_keys")


def upgrade() -> None:
    for table in _OWNERS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("end_user_limits", sa.JSON(), nullable=True))
            if table == "virtual_keys":
                batch.add_column(sa.Column("end_user", sa.JSON(), nullable=True))
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("end_user", sa.String(), nullable=True))
        batch.create_index(_INDEX, ["end_user", "at"])
    op.create_table(
        "end_user_overrides",
        sa.Column("owner_level", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(256), nullable=False),
        sa.Column("end_user", sa.String(256), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("owner_level", "owner_id", "end_user", name="pk_end_user_overrides"),
    )
    op.create_table(
        "end_user_counters",
        sa.Column("counter", sa.String(512), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("last_reset_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("counter", name="pk_end_user_counters"),
    )


def downgrade() -> None:
    op.drop_table("end_user_counters")
    op.drop_table("end_user_overrides")
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_index(_INDEX)
        batch.drop_column("end_user")
    for table in _OWNERS:
        with op.batch_alter_table(table) as batch:
            if table == "virtual_keys":
                batch.drop_column("end_user")
            batch.drop_column("end_user_limits")
