"""The reports benchmark's bulk seeder (`bench/report_seed.py`) writes exactly what the
gateway itself would have: the same request-log rows and the same rollups as the
request-log writer adds batch by batch for the same requests, on SQLite and PostgreSQL —
else the benchmark would time reports over data the gateway never produces."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, select

from tollway.store import migrate
from tollway.store.database import Database
from tollway.store.request_log import RequestLogWriter
from tollway.store.tables import RequestLog, SpendRollup, SpendRollupHour, SpendTotal

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from report_seed import as_record, fill_postgres, fill_sqlite, synthetic_rows  # bench/ is on the path only here

NOW = datetime(2026, 12, 2, 5, 17, 3, 250_000, tzinfo=timezone.utc)  # 3 days back cross a month's end
TABLES = [cast(Table, model.__table__) for model in (RequestLog, SpendTotal, SpendRollup, SpendRollupHour)]


async def _contents(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the log and the rollups, without the generated ids, sorted."""
    found = {}
    async with db.engine.connect() as connection:
        for table in TABLES:
            columns = [column for column in table.c if column.name != "id"]
            rows = (await connection.execute(select(*columns))).all()
            found[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return found


@pytest.fixture
def seeded_url(database_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A second empty database of the same kind as ``database_url``."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'seeded.db'}"
    return cast(str, request.getfixturevalue("postgres_server").create_database())


async def test_seeded_rows_and_rollups_equal_what_the_gateway_writes(database_url: str, seeded_url: str) -> None:
    rows = list(synthetic_rows(6000, NOW, seed=5, days=3))  # ~80 a hour: groups of several rows
    await migrate.upgrade(database_url)
    written = Database(database_url)
    writer = RequestLogWriter(written, batch_size=211)  # batches that split hours between them
    for row in rows:
        writer.write(as_record(row))
    assert await writer.flush()
    await writer.close()

    await migrate.upgrade(seeded_url)
    if seeded_url.startswith("sqlite"):
        await asyncio.to_thread(fill_sqlite, seeded_url.removeprefix("sqlite:///"), iter(rows))
    else:
        await fill_postgres(seeded_url, iter(rows))
    seeded = Database(seeded_url)
    try:
        expected, got = await _contents(written), await _contents(seeded)
        assert len(expected["request_logs"]) == 6000
        assert {len(rows) > 0 for rows in expected.values()} == {True}
        for table in TABLES:
            assert got[table.name] == expected[table.name], table.name
    finally:
        await written.close()
        await seeded.close()
