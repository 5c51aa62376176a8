"""Spend rollups: request-log totals per UTC hour and day (overall and per value of one
dimension: `spend_totals`) and per day and (key, team, customer, provider, model)
(`spend_rollups`), backfilled from the rows already logged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
LOG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_DIMENSIONS = ("virtual_key_id", "team_id", "customer_id", "provider", "model")
_SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")


def _sums() -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS]


def upgrade() -> None:
    op.create_table(
        "spend_totals",
        sa.Column("id", LOG_ID, autoincrement=True, nullable=False),
        sa.Column("span", sa.String(4), nullable=False),
        sa.Column("bucket_start", TIMESTAMP, nullable=False),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        *_sums(),
        sa.PrimaryKeyConstraint("id", name="pk_spend_totals"),
        sa.UniqueConstraint("span", "bucket_start", "dimension", "value",
                            name="uq_spend_totals_span_bucket_start_dimension_value"),
    )
    op.create_index("ix_spend_totals_dimension_span_bucket_start", "spend_totals", ["dimension", "span", "bucket_start"])
    op.create_table(
        "spend_rollups",
        sa.Column("id", LOG_ID, autoincrement=True, nullable=False),
        sa.Column("day", TIMESTAMP, nullable=False),
        *(sa.Column(name, sa.String(), nullable=False) for name in _DIMENSIONS),
        *_sums(),
        sa.PrimaryKeyConstraint("id", name="pk_spend_rollups"),
        sa.UniqueConstraint("day", *_DIMENSIONS, name="uq_spend_rollups_day_group"),
    )
    op.create_index("ix_spend_rollups_day", "spend_rollups", ["day"])
    for dimension in ("virtual_key_id", "team_id", "customer_id"):
        op.create_index(f"ix_spend_rollups_{dimension}_day", "spend_rollups", [dimension, "day"])
    _backfill()


def _backfill() -> None:
    """Grouped INSERT … SELECTs over the rows logged so far (once, at upgrade)."""
    sums = ("SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), COUNT(*), "
            "SUM(CASE WHEN decision <> 'allow' THEN 1 ELSE 0 END)")
    columns = ", ".join(_SUMS)
    for span in ("hour", "day"):
        start = _start(span)
        for dimension in ("all", *_DIMENSIONS):
            value = "''" if dimension == "all" else f"COALESCE({dimension}, '')"
            grouping = start if dimension == "all" else f"{start}, {value}"
            op.execute(
                f"INSERT INTO spend_totals (span, bucket_start, dimension, value, {columns}) "
                f"SELECT '{span}', {start}, '{dimension}', {value}, {_spend()}, {sums} "
                f"FROM request_logs GROUP BY {grouping}")
    dimensions = ", ".join(f"COALESCE({name}, '')" for name in _DIMENSIONS)
    op.execute(
        f"INSERT INTO spend_rollups (day, {', '.join(_DIMENSIONS)}, {columns}) "
        f"SELECT {_start('day')}, {dimensions}, {_spend()}, {sums} FROM request_logs GROUP BY {_start('day')}, {dimensions}")


def _start(span: str) -> str:
    if op.get_bind().dialect.name == "sqlite":  # `at` is naive UTC text there
        form = "%Y-%m-%d %H:00:00.000000" if span == "hour" else "%Y-%m-%d 00:00:00.000000"
        return f"strftime('{form}', at)"
    return f"date_trunc('{span}', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def _spend() -> str:
    integer = "INTEGER" if op.get_bind().dialect.name == "sqlite" else "BIGINT"
    return f"CAST(ROUND(SUM(cost) * 1000000000) AS {integer})"


def downgrade() -> None:
    op.drop_table("spend_rollups")
    op.drop_table("spend_totals")
