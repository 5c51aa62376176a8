"""Process start: prepare the database once, then build each worker's app."""

from __future__ import annotations

from tollway.config import Settings
from tollway.config.loader import settings_from_environment
from tollway.server.app import Gateway, create_app
from tollway.store.bootstrap import GeneratedKey, apply_config
from tollway.store.database import Database
from tollway.store.migrate import upgrade


async def prepare_database(settings: Settings) -> list[GeneratedKey]:
    """Run migrations and load the config file's governance section (idempotent)."""
    database = Database(settings.database_url)
    try:
        await database.ping()
        await upgrade(settings.database_url)
        return await apply_config(database, settings)
    finally:
        await database.close()


def worker_app() -> Gateway:
    """uvicorn's factory for each worker: the CLI prepared the database already."""
    return create_app(settings_from_environment(), prepare_database=False)
