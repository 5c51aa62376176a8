"""The enforcer's memos (static checks, end users' checks, tags' checks) outlive a
change to other keys, and still decide exactly as a fresh enforcer would after every
kind of change applied incrementally: a key's team, limits, status or value, a team's
or customer's limits, providers, models and tags."""

from __future__ import annotations

import pytest

from tests.store.test_policy_changes import (
    STEPS,
    block_key,
    change_team_budget,
    commit_change,
    create_customer,
    create_key,
    create_team,
    following,
)
from tollway.config.schema import BudgetConfig
from tollway.governance import enforcer as enforcer_module
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import RequestFacts
from tollway.governance.model import PolicySnapshot
from tollway.store.database import Database
from tollway.store.entities import EntityWriter
from tollway.store.tables import Customer, VirtualKey

T0_MS = 1_767_225_600_000
ROUTES = [("local", "gpt-4o-mini"), ("openai", "gpt-4o"), ("openai", "o3"), ("anthropic", "claude-3")]
VARIANTS = [{}, {"tags": ("support",)}, {"end_user": "user-1"}]


def every_request(snapshot: PolicySnapshot) -> list[RequestFacts]:
    """Each held key (and no key) on each route, plain, tagged and for an end user."""
    hashes: list[str | None] = [*sorted(snapshot.keys_by_hash), None]
    return [RequestFacts(provider, model, key_hash, 100, 1_000_000, **variant)  # type: ignore[arg-type]
            for key_hash in hashes for provider, model in ROUTES for variant in VARIANTS]


def change_key_budget(writer: EntityWriter, key_id: str = "vk-search") -> None:
    row = writer.session.get(VirtualKey, key_id)
    diff: dict[str, object] = {}
    writer.sync_budget(row, BudgetConfig(max_limit=3, reset_duration="1d"), diff)
    writer.record(row, "virtual_key", key_id, diff)


def change_active_key_budget(writer: EntityWriter) -> None:
    change_key_budget(writer, "vk-ads")  # vk-search is blocked by then: its requests build no checks


def move_active_key_to_another_team(writer: EntityWriter) -> None:
    row, diff = writer.upsert(writer.session.get(VirtualKey, "vk-ads"), VirtualKey, {}, {"team_id": "search"})
    writer.record(row, "virtual_key", "vk-ads", diff)


def change_customer_budget(writer: EntityWriter) -> None:
    row = writer.session.get(Customer, "globex")
    diff: dict[str, object] = {}
    writer.sync_budget(row, BudgetConfig(max_limit=1, reset_duration="1d"), diff)
    writer.record(row, "customer", "globex", diff)


async def test_memoised_explanations_equal_a_fresh_enforcers_after_every_change(db: Database) -> None:
    follower = await following(db)
    store = MemoryCounterStore()
    memoised = Enforcer(store, lambda: T0_MS)
    steps = [*STEPS[:-1], change_active_key_budget, move_active_key_to_another_team, change_customer_budget, STEPS[-1]]
    assert block_key in steps and change_team_budget in steps
    for step in steps:
        for facts in every_request(follower.snapshot):  # the memos filled under the snapshot before the change
            await memoised.explain(follower.snapshot, facts)
        await commit_change(db, step)
        snapshot = await follower.refresh()
        assert follower.full_loads == 1  # applied incrementally: maps not changed are the same objects
        fresh = Enforcer(store, lambda: T0_MS)
        for facts in every_request(snapshot):
            assert await memoised.explain(snapshot, facts) == await fresh.explain(snapshot, facts), step.__name__


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The key ids whose static checks the enforcer builds (memo misses)."""
    ids: list[str | None] = []
    real = enforcer_module.static_checks

    def counting(snapshot, key, provider, model):  # type: ignore[no-untyped-def]
        ids.append(key.id if key is not None else None)
        return real(snapshot, key, provider, model)

    monkeypatch.setattr(enforcer_module, "static_checks", counting)
    return ids


async def test_a_change_to_one_key_rebuilds_only_that_keys_checks(db: Database, built: list[str | None]) -> None:
    follower = await following(db)
    for step in (create_customer, create_team, create_key):
        await commit_change(db, step)
    snapshot = await follower.refresh()
    enforcer = Enforcer(MemoryCounterStore(), lambda: T0_MS)
    requests = [RequestFacts("local", "gpt-4o-mini", key_hash, 100, 1_000_000) for key_hash in snapshot.keys_by_hash]
    for facts in requests:
        await enforcer.explain(snapshot, facts)
    assert sorted(built) == ["vk-ads", "vk-search"]

    built.clear()
    await commit_change(db, change_key_budget)  # vk-search: a new policy object; vk-ads keeps its own
    snapshot = await follower.refresh()
    for facts in [RequestFacts("local", "gpt-4o-mini", key_hash, 100, 1_000_000) for key_hash in snapshot.keys_by_hash]:
        await enforcer.explain(snapshot, facts)
    assert built == ["vk-search"]

    built.clear()
    await commit_change(db, change_team_budget)  # teams may be anyone's: everything is rebuilt
    snapshot = await follower.refresh()
    for facts in [RequestFacts("local", "gpt-4o-mini", key_hash, 100, 1_000_000) for key_hash in snapshot.keys_by_hash]:
        await enforcer.explain(snapshot, facts)
    assert sorted(built) == ["vk-ads", "vk-search"]
