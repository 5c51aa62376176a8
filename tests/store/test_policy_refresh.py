"""Refreshes of the policy asked for at once (an API change each, and the poller) are
run once: a call joins a refresh that has not started yet, which reads the version after
the call's change and so brings it; a call made once a refresh has started waits for
the next one, and a caller that goes away takes the refresh away from nobody."""

from __future__ import annotations

import asyncio

import pytest

from tests.store.example import SEARCH_VK, settings, sha256
from tests.store.test_policy_changes import block_key, commit_change, create_customer, create_team
from tollway.store import policy_sync
from tollway.store.bootstrap import apply_config
from tollway.store.database import Database
from tollway.store.policy_sync import PolicyFollower


async def follower_of(db: Database) -> PolicyFollower:
    await apply_config(db, settings())
    follower = PolicyFollower(db, enforce_virtual_keys=True)
    await follower.reload()
    return follower


async def test_calls_made_together_run_one_refresh_that_brings_every_change(db: Database) -> None:
    follower = await follower_of(db)
    await commit_change(db, create_customer)
    latest = await commit_change(db, create_team)

    snapshots = await asyncio.gather(*(follower.refresh() for _ in range(10)))

    assert follower.refreshes == 1
    assert {snapshot.version for snapshot in snapshots} == {latest}
    assert "globex" in snapshots[-1].customers


async def test_a_call_made_after_a_refresh_started_gets_the_next_one(db: Database,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    follower = await follower_of(db)
    started, go_on = asyncio.Event(), asyncio.Event()
    real_read = policy_sync.read_version

    async def paused_read(session):  # the first refresh stops right after reading the version
        version = await real_read(session)
        if not started.is_set():
            started.set()
            await go_on.wait()
        return version

    monkeypatch.setattr(policy_sync, "read_version", paused_read)
    before = await commit_change(db, create_customer)
    first = asyncio.create_task(follower.refresh())
    await started.wait()
    blocked = await commit_change(db, block_key)  # after the first refresh read the version
    second = asyncio.create_task(follower.refresh())
    await asyncio.sleep(0.05)
    go_on.set()

    assert (await first).version == before
    assert (await second).version == blocked and not (await second).keys_by_hash[sha256(SEARCH_VK)].is_active
    assert follower.refreshes == 2


async def test_a_caller_that_goes_away_leaves_the_refresh_to_those_waiting(db: Database) -> None:
    follower = await follower_of(db)
    latest = await commit_change(db, create_customer)
    async with follower._lock:  # a refresh in progress: the next one waits for its turn
        leaving = asyncio.create_task(follower.refresh())
        staying = asyncio.create_task(follower.refresh())
        await asyncio.sleep(0.01)
        leaving.cancel()
    assert (await staying).version == latest and "globex" in (await staying).customers
    assert leaving.cancelled() and follower.refreshes == 1
