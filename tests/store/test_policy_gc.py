"""A large policy loaded whole is taken out of the garbage collector's scans (a full
collection over 100,000 keys' objects took about a second on a loaded machine); a
small one is left alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.store.example import settings
from tollway.store import policy_sync
from tollway.store.bootstrap import apply_config
from tollway.store.database import Database
from tollway.store.policy_sync import PolicyFollower


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # what this test froze goes back to the collector


async def test_a_policy_with_many_keys_is_frozen_after_a_full_load(db: Database, unfrozen: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    await apply_config(db, settings())
    follower = PolicyFollower(db, enforce_virtual_keys=True)

    await follower.reload()
    assert gc.get_freeze_count() == 0  # a few keys: not worth it

    monkeypatch.setattr(policy_sync, "FREEZE_FROM_KEYS", len(follower.snapshot.keys_by_hash))
    await follower.reload()
    assert gc.get_freeze_count() > 0
    tracked = {id(obj) for obj in gc.get_objects()}
    key = next(iter(follower.snapshot.keys_by_hash.values()))
    assert id(key) not in tracked and id(follower.snapshot) not in tracked
