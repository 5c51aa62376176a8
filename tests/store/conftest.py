"""Fixtures of the config store tests: every test runs on SQLite and on a real PostgreSQL
(`database_url` and `postgres_server` come from tests/support/fixtures.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tollway.store import migrate
from tollway.store.database import Database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated database."""
    await migrate.upgrade(database_url)
    database = Database(database_url)
    yield database
    await database.close()
