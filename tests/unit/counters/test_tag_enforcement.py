"""Tag limits under real concurrency, on every counter backend: a tag's counters are shared
by every key that tags requests with it (or has it forced), and its request limit, budget
and concurrency limit hold exactly however many keys race for them."""

from __future__ import annotations

import asyncio
import uuid

from tests import factories as f
from tollway.governance.counters.base import CounterStore
from tollway.governance.decisions import Decision
from tollway.governance.enforcer import Enforcer
from tollway.governance.model import Level

NOW = f.at(2026, 5, 10, 8)
KEYS = [f.key_value(f"k{i}") for i in range(4)]


def world(unique: str, *, requests: int | None = None, budget_usd: str | None = None, slots: int | None = None):
    """Four keys, the last forcing tag "support" on its requests; tag "support" has the limits given."""
    support = f.tag(
        "support",
        rate_limit=f.rate_limit(requests=requests, request_window="1h", id=f"rl-{unique}") if requests else None,
        budget=f.budget(budget_usd, "1d", id=f"b-{unique}") if budget_usd else None,
        concurrency=f.concurrency(slots, id=f"c-{unique}") if slots else None,
    )
    keys = {value: f.virtual_key(f"k{i}", forced_tags=["support"] if i == 3 else ()) for i, value in enumerate(KEYS)}
    return f.snapshot(keys=keys, tags=[support])


def tags_for(index: int) -> tuple[str, ...]:
    """What request ``index`` names: key 3 names nothing (its tag is forced)."""
    return () if index % 4 == 3 else ("support",)


async def test_a_tag_request_limit_is_exact_across_keys_under_200_concurrent_requests(counter_store: CounterStore) -> None:
    snap = world(uuid.uuid4().hex[:8], requests=37)
    enforcer = Enforcer(counter_store, lambda: NOW)
    admissions = await asyncio.gather(*(
        enforcer.admit(snap, f.facts(key=KEYS[i % 4], tags=tags_for(i))) for i in range(200)))
    admitted = [a for a in admissions if a.allowed]
    assert len(admitted) == 37
    denied = {(a.denial.decision, a.denial.scope.level, a.denial.scope.id) for a in admissions if not a.allowed}
    assert denied == {(Decision.REQUEST_LIMITED, Level.TAG, "support")}
    assert len({a.key_id for a in admitted}) > 1  # one counter for every key, the forced one included


async def test_a_tag_budget_is_never_overspent_by_concurrent_keys(counter_store: CounterStore) -> None:
    snap = world(uuid.uuid4().hex[:8], budget_usd="0.000010")  # 10,000 nano-dollars: ten requests of 1,000
    enforcer = Enforcer(counter_store, lambda: NOW)
    admissions = await asyncio.gather(*(
        enforcer.admit(snap, f.facts(key=KEYS[i % 4], tokens=5, cost_nano=1_000, tags=tags_for(i))) for i in range(120)))
    admitted = [a for a in admissions if a.allowed]
    assert len(admitted) == 10
    await asyncio.gather(*(enforcer.settle(a.reservation, 5, 1_000) for a in admitted))
    again = await enforcer.admit(snap, f.facts(key=KEYS[3], tokens=5, cost_nano=1))  # forced: no way around it
    assert again.denial.decision is Decision.BUDGET_EXCEEDED and again.denial.scope.id == "support"
    assert again.denial.used == 10_000


async def test_a_tag_concurrency_limit_holds_across_keys_and_frees_on_release(counter_store: CounterStore) -> None:
    snap = world(uuid.uuid4().hex[:8], slots=3)
    enforcer = Enforcer(counter_store, lambda: NOW)
    admissions = await asyncio.gather(*(enforcer.admit(snap, f.facts(key=KEYS[i % 4], tags=tags_for(i)))
                                        for i in range(50)))
    held = [a for a in admissions if a.allowed]
    assert len(held) == 3
    assert {a.denial.decision for a in admissions if not a.allowed} == {Decision.CONCURRENCY_LIMITED}
    await asyncio.gather(*(enforcer.release(a.reservation) for a in held))
    assert (await enforcer.admit(snap, f.facts(key=KEYS[0], tags=("support",)))).allowed
