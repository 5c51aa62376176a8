"""Request tags: spelling, a key's allowed and forced tags, and the limits tags add to a plan."""

from __future__ import annotations

import time

import pytest

from tests import factories as f
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.decisions import Decision
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import plan
from tollway.governance.inventory import key_checks, snapshot_checks
from tollway.governance.model import Kind, Level
from tollway.governance.tags import (
    MAX_REQUEST_TAGS,
    MAX_TAG_LENGTH,
    BadTag,
    TagPlanner,
    header_tags,
    key_tags,
    normalise_tag,
    normalise_tags,
)

NOW = f.at(2026, 5, 10, 8)
A, B = f.key_value("a"), f.key_value("b")


@pytest.mark.parametrize(("text", "tag"), [
    ("support", "support"), ("  Support ", "support"), ("FINANCE", "finance"), ("cost-centre:42", "cost-centre:42"),
    ("team/search.v2_b", "team/search.v2_b"), ("x" * MAX_TAG_LENGTH, "x" * MAX_TAG_LENGTH),
], ids=["plain", "spaces-and-case", "upper", "colon", "slash-dot-underscore", "longest"])
def test_a_tag_is_trimmed_and_lower_cased(text: str, tag: str) -> None:
    assert normalise_tag(text) == tag


@pytest.mark.parametrize("text", [
    "", "   ", "two words", "fin\tance", "fіnance",  # Cyrillic і: a look-alike is refused, never folded
    "ﬁnance",  # a ligature NFKC would fold to "finance"
    "x" * (MAX_TAG_LENGTH + 1), "a,b", "emoji-🙂", "semi;colon", "quote\"",
], ids=["empty", "blank", "space", "tab", "cyrillic", "ligature", "too-long", "comma", "emoji", "semicolon", "quote"])
def test_a_tag_outside_the_charset_is_refused_not_folded(text: str) -> None:
    with pytest.raises(BadTag):
        normalise_tag(text)


def test_header_tags_are_split_on_commas_deduplicated_across_spellings() -> None:
    assert header_tags("Support, search ,SUPPORT,support ") == ("support", "search")
    assert header_tags("   ") == ()


def test_an_empty_item_in_the_header_is_refused() -> None:
    with pytest.raises(BadTag, match="empty"):
        header_tags("a,,b")
    with pytest.raises(BadTag, match="empty"):
        header_tags("a,")


def test_ten_thousand_tags_are_refused_after_the_limit_without_reading_them_all() -> None:
    many = ",".join(f"t{i}" for i in range(10_000))
    started = time.perf_counter()
    with pytest.raises(BadTag, match=f"at most {MAX_REQUEST_TAGS}"):
        header_tags(many)
    assert time.perf_counter() - started < 0.05
    # The same tag many times is one tag: duplicates do not count toward the limit.
    assert normalise_tags(["a"] * 10_000) == ("a",)


def test_allowed_tags_refuse_another_tag_naming_it() -> None:
    key = f.virtual_key("vk", name="svc", allowed_tags=["support", "search"])
    denial = key_tags(key, ("support", "finance"))
    assert denial.decision is Decision.TAG_NOT_ALLOWED and denial.decision.status == 403
    assert "'finance'" in denial.message and "search, support" in denial.message
    assert denial.scope.level is Level.VIRTUAL_KEY and denial.scope.id == "vk"
    assert key_tags(key, ("search",)) == ("search",)


def test_forced_tags_are_added_and_always_allowed() -> None:
    key = f.virtual_key("vk", allowed_tags=["support"], forced_tags=["cc:42"])
    assert key_tags(key, ()) == ("cc:42",)
    assert key_tags(key, ("support",)) == ("support", "cc:42")
    assert key_tags(key, ("cc:42",)) == ("cc:42",)  # named and forced: once


def tagged_world(*, unique: str = "w"):
    """Two keys (one forcing "cc"), a tag "support" with a budget and request limit, a tag
    "cc" with a concurrency limit; a key-level concurrency limit to check ordering."""
    support = f.tag("support", budget=f.budget("0.000003", "1d", id=f"tb-{unique}"),
                    rate_limit=f.rate_limit(requests=5, id=f"trl-{unique}"))
    cc = f.tag("cc", concurrency=f.concurrency(1, id=f"tc-{unique}"))
    keys = {A: f.virtual_key("a", concurrency=f.concurrency(10, id=f"kc-{unique}")),
            B: f.virtual_key("b", forced_tags=["cc"])}
    return f.snapshot(keys=keys, tags=[support, cc])


async def test_a_tag_budget_is_shared_by_every_key_that_tags_requests_with_it() -> None:
    snap, enforcer = tagged_world(), Enforcer(MemoryCounterStore(), lambda: NOW)
    first = await enforcer.admit(snap, f.facts(key=A, tokens=10, cost_nano=2000, tags=("support",)))
    second = await enforcer.admit(snap, f.facts(key=B, tokens=10, cost_nano=2000, tags=("support",)))
    assert first.allowed and not second.allowed
    assert second.denial.decision is Decision.BUDGET_EXCEEDED
    assert (second.denial.scope.level, second.denial.scope.id) == (Level.TAG, "support")
    untagged = await enforcer.admit(snap, f.facts(key=B, tokens=10, cost_nano=2000))
    assert untagged.allowed  # the tag's budget binds only requests that carry it


