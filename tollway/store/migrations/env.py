"""Alembic environment for the config store.

Migrations run through `tollway.store.migrate` (``tollway db upgrade``), which opens the
connection and hands it over in ``config.attributes["connection"]``; there is no
alembic.ini and no URL in this file. SQLite runs in batch mode (table rebuilds), since it
cannot alter most constraints in place.
"""

from __future__ import annotations

from alembic import context

from tollway.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run the config store's migrations through tollway.store.migrate "
        "(or `tollway db upgrade`), which provides the connection"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
