"""`enforcement` and `on_insufficient` on budgets and rate limits through the management
API: stored, shown, changed, validated, and in force at once; the usage API shows each
limit's mode with its used and reserved amounts."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from tests.api.support import MockThread, gateway_config, unique
from tests.support.gateway import RunningGateway, start_gateway

KEYS = "/api/governance/virtual-keys"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('modes')}/tollway.db"
    running = start_gateway(gateway_config(url, upstream.url, governance_defaults={"enforcement": "strict"}))
    yield running
    running.stop()


def test_modes_are_stored_shown_changed_and_in_force(api: httpx2.Client, gateway: RunningGateway) -> None:
    body = {"id": unique("vk"), "name": "modes",
            "budget": {"max_limit": 10, "reset_duration": "1d", "on_insufficient": "clamp"},
            "rate_limit": {"token_max_limit": 1000, "token_reset_duration": "1h", "enforcement": "estimate"}}
    key = api.post(KEYS, json=body).json()["virtual_key"]
    assert (key["budget"]["enforcement"], key["budget"]["on_insufficient"]) == (None, "clamp")  # None: the default
    assert key["rate_limit"]["enforcement"] == "estimate"

    usage = {entry["kind"]: entry for entry in api.get("/api/governance/usage", params={"id": key["id"]}).json()["usage"]}
    assert (usage["budget"]["enforcement"], usage["budget"]["on_insufficient"]) == ("strict", "clamp")  # the default applied
    assert usage["tokens"]["enforcement"] == "estimate" and usage["budget"]["reserved"] == 0

    updated = api.put(f"{KEYS}/{key['id']}", json={"budget": {"enforcement": "estimate"}}).json()["virtual_key"]
    assert (updated["budget"]["enforcement"], updated["budget"]["on_insufficient"]) == ("estimate", "clamp")
    usage = {entry["kind"]: entry for entry in api.get("/api/governance/usage", params={"id": key["id"]}).json()["usage"]}
    assert usage["budget"]["enforcement"] == "estimate"


def test_unknown_modes_are_refused_naming_the_field(api: httpx2.Client) -> None:
    body = {"id": unique("vk"), "name": "bad", "budget": {"max_limit": 1, "reset_duration": "1d", "enforcement": "exact"}}
    response = api.post(KEYS, json=body)
    assert response.status_code in (400, 422), response.text
    assert "enforcement" in response.text
    assert api.get(f"{KEYS}/{body['id']}").status_code == 404  # nothing written


def test_a_budget_mode_set_to_null_returns_to_the_global_default(api: httpx2.Client, gateway: RunningGateway) -> None:
    body = {"id": unique("vk"), "name": "back to default",
            "budget": {"max_limit": 10, "reset_duration": "1d", "enforcement": "estimate", "on_insufficient": "clamp"}}
    key = api.post(KEYS, json=body).json()["virtual_key"]

    updated = api.put(f"{KEYS}/{key['id']}", json={"budget": {"enforcement": None}})
    refused = api.put(f"{KEYS}/{key['id']}", json={"budget": {"max_limit": None}})

    assert updated.status_code == 200, updated.text
    budget = updated.json()["virtual_key"]["budget"]
    assert (budget["enforcement"], budget["on_insufficient"]) == (None, "clamp")  # only the field stated
    usage = {entry["kind"]: entry for entry in api.get("/api/governance/usage", params={"id": key["id"]}).json()["usage"]}
    assert usage["budget"]["enforcement"] == "strict"  # this gateway's default
    assert refused.status_code in (400, 422) and "max_limit" in refused.text
