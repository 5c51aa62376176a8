"""Spend rollups: request-log totals per UTC hour and per UTC day, and per (key, team,
customer, provider, model), backfilled from the rows already logged.

Revision ID: 0005
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
LOG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_DIMENSIONS = ("virtual_key_id", "team_id", "customer_id", "provider", "model")
_SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")


def upgrade() -> None:
    op.create_table(
        "spend_rollups",
        sa.Column("id", LOG_ID, autoincrement=True, nullable=False),
        sa.Column("span", sa.String(4), nullable=False),
        sa.Column("bucket_start", TIMESTAMP, nullable=False),
        *(sa.Column(name, sa.String(), nullable=False) for name in _DIMENSIONS),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
        sa.PrimaryKeyConstraint("id", name="pk_spend_rollups"),
        sa.UniqueConstraint("span", "bucket_start", *_DIMENSIONS, name="uq_spend_rollups_bucket_group"),
    )
    op.create_index("ix_spend_rollups_span_bucket_start", "spend_rollups", ["span", "bucket_start"])
    for dimension in ("virtual_key_id", "team_id", "customer_id"):
        op.create_index(f"ix_spend_rollups_{dimension}_span_bucket_start", "spend_rollups",
                        [dimension, "span", "bucket_start"])
    for span in ("hour", "day"):
        _backfill(span)


def _backfill(span: str) -> None:
    """One grouped INSERT … SELECT over the rows logged so far (once, at upgrade)."""
    if op.get_bind().dialect.name == "sqlite":  # `at` is naive UTC text there, `cost` a number kept to 9 places
        form = "%Y-%m-%d %H:00:00.000000" if span == "hour" else "%Y-%m-%d 00:00:00.000000"
        start = f"strftime('{form}', at)"
        spend = "CAST(ROUND(SUM(cost) * 1000000000) AS INTEGER)"
    else:
        start = f"date_trunc('{span}', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        spend = "CAST(ROUND(SUM(cost) * 1000000000) AS BIGINT)"
    dimensions = ", ".join(f"COALESCE({name}, '')" for name in _DIMENSIONS)
    op.execute(
        f"INSERT INTO spend_rollups (span, bucket_start, {', '.join(_DIMENSIONS)}, {', '.join(_SUMS)}) "  # noqa: S608
        f"SELECT '{span}', {start}, {dimensions}, {spend}, SUM(prompt_tokens), SUM(completion_tokens), "
        f"SUM(cached_tokens), COUNT(*), SUM(CASE WHEN decision <> 'allow' THEN 1 ELSE 0 END) "
        f"FROM request_logs GROUP BY {start}, {dimensions}"
    )


def downgrade() -> None:
    op.drop_table("spend_rollups")
