"""A change applied by the node that commits it, inside its own transaction
(`PolicyFollower.prepare`, then `install` after the commit): every kind of change equals
a full load at its version, nothing is re-read after the commit, and a prepared policy
is never swapped in over one that moved on, nor prepared by a node that is behind."""

from __future__ import annotations

from tests.store.test_policy_changes import (
    STEPS,
    Write,
    change_transaction,
    commit_change,
    create_customer,
    create_team,
    following,
    full,
    plain,
)
from tollway.store.database import Database
from tollway.store.policy_sync import PolicyFollower, PreparedChange


async def commit_prepared(db: Database, follower: PolicyFollower, write: Write) -> PreparedChange | None:
    """`commit_change` as the management API runs it: the follower prepares the change
    in the change's transaction, before the commit."""
    async with change_transaction(db, write) as (session, version, writer):
        return await follower.prepare(session, version, writer.touched)


async def test_every_kind_of_change_prepared_in_its_transaction_equals_a_full_load(db: Database) -> None:
    follower = await following(db)
    for step in STEPS:
        prepared = await commit_prepared(db, follower, step)
        assert prepared is not None, step.__name__
        assert await follower.install(prepared), step.__name__
        assert plain(follower.snapshot) == await full(db), step.__name__
    assert follower.full_loads == 1 and follower.refreshes == 0  # nothing re-read after a commit
    assert follower.changes_applied >= len(STEPS)


async def test_a_prepared_policy_is_not_swapped_in_over_one_that_moved_on(db: Database) -> None:
    follower = await following(db)
    prepared = await commit_prepared(db, follower, create_customer)
    assert prepared is not None
    await follower.refresh()  # the poller got there first (the same version)
    moved_on = follower.policy
    assert not await follower.install(prepared)
    assert follower.policy is moved_on
    assert plain(follower.snapshot) == await full(db)


async def test_a_node_behind_prepares_nothing_and_its_refresh_brings_every_change(db: Database) -> None:
    follower = await following(db)
    await commit_change(db, create_customer)  # made through another node: not yet applied here
    assert await commit_prepared(db, follower, create_team) is None
    await follower.refresh()
    assert "globex" in follower.snapshot.customers and "ads" in follower.snapshot.teams
    assert plain(follower.snapshot) == await full(db)


async def test_a_change_of_a_kind_the_node_cannot_apply_alone_is_left_to_a_refresh(db: Database) -> None:
    follower = await following(db)
    prepared = await commit_prepared(db, follower, lambda writer: writer.audit("create", "admin_token", "t1", None, {}))
    assert prepared is None
    await follower.refresh()
    assert follower.full_loads == 2