async def test_a_forced_tag_binds_requests_that_omit_it() -> None:
    snap, enforcer = tagged_world(), Enforcer(MemoryCounterStore(), lambda: NOW)
    held = await enforcer.admit(snap, f.facts(key=B))
    assert held.allowed and held.tags == ("cc",)
    refused = await enforcer.admit(snap, f.facts(key=B, tags=("support",)))
    assert refused.denial.decision is Decision.CONCURRENCY_LIMITED and refused.denial.scope.id == "cc"
    assert refused.tags == ("support", "cc")
    await enforcer.release(held.reservation)
    assert (await enforcer.admit(snap, f.facts(key=B))).allowed


async def test_a_tag_not_allowed_is_refused_before_any_counter() -> None:
    store = MemoryCounterStore()
    snap = f.snapshot(keys={A: f.virtual_key("a", allowed_tags=["support"])},
                      tags=[f.tag("finance", rate_limit=f.rate_limit(requests=1, id="fin"))])
    admission = await Enforcer(store, lambda: NOW).admit(snap, f.facts(key=A, tags=("finance",)))
    assert admission.denial.decision is Decision.TAG_NOT_ALLOWED
    assert admission.key_id == "a" and admission.tags == ("finance",)
    explanation = await Enforcer(store, lambda: NOW).explain(snap, f.facts(key=A, tags=("finance",)))
    assert explanation.decision is Decision.TAG_NOT_ALLOWED


def test_tag_checks_come_after_the_other_levels_and_their_slots_last() -> None:
    snap = tagged_world()
    planner = TagPlanner()
    planned = _plan(snap, A, ("support", "cc"), planner)
    levels = [(check.scope.level, check.kind) for check in planned.checks]
    assert levels == [(Level.TAG, Kind.REQUESTS), (Level.TAG, Kind.BUDGET), (Level.VIRTUAL_KEY, Kind.IN_FLIGHT),
                      (Level.TAG, Kind.IN_FLIGHT)]
    assert planned.amounts == (1, 1_000, 1, 1)


async def test_the_checks_of_a_tag_set_are_built_once_per_snapshot() -> None:
    snap, enforcer = tagged_world(), Enforcer(MemoryCounterStore(), lambda: NOW)

    async def checks(snapshot, tags):
        admission = await enforcer.admit(snapshot, f.facts(key=A, tags=tags))
        await enforcer.release(admission.reservation)
        return admission.reservation.plan.checks

    first = await checks(snap, ("support",))
    assert await checks(snap, ("support",)) is first
    assert await checks(snap, ("support", "search")) is not first  # another tag set: its own entry
    assert await checks(tagged_world(), ("support",)) is not first  # a new snapshot: rebuilt


def test_without_tag_limits_a_tagged_request_keeps_the_static_checks() -> None:
    snap = f.snapshot(keys={A: f.virtual_key("a", rate_limit=f.rate_limit(requests=3))})
    facts = f.facts(key=A, tags=("support", "search"))
    planned = plan(snap, facts, now_ms=NOW)
    checks, amounts = planned.checks, planned.amounts
    assert TagPlanner().apply(snap, facts, planned) is planned
    assert planned.checks is checks and planned.amounts is amounts  # the very same tuples: no work done
    assert planned.tags == ("support", "search")


def test_a_tag_without_limits_in_a_snapshot_with_some_adds_nothing() -> None:
    snap = tagged_world()
    planned = _plan(snap, A, ("search",), TagPlanner())
    assert [c.scope.level for c in planned.checks] == [Level.VIRTUAL_KEY]


def test_inventory_lists_tag_limits_and_those_that_bind_a_key() -> None:
    snap = f.snapshot(keys={A: f.virtual_key("a", allowed_tags=["support"]), B: f.virtual_key("b", forced_tags=["cc"])},
                      tags=[f.tag("support", budget=f.budget(1)), f.tag("cc", rate_limit=f.rate_limit(requests=2)),
                            f.tag("other", budget=f.budget(1))])
    assert {c.scope.id for c, _ in snapshot_checks(snap) if c.scope.level is Level.TAG} == {"support", "cc", "other"}
    by_key = {key.id: {c.scope.id for c, _ in key_checks(snap, key)} for key in snap.keys_by_hash.values()}
    assert by_key == {"a": {"support"}, "b": {"cc"}}  # neither key has limits of its own


def _plan(snap, key_value: str, tags: tuple[str, ...], planner: TagPlanner):
    facts = f.facts(key=key_value, tags=tags)
    planned = plan(snap, facts, now_ms=NOW)
    return planner.apply(snap, facts, planned)
