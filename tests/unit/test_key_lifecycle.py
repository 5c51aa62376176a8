"""Pure parts of the key lifecycle and of what a key's holder sees: expiry against the
clock passed in, a rotated-out value, the limits that bind one key, and the budget
headers' figures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests import factories as f
from tollway.governance.decisions import Decision, Denial, usd_plain
from tollway.governance.engine import Plan, identify_key, plan
from tollway.governance.inventory import key_checks, snapshot_checks
from tollway.governance.model import Level

VK = f.key_value("holder")
RETIRED = f.key_value("retired")
EXPIRES = f.at(2026, 12, 31)


@pytest.mark.parametrize(("now", "expired"), [(EXPIRES - 1, False), (EXPIRES, True), (EXPIRES + 86_400_000, True)])
def test_a_key_expires_at_its_instant_on_the_clock_passed_in(now: int, expired: bool) -> None:
    key = replace(f.virtual_key("vk", name="holder"), expires_at_ms=EXPIRES)
    snap = f.snapshot(keys={VK: key})
    found = identify_key(snap, f.facts(key=VK).key_hash, now)
    planned = plan(snap, f.facts(key=VK), now_ms=now)
    if expired:
        assert isinstance(found, Denial) and found.decision is Decision.VIRTUAL_KEY_EXPIRED
        assert found.decision.status == 401 and "expired at 2026-12-31T00:00:00Z" in found.message
        assert isinstance(planned, Denial) and planned.decision is Decision.VIRTUAL_KEY_EXPIRED
    else:
        assert found is key and isinstance(planned, Plan)


def test_an_expired_key_is_refused_before_its_blocked_state_or_limits_say_anything() -> None:
    key = replace(f.virtual_key("vk", active=False, budget=f.budget(0.000001)), expires_at_ms=EXPIRES)
    denial = plan(f.snapshot(keys={VK: key}), f.facts(key=VK), now_ms=EXPIRES)
    assert isinstance(denial, Denial) and denial.decision is Decision.VIRTUAL_KEY_EXPIRED and denial.limit is None


def test_a_rotated_out_value_says_it_was_replaced_and_is_the_same_key_until_then() -> None:
    key = f.virtual_key("vk", name="holder", budget=f.budget(5))
    retired = replace(key, expires_at_ms=EXPIRES, retired_value=True)
    snap = f.snapshot(keys={VK: replace(key, previous_hash=f.facts(key=RETIRED).key_hash), RETIRED: retired})
    assert identify_key(snap, f.facts(key=RETIRED).key_hash, EXPIRES - 1) is retired
    denial = identify_key(snap, f.facts(key=RETIRED).key_hash, EXPIRES)
    assert isinstance(denial, Denial) and "replaced by a rotation" in denial.message
    # Listed once, under its current value: the usage API and alerts see one key.
    assert [check.scope.id for check, _ in snapshot_checks(snap)] == ["vk"]
    assert key_checks(snap, retired) == key_checks(snap, key)


@pytest.mark.parametrize(("nano", "text"), [(0, b"0"), (-5, b"0"), (1, b"0.000000001"), (1_000_000_000, b"1"),
                                            (9_999_500_000, b"9.9995"), (123_450_000_000, b"123.45")])
def test_the_remaining_budget_is_a_plain_exact_decimal(nano: int, text: bytes) -> None:
    assert usd_plain(nano) == text


def test_key_checks_are_the_limits_that_bind_the_key_and_no_others() -> None:
    budget = f.budget(1)
    key = f.virtual_key("vk-a", team_id="search", allowed_models=["gpt-4o-mini", "anthropic/claude-x"],
                        provider_configs=[f.provider_config("openai", budget=f.budget(2)),
                                          f.provider_config("anthropic")], budget=budget)
    snap = f.snapshot(
        providers=[f.provider("openai", budget=f.budget(9)), f.provider("azure", budget=f.budget(9))],
        model_configs=[f.model_config("gpt-4o-mini", "openai", budget=f.budget(3)),
                       f.model_config("gpt-4o-mini", "azure", budget=f.budget(3)),  # a provider it may not use
                       f.model_config("claude-x", budget=f.budget(3)),  # any provider: allowed as anthropic/claude-x
                       f.model_config("o3", budget=f.budget(3))],  # a model it may not use
        keys={VK: key, f.key_value("b"): f.virtual_key("vk-b", team_id="search", budget=f.budget(7))},
        teams=[f.team("search", customer_id="acme", budget=f.budget(50)), f.team("ads", budget=f.budget(50))],
        customers=[f.customer("acme", budget=f.budget(100)), f.customer("globex", budget=f.budget(100))],
    )
    seen = [(check.scope.level, check.scope.id, parent) for check, parent in key_checks(snap, key)]
    assert seen == [
        (Level.PROVIDER, "openai", None), (Level.MODEL, "claude-x", None), (Level.MODEL, "openai/gpt-4o-mini", None),
        (Level.VIRTUAL_KEY, "vk-a", None), (Level.PROVIDER_CONFIG, "vk-a/openai", "vk-a"),
        (Level.TEAM, "search", None), (Level.CUSTOMER, "acme", None),
    ]
