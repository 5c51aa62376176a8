"""Fixtures of the config store tests: every test runs on SQLite and on a real PostgreSQL
(`database_url` and `postgres_server` come from tests/support/fixtures.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.fixtures import migrate_by_copy
from tollway.store import migrate
from tollway.store.database import Database


@pytest.fixture
async def db(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Database]:
    """A migrated database (a copy of the session's migrated template: the migrations
    themselves are tested in test_migrations.py)."""
    if not migrate_by_copy(request, database_url):
        await migrate.upgrade(database_url)
    database = Database(database_url)
    yield database
    await database.close()
