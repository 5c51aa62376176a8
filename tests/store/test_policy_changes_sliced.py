"""A large change (a bulk call creating thousands of keys in one version) is read from
the log a page at a time and applied in slices with the event loop running between
them, and no request ever sees part of it: the snapshot a reader gets is the one before
the change or the one after it."""

from __future__ import annotations

import asyncio

import pytest

from tests.store.example import sha256
from tests.store.test_policy_changes import commit_change, create_customer, following, full, plain
from tollway.store import changes as change_log
from tollway.store import policy_changes
from tollway.store.database import Database
from tollway.store.entities import EntityWriter
from tollway.store.tables import VirtualKey

NEW_KEYS = 300


def create_many_keys(writer: EntityWriter) -> None:
    for index in range(NEW_KEYS):
        key_id = f"vk-bulk-{index:04d}"
        values = {"name": key_id, "allowed_models": [], "value_hash": sha256(f"tw-bulk-{index:04d}-0123456789abcdef"),
                  "value_prefix": "tw-bulk-"}
        row, diff = writer.upsert(None, VirtualKey, {"id": key_id}, values)
        writer.record(row, "virtual_key", key_id, diff)


async def test_a_large_change_is_applied_in_slices_and_seen_whole_or_not_at_all(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_changes, "_APPLY_BATCH", 10)
    follower = await following(db)
    before = len(follower.snapshot.keys_by_hash)
    await commit_change(db, create_many_keys)
    applying = False
    turns_while_applying = 0
    seen: set[int] = set()
    real_entries = policy_changes.PolicyReader.virtual_key_entries

    def entries(self, row, configs):  # type: ignore[no-untyped-def]
        nonlocal applying
        applying = True  # from the first key rebuilt on: the loop turns counted below ran between slices
        return real_entries(self, row, configs)

    monkeypatch.setattr(policy_changes.PolicyReader, "virtual_key_entries", entries)

    async def a_request_each_turn() -> None:
        nonlocal turns_while_applying
        while not refreshed.done():
            seen.add(len(follower.snapshot.keys_by_hash))
            turns_while_applying += applying
            await asyncio.sleep(0)

    refreshed = asyncio.create_task(follower.refresh())
    await asyncio.gather(a_request_each_turn(), refreshed)

    assert seen <= {before, before + NEW_KEYS}  # never a part of the change
    assert len(follower.snapshot.keys_by_hash) == before + NEW_KEYS
    assert follower.full_loads == 1
    assert turns_while_applying >= NEW_KEYS // 10 - 1  # the loop ran between slices of ten keys


async def test_the_log_is_read_a_page_at_a_time_and_pages_split_a_version_exactly(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    follower = await following(db)
    held = follower.snapshot.version
    await commit_change(db, create_many_keys)  # one version of 300 changes: split across pages
    current = await commit_change(db, create_customer)
    async with db.session() as session:
        whole = await change_log.changes_since(session, held, current)
        monkeypatch.setattr(change_log, "CHANGES_PER_READ", 7)
        paged = await change_log.changes_since(session, held, current)
    assert whole is not None and len(whole) == NEW_KEYS + 1
    assert paged == whole
    await follower.refresh()
    assert follower.full_loads == 1
    assert plain(follower.snapshot) == await full(db)
