"""Shadow limits (SPEC §8): ``mode`` (enforce | shadow) on budgets, rate limits and
concurrency limits, and the request log's ``would_deny`` with its scope fields.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIMIT_TABLES = ("budgets", "rate_limits", "concurrency_limits")
_LOG_COLUMNS = (("would_deny", sa.String(32)), ("would_deny_level", sa.String()), ("would_deny_id", sa.String()))


def upgrade() -> None:
    for table in _LIMIT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("mode", sa.String(16), server_default="enforce", nullable=False))
    with op.batch_alter_table("request_logs") as batch:
        for name, type_ in _LOG_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        for name, _ in reversed(_LOG_COLUMNS):
            batch.drop_column(name)
    for table in _LIMIT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("mode")
