"""The request log's ``route``: the API each request used (chat, images.generations,
audio.speech ...), for the request log, spend reports and the UI to show each route's traffic.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_request_logs_route_at"


def upgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.add_column(sa.Column("route", sa.String(), nullable=True))
        batch.create_index(_INDEX, ["route", "at"])


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.drop_index(_INDEX)
        batch.drop_column("route")
