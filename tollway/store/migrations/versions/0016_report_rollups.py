"""Report rollups: monthly totals (`spend_totals` span "month", from the daily totals), the
combination rollups per UTC hour (`spend_rollup_hours`, from the request log), and the
provider and model indexes of the daily combinations; backfilled for the rows already logged.

Revision ID: 0016_report_rollups
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_report_rollups"
down_revision: str | Sequence[str] | None = "0015_tags"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
LOG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_DIMENSIONS = ("virtual_key_id", "team_id", "customer_id", "provider", "model")
_SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")


def upgrade() -> None:
    with op.batch_alter_table("spend_totals") as batch:  # SQLite: a copy of the table; PostgreSQL: in place
        batch.alter_column("span", existing_type=sa.String(4), type_=sa.String(8), existing_nullable=False)
    _backfill_unrouted()
    _backfill_months()
    for dimension in ("provider", "model"):
        op.create_index(f"ix_spend_rollups_{dimension}_day", "spend_rollups", [dimension, "day"])
    op.create_table(
        "spend_rollup_hours",
        sa.Column("id", LOG_ID, autoincrement=True, nullable=False),
        sa.Column("hour", TIMESTAMP, nullable=False),
        *(sa.Column(name, sa.String(), nullable=False) for name in _DIMENSIONS),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
        sa.PrimaryKeyConstraint("id", name="pk_spend_rollup_hours"),
        sa.UniqueConstraint("hour", *_DIMENSIONS, name="uq_spend_rollup_hours_hour_group"),
    )
    _backfill_hours()  # before the indexes: one build each instead of one insert per row
    op.create_index("ix_spend_rollup_hours_hour", "spend_rollup_hours", ["hour"])
    for dimension in _DIMENSIONS:
        op.create_index(f"ix_spend_rollup_hours_{dimension}_hour", "spend_rollup_hours", [dimension, "hour"])
    if not _sqlite():  # statistics for the tables just filled, or reports plan blind until autovacuum runs
        op.execute("ANALYZE spend_totals, spend_rollups, spend_rollup_hours")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _backfill_unrouted() -> None:
    """Rows logged before 0011 have no route, and 0011 added no route totals for them: each
    hour's and day's shortfall (overall minus the sum over routes) goes to the route ""."""
    sums = ", ".join(f"SUM(CASE WHEN dimension = 'all' THEN {name} ELSE -{name} END)" for name in _SUMS)
    updates = ", ".join(f"{name} = spend_totals.{name} + excluded.{name}" for name in _SUMS)
    op.execute(
        f"INSERT INTO spend_totals (span, bucket_start, dimension, value, {', '.join(_SUMS)}) "
        f"SELECT span, bucket_start, 'route', '', {sums} FROM spend_totals "
        f"WHERE dimension IN ('all', 'route') GROUP BY span, bucket_start "
        f"HAVING SUM(CASE WHEN dimension = 'all' THEN requests ELSE -requests END) <> 0 "
        f"ON CONFLICT (span, bucket_start, dimension, value) DO UPDATE SET {updates}")


def _backfill_months() -> None:
    """Each month's totals: the sum of its days' (already per dimension and value)."""
    month = ("strftime('%Y-%m-01 00:00:00.000000', bucket_start)" if _sqlite()
             else "date_trunc('month', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")
    sums = ", ".join(f"SUM({name})" for name in _SUMS)
    op.execute(
        f"INSERT INTO spend_totals (span, bucket_start, dimension, value, {', '.join(_SUMS)}) "
        f"SELECT 'month', {month}, dimension, value, {sums} FROM spend_totals WHERE span = 'day' "
        f"GROUP BY {month}, dimension, value")


def _backfill_hours() -> None:
    """The hourly combinations, grouped from the request log (once, at upgrade)."""
    if _sqlite():  # `at` is naive UTC text there
        hour = "strftime('%Y-%m-%d %H:00:00.000000', at)"
        spend = "CAST(ROUND(SUM(cost) * 1000000000) AS INTEGER)"
    else:
        hour = "date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        spend = "CAST(ROUND(SUM(cost) * 1000000000) AS BIGINT)"
    dimensions = ", ".join(f"COALESCE({name}, '')" for name in _DIMENSIONS)
    sums = ("SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), COUNT(*), "
            "SUM(CASE WHEN decision <> 'allow' THEN 1 ELSE 0 END)")
    op.execute(
        f"INSERT INTO spend_rollup_hours (hour, {', '.join(_DIMENSIONS)}, {', '.join(_SUMS)}) "
        f"SELECT {hour}, {dimensions}, {spend}, {sums} FROM request_logs GROUP BY {hour}, {dimensions}")


def downgrade() -> None:
    op.drop_table("spend_rollup_hours")
    for dimension in ("provider", "model"):
        op.drop_index(f"ix_spend_rollups_{dimension}_day", table_name="spend_rollups")
    op.execute("DELETE FROM spend_totals WHERE span = 'month'")
    with op.batch_alter_table("spend_totals") as batch:
        batch.alter_column("span", existing_type=sa.String(8), type_=sa.String(4), existing_nullable=False)
