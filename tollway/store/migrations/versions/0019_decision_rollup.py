"""The decision as a totals dimension: `spend_totals` rows per UTC hour, day and month and
per decision ("allow", "request_limited" ...), so that the request log's count filtered by
decision (the log page's "denied" filter) reads a few rollup rows, not the log. Backfilled
from the rows already logged: the log grouped once by hour and decision, days from those
hours, months from those days.

Revision ID: 0019_decision_rollup
Revises: 0018_limit_rules
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019_decision_rollup"
down_revision: str | Sequence[str] | None = "0018_limit_rules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUMS = ("spend_nano", "prompt_tokens", "completion_tokens", "cached_tokens", "requests", "denied_requests")
_INSERT = f"INSERT INTO spend_totals (span, bucket_start, dimension, value, {', '.join(_SUMS)}) "


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # Each row's nano-USD as the request-log writer adds it (per row, then summed: exact).
    nano = "CAST(ROUND(cost * 1000000000) AS INTEGER)" if sqlite else "CAST(cost * 1000000000 AS BIGINT)"
    op.execute(
        f"{_INSERT}SELECT 'hour', {_start('hour', 'at', sqlite)}, 'decision', COALESCE(decision, ''), SUM({nano}), "
        f"SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), COUNT(*), "
        f"SUM(CASE WHEN decision <> 'allow' THEN 1 ELSE 0 END) FROM request_logs "
        f"GROUP BY {_start('hour', 'at', sqlite)}, COALESCE(decision, '')")
    sums = ", ".join(f"SUM({name})" for name in _SUMS)
    for span, finer in (("day", "hour"), ("month", "day")):
        start = _start(span, "bucket_start", sqlite)
        op.execute(f"{_INSERT}SELECT '{span}', {start}, dimension, value, {sums} FROM spend_totals "
                   f"WHERE span = '{finer}' AND dimension = 'decision' GROUP BY {start}, dimension, value")
    if not sqlite:  # statistics for the rows just added, or reports plan blind until autovacuum runs
        op.execute("ANALYZE spend_totals")


def _start(span: str, column: str, sqlite: bool) -> str:
    """The UTC ``span`` (hour, day, month) that ``column`` falls in, in the column's own form."""
    if sqlite:  # naive UTC text, "%Y-%m-%d %H:%M:%S.%f", as the writer binds rollup times
        return {"hour": f"substr({column}, 1, 13) || ':00:00.000000'",
                "day": f"substr({column}, 1, 10) || ' 00:00:00.000000'",
                "month": f"substr({column}, 1, 7) || '-01 00:00:00.000000'"}[span]
    return f"date_trunc('{span}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def downgrade() -> None:
    op.execute("DELETE FROM spend_totals WHERE dimension = 'decision'")
