"""Enforcement modes on budgets and rate limits (SPEC §8): ``enforcement`` (estimate |
strict) and ``on_insufficient`` (refuse | clamp); null means the global default.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("budgets", "rate_limits")
_COLUMNS = ("enforcement", "on_insufficient")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for column in _COLUMNS:
                batch.add_column(sa.Column(column, sa.String(16), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for column in reversed(_COLUMNS):
                batch.drop_column(column)
