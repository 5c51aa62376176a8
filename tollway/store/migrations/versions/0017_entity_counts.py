"""Entity counts: the number of rows of ``virtual_keys``, ``teams`` and ``customers``, kept
by triggers in the transaction that inserts or deletes rows, so that an unfiltered
list's exact ``count`` reads one row instead of counting a million
(`tollway.store.entity_counts`).

PostgreSQL counts per statement (a transition table: a bulk insert of a million rows
updates the count once); SQLite, which has row triggers only, per row. A later migration
that rebuilds one of these tables on SQLite (a batch ``recreate``) drops its triggers
and must create them again (`create_triggers`); tests/store/test_entity_counts.py checks
the head schema keeps them.

Revision ID: 0017_entity_counts
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_entity_counts"
down_revision: str | Sequence[str] | None = "0016_report_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTED = ("virtual_keys", "teams", "customers")


def upgrade() -> None:
    op.create_table(
        "entity_counts",
        sa.Column("table_name", sa.String(64), primary_key=True),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for statement in _POSTGRES_FUNCTIONS:
            op.execute(statement)
    for table in COUNTED:
        op.execute(f"INSERT INTO entity_counts (table_name, row_count) SELECT '{table}', count(*) FROM {table}")
        create_triggers(table, postgres)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in COUNTED:
        for trigger in ("insert", "delete", "truncate") if postgres else ("insert", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_count_{trigger}" + (f" ON {table}" if postgres else ""))
    if postgres:
        for function in ("entity_count_insert", "entity_count_delete", "entity_count_truncate"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("entity_counts")


def create_triggers(table: str, postgres: bool) -> None:
    """The triggers that keep ``table``'s row in ``entity_counts`` exact."""
    if postgres:
        op.execute(f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS changed "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION entity_count_insert()")
        op.execute(f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS changed "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION entity_count_delete()")
        op.execute(f"CREATE TRIGGER {table}_count_truncate AFTER TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION entity_count_truncate()")
        return
    op.execute(f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table} BEGIN "
               f"UPDATE entity_counts SET row_count = row_count + 1 WHERE table_name = '{table}'; END")
    op.execute(f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table} BEGIN "
               f"UPDATE entity_counts SET row_count = row_count - 1 WHERE table_name = '{table}'; END")


_POSTGRES_FUNCTIONS = [
    """CREATE FUNCTION entity_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE n bigint := (SELECT count(*) FROM changed);
    BEGIN
        IF n > 0 THEN  -- a statement that changed nothing takes no lock on the count
            UPDATE entity_counts SET row_count = row_count + n WHERE table_name = TG_TABLE_NAME;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION entity_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE n bigint := (SELECT count(*) FROM changed);
    BEGIN
        IF n > 0 THEN  -- a statement that changed nothing takes no lock on the count
            UPDATE entity_counts SET row_count = row_count - n WHERE table_name = TG_TABLE_NAME;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION entity_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE entity_counts SET row_count = 0 WHERE table_name = TG_TABLE_NAME;
        RETURN NULL;
    END $$""",
]
