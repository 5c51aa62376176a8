"""Alerts: webhooks added through the API, one claimed row per crossing of a limit's
window (unique: delivered once across nodes), and the delivery log.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
# The brief named "0001"; on this branch 0005 is the head after 0001, and two heads would
# stop `upgrade head`. The coordinator re-links the chain at merge.
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
LOG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_webhooks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(512), nullable=False),
        sa.Column("events", sa.JSON(), nullable=True),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_webhooks"),
    )
    op.create_table(
        "alert_crossings",
        sa.Column("id", LOG_ID, autoincrement=True, nullable=False),
        sa.Column("counter", sa.String(512), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_crossings"),
        sa.UniqueConstraint("counter", "window_start_ms", "event", "threshold",
                            name="uq_alert_crossings_counter_window_start_ms_event_threshold"),
    )
    op.create_index("ix_alert_crossings_at", "alert_crossings", ["at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("counter", sa.String(512), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("webhook_id", sa.String(256), nullable=False),
        sa.Column("target", sa.String(2048), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
    )
    op.create_index("ix_alert_deliveries_created_at", "alert_deliveries", ["created_at"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alert_crossings")
    op.drop_table("alert_webhooks")
