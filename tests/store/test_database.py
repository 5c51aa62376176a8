"""URLs, connection errors and SQLite connection settings."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest
from sqlalchemy import text

from tollway.store import migrate
from tollway.store.database import Database, DatabaseUnavailable, async_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///tollway.db", "sqlite+aiosqlite:///tollway.db"),
        ("sqlite:////var/lib/tollway/t.db", "sqlite+aiosqlite:////var/lib/tollway/t.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@db:5432/tollway", "postgresql+asyncpg://u:p@db:5432/tollway"),
        ("postgres://u:p@db/tollway", "postgresql+asyncpg://u:p@db/tollway"),
        ("postgresql+asyncpg://u@db/tollway", "postgresql+asyncpg://u@db/tollway"),
        ("postgresql://u@db/t?sslmode=require", "postgresql+asyncpg://u@db/t?ssl=require"),
    ],
)
def test_async_url_maps_configured_urls_to_async_drivers(url: str, expected: str) -> None:
    assert async_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://u:p@db/x", "postgresql+psycopg2://u@db/x", "redis://127.0.0.1", "not a url"])
def test_async_url_rejects_other_databases_with_a_clear_message(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///.*postgresql://"):
        async_url(url)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_postgres_names_the_url_without_password_and_the_reason() -> None:
    url = f"postgresql://tollway:s3cret-pw@127.0.0.1:{_closed_port()}/tollway"
    db = Database(url)
    with pytest.raises(DatabaseUnavailable) as caught:
        await db.ping()
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "postgresql+asyncpg://tollway:***@127.0.0.1:" in message
    assert message.split(": ", 1)[1]  # a reason follows the URL
    await db.close()
    with pytest.raises(DatabaseUnavailable, match="cannot reach the database"):
        await migrate.upgrade(url)


async def test_unopenable_sqlite_file_names_the_path_and_the_reason(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/missing/dir/tollway.db"
    db = Database(url)
    with pytest.raises(DatabaseUnavailable, match=r"missing/dir/tollway\.db: directory .*missing/dir does not exist"):
        await db.ping()
    await db.close()


async def test_an_sqlite_file_that_cannot_be_created_names_the_reason(tmp_path) -> None:
    (tmp_path / "a-file").write_text("")
    db = Database(f"sqlite:///{tmp_path}/a-file")
    (tmp_path / "a-file").unlink()
    (tmp_path / "a-file").mkdir()  # a directory where the database file should be
    with pytest.raises(DatabaseUnavailable, match=r"a-file: OperationalError: unable to open database file"):
        await db.ping()
    await db.close()
    # A failed aiosqlite connect leaves its worker thread behind (omnilib/aiosqlite#241);
    # let it stop while this test's event loop still runs.
    gc.collect()
    await asyncio.sleep(0.05)


async def test_sqlite_connections_enforce_foreign_keys_in_wal_mode(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    async with db.session() as session:
        assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await session.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
    await db.close()


async def test_session_commits_on_success_and_rolls_back_on_error(database_url: str) -> None:
    db = Database(database_url)
    async with db.session() as session:
        await session.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("boom")
    async with db.session() as session:
        await session.execute(text("INSERT INTO t VALUES (2)"))
    async with db.session() as session:
        assert (await session.execute(text("SELECT x FROM t"))).scalars().all() == [2]
    await db.ping()
    await db.close()
