"""The config store: governance entities, usage and logs in SQLite or PostgreSQL.

- `database`: the `Database` (async engine, sessions) and URL handling
- `tables`: the SQLAlchemy tables; `migrate` and `migrations/`: their Alembic migrations
- `bootstrap`: loading the config file's governance, idempotently
- `snapshot`: building the immutable `PolicySnapshot`; `version`: the config version
- `usage`: persisting counter states; `request_log`: the batched request log writer
"""
