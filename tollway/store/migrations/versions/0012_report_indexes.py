"""Report indexes: one value's totals (`spend_totals` by dimension and value, then time),
so a report filtered by one team, customer, provider or model reads that value's hours
and days instead of every value's.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_spend_totals_dimension_value_span_bucket_start"


def upgrade() -> None:
    op.create_index(INDEX, "spend_totals", ["dimension", "value", "span", "bucket_start"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="spend_totals")
