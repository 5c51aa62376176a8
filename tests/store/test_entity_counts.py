"""The stored row counts of keys, teams and customers (`tollway.store.entity_counts`,
migration 0017_entity_counts): exact after single and multi-row inserts and deletes, at
the migration of a database that has rows already, under concurrent writers on
PostgreSQL, and unchanged by a transaction that fails. A later migration that rebuilds
one of these tables must keep its triggers: these tests then fail."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from tollway.store import migrate
from tollway.store.database import Database
from tollway.store.entity_counts import COUNTED, stored_count
from tollway.store.tables import Customer, EntityCount, Team, VirtualKey


def key_rows(prefix: str, count: int) -> list[dict[str, object]]:
    return [{"id": f"{prefix}-{i}", "name": f"{prefix} {i}", "value_hash": f"{prefix}-hash-{i}",
             "value_prefix": "tw-", "allowed_models": []} for i in range(count)]


async def counts(db: Database) -> dict[str, int]:
    """Each counted table's stored count, checked against a real count."""
    async with db.session() as session:
        stored = dict((await session.execute(select(EntityCount.table_name, EntityCount.row_count))).all())
        for table in COUNTED:
            actual = await session.scalar(text(f"SELECT count(*) FROM {table}"))
            assert stored[table] == actual, (table, stored[table], actual)
    return stored


async def test_inserts_and_deletes_of_one_or_many_rows_keep_the_counts_exact(db: Database) -> None:
    assert await counts(db) == {"virtual_keys": 0, "teams": 0, "customers": 0}
    async with db.session() as session:
        session.add(Team(id="t", name="t"))
        session.add(Customer(id="c", name="c"))
        await session.flush()
        await session.execute(insert(VirtualKey), key_rows("bulk", 250))  # one statement, many rows
        session.add(VirtualKey(**key_rows("orm", 1)[0]))
    assert await counts(db) == {"virtual_keys": 251, "teams": 1, "customers": 1}

    async with db.session() as session:
        await session.execute(delete(VirtualKey).where(VirtualKey.id.like("bulk-1%")))  # 1, 10-19, 100-199
        await session.execute(delete(VirtualKey).where(VirtualKey.id == "nothing"))  # deletes nothing
        await session.execute(delete(Customer))
    assert await counts(db) == {"virtual_keys": 251 - 111, "teams": 1, "customers": 0}


async def test_a_failed_transaction_leaves_the_count_as_it_was(db: Database) -> None:
    async with db.session() as session:
        await session.execute(insert(VirtualKey), key_rows("kept", 3))
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            await session.execute(insert(VirtualKey), key_rows("undone", 40))
            await session.execute(delete(VirtualKey).where(VirtualKey.id == "kept-0"))
            raise RuntimeError("the change fails after its writes")
    assert (await counts(db))["virtual_keys"] == 3


async def test_the_migration_counts_the_rows_a_database_has_already(database_url: str) -> None:
    await migrate.upgrade(database_url, "0016_report_rollups")  # the revision before the counts
    db = Database(database_url)
    async with db.session() as session:
        await session.execute(insert(VirtualKey), key_rows("old", 17))
        await session.execute(insert(Team), [{"id": f"team-{i}", "name": "old"} for i in range(4)])
    await migrate.upgrade(database_url)
    assert await counts(db) == {"virtual_keys": 17, "teams": 4, "customers": 0}
    async with db.session() as session:  # and the triggers work from there on
        await session.execute(insert(VirtualKey), key_rows("new", 2))
    assert (await counts(db))["virtual_keys"] == 19
    await db.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_writers_on_postgresql_give_the_exact_count(db: Database) -> None:
    """Twenty transactions at once on their own connections, inserting and deleting keys
    (no config lock: the count's own row lock is what keeps it exact)."""
    async with db.session() as session:
        await session.execute(insert(VirtualKey), key_rows("doomed", 20))

    async def writer(index: int) -> None:
        async with db.session() as session:
            await session.execute(insert(VirtualKey), key_rows(f"w{index}", 5 + index))
            await session.execute(delete(VirtualKey).where(VirtualKey.id == f"doomed-{index}"))
            await asyncio.sleep(0.01)  # holds its transaction open while the others write

    await asyncio.gather(*(writer(index) for index in range(20)))
    assert (await counts(db))["virtual_keys"] == sum(5 + index for index in range(20))


async def test_only_an_unfiltered_count_of_a_counted_table_is_read_from_the_store(db: Database) -> None:
    async with db.session() as session:
        await session.execute(insert(VirtualKey), key_rows("k", 5))
        # A count the triggers did not make: read back as is, which shows where it came from.
        await session.execute(text("UPDATE entity_counts SET row_count = 1000 WHERE table_name = 'virtual_keys'"))

    def read(session: Session) -> list[int | None]:
        return [stored_count(session, select(VirtualKey)),
                stored_count(session, select(VirtualKey).where(VirtualKey.is_active)),
                stored_count(session, select(VirtualKey).group_by(VirtualKey.team_id)),
                stored_count(session, select(func.count()).select_from(EntityCount)),
                stored_count(session, select(Team))]

    async with db.session() as session:
        assert await session.run_sync(read) == [1000, None, None, None, 0]
