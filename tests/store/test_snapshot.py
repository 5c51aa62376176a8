"""The PolicySnapshot built from the store: nano amounts, parsed windows, scopes, key lookup."""

from __future__ import annotations

import pytest

from tests.store.example import SEARCH_VK, example_raw, settings, sha256
from tollway.governance.durations import Alignment, Duration
from tollway.governance.model import NANO_PER_USD, Level, RateLimitPolicy, Scope
from tollway.store.bootstrap import apply_config
from tollway.store.database import Database
from tollway.store.snapshot import config_version, load_snapshot


async def test_snapshot_of_the_spec_example(db: Database) -> None:
    await apply_config(db, settings())

    snapshot = await load_snapshot(db, enforce_virtual_keys=True)

    assert snapshot.version == await config_version(db) == 1
    assert snapshot.enforce_virtual_keys is True
    # Only providers with limits need an entry.
    assert set(snapshot.providers) == {"openai"}
    openai = snapshot.providers["openai"]
    assert openai.scope == Scope(Level.PROVIDER, "openai", "openai")
    assert openai.budget is not None and openai.rate_limit is not None
    assert openai.budget.max_limit_nano == 200 * NANO_PER_USD
    assert (openai.budget.duration, openai.budget.alignment) == (Duration(1, "M"), Alignment("UTC", 0))
    assert openai.rate_limit == RateLimitPolicy(openai.rate_limit.id, request_max_limit=3000,
                                                request_duration=Duration(1, "m"))

    assert set(snapshot.model_configs) == {("gpt-4o-mini", "local"), ("gpt-4o-mini", None)}
    on_local = snapshot.model_configs[("gpt-4o-mini", "local")]
    assert (on_local.scope.level, on_local.scope.name, on_local.budget) == (Level.MODEL, "local/gpt-4o-mini", None)
    anywhere = snapshot.model_configs[("gpt-4o-mini", None)]
    assert anywhere.budget is not None and anywhere.budget.max_limit_nano == 50 * NANO_PER_USD
    assert anywhere.budget.duration == Duration(1, "w") and anywhere.budget.alignment is None

    key = snapshot.keys_by_hash[sha256(SEARCH_VK)]
    assert (key.id, key.name, key.is_active, key.team_id, key.customer_id) == (
        "vk-search", "search service", True, "search", None)
    assert key.allowed_models == frozenset({"gpt-4o-mini"})
    assert key.limits.scope == Scope(Level.VIRTUAL_KEY, "vk-search", "search service")
    assert key.limits.budget is not None and key.limits.budget.max_limit_nano == 10 * NANO_PER_USD
    assert key.limits.rate_limit is not None
    assert (key.limits.rate_limit.token_max_limit, key.limits.rate_limit.token_duration) == (100_000, Duration(1, "h"))
    assert (key.limits.rate_limit.request_max_limit, key.limits.rate_limit.request_duration) == (60, Duration(1, "m"))
    local = key.provider_configs["local"]
    assert (local.provider, local.weight, local.allowed_models, local.allowed_keys) == ("local", 1.0, frozenset(), frozenset())
    assert local.limits.scope.level is Level.PROVIDER_CONFIG and local.limits.budget is None
    assert local.limits.rate_limit is not None and local.limits.rate_limit.request_max_limit == 100

    assert snapshot.teams["search"].customer_id == "acme"
    assert snapshot.teams["search"].limits.scope == Scope(Level.TEAM, "search", "Search")
    acme = snapshot.customers["acme"]
    assert acme.scope == Scope(Level.CUSTOMER, "acme", "Acme")
    assert acme.budget is not None and acme.budget.alignment == Alignment("UTC", 0)
    assert acme.rate_limit is None


async def test_snapshot_is_immutable(db: Database) -> None:
    await apply_config(db, settings())
    snapshot = await load_snapshot(db, enforce_virtual_keys=False)
    with pytest.raises(TypeError):
        snapshot.customers["evil"] = snapshot.customers["acme"]  # type: ignore[index]
    key = next(iter(snapshot.keys_by_hash.values()))
    with pytest.raises(TypeError):
        key.provider_configs["x"] = key.provider_configs["local"]  # type: ignore[index]


async def test_fractional_budgets_become_exact_nano_dollars_and_alignment_is_kept(db: Database) -> None:
    raw = example_raw()
    raw["governance"]["customers"][0]["budget"] = {
        "max_limit": "123456.123456789", "reset_duration": "1w", "calendar_aligned": True,
        "timezone": "Europe/Paris", "week_start": 6,
    }
    await apply_config(db, settings(raw))

    snapshot = await load_snapshot(db, enforce_virtual_keys=False, version=77)

    budget = snapshot.customers["acme"].budget
    assert budget is not None
    assert budget.max_limit_nano == 123_456_123_456_789
    assert budget.alignment == Alignment("Europe/Paris", 6)
    assert snapshot.version == 77


async def test_an_empty_store_gives_an_empty_snapshot(db: Database) -> None:
    snapshot = await load_snapshot(db, enforce_virtual_keys=False)
    assert (snapshot.version, dict(snapshot.keys_by_hash), dict(snapshot.providers)) == (0, {}, {})
